//! A handler's "not now, try again in D" (`JobError::snooze`) with the real worker: the
//! attempt is not counted, no error is stored, the retry backoff does not grow, and the job
//! runs again once D has passed (on a manual clock: never before).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kosh_jobs::admin::AttemptOutcome;
use kosh_jobs::events::{Event, EventFilter, JobEventKind};
use kosh_jobs::memory::MemoryBackend;
use kosh_jobs::{job, Client, Clock, JobContext, JobError, JobId, JobRecord, JobState, Worker};
use serde::{Deserialize, Serialize};

/// How long the test waits for something that should happen promptly (a guard, not a timing
/// assertion).
const PATIENCE: Duration = Duration::from_secs(20);

/// What the handler saw: the attempt number of each run.
#[derive(Clone, Default)]
struct Bank {
    runs: Arc<Mutex<Vec<u32>>>,
    /// How many runs answer "429, retry after 30 s" before the call goes through.
    busy_for: usize,
}

#[derive(Serialize, Deserialize)]
struct CallBank {
    account: u32,
}

/// One attempt only, so a snooze that counted an attempt would fail the job.
#[job(queue = "bank", max_attempts = 1, backoff = fixed(10s))]
async fn call_bank(job: CallBank, ctx: JobContext<Bank>) -> Result<u32, JobError> {
    let bank = ctx.state();
    let n = {
        let mut runs = bank.runs.lock().unwrap();
        runs.push(ctx.attempt());
        runs.len()
    };
    if n <= bank.busy_for {
        // As an HTTP client would after a 429 with `Retry-After: 30`.
        return Err(JobError::snooze_retry_after(
            Some("30"),
            Duration::from_secs(1),
        ));
    }
    Ok(job.account)
}

