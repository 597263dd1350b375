//! The `#[job]` attribute on real handlers: the generated `Job` values, and `Handler::run`
//! driving the user's function with a context over the memory backend.

use std::sync::Arc;
use std::time::Duration;

use kosh_jobs::memory::MemoryBackend;
use kosh_jobs::{
    job, Backend, Backoff, CancellationToken, Client, Handler, Job, JobContext, JobError,
    JobOptions, ReserveRequest,
};
use serde::{Deserialize, Serialize};

const S: Duration = Duration::from_secs(1);

#[derive(Clone)]
struct App {
    bank: &'static str,
}

#[derive(Debug, thiserror::Error)]
enum ImportError {
    #[error("the bank API is down")]
    BankDown,
}

// ---- the issue's example: payload and context, `Result<(), E>` --------------------------

#[derive(Serialize, Deserialize)]
struct ImportCsv {
    upload_id: i64,
}

#[job(queue = "csv-uploads", max_attempts = 5, backoff = exponential(2s, max = 10m), timeout = 15m)]
async fn import_csv(job: ImportCsv, ctx: JobContext<App>) -> Result<(), ImportError> {
    ctx.progress(serde_json::json!({ "rows": 1200, "bank": ctx.state().bank }))
        .await
        .map_err(|_| ImportError::BankDown)?;
    if job.upload_id < 0 {
        return Err(ImportError::BankDown);
    }
    Ok(())
}

#[test]
fn the_issue_example_generates_its_options() {
    assert_eq!(ImportCsv::NAME, "import_csv");
    assert_eq!(ImportCsv::QUEUE, "csv-uploads");
    let expected = JobOptions::new()
        .max_attempts(5)
        .backoff(Backoff::exponential(2 * S, 600 * S).unwrap())
        .timeout(15 * 60 * S);
    assert_eq!(ImportCsv::options(), expected);
    assert_eq!(ImportCsv { upload_id: 1 }.unique_key(), None);
}

#[tokio::test]
async fn run_calls_the_function_with_the_context() {
    let (client, ctx) =
        leased::<ImportCsv, _>(ImportCsv { upload_id: 42 }, App { bank: "acme" }).await;
    let id = ctx.id();
    Handler::run(ImportCsv { upload_id: 42 }, ctx)
        .await
        .unwrap();
    let record = client.status(id).await.unwrap();
    assert_eq!(
        record.progress,
        Some(serde_json::json!({ "rows": 1200, "bank": "acme" }))
    );

    let (_, ctx) = leased::<ImportCsv, _>(ImportCsv { upload_id: -1 }, App { bank: "acme" }).await;
    let err = ImportCsv { upload_id: -1 }.run(ctx).await.unwrap_err();
    assert!(!err.is_permanent(), "an `E: Error` is retryable");
    assert_eq!(err.message(), "the bank API is down");
}

#[tokio::test]
async fn the_function_stays_callable() {
    let (_, ctx) = leased::<ImportCsv, _>(ImportCsv { upload_id: 1 }, App { bank: "acme" }).await;
    import_csv(ImportCsv { upload_id: 1 }, ctx).await.unwrap();
}

// ---- every key --------------------------------------------------------------------------

#[derive(Serialize, Deserialize)]
struct SendReceipt {
    order_id: i64,
    email: String,
}

#[job(
    name = "send_receipt.v2",
    queue = "mail",
    max_attempts = 10,
    backoff = linear(30s, max = 10m, jitter = 0.1),
    timeout = 1500ms,
    priority = -5,
    unique = "receipt-{order_id}-{email}-{{x}}-{order_id:>4}",
)]
async fn send_receipt(job: SendReceipt) -> Result<(), std::io::Error> {
    let _ = job.email;
    Ok(())
}

