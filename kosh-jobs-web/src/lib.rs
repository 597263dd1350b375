//! # kosh-jobs-web
//!
//! The [kosh-jobs](https://docs.rs/kosh-jobs) dashboard: an axum [`Router`](axum::Router) to
//! nest under any path of your application, working with every backend, its page, script and
//! style compiled into the binary (no CDN, no network, no Node build step).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), kosh_jobs::Error> {
//! use axum::Router;
//! use kosh_jobs_web::{router, Action, Options};
//!
//! let url = "memory:"; // e.g. redis://:password@cache:6379 — the page never shows the password
//! let backend = kosh_jobs::connect(url).await?;
//! let options = Options::new()
//!     .title("Acme jobs")
//!     .backend_url(url)
//!     // Only requests your auth layer marked as an engineer's may delete or purge.
//!     .authorize(|parts, action| {
//!         !action.is_destructive() || parts.headers.contains_key("x-engineer")
//!     });
//! let app: Router = Router::new().nest("/admin/jobs", router(backend.clone(), options));
//! # let _ = app; let _ = Action::Retry;
//! # Ok(()) }
//! ```
//!
//! Pages (one HTML shell, routed by the URL's fragment, drawn from the JSON API by a small
//! script that shows every job value as text):
//!
//! - **Overview** (`#/`): every queue with its counts per state, paused or not, the age of
//!   its oldest ready job, completed and failed jobs per minute over the last hour as a
//!   chart, the failure ratio; the live workers. Pause, resume and purge per queue.
//! - **Queue** (`#/queues/NAME`): its jobs by state, a page at a time, filtered by name, text
//!   and time range; retry, cancel, delete or promote the selected jobs or every job the
//!   filter matches, after showing the count and asking to confirm.
//! - **Job** (`#/jobs/ID`): payload (pretty-printed, with a copy button), the attempt
//!   timeline, progress, result, unique key, times absolute and relative, and the actions
//!   its state allows.
//! - **Workers** (`#/workers`): live workers, their queues and the jobs they run now.
//! - **Schedules** (`#/schedules`): every periodic job, when it fires, its next and last
//!   tick, runs and policies, paused or not; pause, resume, run now, and delete after asking
//!   to confirm. Schedules have their own [`Action`]s (`PauseSchedule`, `ResumeSchedule`,
//!   `TriggerSchedule`, `RemoveSchedule`).
//!
//! The pages poll the API every few seconds (a button pauses it); a list is not redrawn
//! under the reader: new rows wait behind a "show" button.
//!
//! # Security
//!
//! Nest the router behind your application's authentication. On top of that:
//! [`Options::read_only`] refuses every action; [`Options::authorize`] is asked for each
//! action with the request; every state-changing request is a POST refused with `403` when a
//! browser sent it from another site; answers carry a strict Content-Security-Policy (no
//! inline script) and `X-Content-Type-Options: nosniff`; the store's URL is shown only
//! without its password ([`redact_url`]).

mod api;
mod assets;
mod error;
mod options;
mod params;
mod redact;
mod router;
mod security;
mod views;

pub use options::{Action, Options};
pub use redact::redact_url;
pub use router::router;
