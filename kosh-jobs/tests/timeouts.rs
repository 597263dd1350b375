//! A job's timeout reaches its code at the deadline, not at the next lease renewal: async
//! code is dropped, and blocking code (in `spawn_blocking`, or blocking the handler's own
//! thread) sees its cancellation token trip.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kosh_jobs::memory::MemoryBackend;
use kosh_jobs::{job, Client, JobContext, JobError, JobState, Worker};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// When the handler started, and when its blocking code saw the token trip.
type Times = (Instant, Option<Instant>);

/// Shared with the handlers. A watch channel, so the test can wait for the blocking code to
/// record its trip: the job's record can turn failed (the attempt timed out) a moment before
/// the blocking thread, which runs on after its handler was dropped, gets there.
#[derive(Clone)]
struct Seen(Arc<watch::Sender<Option<Times>>>);

impl Default for Seen {
    fn default() -> Self {
        Seen(Arc::new(watch::channel(None).0))
    }
}

impl Seen {
    fn started(&self) {
        self.0.send_replace(Some((Instant::now(), None)));
    }
    fn tripped(&self) {
        self.0.send_modify(|v| {
            if let Some((_, t)) = v.as_mut() {
                *t = Some(Instant::now());
            }
        });
    }
    /// Waits (at most 10 s) until the blocking code saw its token trip.
    async fn get(&self) -> (Instant, Instant) {
        let mut rx = self.0.subscribe();
        let seen = tokio::time::timeout(
            Duration::from_secs(10),
            rx.wait_for(|v| matches!(v, Some((_, Some(_))))),
        )
        .await;
        let v = match seen {
            Ok(Ok(v)) => *v,
            _ => *self.0.borrow(),
        };
        let v = v.expect("the handler ran");
        (v.0, v.1.expect("the blocking code saw its token trip"))
    }
}

/// Spins in blocking code until the attempt's token trips, or 5 s pass.
fn spin_until_cancelled(ctx: &JobContext<Seen>) {
    let give_up = Instant::now() + Duration::from_secs(5);
    while !ctx.is_cancelled() && Instant::now() < give_up {
        std::thread::yield_now();
    }
    if ctx.is_cancelled() {
        ctx.state().tripped();
    }
}

#[derive(Serialize, Deserialize)]
struct InBlockingTask;

#[job(queue = "timeouts", timeout = 200ms, max_attempts = 1)]
async fn in_blocking_task(_job: InBlockingTask, ctx: JobContext<Seen>) -> Result<(), JobError> {
    ctx.state().started();
    let c = ctx.clone();
    tokio::task::spawn_blocking(move || spin_until_cancelled(&c)).await?;
    Ok(())
}

#[derive(Serialize, Deserialize)]
struct OnOwnThread;

#[job(queue = "timeouts", timeout = 200ms, max_attempts = 1)]
async fn on_own_thread(_job: OnOwnThread, ctx: JobContext<Seen>) -> Result<(), JobError> {
    ctx.state().started();
    // Blocks the runtime thread the handler runs on: nothing else of that runtime runs.
    spin_until_cancelled(&ctx);
    Ok(())
}

/// How late past the deadline the token may trip. The deadline counts from dispatch, a moment
/// before the handler starts, so "late" is measured from the handler's start, which can only
/// overstate it. The bound is loose because the machines are shared and noisy; it still tells
/// the fix from the old behaviour, where blocking code waited for the lease renewal tick (10 s
/// with the default lease of 30 s).
const WITHIN: Duration = Duration::from_secs(1);
const TIMEOUT: Duration = Duration::from_millis(200);

/// When the token tripped, measured from the enqueue (never later than the dispatch, so a trip
/// before the deadline shows) and from the handler's start (never earlier than the dispatch, so
/// a late trip shows).
struct Tripped {
    since_enqueue: Duration,
    since_start: Duration,
}

async fn run_one<J>(job: J) -> (Tripped, kosh_jobs::JobRecord)
where
    J: kosh_jobs::Handler<Seen>,
{
    let seen = Seen::default();
    let backend = MemoryBackend::new();
    let jobs = Client::new(backend.clone());
    let worker = Worker::builder(backend)
        .state(seen.clone())
        .register::<J>()
        .build()
        .unwrap()
        .spawn();
    let enqueued = Instant::now();
    let handle = jobs.enqueue(job).await.unwrap();
    let rec = jobs.wait_record(handle.id(), None).await.unwrap();
    worker.shutdown().await.unwrap();
    let (started, tripped) = seen.get().await;
    let times = Tripped {
        since_enqueue: tripped.duration_since(enqueued),
        since_start: tripped.duration_since(started),
    };
    (times, rec)
}

/// The token tripped no earlier than the deadline and within [`WITHIN`] after it, and the
/// attempt failed as a timeout.
fn assert_on_time(after: Tripped, rec: &kosh_jobs::JobRecord) {
    assert!(
        after.since_enqueue >= TIMEOUT,
        "tripped {:?} after the enqueue, before the deadline",
        after.since_enqueue
    );
    assert!(
        after.since_start < TIMEOUT + WITHIN,
        "tripped {:?} after the handler started",
        after.since_start
    );
    assert_eq!(rec.state, JobState::Failed);
    assert!(rec.last_error().unwrap().contains("timed out"), "{rec:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_blocking_code_sees_the_token_at_the_deadline() {
    let (after, rec) = run_one(InBlockingTask).await;
    assert_on_time(after, &rec);
}

#[tokio::test(flavor = "current_thread")]
async fn code_blocking_the_handlers_own_thread_sees_the_token_at_the_deadline() {
    // On a current-thread runtime the blocked handler starves the worker's own timer: only a
    // deadline kept off the handlers' threads can trip the token.
    let (after, rec) = run_one(OnOwnThread).await;
    assert_on_time(after, &rec);
}
