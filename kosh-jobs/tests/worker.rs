//! The worker runtime, point by point: concurrency, queues, batching, wake-ups, delays,
//! priorities, panics, timeouts, leases, recovery, bad payloads, unknown names, shutdown,
//! state, progress and tracing.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kosh_jobs::{
    AnyBackend, Backend, Backoff, Handler, Job, JobContext, JobError, JobOptions, JobState, NewJob,
    ReserveRequest, RetryOutcome, Worker,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use support::*;

/// What a test task does when it runs.
#[derive(Serialize, Deserialize, Clone, Debug)]
enum Act {
    Ok,
    /// Fails (retryably) until attempt `n`, then succeeds.
    FailUntil(u32),
    Permanent,
    Panic,
    /// Waits for the gate.
    Gate,
    /// Never finishes on its own.
    Pending,
    /// Blocks its OS thread for this many milliseconds.
    Block(u64),
    /// Reports progress, then waits for the gate.
    Progress,
    /// Returns a value.
    Echo(String),
}

#[derive(Serialize, Deserialize, Clone, Debug)]
struct Task {
    n: u32,
    act: Act,
}

#[derive(Clone, Default)]
struct Ctl {
    gate: Gate,
    gauge: Arc<Gauge>,
    order: Arc<Mutex<Vec<u32>>>,
    dropped: Arc<AtomicBool>,
    seen_at: Arc<Mutex<Vec<(u32, kosh_jobs::Timestamp)>>>,
    label: &'static str,
}

impl Ctl {
    fn new() -> Self {
        Ctl {
            gate: Gate::new(),
            label: "app-state",
            ..Default::default()
        }
    }
}

async fn run_task(t: Task, ctx: JobContext<Ctl>) -> Result<serde_json::Value, JobError> {
    let ctl = ctx.state().clone();
    let _g = ctl.gauge.enter();
    let _drop = DropFlag(ctl.dropped.clone());
    ctl.order.lock().unwrap().push(t.n);
    ctl.seen_at
        .lock()
        .unwrap()
        .push((t.n, ctx.backend().clock().now()));
    match t.act {
        Act::Ok => Ok(json!({ "n": t.n, "state": ctl.label })),
        Act::FailUntil(k) if ctx.attempt() < k => {
            Err(format!("attempt {} failed on purpose", ctx.attempt()).into())
        }
        Act::FailUntil(_) => Ok(json!("finally")),
        Act::Permanent => Err(JobError::permanent(std::io::Error::other("bad input"))),
        Act::Panic => panic!("boom at {}", t.n),
        Act::Gate => {
            ctl.gate.wait().await;
            Ok(json!(null))
        }
        Act::Pending => std::future::pending().await,
        Act::Block(ms) => {
            std::thread::sleep(Duration::from_millis(ms));
            Ok(json!("blocked"))
        }
        Act::Progress => {
            ctx.progress(json!({ "rows": 1200 })).await?;
            ctl.gate.wait().await;
            Ok(json!(null))
        }
        Act::Echo(s) => Ok(json!(s)),
    }
}

impl Job for Task {
    type Output = serde_json::Value;
    const NAME: &'static str = "task";
    const QUEUE: &'static str = "q1";
    fn options() -> JobOptions {
        JobOptions::new()
            .max_attempts(3)
            .backoff(Backoff::fixed(Duration::from_secs(10)).unwrap())
            .timeout(Duration::from_secs(5))
    }
}

impl Handler<Ctl> for Task {
    async fn run(self, ctx: JobContext<Ctl>) -> Result<serde_json::Value, JobError> {
        run_task(self, ctx).await
    }
}

/// Same behaviour, another queue.
#[derive(Serialize, Deserialize, Clone, Debug)]
struct Task2(Task);

impl Job for Task2 {
    type Output = serde_json::Value;
    const NAME: &'static str = "task2";
    const QUEUE: &'static str = "q2";
}

impl Handler<Ctl> for Task2 {
    async fn run(self, ctx: JobContext<Ctl>) -> Result<serde_json::Value, JobError> {
        run_task(self.0, ctx).await
    }
}

fn task(n: u32, act: Act) -> Task {
    Task { n, act }
}

