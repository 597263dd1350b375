//! Every backend through one URL (`memory:`, `sqlite://` on disk and in memory, `redis://`,
//! `rediss://` with a private CA, `redis+cluster://`): `kosh_jobs::connect` opens it and one
//! test body uses it the way an application does (enqueue, run, wait for typed results and
//! final errors, typed progress, follow-up jobs from a handler), then makes the same mistakes
//! through each API and expects the same error variant from every backend.

use std::time::Duration;

use kosh_jobs::prelude::*;
use kosh_jobs::{JobProgress, NewJob};
use kosh_jobs_testsupport::redis_server::RedisServer;
use serde::{Deserialize, Serialize};

// The Redis crate's own test servers, with the Redis Cluster this file needs.
#[path = "../../kosh-jobs-redis/tests/support/mod.rs"]
mod redis_support;

#[derive(Serialize, Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Rows {
    done: u64,
}

#[job(queue = "urls", progress = Rows)]
async fn add(job: Add, ctx: JobContext<()>) -> Result<i64, JobError> {
    ctx.progress(Rows { done: 3 }).await?;
    Ok(job.a + job.b)
}

#[derive(Serialize, Deserialize)]
struct Fail;

#[job(queue = "urls", max_attempts = 1)]
async fn fail(_job: Fail) -> Result<(), JobError> {
    Err(JobError::permanent("the statement is not a CSV file"))
}

/// Enqueues a follow-up `Add` from its handler and returns that job's id.
#[derive(Serialize, Deserialize)]
struct Chain;

#[job(queue = "urls")]
async fn chain(_job: Chain, ctx: JobContext<()>) -> Result<JobId, JobError> {
    let next = ctx.client().enqueue(Add { a: 20, b: 22 }).await?;
    Ok(next.id())
}

/// A payload serde cannot write as JSON (a map with non-string keys).
#[derive(Serialize, Deserialize)]
struct Unwritable {
    map: std::collections::HashMap<(u8, u8), u8>,
}

#[job(queue = "urls")]
async fn unwritable(_job: Unwritable) -> Result<(), JobError> {
    Ok(())
}

fn _progress_is_typed()
where
    Add: JobProgress<Progress = Rows>,
{
}

