//! [`router`]: the routes, the shared state, the layers.

use std::sync::Arc;

use axum::http::request::Parts;
use axum::middleware;
use axum::routing::{get, post};
use axum::Router;
use kosh_jobs_core::{Admin, Backend, Client};

use crate::api;
use crate::assets;
use crate::error::ApiError;
use crate::options::{Action, Options};
use crate::security;

/// What every handler shares.
pub(crate) struct Inner {
    pub(crate) admin: Admin,
    /// Over the same backend: its schedule methods.
    pub(crate) client: Client,
    pub(crate) options: Options,
}

pub(crate) type Shared = Arc<Inner>;

impl Inner {
    /// `Ok` when the request may do `action`, else the `403` to answer.
    pub(crate) fn check(&self, parts: &Parts, action: Action) -> Result<(), ApiError> {
        if self.options.read_only {
            return Err(ApiError::forbidden(format!(
                "the dashboard is read-only: {action} is not allowed"
            )));
        }
        if !self.options.allows(parts, action) {
            return Err(ApiError::forbidden(format!(
                "you are not allowed to {action} here"
            )));
        }
        Ok(())
    }

    /// The actions this request may do.
    pub(crate) fn allowed(&self, parts: &Parts) -> Vec<Action> {
        Action::ALL
            .into_iter()
            .filter(|a| self.options.allows(parts, *a))
            .collect()
    }
}

/// The dashboard over `backend`, to nest under any path of your application:
///
/// ```
/// use axum::Router;
/// use kosh_jobs::memory::MemoryBackend;
/// use kosh_jobs_web::{router, Options};
///
/// let backend = MemoryBackend::new(); // or `kosh_jobs::connect(url).await?`
/// let app: Router = Router::new()
///     .nest("/admin/jobs", router(backend.clone(), Options::new().read_only(true)));
/// # let _ = app;
/// ```
///
/// `backend` is any backend or an [`AnyBackend`](kosh_jobs_core::AnyBackend) (shared, not
/// wrapped again): pass the one your [`Client`](kosh_jobs_core::Client) uses. The router
/// works with any state type of the application's router.
///
/// It serves the page at its root (`/admin/jobs`), its compiled-in script and style under
/// `assets/`, and a JSON API under `api/` that the page polls:
///
/// | route | what |
/// |---|---|
/// | `GET api/meta` | title, store description, poll interval, the actions this request may do |
/// | `GET api/overview` | every queue: counts per state, paused, oldest ready job, completed and failed per minute over the last hour; live workers |
/// | `GET api/jobs?states=&queue=&name=&search=&created_from=&created_until=&finished_from=&finished_until=&order=&after=&limit=` | a page of jobs, a total, the cursor of the next page |
/// | `GET api/jobs/{id}` | one job in full: payload, attempts, progress, result, the actions that apply |
/// | `GET api/count?action=&<filter>` | how many jobs a bulk action on the filter would touch |
/// | `GET api/workers` | live workers and the jobs they run |
/// | `POST api/jobs/{id}/{retry,cancel,delete,promote}` | an action on one job |
/// | `POST api/bulk` `{"action", "ids": [..]}` or `{"action", "filter": {..}}` | an action on many jobs |
/// | `POST api/queues/{queue}/{pause,resume}` | pause or resume a queue |
/// | `POST api/queues/{queue}/purge` `{"finished_before"}` or `{"older_than_secs"}` | delete the queue's finished jobs |
/// | `POST api/jobs` `{"name", "queue", "payload", ...}` | enqueue a job |
/// | `GET api/schedules` | every schedule: when it fires, its job, next and last tick, runs, policies, paused |
/// | `POST api/schedules/{id}/{pause,resume,trigger,delete}` | an action on one schedule (the id percent-encoded) |
///
/// Every state-changing request is a POST, refused with `403` when it comes from another
/// site (`Sec-Fetch-Site`, `Origin`), in read-only mode, or when the
/// [authorization hook](Options::authorize) says no. Answers carry a strict
/// Content-Security-Policy; the page shows every value of a job as text.
pub fn router<S>(backend: impl Backend, options: Options) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let admin = Admin::new(backend);
    let shared: Shared = Arc::new(Inner {
        client: Client::new(admin.backend().clone()),
        admin,
        options,
    });
    Router::new()
        .route("/", get(assets::shell))
        .route("/assets/{file}", get(assets::asset))
        .route("/api/meta", get(api::meta::meta))
        .route("/api/overview", get(api::overview::overview))
        .route(
            "/api/jobs",
            get(api::jobs::list).post(api::enqueue::enqueue),
        )
        .route("/api/jobs/{id}", get(api::jobs::show))
        .route("/api/jobs/{id}/{action}", post(api::actions::one))
        .route("/api/count", get(api::actions::count))
        .route("/api/bulk", post(api::actions::bulk))
        .route("/api/queues/{queue}/groups", get(api::groups::groups))
        .route("/api/queues/{queue}/{op}", post(api::queues::queue_op))
        .route("/api/workers", get(api::workers::workers))
        .route("/api/schedules", get(api::schedules::list))
        .route(
            "/api/schedules/{id}/{op}",
            post(api::schedules::schedule_op),
        )
        .fallback(api::not_found)
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            security::refuse_cross_site,
        ))
        .layer(middleware::from_fn(security::headers))
        // Outermost: nothing, not even a refusal for another reason, before the password.
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            security::basic_auth,
        ))
        .with_state(shared)
}
