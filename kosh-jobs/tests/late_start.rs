//! A job leased while the worker's runtime is busy (a handler blocking its only thread) must
//! not be said to have started before its handler runs: its lease is not renewed while it
//! waits, so when the worker dies meanwhile the store gives the attempt back, and when its
//! lease ran out before the runtime got to it, this worker does not run it (the store gave
//! it back; it runs once, as attempt 1, afterwards).
//!
//! Found by the chaos soak (issue #22): one-attempt jobs failed "without a started attempt"
//! because the worker's regular renewal covered jobs whose tasks had not started.

mod support;

use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::Duration;

use kosh_jobs::memory::MemoryBackend;
use kosh_jobs::{job, Backend, Client, Clock, JobContext, JobError, JobId, JobState, Worker};
use serde::{Deserialize, Serialize};
use support::wait_until;
use tokio::sync::mpsc;

const LEASE: Duration = Duration::from_secs(30);

/// What the handlers share with the test.
#[derive(Clone)]
struct Gate {
    /// The job whose handler started first; it blocks its thread until released.
    first: Arc<Mutex<Option<u64>>>,
    release: Arc<Mutex<Option<std_mpsc::Receiver<()>>>>,
    blocked: mpsc::UnboundedSender<u64>,
    /// Every handler run, by job number.
    runs: Arc<Mutex<Vec<u64>>>,
}

#[derive(Serialize, Deserialize)]
struct Step {
    n: u64,
}

#[job(queue = "late", max_attempts = 1)]
async fn step(job: Step, ctx: JobContext<Gate>) -> Result<(), JobError> {
    let gate = ctx.state();
    gate.runs.lock().unwrap().push(job.n);
    let is_first = {
        let mut first = gate.first.lock().unwrap();
        if first.is_none() {
            *first = Some(job.n);
            true
        } else {
            false
        }
    };
    if is_first {
        let release = gate.release.lock().unwrap().take();
        let _ = gate.blocked.send(job.n);
        // Blocks the runtime's only thread: the other job's task cannot start.
        if let Some(rx) = release {
            let _ = rx.recv_timeout(Duration::from_secs(30));
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_job_whose_lease_ran_out_before_its_handler_could_start_is_not_run_late() {
    let (clock, time) = Clock::manual();
    let backend = MemoryBackend::with_clock(clock.clone());
    let client = Client::new(backend.clone());
    let ids: Vec<JobId> = vec![
        client.enqueue(Step { n: 0 }).await.unwrap().id(),
        client.enqueue(Step { n: 1 }).await.unwrap().id(),
    ];
    let (release_tx, release_rx) = std_mpsc::channel();
    let (blocked_tx, mut blocked_rx) = mpsc::unbounded_channel();
    let gate = Gate {
        first: Arc::default(),
        release: Arc::new(Mutex::new(Some(release_rx))),
        blocked: blocked_tx,
        runs: Arc::default(),
    };
    // The worker on a runtime of one thread, apart from the test's own: the blocked handler
    // stops that runtime (its timers too) but not the test.
    let worker_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let worker = {
        let _in = worker_rt.enter();
        Worker::builder(backend.clone())
            .state(gate.clone())
            .register::<Step>()
            .concurrency(2)
            .lease(LEASE)
            .recover_interval(Duration::from_secs(3600))
            .build()
            .unwrap()
            .spawn()
    };
    let first = blocked_rx.recv().await.expect("a handler blocks");
    let first_id = ids[first as usize];
    let other_id = ids[1 - first as usize];
    let lease_of = |id: JobId| {
        let backend = backend.clone();
        async move {
            backend
                .get(id)
                .await
                .unwrap()
                .and_then(|r| r.lease_expires_at)
        }
    };
    let t0 = clock.now();
    let other_ends = lease_of(other_id)
        .await
        .expect("the other job is leased too");

    // The blocked handler started: the store hears so (its lease is renewed) within the start
    // delay and at each renewal; the waiting job's lease is left alone.
    time.advance(Duration::from_secs(20));
    wait_until("the started job's lease is renewed", || async {
        lease_of(first_id)
            .await
            .is_some_and(|e| e >= t0 + Duration::from_secs(50))
    })
    .await;
    assert_eq!(
        lease_of(other_id).await,
        Some(other_ends),
        "the job whose handler has not started is not renewed"
    );

    // Its lease runs out and it is recovered with its attempt given back.
    time.advance(Duration::from_secs(11));
    assert_eq!(backend.recover_expired().await.unwrap(), 1);
    let rec = backend.get(other_id).await.unwrap().unwrap();
    assert_eq!(
        (rec.state, rec.attempts),
        (JobState::Ready, 0),
        "never seen to start: the attempt is given back"
    );

    // The runtime is free again: the stale task does not run the job; the job is leased
    // anew and runs once, as attempt 1.
    release_tx.send(()).unwrap();
    for id in [first_id, other_id] {
        wait_until("both jobs complete", || async {
            client.status(id).await.unwrap().state == JobState::Completed
        })
        .await;
    }
    let rec = client.status(other_id).await.unwrap();
    assert_eq!(rec.attempts, 1, "{rec:?}");
    assert!(rec.errors.is_empty(), "{rec:?}");
    let mut runs = gate.runs.lock().unwrap().clone();
    runs.sort_unstable();
    assert_eq!(runs, [0, 1], "each handler ran once");
    worker.shutdown().await.unwrap();
    worker_rt.shutdown_background();
}