/// The one body every URL runs.
async fn use_it(url: &str) {
    let backend = kosh_jobs::connect(url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let jobs = Client::new(backend.clone());
    let worker = Worker::builder(backend.clone())
        .register::<Add>()
        .register::<Fail>()
        .register::<Chain>()
        .build()
        .unwrap()
        .spawn();

    // Typed result and typed progress.
    let sum = jobs.enqueue(Add { a: 2, b: 3 }).await.unwrap();
    assert_eq!(sum.wait().await.unwrap(), 5, "{url}");
    assert_eq!(sum.result().await.unwrap(), Some(5), "{url}");
    assert_eq!(
        sum.progress().await.unwrap(),
        Some(Rows { done: 3 }),
        "{url}"
    );
    assert_eq!(
        jobs.status(sum.id()).await.unwrap().state,
        JobState::Completed
    );

    // The final error of a failed job, and of a cancelled one.
    let failing = jobs.enqueue(Fail).await.unwrap();
    match failing.wait().await {
        Err(Error::JobFailed { id, error }) => {
            assert_eq!(id, failing.id());
            assert!(error.contains("not a CSV file"), "{url}: {error}");
        }
        other => panic!("{url}: {other:?}"),
    }
    let later = jobs
        .enqueue(Add { a: 1, b: 1 }.with().delay(Duration::from_secs(3600)))
        .await
        .unwrap();
    match later.wait_timeout(Duration::from_millis(30)).await {
        Err(Error::WaitTimeout { id, .. }) => assert_eq!(id, later.id()),
        other => panic!("{url}: {other:?}"),
    }
    jobs.cancel(later.id()).await.unwrap();
    assert!(matches!(later.wait().await, Err(Error::JobCancelled(id)) if id == later.id()));

    // A handler enqueues a follow-up job; a handle rebuilt from its id reads its result.
    let first = jobs.enqueue(Chain).await.unwrap();
    let next_id = first.wait().await.unwrap();
    assert_eq!(
        jobs.handle::<Add>(next_id).wait().await.unwrap(),
        42,
        "{url}"
    );

    // Unknown ids.
    assert!(matches!(
        jobs.handle::<Add>(JobId::new(987_654_321)).wait().await,
        Err(Error::NotFound(_))
    ));

    // The same mistake, the same variant, whichever API.
    let invalid = |r: Result<(), Error>, what: &str| match r {
        Err(Error::InvalidInput(msg)) => msg,
        other => panic!("{url}: {what}: expected InvalidInput, got {other:?}"),
    };
    let now = backend.clock().now();
    let msg = invalid(
        jobs.enqueue(Add { a: 0, b: 0 }.with().queue("csv uploads"))
            .await
            .map(drop),
        "bad queue through enqueue",
    );
    assert!(msg.contains("csv uploads"), "{msg}");
    let msg = invalid(
        jobs.push_raw(vec![NewJob::new("add", "csv uploads", "{}", now)])
            .await
            .map(drop),
        "bad queue through push_raw",
    );
    assert!(msg.contains("csv uploads"), "{msg}");
    invalid(
        Worker::builder(backend.clone())
            .register::<Add>()
            .listen("csv uploads")
            .build()
            .map(drop),
        "bad queue through the worker builder",
    );
    invalid(
        jobs.push_raw(vec![NewJob::new("bad\nname", "urls", "{}", now)])
            .await
            .map(drop),
        "bad job name through push_raw",
    );
    invalid(
        jobs.enqueue(Add { a: 0, b: 0 }.with().max_attempts(0))
            .await
            .map(drop),
        "zero attempts through enqueue",
    );
    let mut zero = NewJob::new("add", "urls", "{}", now);
    zero.max_attempts = 0;
    invalid(
        jobs.push_raw(vec![zero]).await.map(drop),
        "zero attempts through push_raw",
    );
    let mut map = std::collections::HashMap::new();
    map.insert((1, 2), 3);
    invalid(
        jobs.enqueue(Unwritable { map }).await.map(drop),
        "a payload that does not serialize",
    );
    invalid(
        jobs.purge_states(&[JobState::Ready], Duration::ZERO)
            .await
            .map(drop),
        "purging a live state",
    );

    worker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_url() {
    use_it("memory:").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_url_with_missing_folders() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not").join("yet").join("jobs.db");
    use_it(&format!("sqlite://{}", path.display())).await;
    assert!(path.is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_in_memory_url() {
    use_it("sqlite::memory:").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_url_with_a_prefix() {
    let server = RedisServer::start().expect("a private redis-server (see scripts/test.sh)");
    use_it(&format!("{}?prefix=urls-test", server.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_url_with_a_private_ca() {
    // A throwaway CA and a certificate for 127.0.0.1 it signed; the server speaks only TLS.
    let certs = redis_support::TestCerts::generate("urls");
    let server = redis_support::RedisServer::start_tls_with(&certs, &[]);
    let url = server.url();
    assert!(url.starts_with("rediss://127.0.0.1:"), "{url}");
    let ca = redis_support::query_value(&certs.ca().display().to_string());
    use_it(&format!("{url}?prefix=urls-tls&ca_file={ca}")).await;
    // The certificate is verified: without its CA the same server is refused.
    match kosh_jobs::connect(&format!("{url}?prefix=urls-tls")).await {
        Err(Error::PermissionDenied(e)) => {
            assert!(e.to_string().contains("not trusted"), "{e}")
        }
        other => panic!("{url} without its CA: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_url() {
    redis_support::require_redis_server();
    let cluster = redis_support::RedisCluster::start(3);
    use_it(&format!("{}?prefix=urls-cluster", cluster.seeds_url())).await;
}

#[tokio::test(flavor = "current_thread")]
async fn unknown_schemes_name_what_is_supported() {
    for url in ["mongodb://localhost", "jobs.db", "mysql://localhost/app"] {
        match kosh_jobs::connect(url).await {
            Err(Error::InvalidInput(msg)) => {
                assert!(
                    msg.contains("sqlite://")
                        && msg.contains("redis://")
                        && msg.contains("postgres://"),
                    "{msg}"
                )
            }
            other => panic!("{url}: {other:?}"),
        }
    }
    assert!(matches!(
        kosh_jobs::connect("memory://somewhere").await,
        Err(Error::InvalidInput(_))
    ));
}