#[test]
fn every_key() {
    assert_eq!(SendReceipt::NAME, "send_receipt.v2");
    assert_eq!(SendReceipt::QUEUE, "mail");
    let backoff = Backoff::linear(30 * S, 600 * S)
        .unwrap()
        .with_jitter(0.1)
        .unwrap();
    let expected = JobOptions::new()
        .max_attempts(10)
        .backoff(backoff)
        .timeout(Duration::from_millis(1500))
        .priority(-5);
    assert_eq!(SendReceipt::options(), expected);
    let job = SendReceipt {
        order_id: 7,
        email: "a@b.c".into(),
    };
    assert_eq!(
        job.unique_key().as_deref(),
        Some("receipt-7-a@b.c-{x}-   7")
    );
}

// ---- defaults ---------------------------------------------------------------------------

#[derive(Serialize, Deserialize)]
struct Ping;

#[job]
async fn ping(_: Ping) -> Result<(), JobError> {
    Ok(())
}

#[test]
fn no_keys_gives_the_defaults() {
    assert_eq!(Ping::NAME, "ping");
    assert_eq!(Ping::QUEUE, "default");
    assert_eq!(Ping::options(), JobOptions::new());
    assert_eq!(Ping.unique_key(), None);
}

// ---- backoff forms ----------------------------------------------------------------------

#[derive(Serialize, Deserialize)]
struct B1;
#[derive(Serialize, Deserialize)]
struct B2;
#[derive(Serialize, Deserialize)]
struct B3;
#[derive(Serialize, Deserialize)]
struct B4;

#[job(backoff = none)]
async fn b1(_: B1) -> Result<(), JobError> {
    Ok(())
}
#[job(backoff = fixed(30s))]
async fn b2(_: B2) -> Result<(), JobError> {
    Ok(())
}
#[job(backoff = fixed(1h, jitter = 1))]
async fn b3(_: B3) -> Result<(), JobError> {
    Ok(())
}
#[job(backoff = exponential(500ms, max = 30d, jitter = 0.25))]
async fn b4(_: B4) -> Result<(), JobError> {
    Ok(())
}

#[test]
fn backoff_forms() {
    assert_eq!(B1::options().backoff, Backoff::none());
    assert_eq!(B2::options().backoff, Backoff::fixed(30 * S).unwrap());
    assert_eq!(
        B3::options().backoff,
        Backoff::fixed(3600 * S).unwrap().with_jitter(1.0).unwrap()
    );
    assert_eq!(
        B4::options().backoff,
        Backoff::exponential(Duration::from_millis(500), kosh_jobs::retry::MAX_DELAY)
            .unwrap()
            .with_jitter(0.25)
            .unwrap()
    );
}

// ---- unique by one field ----------------------------------------------------------------

#[derive(Serialize, Deserialize)]
struct Reindex {
    account: u64,
}

#[job(unique = account)]
async fn reindex(job: Reindex) -> Result<(), JobError> {
    let _ = job.account;
    Ok(())
}

#[derive(Serialize, Deserialize)]
struct Nightly;

#[job(unique = "nightly-report")]
async fn nightly(_: Nightly) -> Result<(), JobError> {
    Ok(())
}

#[tokio::test]
async fn unique_keys_deduplicate_live_jobs() {
    assert_eq!(
        Reindex { account: 9 }.unique_key().as_deref(),
        Some("reindex:9")
    );
    assert_eq!(Nightly.unique_key().as_deref(), Some("nightly-report"));

    let client = Client::new(MemoryBackend::new());
    let first = client.enqueue(Reindex { account: 9 }).await.unwrap();
    let again = client.enqueue(Reindex { account: 9 }).await.unwrap();
    let other = client.enqueue(Reindex { account: 10 }).await.unwrap();
    assert!(!first.existing() && again.existing() && !other.existing());
    assert_eq!(first.id(), again.id());
    assert_ne!(first.id(), other.id());
}

// ---- outputs and errors -----------------------------------------------------------------

