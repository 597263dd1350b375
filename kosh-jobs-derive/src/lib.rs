//! The `#[job(...)]` attribute of kosh-jobs. Use it through `kosh_jobs::job`; depend on
//! `kosh-jobs` alone.
//!
//! The entry point below hands over to `proc_macro2` code: `args` parses the attribute,
//! `signature` checks the handler's shape, `validate`, `duration`, `backoff` and `unique`
//! check values, and `expand` generates the code. Every mistake becomes a spanned compile
//! error; all of them are reported at once.

mod args;
mod backoff;
mod duration;
mod errors;
mod expand;
mod signature;
mod unique;
mod validate;

use proc_macro::TokenStream;

/// Turns an async handler function into a job type.
///
/// The attribute implements `kosh_jobs::Job` for the handler's payload type (its stable
/// name, its queue and its default options) and `kosh_jobs::Handler`, which runs the
/// function. It is the same code you could write by hand. The function stays as written, so
/// a unit test can call it directly.
///
/// ```
/// use kosh_jobs::{job, Job, JobContext};
/// use serde::{Deserialize, Serialize};
/// use std::time::Duration;
///
/// #[derive(Clone)]
/// struct App {
///     bank: String,
/// }
///
/// #[derive(Serialize, Deserialize)]
/// struct ImportCsv {
///     upload_id: i64,
/// }
///
/// #[job(queue = "csv-uploads", max_attempts = 5, backoff = exponential(2s, max = 10m), timeout = 15m)]
/// async fn import_csv(job: ImportCsv, ctx: JobContext<App>) -> Result<(), std::io::Error> {
///     println!("importing upload {} for {}", job.upload_id, ctx.state().bank);
///     Ok(())
/// }
///
/// assert_eq!(ImportCsv::NAME, "import_csv"); // the function's name
/// assert_eq!(ImportCsv::QUEUE, "csv-uploads");
/// let options = ImportCsv::options();
/// assert_eq!(options.max_attempts, 5);
/// assert_eq!(options.timeout, Some(Duration::from_secs(15 * 60)));
/// ```
///
/// Enqueue the payload with `Client::enqueue(ImportCsv { upload_id })` and run it with
/// `Worker::builder(backend).state(app).register::<ImportCsv>()`.
///
/// # Keys
///
/// Every key is optional. The options are defaults: `enqueue` can override the queue,
/// priority, attempts and unique key of one job with `job.with()`.
///
/// | key | example | meaning | default |
/// |---|---|---|---|
/// | `queue` | `queue = "csv-uploads"` | the queue jobs go to: 1 to 128 ASCII letters, digits, `-`, `_`, `.`, `:`, not starting with `:` | `"default"` |
/// | `name` | `name = "import_csv"` | the stable name stored with each job and used to find its handler; same characters as a queue | the function's name |
/// | `max_attempts` | `max_attempts = 5` | attempts at most, the first included; at least 1 (1: no retries) | 3 |
/// | `backoff` | `backoff = exponential(2s, max = 10m, jitter = 0.2)` | the delay before each retry, see below | exponential from 1 s, capped at 1 h |
/// | `timeout` | `timeout = 15m` | an attempt running longer fails as a timeout; above zero | none |
/// | `priority` | `priority = 10` | an `i32`, higher runs first | 0 |
/// | `unique` | `unique = "upload-{upload_id}"` or `unique = upload_id` | the unique key derived from the payload, see below | none |
/// | `group` | `group = user_id` or `group = "user-{user_id}"` | the group key derived from the payload: the queue takes turns between groups and may limit each group's running jobs (see `kosh_jobs::limits`) | none |
/// | `cron` | `cron = "0 3 * * *"` | a schedule: the job is enqueued at each tick, with the payload's `Default` (see below) | none |
/// | `tz` | `tz = "Asia/Kolkata"` | the IANA time zone `cron` is read in | `"UTC"` |
/// | `crate` | `crate = "my_app::kosh_jobs"` | where `kosh_jobs` is, when it is re-exported under another path | `"::kosh_jobs"` |
///
/// **The job name** defaults to the function's name rather than the payload type's, so the
/// name stored with queued jobs survives renaming the type. Renaming the function (or
/// changing `name`) does change it: jobs already queued under the old name would no longer
/// find their handler, so keep the old name with `name = "..."`. Two jobs with the same name
/// in one module are a compile error; across modules, building the worker refuses them.
///
/// **Durations** are written as a whole number with a unit, checked at compile time:
/// `500ms`, `30s`, `15m` (minutes), `2h`, `1d`.
///
/// **Backoff** is one of:
///
/// | value | delay before retry *n* |
/// |---|---|
/// | `none` | none: retry at once |
/// | `fixed(30s)` | 30 s every time |
/// | `linear(10s, max = 5m)` | 10 s × *n*, at most 5 min |
/// | `exponential(2s, max = 10m)` | 2 s × 2^(*n* − 1), at most 10 min |
///
/// `fixed`, `linear` and `exponential` take an optional `jitter = 0.2`: each delay is moved
/// randomly by up to ± that fraction (0.0 to 1.0) so jobs that failed together do not all
/// retry at the same moment. The cap (`max`) is required and must be at least the first
/// delay, which must be above zero; no delay may exceed 30 days.
///
/// **Unique keys**: while a job with the same unique key is scheduled, ready or running,
/// enqueueing another returns the existing job instead of adding one.
///
/// - `unique = "upload-{upload_id}"` is a format string over the payload's fields, used as
///   the key as it is. `{field:spec}` formats as `format!` does; `{{` and `}}` are braces.
///   A string without fields (`unique = "nightly-report"`) allows one live job of the type.
/// - `unique = upload_id` uses one field, prefixed with the job's name: `"import_csv:42"`.
///
/// The fields must implement `Display`.
///
/// **Group keys** take the same two forms, except that `group = user_id` is the field's value
/// alone (`"42"`), not prefixed: jobs of several types in one queue share a user's group.
/// `job.with().group("...")` overrides it for one job.
///
/// **Schedules**: `cron = "0 3 * * *"` (five fields, or six with seconds first, or `@daily`
/// and the like; `L`, `W` and `#` too) with an optional `tz = "Europe/Berlin"` declares a
/// periodic job. Both are checked at compile time, and the payload type must implement
/// `Default` (the payload of every tick). A worker that registers the type stores the
/// schedule when it starts, under the job's name, and any worker fires it: once per tick,
/// however many run (see `kosh_jobs::schedule`). Schedules that need their own payloads (one
/// per user) are made at run time with `Client::upsert_schedule`. Removing the attribute does
/// not remove the stored schedule: `kosh-jobs schedules rm <name>` does.
///
/// ```
/// use kosh_jobs::{job, Backoff, Job};
/// use serde::{Deserialize, Serialize};
/// use std::time::Duration;
///
/// #[derive(Serialize, Deserialize)]
/// struct SendReceipt {
///     order_id: i64,
///     customer_id: u32,
/// }
///
/// #[job(
///     name = "send_receipt.v1",
///     queue = "mail",
///     max_attempts = 10,
///     backoff = linear(30s, max = 10m, jitter = 0.1),
///     timeout = 30s,
///     priority = -5,
///     unique = "receipt-{order_id}",
///     group = "customer-{customer_id}",
/// )]
/// async fn send_receipt(job: SendReceipt) -> Result<(), std::io::Error> {
///     let _ = job.order_id;
///     Ok(())
/// }
///
/// assert_eq!(SendReceipt::NAME, "send_receipt.v1");
/// let options = SendReceipt::options();
/// let backoff = Backoff::linear(Duration::from_secs(30), Duration::from_secs(600))
///     .unwrap()
///     .with_jitter(0.1)
///     .unwrap();
/// assert_eq!(options.backoff, backoff);
/// assert_eq!(options.priority, -5);
/// let receipt = SendReceipt { order_id: 7, customer_id: 3 };
/// assert_eq!(receipt.unique_key().as_deref(), Some("receipt-7"));
/// assert_eq!(receipt.group_key().as_deref(), Some("customer-3"));
/// ```
///
/// # Handlers
///
/// ```text
/// async fn name(job: Payload) -> Result<T, E>
/// async fn name(job: Payload, ctx: JobContext<State>) -> Result<T, E>
/// ```
///
/// - The first parameter is the payload, taken by value: its type is the job type, and must
///   be `Serialize + Deserialize + Send + Sync + 'static`, defined in your crate. Any
///   pattern works (`ImportCsv { upload_id }: ImportCsv`).
/// - The optional second parameter is the context, `JobContext<State>` with the worker's
///   state type written out (the attribute reads it; it cannot see through a type alias).
///   A handler with a context registers with workers of that state; one without registers
///   with a worker of any state.
/// - The return type is `Result<T, E>` (or an alias such as `anyhow::Result<T>`):
///   `T: Serialize` is stored as the job's result (`()` stores nothing); `E` is any error
///   that converts into a `Box<dyn Error + Send + Sync>` (a retryable failure), or
///   `kosh_jobs::JobError`, whose `JobError::permanent` skips the remaining attempts and
///   whose `JobError::snooze(delay)` runs the job again after `delay` without counting the
///   attempt ("not now", e.g. after an HTTP 429).
/// - The future must be `Send`: the worker runs it on a multi-threaded runtime.
///
/// ```
/// use kosh_jobs::{job, Handler, JobContext, JobError};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Resize {
///     image: String,
/// }
///
/// #[derive(Serialize, Deserialize)]
/// struct Resized {
///     bytes: u64,
/// }
///
/// #[job(queue = "images")]
/// async fn resize(Resize { image }: Resize, ctx: JobContext<()>) -> Result<Resized, JobError> {
///     if image.is_empty() {
///         return Err(JobError::permanent("no image given")); // retrying cannot help
///     }
///     ctx.check_cancelled()?;
///     Ok(Resized { bytes: 1024 })
/// }
///
/// fn registers_with<J: Handler<()>>() {}
/// registers_with::<Resize>();
/// ```
///
/// # Mistakes
///
/// Every mistake is a compile error at the offending token, all of them in one compilation:
/// an unknown key (listing the valid ones), a key given twice, a malformed value, a duration
/// without a unit, zero attempts, a backoff cap below its base, an invalid queue or job name,
/// a function that is not `async`, is generic, takes `self` or no payload, or does not return
/// a `Result`.
///
/// ```compile_fail
/// # use kosh_jobs::job;
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Ping;
/// #[job(queue = "pings", retries = 3)] // unknown key `retries` (did you mean `max_attempts`?)
/// async fn ping(job: Ping) -> Result<(), std::io::Error> {
///     Ok(())
/// }
/// ```
///
/// # Generated code
///
/// For `#[job(queue = "csv-uploads", max_attempts = 5)] async fn import_csv(job: ImportCsv,
/// ctx: JobContext<App>) -> Result<(), ImportError>`, roughly:
///
/// ```text
/// impl Job for ImportCsv {
///     const NAME: &'static str = "import_csv";
///     const QUEUE: &'static str = "csv-uploads";
///     type Output = ();
///     fn options() -> JobOptions { JobOptions::new().max_attempts(5) }
/// }
/// impl Handler<App> for ImportCsv {
///     async fn run(self, ctx: JobContext<App>) -> Result<(), JobError> {
///         import_csv(self, ctx).await.map_err(Into::into)
///     }
/// }
/// ```
///
/// It names only `kosh_jobs::__private` items, so it needs no imports.
#[proc_macro_attribute]
pub fn job(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::job(args.into(), item.into()).into()
}
