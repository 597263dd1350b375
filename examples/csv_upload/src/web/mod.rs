//! The web side (axum): one HTML page and a JSON API.
//!
//! | route | |
//! |---|---|
//! | `GET /` | the page (no build step: HTML and vanilla JS in one file) |
//! | `POST /api/imports` | upload (multipart field `file`; the user in a field `user` or a header `X-User`, see [`crate::user`]) → `202 {"id", "job_id", "user", …}` |
//! | `GET /api/imports` | the latest imports, each with its `user` and `waiting_for` |
//! | `GET /api/events` | the imports' job events, as server-sent events (see [`live`]) |
//! | `GET /api/imports/{id}` | one import, with the job's state and progress |
//! | `DELETE /api/imports/{id}` | deletes it: its rows, its notifications, its file |
//! | `POST /api/imports/{id}/retry` | runs a failed import again |
//! | `POST /api/imports/{id}/reimport` | `{"date_order": "dmy"}`: again, dates read that way |
//! | `GET /api/layouts` | the banks' layouts the parser knows |
//! | `GET /api/imports/{id}/rejected` | its rejected rows (`?limit=&offset=`) |
//! | `GET /api/imports/{id}/transactions` | its transactions (`?limit=&offset=`) |
//! | `GET /api/notifications` | notifications (`?unread=true`), with the unread count |
//! | `POST /api/notifications/{id}/read` | marks one read |
//! | `POST /api/notifications/read` | marks all read |
//! | `GET /healthz` | liveness |
//! | `GET /metrics` | metrics in the Prometheus text format (see `kosh_jobs::metrics`) |

mod api;
mod error;
pub mod live;
mod upload;

use axum::extract::DefaultBodyLimit;
use axum::response::Html;
use axum::routing::{get, post};
use axum::Router;
use kosh_jobs::Client;
use tower_http::trace::TraceLayer;

pub use error::ApiError;
pub use upload::{display_name, USER_HEADER};

use crate::import::App;

/// What the handlers share.
#[derive(Clone, Debug)]
pub struct Web {
    /// The app (database, upload folder).
    pub app: App,
    /// The job client, to enqueue imports and read their jobs.
    pub jobs: Client,
    /// How an upload's import and its job are created: one transaction or two steps.
    pub queueing: crate::queueing::Queueing,
    /// Largest upload accepted.
    pub max_upload_bytes: u64,
    /// What `/metrics` serves; `None` when metrics are off (then it answers 404).
    pub metrics: Option<crate::metrics::Metrics>,
    /// Cancelled when the server shuts down: ends the live event streams.
    pub closing: kosh_jobs::CancellationToken,
}

const PAGE: &str = include_str!("index.html");

/// The app's routes.
pub fn router(web: Web) -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(crate::metrics::serve))
        .route(
            "/api/imports",
            // The upload enforces its own limit while streaming (413 as JSON).
            post(upload::upload)
                .layer(DefaultBodyLimit::disable())
                .get(api::list_imports),
        )
        .route("/api/events", get(live::events))
        .route(
            "/api/imports/{id}",
            get(api::get_import).delete(api::delete_import),
        )
        .route("/api/imports/{id}/retry", post(api::retry_import))
        .route("/api/imports/{id}/reimport", post(api::reimport))
        .route("/api/layouts", get(api::layouts))
        .route("/api/imports/{id}/rejected", get(api::rejected_rows))
        .route("/api/imports/{id}/transactions", get(api::transactions))
        .route("/api/notifications", get(api::notifications))
        .route("/api/notifications/read", post(api::mark_all_read))
        .route("/api/notifications/{id}/read", post(api::mark_read))
        .fallback(api::not_found)
        .layer(TraceLayer::new_for_http())
        .with_state(web)
}