#[derive(Serialize, Deserialize)]
struct Count {
    rows: Vec<u32>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Summary {
    rows: usize,
    total: u64,
}

#[job(queue = "stats")]
async fn count(job: Count) -> Result<Summary, JobError> {
    if job.rows.is_empty() {
        return Err(JobError::permanent("no rows"));
    }
    Ok(Summary {
        rows: job.rows.len(),
        total: job.rows.iter().map(|&r| u64::from(r)).sum(),
    })
}

#[tokio::test]
async fn a_result_is_the_handlers_output() {
    let (_, ctx) = leased::<Count, _>(Count { rows: vec![1] }, ()).await;
    let out: Summary = Count {
        rows: vec![1, 2, 3],
    }
    .run(ctx)
    .await
    .unwrap();
    assert_eq!(out, Summary { rows: 3, total: 6 });
}

#[tokio::test]
async fn permanent_errors_stay_permanent() {
    let (_, ctx) = leased::<Count, _>(Count { rows: vec![] }, ()).await;
    let err = Count { rows: vec![] }.run(ctx).await.unwrap_err();
    assert!(err.is_permanent());
    assert_eq!(err.message(), "no rows");
}

#[tokio::test]
async fn a_handler_without_context_runs_with_any_state() {
    fn registers<J: Handler<S>, S>() {}
    registers::<Count, ()>();
    registers::<Count, App>();
    registers::<Count, Arc<String>>();

    let (_, ctx) = leased::<Count, _>(Count { rows: vec![1] }, App { bank: "x" }).await;
    assert_eq!(
        Handler::<App>::run(Count { rows: vec![4] }, ctx)
            .await
            .unwrap(),
        Summary { rows: 1, total: 4 }
    );
}

#[derive(Serialize, Deserialize)]
struct Fetch {
    url: String,
}

#[job]
async fn fetch(job: Fetch) -> anyhow::Result<u16> {
    anyhow::ensure!(job.url.starts_with("https://"), "refusing {}", job.url);
    Ok(200)
}

#[derive(Serialize, Deserialize)]
struct Boxed;

type BoxedResult = Result<String, Box<dyn std::error::Error + Send + Sync>>;

#[job]
async fn boxed(_: Boxed) -> BoxedResult {
    Err("boxed failure".into())
}

#[tokio::test]
async fn other_error_types_convert() {
    let (_, ctx) = leased::<Fetch, _>(Fetch { url: "x".into() }, ()).await;
    let err = Fetch {
        url: "http://a".into(),
    }
    .run(ctx)
    .await
    .unwrap_err();
    assert_eq!(err.message(), "refusing http://a");
    assert!(!err.is_permanent());

    let (_, ctx) = leased::<Boxed, _>(Boxed, ()).await;
    let err = Boxed.run(ctx).await.unwrap_err();
    assert_eq!(err.message(), "boxed failure");
    fn output_is<J: Handler<(), Output = String>>() {}
    output_is::<Boxed>();
}

// ---- spellings: patterns, paths, raw identifiers, re-exports ------------------------------

#[derive(Serialize, Deserialize)]
struct Pattern {
    a: u32,
    b: u32,
}

#[job]
async fn pattern(
    Pattern { a, b }: Pattern,
    ctx: kosh_jobs::JobContext<App>,
) -> Result<u32, JobError> {
    Ok(a + b + ctx.state().bank.len() as u32)
}

#[derive(Serialize, Deserialize)]
struct Keyword;

#[job]
async fn r#match(_: Keyword) -> Result<(), JobError> {
    Ok(())
}

mod reexport {
    pub(crate) use kosh_jobs as jobs;
}

#[derive(Serialize, Deserialize)]
struct Reexported;

#[job(crate = "crate::reexport::jobs", queue = "re")]
async fn reexported(_: Reexported) -> Result<(), JobError> {
    Ok(())
}

