//! Traces from enqueue to run (`opentelemetry` feature, `kosh_jobs::trace`): an in-memory
//! OpenTelemetry exporter sees each attempt's span as a child of the span that enqueued the
//! job, in the trace of the request around the enqueue, with the job's context carried by the
//! store: on memory, on SQLite (the worker on a second handle of the file, as another process
//! would open it) and on Redis (the worker on connections of its own).

#![cfg(all(feature = "opentelemetry", feature = "sqlite", feature = "redis"))]

use kosh_jobs::{job, AnyBackend, Client, JobContext, JobError, JobId, Worker};
use kosh_jobs_testsupport::redis_server::RedisServer;
use opentelemetry::trace::{SpanId, SpanKind, TraceId, TracerProvider as _};
use opentelemetry::Value;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use tracing_subscriber::prelude::*;

#[derive(Serialize, Deserialize)]
struct Import {
    fail_once: bool,
}

#[job(queue = "traced", max_attempts = 2, backoff = fixed(1ms))]
async fn import_csv(job: Import, ctx: JobContext<()>) -> Result<(), JobError> {
    if job.fail_once && ctx.attempt() == 1 {
        return Err(JobError::retryable("the first attempt fails"));
    }
    Ok(())
}

/// The exported spans' `job.id` attribute, if any.
fn job_id(s: &SpanData) -> Option<String> {
    s.attributes
        .iter()
        .find(|kv| kv.key.as_str() == "job.id")
        .map(|kv| match &kv.value {
            Value::String(v) => v.as_str().to_owned(),
            other => other.to_string(),
        })
}

fn named<'a>(spans: &'a [SpanData], name: &str, id: JobId) -> Vec<&'a SpanData> {
    let id = id.to_string();
    spans
        .iter()
        .filter(|s| s.name == name && job_id(s).as_deref() == Some(id.as_str()))
        .collect()
}

/// An in-memory exporter behind this thread's `tracing` subscriber (the tests run on one
/// thread), its provider (to flush), and the guard that keeps the subscriber installed.
fn exporting() -> (
    InMemorySpanExporter,
    SdkTracerProvider,
    tracing::subscriber::DefaultGuard,
) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("kosh-jobs-test")));
    let guard = tracing::subscriber::set_default(subscriber);
    (exporter, provider, guard)
}

/// Enqueues two jobs (one fails once) under a request span with `enqueuer`, runs them with
/// a worker on `runner`, and checks the exported spans.
async fn enqueue_then_run(what: &str, enqueuer: AnyBackend, runner: AnyBackend) {
    let (exporter, provider, _guard) = exporting();

    let client = Client::new(enqueuer);
    let request = tracing::info_span!("POST /api/imports");
    let (retried, plain) = async {
        let a = client.enqueue(Import { fail_once: true }).await.unwrap();
        let b = client.enqueue(Import { fail_once: false }).await.unwrap();
        (a, b)
    }
    .instrument(request.clone())
    .await;
    drop(request);

    let worker = Worker::builder(runner)
        .register::<Import>()
        .build()
        .unwrap()
        .spawn();
    retried.wait().await.unwrap();
    plain.wait().await.unwrap();
    worker.shutdown().await.unwrap();
    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();

    let requests: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.name == "POST /api/imports")
        .collect();
    assert_eq!(requests.len(), 1, "{what}: one request span: {spans:#?}");
    let request = requests[0];
    let trace: TraceId = request.span_context.trace_id();

    for (handle_id, attempts) in [(retried.id(), 2), (plain.id(), 1)] {
        let enqueues = named(&spans, "enqueue import_csv", handle_id);
        assert_eq!(
            enqueues.len(),
            1,
            "{what}: one enqueue span for job {handle_id}: {spans:#?}"
        );
        let enqueue = enqueues[0];
        assert_eq!(
            enqueue.span_kind,
            SpanKind::Producer,
            "{what}: enqueue kind"
        );
        assert_eq!(
            enqueue.parent_span_id,
            request.span_context.span_id(),
            "{what}: the enqueue span is the request's child"
        );
        assert_eq!(enqueue.span_context.trace_id(), trace, "{what}: one trace");
        for n in 1..=attempts {
            let runs = named(&spans, &format!("import_csv attempt {n}"), handle_id);
            assert_eq!(
                runs.len(),
                1,
                "{what}: one span for attempt {n} of job {handle_id}: {spans:#?}"
            );
            let run = runs[0];
            assert_eq!(run.span_kind, SpanKind::Consumer, "{what}: attempt kind");
            assert_eq!(
                run.span_context.trace_id(),
                trace,
                "{what}: attempt {n} of job {handle_id} is in the request's trace"
            );
            assert_eq!(
                run.parent_span_id,
                enqueue.span_context.span_id(),
                "{what}: attempt {n} of job {handle_id} is the enqueue span's child"
            );
            assert!(
                run.parent_span_is_remote,
                "{what}: its parent came from the store, not from this process's span stack"
            );
            assert_ne!(run.parent_span_id, SpanId::INVALID);
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn memory_attempts_join_the_enqueuers_trace() {
    let b = kosh_jobs::connect("memory:").await.unwrap();
    enqueue_then_run("memory", b.clone(), b).await;
}

#[tokio::test(flavor = "current_thread")]
async fn sqlite_attempts_join_the_enqueuers_trace() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("jobs.db").display());
    let enqueuer = kosh_jobs::connect(&url).await.unwrap();
    let runner = kosh_jobs::connect(&url).await.unwrap();
    enqueue_then_run("sqlite", enqueuer, runner).await;
}

#[tokio::test(flavor = "current_thread")]
async fn redis_attempts_join_the_enqueuers_trace() {
    let server = RedisServer::start().expect("a private redis-server (see scripts/test.sh)");
    let enqueuer = kosh_jobs::connect(&server.url()).await.unwrap();
    let runner = kosh_jobs::connect(&server.url()).await.unwrap();
    enqueue_then_run("redis", enqueuer, runner).await;
}

/// A job whose stored trace context does not parse (pushed by hand) still runs: its attempt
/// starts a trace of its own.
#[tokio::test(flavor = "current_thread")]
async fn an_unparsable_trace_context_is_ignored() {
    let (exporter, provider, _guard) = exporting();

    let b = kosh_jobs::connect("memory:").await.unwrap();
    let client = Client::new(b.clone());
    let mut job = client.prepare(Import { fail_once: false }).unwrap();
    job.trace = Some("not a traceparent".into());
    let id = client.push_raw(vec![job]).await.unwrap()[0].id;
    let worker = Worker::builder(b)
        .register::<Import>()
        .build()
        .unwrap()
        .spawn();
    client.handle::<Import>(id).wait().await.unwrap();
    worker.shutdown().await.unwrap();
    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    let runs = named(&spans, "import_csv attempt 1", id);
    assert_eq!(runs.len(), 1, "{spans:#?}");
    assert_eq!(runs[0].parent_span_id, SpanId::INVALID, "a root span");
}