fn builder(
    spy: &Arc<Spy>,
    ctl: &Ctl,
) -> kosh_jobs::WorkerBuilder<Ctl, kosh_jobs::worker::Registered> {
    Worker::builder(AnyBackend::from(spy.clone()))
        .state(ctl.clone())
        .register::<Task>()
        .register::<Task2>()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limit_is_never_exceeded() {
    let (spy, client, _clock) = setup();
    let ctl = Ctl::new();
    for n in 0..10 {
        client.enqueue(task(n, Act::Gate)).await.unwrap();
    }
    let w = builder(&spy, &ctl).concurrency(3).build().unwrap().spawn();
    wait_until("3 handlers run", || async { ctl.gauge.now() == 3 }).await;
    let counts = client.counts().await.unwrap();
    let q1 = counts.iter().find(|c| c.queue == "q1").unwrap();
    assert_eq!((q1.running, q1.ready), (3, 7), "only 3 leased: {q1:?}");
    ctl.gate.open();
    wait_until("all 10 complete", || async {
        client.counts().await.unwrap()[0].completed == 10
    })
    .await;
    assert_eq!(ctl.gauge.max.load(Ordering::SeqCst), 3);
    let stats = w.shutdown().await.unwrap();
    assert_eq!(stats.completed, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_queue_limit_and_several_queues() {
    let (spy, client, _clock) = setup();
    let ctl = Ctl::new();
    for n in 0..6 {
        client.enqueue(task(n, Act::Gate)).await.unwrap();
        client
            .enqueue(Task2(task(100 + n, Act::Gate)))
            .await
            .unwrap();
    }
    let w = builder(&spy, &ctl)
        .concurrency(8)
        .queue_concurrency("q1", 2)
        .build()
        .unwrap()
        .spawn();
    wait_until("8 handlers run", || async { ctl.gauge.now() == 8 }).await;
    let counts = client.counts().await.unwrap();
    let running: Vec<_> = counts
        .iter()
        .map(|c| (c.queue.as_str(), c.running))
        .collect();
    assert_eq!(running, vec![("q1", 2), ("q2", 6)]);
    ctl.gate.open();
    wait_until("all 12 complete", || async {
        client
            .counts()
            .await
            .unwrap()
            .iter()
            .map(|c| c.completed)
            .sum::<u64>()
            == 12
    })
    .await;
    w.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_in_batches_up_to_free_slots() {
    let (spy, client, _clock) = setup();
    let ctl = Ctl::new();
    client
        .enqueue_batch((0..10).map(|n| task(n, Act::Gate)))
        .await
        .unwrap();
    let w = builder(&spy, &ctl).concurrency(4).build().unwrap().spawn();
    wait_until("4 handlers run", || async { ctl.gauge.now() == 4 }).await;
    let first = spy.reserve_sizes.lock().unwrap()[0];
    assert_eq!(first, (4, 4), "one reserve of 4 for 4 free slots");
    ctl.gate.open();
    wait_until("all complete", || async {
        client.counts().await.unwrap()[0].completed == 10
    })
    .await;
    for (max, got) in spy.reserve_sizes.lock().unwrap().iter() {
        assert!(*max <= 4 && got <= max, "reserve asked {max}, got {got}");
    }
    w.shutdown().await.unwrap();
}

/// A job whose handler has ended no longer takes a slot while its outcome travels to the
/// backend, so the next job starts without waiting for that round trip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_job_starts_while_the_previous_outcome_is_stored() {
    let (spy, client, _clock) = setup();
    let ctl = Ctl::new();
    let slow_store = Gate::new();
    *spy.finish_gate.lock().unwrap() = Some(slow_store.clone());
    let first = client.enqueue(task(1, Act::Ok)).await.unwrap().id();
    let second = client.enqueue(task(2, Act::Ok)).await.unwrap().id();
    let w = builder(&spy, &ctl).concurrency(1).build().unwrap().spawn();
    wait_until("both handlers ran", || async {
        ctl.order.lock().unwrap().len() == 2
    })
    .await;
    // Neither outcome is stored yet: the second job ran while the first was being stored.
    assert_eq!(client.status(first).await.unwrap().state, JobState::Running);
    assert_eq!(
        client.status(second).await.unwrap().state,
        JobState::Running
    );
    assert_eq!(
        ctl.gauge.max.load(Ordering::SeqCst),
        1,
        "one handler at a time"
    );
    slow_store.open();
    wait_state(&client, first, JobState::Completed).await;
    wait_state(&client, second, JobState::Completed).await;
    let stats = w.shutdown().await.unwrap();
    assert_eq!(stats.completed, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_worker_waits_on_the_backend_signal_without_polling() {
    let (spy, client, clock) = setup();
    let ctl = Ctl::new();
    let w = builder(&spy, &ctl)
        .idle_wait(Duration::from_secs(30))
        .build()
        .unwrap()
        .spawn();
    wait_until("the worker waits", || async {
        spy.waits.load(Ordering::SeqCst) >= 1
    })
    .await;
    // Ten idle minutes: each 30 s the wait ends and the worker checks once (recovery and
    // reserve), then waits again; never a hot loop.
    for step in 1..=20 {
        let before = spy.waits.load(Ordering::SeqCst);
        clock.advance(Duration::from_secs(30));
        wait_until(&format!("the worker waits again (step {step})"), || async {
            spy.waits.load(Ordering::SeqCst) > before
        })
        .await;
    }
    let (reserves, waits, recovers) = (
        spy.reserves.load(Ordering::SeqCst),
        spy.waits.load(Ordering::SeqCst),
        spy.recovers.load(Ordering::SeqCst),
    );
    assert!(reserves <= 22, "{reserves} reserves in 10 idle minutes");
    assert!(waits <= 22, "{waits} waits in 10 idle minutes");
    assert!(recovers <= 22, "{recovers} recoveries in 10 idle minutes");
    // A push wakes it at once, without the clock moving.
    let id = client.enqueue(task(1, Act::Ok)).await.unwrap().id();
    wait_state(&client, id, JobState::Completed).await;
    w.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_jobs_run_no_earlier_than_due() {
    let (spy, client, clock) = setup();
    let ctl = Ctl::new();
    let due = clock.now() + Duration::from_secs(60);
    let later = client
        .enqueue(task(1, Act::Ok).with().delay(Duration::from_secs(60)))
        .await
        .unwrap()
        .id();
    let w = builder(&spy, &ctl).build().unwrap().spawn();
    clock.advance(Duration::from_secs(59));
    let now_id = client.enqueue(task(2, Act::Ok)).await.unwrap().id();
    wait_state(&client, now_id, JobState::Completed).await;
    assert_eq!(
        client.status(later).await.unwrap().state,
        JobState::Scheduled
    );
    clock.advance(Duration::from_secs(1));
    wait_state(&client, later, JobState::Completed).await;
    let seen = ctl.seen_at.lock().unwrap().clone();
    let (_, ran_at) = seen.iter().find(|(n, _)| *n == 1).unwrap();
    assert!(*ran_at >= due, "ran at {ran_at}, due {due}");
    w.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_priority_first_then_fifo() {
    let (spy, client, _clock) = setup();
    let ctl = Ctl::new();
    let plan = [(1, 0), (2, 5), (3, 0), (4, 10), (5, 5), (6, -1)];
    for (n, p) in plan {
        client
            .enqueue(task(n, Act::Ok).with().priority(p))
            .await
            .unwrap();
    }
    let w = builder(&spy, &ctl).concurrency(1).build().unwrap().spawn();
    wait_until("all run", || async { ctl.order.lock().unwrap().len() == 6 }).await;
    assert_eq!(*ctl.order.lock().unwrap(), vec![4, 2, 5, 1, 3, 6]);
    w.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_fails_the_attempt_and_the_worker_goes_on() {
    let (spy, client, _clock) = setup();
    let ctl = Ctl::new();
    let bad = client
        .enqueue(task(7, Act::Panic).with().max_attempts(1))
        .await
        .unwrap()
        .id();
    let w = builder(&spy, &ctl).concurrency(1).build().unwrap().spawn();
    let rec = wait_state(&client, bad, JobState::Failed).await;
    assert_eq!(rec.last_error(), Some("handler panicked: boom at 7"));
    let good = client.enqueue(task(8, Act::Ok)).await.unwrap().id();
    wait_state(&client, good, JobState::Completed).await;
    w.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_drops_the_handler_and_records_it() {
    let (spy, client, clock) = setup();
    let ctl = Ctl::new();
    let id = client
        .enqueue(task(1, Act::Pending).with().max_attempts(1))
        .await
        .unwrap()
        .id();
    let w = builder(&spy, &ctl).build().unwrap().spawn();
    wait_until("the handler runs", || async { ctl.gauge.now() == 1 }).await;
    clock.advance(Duration::from_secs(5));
    let rec = wait_state(&client, id, JobState::Failed).await;
    assert_eq!(rec.last_error(), Some("timed out after 5s"));
    assert!(ctl.dropped.load(Ordering::SeqCst), "handler future dropped");
    assert_eq!(ctl.gauge.now(), 0);
    w.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_follow_the_backoff_then_succeed() {
    let (spy, client, clock) = setup();
    let ctl = Ctl::new();
    let id = client
        .enqueue(task(1, Act::FailUntil(3)))
        .await
        .unwrap()
        .id();
    let w = builder(&spy, &ctl).build().unwrap().spawn();
    let rec = wait_state(&client, id, JobState::Scheduled).await;
    assert_eq!(rec.attempts, 1);
    assert_eq!(rec.run_at, rec.errors[0].at + Duration::from_secs(10));
    clock.advance(Duration::from_secs(10));
    wait_until("attempt 2 fails", || async {
        let r = client.status(id).await.unwrap();
        r.attempts == 2 && r.state == JobState::Scheduled
    })
    .await;
    clock.advance(Duration::from_secs(10));
    let rec = wait_state(&client, id, JobState::Completed).await;
    assert_eq!(rec.attempts, 3);
    let errs: Vec<_> = rec
        .errors
        .iter()
        .map(|e| (e.attempt, e.error.as_str()))
        .collect();
    assert_eq!(
        errs,
        vec![
            (1, "attempt 1 failed on purpose"),
            (2, "attempt 2 failed on purpose")
        ]
    );
    assert_eq!(rec.result, Some(json!("finally")));
    w.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_error_skips_the_remaining_attempts() {
    let (spy, client, _clock) = setup();
    let ctl = Ctl::new();
    let id = client
        .enqueue(task(1, Act::Permanent).with().max_attempts(5))
        .await
        .unwrap()
        .id();
    let w = builder(&spy, &ctl).build().unwrap().spawn();
    let rec = wait_state(&client, id, JobState::Failed).await;
    assert_eq!((rec.attempts, rec.last_error()), (1, Some("bad input")));
    w.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_that_does_not_deserialize_fails_permanently() {
    let (spy, client, clock) = setup();
    let ctl = Ctl::new();
    let mut raw = NewJob::new("task", "q1", r#"{"n":"seven"}"#, clock.now());
    raw.max_attempts = 5;
    let id = client.push_raw(vec![raw]).await.unwrap()[0].id;
    let w = builder(&spy, &ctl).build().unwrap().spawn();
    let rec = wait_state(&client, id, JobState::Failed).await;
    let err = rec.last_error().unwrap();
    assert_eq!(rec.attempts, 1);
    assert!(
        err.starts_with(&format!("job `task` (id {id}): payload does not deserialize: invalid type: string \"seven\", expected u32")),
        "{err}"
    );
    w.shutdown().await.unwrap();
}

/// A job type named like the one that arrived before its handler was deployed.
#[derive(Serialize, Deserialize)]
struct Newcomer {
    x: u32,
}
impl Job for Newcomer {
    type Output = u32;
    const NAME: &'static str = "newcomer";
    const QUEUE: &'static str = "q1";
}
impl Handler<Ctl> for Newcomer {
    async fn run(self, _ctx: JobContext<Ctl>) -> Result<u32, JobError> {
        Ok(self.x * 2)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_job_name_stays_visible_and_can_be_retried_later() {
    let (spy, client, _clock) = setup();
    let ctl = Ctl::new();
    let id = client.enqueue(Newcomer { x: 21 }).await.unwrap().id();
    let w = builder(&spy, &ctl).build().unwrap().spawn();
    let rec = wait_state(&client, id, JobState::Failed).await;
    let err = rec.last_error().unwrap();
    assert!(
        err.starts_with("no handler is registered for job `newcomer` in queue `q1`"),
        "{err}"
    );
    assert!(err.contains("task, task2"), "lists known names: {err}");
    w.shutdown().await.unwrap();

    // Deploy a worker that knows it, retry: it runs.
    assert_eq!(client.retry(id).await.unwrap(), RetryOutcome::Retried);
    let w2 = builder(&spy, &ctl)
        .register::<Newcomer>()
        .build()
        .unwrap()
        .spawn();
    let rec = wait_state(&client, id, JobState::Completed).await;
    assert_eq!(rec.result, Some(json!(42)));
    w2.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_reach_state_and_report_progress_while_running() {
    let (spy, client, _clock) = setup();
    let ctl = Ctl::new();
    let id = client.enqueue(task(1, Act::Progress)).await.unwrap().id();
    let w = builder(&spy, &ctl).build().unwrap().spawn();
    wait_until("progress is visible", || async {
        client.status(id).await.unwrap().progress == Some(json!({ "rows": 1200 }))
    })
    .await;
    assert_eq!(client.status(id).await.unwrap().state, JobState::Running);
    ctl.gate.open();
    wait_state(&client, id, JobState::Completed).await;
    let ok = client.enqueue(task(2, Act::Ok)).await.unwrap().id();
    let rec = wait_state(&client, ok, JobState::Completed).await;
    assert_eq!(rec.result, Some(json!({ "n": 2, "state": "app-state" })));
    w.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_stored() {
    let (spy, client, _clock) = setup();
    let ctl = Ctl::new();
    let id = client
        .enqueue(task(1, Act::Echo("imported 12 rows".into())))
        .await
        .unwrap()
        .id();
    let w = builder(&spy, &ctl).build().unwrap().spawn();
    let rec = wait_state(&client, id, JobState::Completed).await;
    assert_eq!(rec.result, Some(json!("imported 12 rows")));
    assert_eq!(rec.attempts, 1);
    assert!(rec.finished_at.is_some() && rec.started_at.is_some());
    w.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_waits_for_running_jobs() {
    let (spy, client, _clock) = setup();
    let ctl = Ctl::new();
    let id = client.enqueue(task(1, Act::Gate)).await.unwrap().id();
    let queued = client.enqueue(task(2, Act::Gate)).await.unwrap().id();
    let w = builder(&spy, &ctl).concurrency(1).build().unwrap().spawn();
    wait_until("the handler runs", || async { ctl.gauge.now() == 1 }).await;
    // Shutdown starts before the running job can finish: the worker stops fetching, but the
    // running job may finish.
    w.stop_token().cancel();
    let stop = tokio::spawn(w.join());
    ctl.gate.open();
    let stats = stop.await.unwrap().unwrap();
    assert_eq!((stats.completed, stats.released), (1, 0));
    assert_eq!(client.status(id).await.unwrap().state, JobState::Completed);
    let q = client.status(queued).await.unwrap();
    assert_eq!(
        q.state,
        JobState::Ready,
        "not fetched after shutdown began: {q:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_past_the_grace_period_cancels_and_releases() {
    let (spy, client, clock) = setup();
    let ctl = Ctl::new();
    let id = client.enqueue(task(1, Act::Pending)).await.unwrap().id();
    let w = builder(&spy, &ctl)
        .grace_period(Duration::from_secs(2)) // shorter than the 5 s timeout
        .build()
        .unwrap()
        .spawn();
    wait_until("the handler runs", || async { ctl.gauge.now() == 1 }).await;
    let stop = tokio::spawn(w.shutdown());
    wait_until("the worker stops fetching", || async {
        clock.advance(Duration::from_millis(100));
        stop.is_finished() || ctl.dropped.load(Ordering::SeqCst)
    })
    .await;
    let stats = stop.await.unwrap().unwrap();
    assert_eq!(stats.released, 1);
    assert!(ctl.dropped.load(Ordering::SeqCst), "handler cancelled");
    let rec = client.status(id).await.unwrap();
    assert_eq!((rec.state, rec.attempts), (JobState::Ready, 0), "{rec:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_running_job_is_noticed_and_dropped() {
    let (spy, client, clock) = setup();
    let ctl = Ctl::new();
    let id = client.enqueue(task(1, Act::Pending)).await.unwrap().id();
    let w = builder(&spy, &ctl)
        .lease(Duration::from_secs(30))
        .build()
        .unwrap()
        .spawn();
    wait_until("the handler runs", || async { ctl.gauge.now() == 1 }).await;
    client.cancel(id).await.unwrap();
    // The next heartbeat (every 10 s) finds the lease gone and cancels the attempt.
    wait_until("the handler is dropped", || async {
        clock.advance(Duration::from_secs(1));
        ctl.dropped.load(Ordering::SeqCst)
    })
    .await;
    assert_eq!(client.status(id).await.unwrap().state, JobState::Cancelled);
    w.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_workers_stale_result_is_refused() {
    let (spy, client, clock) = setup();
    let ctl = Ctl::new();
    let id = client
        // Task2 has no timeout, so only the lease matters here.
        .enqueue(Task2(task(1, Act::Block(300))).with().max_attempts(3))
        .await
        .unwrap()
        .id();
    let a = builder(&spy, &ctl)
        .lease(Duration::from_secs(60))
        .recover_interval(Duration::from_secs(3600))
        .queue_concurrency("q2", 1) // A cannot take the job back itself
        .build()
        .unwrap()
        .spawn();
    wait_until("A runs it", || async { ctl.gauge.now() == 1 }).await;
    // A tells the store the attempt started (its first renewal, shortly after the start,
    // long before the regular renewal at a third of the lease)...
    let started = clock.now();
    wait_until("A's first renewal", || async {
        clock.advance(Duration::from_millis(50));
        spy.heartbeats.load(Ordering::SeqCst) >= 1
    })
    .await;
    let told_after = clock.now().saturating_duration_since(started);
    assert!(
        told_after <= kosh_jobs::backend::START_ACK_DELAY + Duration::from_millis(100),
        "the start was told {told_after:?} after it"
    );
    // ...then cannot reach the backend for heartbeats: its lease runs out.
    spy.drop_heartbeats.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_secs(61));
    // Recovered (here, or by A's own reserve, which may recover too).
    spy.recover_expired().await.unwrap();
    let rec = client.status(id).await.unwrap();
    assert_eq!(
        (rec.state, rec.last_error()),
        (JobState::Ready, Some("lease expired"))
    );
    // Worker B (here: the test) leases it again with a new token.
    let b = spy
        .reserve(&ReserveRequest {
            queues: vec!["q2".into()],
            worker: "b".into(),
            max: 1,
            lease: Duration::from_secs(60),
        })
        .await
        .unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].attempt, 2);
    // A finishes its blocking work; its result is refused.
    let stats = a.shutdown().await.unwrap();
    assert_eq!((stats.completed, stats.lost), (0, 1));
    let rec = client.status(id).await.unwrap();
    assert_eq!(rec.state, JobState::Running, "still B's: {rec:?}");
    assert_eq!(rec.attempts, 2);
}

/// A worker that leased the two jobs of `q1` (with a 30 s lease), told the store their
/// handlers started if `started`, and died; then a live worker, waiting, and the clock past
/// the dead worker's leases. Returns the live worker.
async fn outlive_a_dead_worker(
    spy: &Arc<Spy>,
    ctl: &Ctl,
    clock: &kosh_jobs::ManualClock,
    started: bool,
) -> kosh_jobs::worker::WorkerHandle {
    let lease = Duration::from_secs(30);
    let dead = spy
        .reserve(&ReserveRequest {
            queues: vec!["q1".into()],
            worker: "dead".into(),
            max: 2,
            lease,
        })
        .await
        .unwrap();
    assert_eq!(dead.len(), 2);
    if started {
        let leases: Vec<_> = dead.iter().map(|j| j.lease).collect();
        assert!(spy.heartbeat(&leases, lease).await.unwrap().is_empty());
    }
    let w = builder(spy, ctl).lease(lease).build().unwrap().spawn();
    wait_until("the worker waits", || async {
        spy.waits.load(Ordering::SeqCst) >= 1
    })
    .await;
    clock.advance(lease + Duration::from_secs(1));
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_leases_of_dead_workers_are_recovered() {
    let (spy, client, clock) = setup();
    let ctl = Ctl::new();
    let again = client.enqueue(task(1, Act::Ok)).await.unwrap().id();
    let last = client
        .enqueue(task(2, Act::Ok).with().max_attempts(1))
        .await
        .unwrap()
        .id();
    // A worker that died: it leased both, started them (its first renewal told the store) and
    // vanished.
    let w = outlive_a_dead_worker(&spy, &ctl, &clock, true).await;
    let rec = wait_state(&client, again, JobState::Completed).await;
    assert_eq!(rec.attempts, 2);
    assert_eq!(rec.errors[0].error, "lease expired");
    let rec = wait_state(&client, last, JobState::Failed).await;
    assert_eq!(rec.last_error(), Some("lease expired"));
    w.shutdown().await.unwrap();
}

/// Found by the chaos soak (issue #22): a worker killed after leasing jobs and before their
/// handlers started took their attempts with it, so a job allowed one attempt ended failed
/// without ever running. The attempts are given back and the jobs run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_leased_by_a_worker_that_died_before_starting_them_keep_their_attempts() {
    let (spy, client, clock) = setup();
    let ctl = Ctl::new();
    let once = client
        .enqueue(task(1, Act::Ok).with().max_attempts(1))
        .await
        .unwrap()
        .id();
    let again = client.enqueue(task(2, Act::Ok)).await.unwrap().id();
    // A worker that died between its reserve and its handlers: no renewal ever came.
    let w = outlive_a_dead_worker(&spy, &ctl, &clock, false).await;
    for id in [once, again] {
        let rec = wait_state(&client, id, JobState::Completed).await;
        assert_eq!(
            rec.attempts, 1,
            "the dead worker's attempt was given back: {rec:?}"
        );
        assert!(rec.errors.is_empty(), "{rec:?}");
    }
    w.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_outage_during_fetch_backs_off_then_recovers() {
    let (spy, client, clock) = setup();
    let ctl = Ctl::new();
    spy.fail_reserve.store(true, Ordering::SeqCst);
    let w = builder(&spy, &ctl).build().unwrap().spawn();
    wait_until("a reserve fails", || async {
        spy.reserves.load(Ordering::SeqCst) >= 1
    })
    .await;
    let before = spy.reserves.load(Ordering::SeqCst);
    // Without the clock moving, the worker waits out its backoff instead of retrying hot.
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert!(spy.reserves.load(Ordering::SeqCst) <= before + 1);
    spy.fail_reserve.store(false, Ordering::SeqCst);
    let id = client.enqueue(task(1, Act::Ok)).await.unwrap().id();
    wait_until("the job completes after the outage", || async {
        clock.advance(Duration::from_millis(200));
        client.status(id).await.unwrap().state == JobState::Completed
    })
    .await;
    w.shutdown().await.unwrap();
}

/// Issue #22: a worker backing off after failed fetches fetches again as soon as another call
/// to the store gets through (here, a job's outcome stored), not when its backoff ends: a
/// worker whose link comes back after an outage goes back to work at once. The manual clock
/// never moves, so only that success can end the backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_backoff_ends_when_another_call_to_the_store_succeeds() {
    let (spy, client, clock) = setup();
    let ctl = Ctl::new();
    client.enqueue(task(1, Act::Gate)).await.unwrap();
    let w = builder(&spy, &ctl).concurrency(2).build().unwrap().spawn();
    wait_until("the first job runs", || async { ctl.gauge.now() == 1 }).await;
    let started = clock.now();
    spy.fail_reserve.store(true, Ordering::SeqCst);
    let before = spy.reserves.load(Ordering::SeqCst);
    let second = client.enqueue(task(2, Act::Ok)).await.unwrap().id();
    wait_until("the reserve for the second job fails", || async {
        spy.reserves.load(Ordering::SeqCst) > before
    })
    .await;
    // The fetch loop sleeps out its backoff now, on a clock that does not move.
    wait_until("the fetch loop backs off", || async {
        clock
            .sleepers()
            .contains(&(started + Duration::from_millis(100)))
    })
    .await;
    spy.fail_reserve.store(false, Ordering::SeqCst);
    ctl.gate.open();
    wait_until(
        "the second job completes without the clock moving",
        || async { client.status(second).await.unwrap().state == JobState::Completed },
    )
    .await;
    assert_eq!(clock.now(), started, "the clock moved");
    w.shutdown().await.unwrap();
}

/// Outcomes that cannot be stored (connection lost) are kept and stored once the backend is
/// back, with backoff between tries; the lease is renewed meanwhile, so the job is neither
/// lost nor run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_survive_a_backend_outage_while_storing() {
    let (spy, client, clock) = setup();
    let ctl = Ctl::new();
    spy.fail_finish.store(true, Ordering::SeqCst);
    let id = client.enqueue(task(1, Act::Ok)).await.unwrap().id();
    let w = builder(&spy, &ctl).build().unwrap().spawn();
    wait_until("storing the outcome fails", || async {
        spy.finishes.load(Ordering::SeqCst) >= 1
    })
    .await;
    // Without the clock moving, the finisher waits out its backoff instead of retrying hot.
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert_eq!(spy.finishes.load(Ordering::SeqCst), 1, "no hot retry loop");
    // A long outage: past the original lease, which the heartbeat keeps renewing.
    for step in 0..4 {
        let beats = spy.heartbeats.load(Ordering::SeqCst);
        clock.advance(Duration::from_secs(10)); // one heartbeat interval
        wait_until(&format!("the lease is renewed (step {step})"), || async {
            spy.heartbeats.load(Ordering::SeqCst) > beats
        })
        .await;
    }
    assert_eq!(client.status(id).await.unwrap().state, JobState::Running);
    assert_eq!(
        spy.inner.recover_expired().await.unwrap(),
        0,
        "lease still current"
    );
    spy.fail_finish.store(false, Ordering::SeqCst);
    wait_until("the outcome is stored after the outage", || async {
        clock.advance(Duration::from_secs(1));
        client.status(id).await.unwrap().state == JobState::Completed
    })
    .await;
    assert_eq!(client.status(id).await.unwrap().attempts, 1);
    assert_eq!(ctl.order.lock().unwrap().len(), 1, "ran once");
    let stats = w.shutdown().await.unwrap();
    assert_eq!(stats.completed, 1);
}

#[test]
fn two_handlers_with_one_name_are_refused_at_build() {
    #[derive(Serialize, Deserialize)]
    struct Impostor;
    impl Job for Impostor {
        type Output = ();
        const NAME: &'static str = "task";
    }
    impl Handler<Ctl> for Impostor {
        async fn run(self, _ctx: JobContext<Ctl>) -> Result<(), JobError> {
            Ok(())
        }
    }
    let (spy, _client, _clock) = setup();
    let err = builder(&spy, &Ctl::new())
        .register::<Impostor>()
        .build()
        .err()
        .expect("refused");
    let msg = err.to_string();
    assert!(msg.contains("job name `task` is used by both"), "{msg}");
    assert!(
        msg.contains("worker::Task`") && msg.contains("Impostor`"),
        "{msg}"
    );
}

/// A hand-written job whose name no backend would store is refused when the worker is built
/// and when it is enqueued, with the type and the reason, before anything reaches a backend.
#[test]
fn invalid_job_names_are_refused_at_build_and_enqueue() {
    #[derive(Serialize, Deserialize)]
    struct Unnamed;
    impl Job for Unnamed {
        type Output = ();
        const NAME: &'static str = "";
    }
    impl Handler<Ctl> for Unnamed {
        async fn run(self, _ctx: JobContext<Ctl>) -> Result<(), JobError> {
            Ok(())
        }
    }
    let (spy, client, _clock) = setup();
    let err = builder(&spy, &Ctl::new())
        .register::<Unnamed>()
        .build()
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("Unnamed`") && err.contains("must be 1 to 128 bytes"),
        "{err}"
    );
    let err = client.prepare(Unnamed).expect_err("refused").to_string();
    assert!(err.contains("must be 1 to 128 bytes"), "{err}");
}

#[test]
fn bad_configuration_is_refused_with_every_problem() {
    let (spy, _client, _clock) = setup();
    let err = builder(&spy, &Ctl::new())
        .concurrency(0)
        .lease(Duration::from_millis(10))
        .queue_concurrency("nope", 2)
        .build()
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("concurrency must be at least 1"), "{err}");
    assert!(err.contains("lease of 10ms is too short"), "{err}");
    assert!(
        err.contains("`nope`, which this worker does not listen on"),
        "{err}"
    );
    let none = Worker::builder(AnyBackend::from(spy.clone()))
        .build()
        .err()
        .expect("refused");
    assert!(none.to_string().contains("no job handlers registered"));
}

/// Attempts seen by a handler that blocks its OS thread longer than the lease.
static BLOCKING_RUNS: AtomicU32 = AtomicU32::new(0);

#[derive(Serialize, Deserialize)]
struct Crunch;
impl Job for Crunch {
    type Output = ();
    const NAME: &'static str = "crunch";
    const QUEUE: &'static str = "cpu";
}
impl Handler<()> for Crunch {
    async fn run(self, _ctx: JobContext<()>) -> Result<(), JobError> {
        BLOCKING_RUNS.fetch_add(1, Ordering::SeqCst);
        // CPU-bound work that never yields: 4 leases long.
        std::thread::sleep(Duration::from_millis(1600));
        Ok(())
    }
}

/// A handler blocking the only runtime thread for 4× the lease is not run twice: leases are
/// renewed from the worker's own thread. Real time, because the point is a blocked thread.
#[test]
fn blocking_handlers_keep_their_lease() {
    let backend = kosh_jobs::memory::MemoryBackend::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let b2 = backend.clone();
    let rival_stop = Arc::new(AtomicBool::new(false));
    let stop2 = rival_stop.clone();
    // A rival worker on another thread keeps trying to recover and lease the job.
    let rival = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // Only once the worker runs the job: before that, taking it would be fair.
            while BLOCKING_RUNS.load(Ordering::SeqCst) == 0 && !stop2.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let mut stolen = 0;
            while !stop2.load(Ordering::SeqCst) {
                b2.recover_expired().await.unwrap();
                let got = b2
                    .reserve(&ReserveRequest {
                        queues: vec!["cpu".into()],
                        worker: "rival".into(),
                        max: 1,
                        lease: Duration::from_secs(60),
                    })
                    .await
                    .unwrap();
                stolen += got.len();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            stolen
        })
    });
    rt.block_on(async {
        let client = kosh_jobs::Client::new(backend.clone());
        let id = client.enqueue(Crunch).await.unwrap().id();
        let w = Worker::builder(backend.clone())
            .register::<Crunch>()
            .lease(Duration::from_millis(400))
            .heartbeat_interval(Duration::from_millis(100))
            .build()
            .unwrap()
            .spawn();
        wait_state(&client, id, JobState::Completed).await;
        let rec = client.status(id).await.unwrap();
        assert_eq!(rec.attempts, 1, "{rec:?}");
        w.shutdown().await.unwrap();
    });
    rival_stop.store(true, Ordering::SeqCst);
    assert_eq!(rival.join().unwrap(), 0, "the rival never got the job");
    assert_eq!(BLOCKING_RUNS.load(Ordering::SeqCst), 1);
}

/// A queue at its per-queue limit with a job ready is not work for this worker: it waits for
/// a slot of that queue to free up, or for work on its other queues, instead of spinning on a
/// wait that returns at once because the full queue has a ready job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_with_ready_jobs_does_not_spin() {
    let (spy, client, _clock) = setup();
    let ctl = Ctl::new();
    client.enqueue(task(1, Act::Gate)).await.unwrap();
    client.enqueue(task(2, Act::Gate)).await.unwrap();
    let w = builder(&spy, &ctl)
        .concurrency(4)
        .queue_concurrency("q1", 1)
        .build()
        .unwrap()
        .spawn();
    wait_until("one handler runs", || async { ctl.gauge.now() == 1 }).await;
    let before = spy.waits.load(std::sync::atomic::Ordering::SeqCst);
    // Round trips to the store while the worker idles beside them.
    for _ in 0..200 {
        client.counts().await.unwrap();
        tokio::task::yield_now().await;
    }
    let waits = spy.waits.load(std::sync::atomic::Ordering::SeqCst) - before;
    assert!(
        waits <= 3,
        "the worker waited {waits} times meanwhile: it spins"
    );
    ctl.gate.open();
    wait_until("both complete", || async {
        client.counts().await.unwrap()[0].completed == 2
    })
    .await;
    w.shutdown().await.unwrap();
}

/// Issue #21: the metrics sampler does not read a quiet store (no job ready or running) every
/// interval, only once per idle wait; a job handed to the worker makes it sample an interval
/// later, and then it rests again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_sampler_rests_while_the_store_is_quiet() {
    let (spy, client, clock) = setup();
    let ctl = Ctl::new();
    let interval = Duration::from_secs(1);
    let idle = Duration::from_secs(60);
    let w = builder(&spy, &ctl)
        .sample_metrics(interval)
        .idle_wait(idle)
        .build()
        .unwrap()
        .spawn();
    let reads = || spy.counts_reads.load(Ordering::SeqCst);
    // Every sleep an advance woke has run and slept again.
    let settled = || async {
        wait_until("the woken sleepers sleep again", || async {
            clock.sleepers().iter().all(|t| *t > clock.now())
        })
        .await
    };
    wait_until("the first sample", || async { reads() == 1 }).await;
    wait_until("the worker waits", || async {
        spy.waits.load(Ordering::SeqCst) >= 1
    })
    .await;
    settled().await;
    for _ in 0..5 {
        clock.advance(interval);
        settled().await;
    }
    assert_eq!(reads(), 1, "a quiet store is not read every interval");

    // A job: sampled an interval after the worker got it.
    let id = client.enqueue(task(1, Act::Ok)).await.unwrap().id();
    wait_state(&client, id, JobState::Completed).await;
    settled().await;
    assert_eq!(reads(), 1);
    clock.advance(interval);
    wait_until("the sample after the job", || async { reads() == 2 }).await;
    settled().await;
    // Quiet again: the next read is an idle wait later.
    for _ in 0..5 {
        clock.advance(interval);
        settled().await;
    }
    assert_eq!(reads(), 2, "quiet again");
    clock.advance(idle);
    wait_until("the sample an idle wait later", || async { reads() == 3 }).await;
    w.shutdown().await.unwrap();
}