#[tokio::test]
async fn other_spellings() {
    let (_, ctx) = leased::<Pattern, _>(Pattern { a: 1, b: 2 }, App { bank: "acme" }).await;
    assert_eq!(Pattern { a: 1, b: 2 }.run(ctx).await.unwrap(), 7);
    assert_eq!(Keyword::NAME, "match");
    assert_eq!(Reexported::QUEUE, "re");
}

// ---- in a worker ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_handlers_run_in_a_worker() {
    let backend = MemoryBackend::new();
    let client = Client::new(backend.clone());
    let import = client
        .enqueue(ImportCsv { upload_id: 5 })
        .await
        .unwrap()
        .id();
    let count = client
        .enqueue(Count { rows: vec![2, 3] })
        .await
        .unwrap()
        .id();
    let empty = client.enqueue(Count { rows: vec![] }).await.unwrap().id();

    // One handler takes `JobContext<App>`, the other works with any state.
    let handle = kosh_jobs::Worker::builder(backend)
        .state(App { bank: "acme" })
        .register::<ImportCsv>()
        .register::<Count>()
        .build()
        .unwrap()
        .spawn();
    for id in [import, count, empty] {
        let deadline = std::time::Instant::now() + 10 * S;
        while !client.status(id).await.unwrap().state.is_final() {
            assert!(
                std::time::Instant::now() < deadline,
                "job {id} did not finish"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    handle.shutdown().await.unwrap();

    let import = client.status(import).await.unwrap();
    assert_eq!(import.state, kosh_jobs::JobState::Completed);
    assert_eq!(
        import.progress,
        Some(serde_json::json!({ "rows": 1200, "bank": "acme" }))
    );
    let count = client.status(count).await.unwrap();
    assert_eq!(
        count.result,
        Some(serde_json::json!({ "rows": 2, "total": 5 }))
    );
    let empty = client.status(empty).await.unwrap();
    assert_eq!(empty.state, kosh_jobs::JobState::Failed);
    assert_eq!(empty.attempts, 1, "a permanent error skips the retries");
    assert_eq!(empty.last_error(), Some("no rows"));
}

mod billing {
    #[derive(serde::Serialize, serde::Deserialize)]
    pub(crate) struct SendInvoice;

    #[kosh_jobs::job(name = "send")]
    async fn send_invoice(_: SendInvoice) -> Result<(), kosh_jobs::JobError> {
        Ok(())
    }
}

mod mail {
    #[derive(serde::Serialize, serde::Deserialize)]
    pub(crate) struct SendMail;

    #[kosh_jobs::job(name = "send")]
    async fn send_mail(_: SendMail) -> Result<(), kosh_jobs::JobError> {
        Ok(())
    }
}

#[test]
fn the_worker_refuses_one_name_for_two_jobs_in_different_modules() {
    let err = kosh_jobs::Worker::builder(MemoryBackend::new())
        .register::<billing::SendInvoice>()
        .register::<mail::SendMail>()
        .build()
        .err()
        .expect("two handlers named `send`");
    let msg = err.to_string();
    assert!(msg.contains("`send`"), "{msg}");
    assert!(msg.contains("billing::SendInvoice"), "{msg}");
    assert!(msg.contains("mail::SendMail"), "{msg}");
}

// ---- helpers ----------------------------------------------------------------------------

/// Enqueues `job` on a fresh memory backend and leases it, returning a context for it.
async fn leased<J: Job, St>(job: J, state: St) -> (Client, JobContext<St>) {
    let backend = kosh_jobs::AnyBackend::new(MemoryBackend::new());
    let client = Client::new(backend.clone());
    client.enqueue(job).await.unwrap();
    let req = ReserveRequest {
        queues: vec![J::QUEUE.to_owned()],
        worker: "test".into(),
        max: 1,
        lease: 60 * S,
    };
    let mut leased = backend.reserve(&req).await.unwrap();
    assert_eq!(leased.len(), 1);
    let ctx = JobContext::new(
        state,
        backend,
        Arc::new(leased.remove(0)),
        CancellationToken::new(),
    );
    (client, ctx)
}
