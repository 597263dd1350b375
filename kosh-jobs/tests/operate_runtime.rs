//! The worker runtime feeds the admin contract: it registers itself in the list of live
//! workers (and leaves it at shutdown), and the attempt history says how each attempt of a
//! real handler ended — an error, a timeout, a panic, a success.

use std::sync::Arc;
use std::time::Duration;

mod support;

use kosh_jobs::admin::{AttemptOutcome, ThroughputQuery};
use kosh_jobs::memory::MemoryBackend;
use kosh_jobs::{job, Backend, Client, JobError, Timestamp, Worker};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

#[derive(Serialize, Deserialize)]
struct Flaky {
    /// How each attempt behaves, by attempt number from 1: "err", "panic", "slow" or "ok".
    plan: Vec<String>,
}

#[job(queue = "ops", max_attempts = 4, backoff = fixed(1ms), timeout = 1s)]
async fn flaky(job: Flaky, ctx: kosh_jobs::JobContext<()>) -> Result<u32, JobError> {
    let attempt = ctx.attempt() as usize;
    match job.plan.get(attempt - 1).map(String::as_str) {
        Some("err") => Err(JobError::retryable("the bank said no")),
        Some("panic") => panic!("a bug in attempt {attempt}"),
        Some("slow") => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(0)
        }
        _ => Ok(attempt as u32),
    }
}

/// The timeout is long enough for a panic's backtrace to print before it (a panic that ends
/// after the deadline is a timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_says_how_each_attempt_ended() {
    let backend = MemoryBackend::new();
    let client = Client::new(backend.clone());
    let plan = ["err", "slow", "panic", "ok"].map(String::from).to_vec();
    let handle = client.enqueue(Flaky { plan }).await.expect("enqueue");
    let worker = Worker::builder(backend.clone())
        .register::<Flaky>()
        .build()
        .expect("worker")
        .spawn();
    let result = handle
        .wait_timeout(Duration::from_secs(20))
        .await
        .expect("the job completes on its fourth attempt");
    assert_eq!(result, 4);
    let rec = handle.status().await.expect("status");
    let outcomes: Vec<_> = rec.history.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        vec![
            Some(AttemptOutcome::RetryScheduled),
            Some(AttemptOutcome::TimedOut),
            Some(AttemptOutcome::Panicked),
            Some(AttemptOutcome::Completed),
        ]
    );
    assert!(rec.history[2]
        .error
        .as_deref()
        .is_some_and(|e| e.contains("a bug in attempt 3")));
    let workers: Vec<&str> = rec.history.iter().map(|a| a.worker.as_str()).collect();
    assert!(
        workers.iter().all(|w| !w.is_empty() && *w == workers[0]),
        "one worker ran every attempt: {workers:?}"
    );
    let tp = backend
        .throughput(&ThroughputQuery {
            queue: Some("ops".into()),
            since: Timestamp::EPOCH,
        })
        .await
        .expect("throughput");
    let completed: u64 = tp.iter().map(|p| p.completed).sum();
    let failed: u64 = tp.iter().map(|p| p.failed).sum();
    assert_eq!((completed, failed), (1, 0), "throughput: one job completed");
    worker.shutdown().await.expect("shutdown");
}

#[derive(Serialize, Deserialize)]
struct Hold;

/// Tells the test it started, then runs until its attempt is cancelled (at shutdown).
#[job(queue = "held")]
async fn hold(_job: Hold, ctx: kosh_jobs::JobContext<Arc<Notify>>) -> Result<(), JobError> {
    ctx.state().notify_one();
    ctx.cancellation().cancelled().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_worker_is_listed_with_its_jobs_until_it_stops() {
    let backend = MemoryBackend::new();
    let client = Client::new(backend.clone());
    let job = client.enqueue(Hold).await.expect("enqueue");
    let started = Arc::new(Notify::new());
    let worker = Worker::builder(backend.clone())
        .state(started.clone())
        .register::<Hold>()
        .concurrency(3)
        .grace_period(Duration::from_millis(10))
        .build()
        .expect("worker")
        .spawn();
    tokio::time::timeout(Duration::from_secs(20), started.notified())
        .await
        .expect("the job starts");
    let live = backend.workers().await.expect("workers");
    assert_eq!(live.len(), 1, "one live worker: {live:?}");
    let w = &live[0];
    assert_eq!(w.jobs, vec![job.id()]);
    assert_eq!(w.info.queues, vec!["held".to_owned()]);
    assert_eq!(w.info.concurrency, 3);
    assert_eq!(w.info.pid, std::process::id());
    assert_eq!(w.info.version, env!("CARGO_PKG_VERSION"));
    assert!(!w.info.host.is_empty());
    worker.shutdown().await.expect("shutdown");
    assert!(
        backend.workers().await.expect("workers").is_empty(),
        "a worker that shut down is gone from the list"
    );
}

#[derive(Serialize, Deserialize)]
struct Bounce;

/// Fails at once until its last attempt, with no backoff: the next attempt is leased while
/// the worker is still storing the previous one's outcome.
#[job(queue = "bounce", max_attempts = 8, backoff = fixed(0ms))]
async fn bounce(_job: Bounce, ctx: kosh_jobs::JobContext<()>) -> Result<u32, JobError> {
    if ctx.attempt() < ctx.max_attempts() {
        return Err(JobError::retryable("again"));
    }
    Ok(ctx.attempt())
}

/// An attempt leased again by the same worker before the previous attempt's outcome was
/// stored keeps its own bookkeeping: every attempt ends by its handler, none by its lease
/// running out. The spy store answers `finish` only after the job was leased again, as a
/// remote store whose wake-up overtakes its answer does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_back_attempts_of_one_job_stay_apart() {
    let spy = support::Spy::new(kosh_jobs::Clock::system());
    spy.answer_after_release
        .store(true, std::sync::atomic::Ordering::SeqCst);
    back_to_back_on(kosh_jobs::AnyBackend::from(spy)).await;
}

async fn back_to_back_on(backend: kosh_jobs::AnyBackend) {
    let client = Client::new(backend.clone());
    let handles = client
        .enqueue_batch((0..2).map(|_| Bounce))
        .await
        .expect("enqueue");
    let worker = Worker::builder(backend.clone())
        .register::<Bounce>()
        .concurrency(4)
        .lease(Duration::from_secs(1))
        .build()
        .expect("worker")
        .spawn();
    for h in &handles {
        let n = h
            .wait_timeout(Duration::from_secs(60))
            .await
            .expect("completes");
        assert_eq!(n, 8);
        let rec = h.status().await.expect("status");
        let expired = rec
            .history
            .iter()
            .filter(|a| a.outcome == Some(AttemptOutcome::LeaseExpired))
            .count();
        assert_eq!(
            expired, 0,
            "no attempt was left to expire: {:?}",
            rec.history
        );
        assert_eq!(rec.attempts, 8);
    }
    worker.shutdown().await.expect("shutdown");
}