/// Waits until `check` holds for the job's record; fails with `what` after [`PATIENCE`].
async fn wait_for(
    client: &Client,
    id: JobId,
    what: &str,
    check: impl Fn(&JobRecord) -> bool,
) -> JobRecord {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let rec = client.status(id).await.expect("status");
        if check(&rec) {
            return rec;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}; last seen: {rec:#?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_snoozes_twice_then_succeeds_completes_on_its_first_attempt() {
    let (clock, time) = Clock::manual();
    let backend = MemoryBackend::with_clock(clock);
    let client = Client::new(backend.clone());
    let mut events = client
        .subscribe(EventFilter::Queue("bank".into()))
        .await
        .unwrap();
    let bank = Bank {
        busy_for: 2,
        ..Bank::default()
    };
    let id = client.enqueue(CallBank { account: 42 }).await.unwrap().id();
    let worker = Worker::builder(backend.clone())
        .state(bank.clone())
        .register::<CallBank>()
        .build()
        .unwrap()
        .spawn();

    for round in 1..=2 {
        let snoozed_at = time.now();
        let rec = wait_for(&client, id, "the job snoozed", |r| {
            r.state == JobState::Scheduled && bank.runs.lock().unwrap().len() == round
        })
        .await;
        assert_eq!(
            rec.attempts, 0,
            "snooze {round}: the attempt is not counted"
        );
        assert!(rec.errors.is_empty(), "snooze {round}: no error stored");
        assert!(
            rec.run_at >= snoozed_at + Duration::from_secs(30),
            "snooze {round}: runs again after Retry-After, not after the backoff ({} < {})",
            rec.run_at,
            snoozed_at + Duration::from_secs(30)
        );
        // A second before its time nothing runs: the job is still scheduled, not leased.
        time.advance(rec.run_at.saturating_duration_since(time.now()) - Duration::from_secs(1));
        assert_eq!(
            client.status(id).await.unwrap().state,
            JobState::Scheduled,
            "snooze {round}: still waiting a second before its time"
        );
        assert_eq!(bank.runs.lock().unwrap().len(), round);
        time.advance(Duration::from_secs(1));
    }

    let rec = wait_for(&client, id, "the job completed", |r| {
        r.state == JobState::Completed
    })
    .await;
    assert_eq!(rec.attempts, 1, "completed on its first attempt");
    assert!(rec.errors.is_empty());
    assert_eq!(rec.result, Some(serde_json::json!(42)));
    assert_eq!(
        *bank.runs.lock().unwrap(),
        vec![1, 1, 1],
        "each run was attempt 1"
    );
    let snoozed = rec
        .history
        .iter()
        .filter(|a| a.outcome == Some(AttemptOutcome::Snoozed))
        .count();
    assert_eq!(snoozed, 2, "the history records both snoozes");

    let stats = worker.shutdown().await.unwrap();
    assert_eq!((stats.snoozed, stats.completed), (2, 1), "{stats:?}");
    assert_eq!((stats.retried, stats.failed), (0, 0), "{stats:?}");

    let mut kinds = Vec::new();
    while kinds.last() != Some(&JobEventKind::Completed) {
        match tokio::time::timeout(PATIENCE, events.next()).await {
            Ok(Some(Event::Job(e))) if e.id == id => kinds.push(e.kind),
            Ok(Some(_)) => {}
            other => panic!("events ended early after {kinds:?}: {other:?}"),
        }
    }
    use JobEventKind::*;
    assert_eq!(
        kinds,
        vec![Enqueued, Started, Snoozed, Started, Snoozed, Started, Completed]
    );
}

/// A snooze between failures does not grow the backoff: the attempt after it is the same
/// attempt again, and its retry waits as long as that attempt's would have.
#[derive(Clone, Default)]
struct Flaky {
    runs: Arc<Mutex<Vec<u32>>>,
}

#[derive(Serialize, Deserialize)]
struct SyncAccounts;

#[job(queue = "sync", max_attempts = 3, backoff = exponential(10s, max = 1h))]
async fn sync_accounts(_job: SyncAccounts, ctx: JobContext<Flaky>) -> Result<(), JobError> {
    let n = {
        let mut runs = ctx.state().runs.lock().unwrap();
        runs.push(ctx.attempt());
        runs.len()
    };
    match n {
        1 => Err("upstream failed".into()),
        2 => Err(JobError::snooze(Duration::from_secs(5))),
        3 => Err("upstream failed again".into()),
        _ => Ok(()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snooze_does_not_grow_the_backoff() {
    let (clock, time) = Clock::manual();
    let backend = MemoryBackend::with_clock(clock);
    let client = Client::new(backend.clone());
    let flaky = Flaky::default();
    let id = client.enqueue(SyncAccounts).await.unwrap().id();
    let worker = Worker::builder(backend.clone())
        .state(flaky.clone())
        .register::<SyncAccounts>()
        .build()
        .unwrap()
        .spawn();
    let runs = |n: usize| {
        let flaky = flaky.clone();
        move |r: &JobRecord| r.state == JobState::Scheduled && flaky.runs.lock().unwrap().len() == n
    };
    // Attempt 1 fails: retried after 10 s (the first backoff step).
    let rec = wait_for(&client, id, "attempt 1 failed", runs(1)).await;
    assert_eq!((rec.attempts, rec.errors.len()), (1, 1));
    time.advance(rec.run_at.saturating_duration_since(time.now()));
    // Attempt 2 snoozes for 5 s: not counted.
    let rec = wait_for(&client, id, "attempt 2 snoozed", runs(2)).await;
    assert_eq!((rec.attempts, rec.errors.len()), (1, 1));
    time.advance(rec.run_at.saturating_duration_since(time.now()));
    // Attempt 2 again fails: its backoff is the second step (20 s), not the third.
    let rec = wait_for(&client, id, "attempt 2 failed", runs(3)).await;
    assert_eq!((rec.attempts, rec.errors.len()), (2, 2));
    let waited = rec.run_at.saturating_duration_since(rec.errors[1].at);
    assert_eq!(
        waited,
        Duration::from_secs(20),
        "the backoff of attempt 2, not of attempt 3"
    );
    time.advance(rec.run_at.saturating_duration_since(time.now()));
    let rec = wait_for(&client, id, "completed", |r| r.state == JobState::Completed).await;
    assert_eq!(rec.attempts, 3);
    assert_eq!(*flaky.runs.lock().unwrap(), vec![1, 2, 2, 3]);
    worker.shutdown().await.unwrap();
}
