//! A job's timeout reaches its code at the deadline, not at the next lease renewal: async
//! code is dropped, and blocking code (in `spawn_blocking`, or blocking the handler's own
//! thread) sees its cancellation token trip.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kosh_jobs::memory::MemoryBackend;
use kosh_jobs::{job, Client, JobContext, JobError, JobState, Worker};
use serde::{Deserialize, Serialize};

/// When the handler started, and when its blocking code saw the token trip.
type Times = (Instant, Option<Instant>);

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Option<Times>>>);

impl Seen {
    fn started(&self) {
        *self.0.lock().unwrap() = Some((Instant::now(), None));
    }
    fn tripped(&self) {
        if let Some((_, t)) = self.0.lock().unwrap().as_mut() {
            *t = Some(Instant::now());
        }
    }
    fn get(&self) -> (Instant, Instant) {
        let v = self.0.lock().unwrap().expect("the handler ran");
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

/// How late past the deadline the token may trip (the bound), against a default lease
/// of 30 s whose renewal tick (10 s) is what blocking code used to wait for.
const WITHIN: Duration = Duration::from_millis(50);
const TIMEOUT: Duration = Duration::from_millis(200);

async fn run_one<J>(job: J) -> (Duration, kosh_jobs::JobRecord)
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
    let handle = jobs.enqueue(job).await.unwrap();
    let rec = jobs.wait_record(handle.id(), None).await.unwrap();
    worker.shutdown().await.unwrap();
    let (started, tripped) = seen.get();
    (tripped.duration_since(started), rec)
}

/// The token tripped no earlier than the deadline and within [`WITHIN`] after it, and the
/// attempt failed as a timeout.
fn assert_on_time(after: Duration, rec: &kosh_jobs::JobRecord) {
    assert!(
        after >= TIMEOUT,
        "tripped after {after:?}, before the deadline"
    );
    assert!(
        after < TIMEOUT + WITHIN,
        "tripped {after:?} after the start"
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
