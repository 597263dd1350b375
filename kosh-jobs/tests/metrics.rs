//! The metrics of `kosh_jobs::metrics`, read back from a test recorder after a scripted run:
//! three jobs completed, one retried then completed, one snoozed then completed, one failed for
//! good, one timed out, one whose lease was lost (it was cancelled while it ran); and the
//! sampler's gauges.
//!
//! One test per process: a metrics recorder is global.

use std::sync::Arc;
use std::time::Duration;

use kosh_jobs::memory::MemoryBackend;
use kosh_jobs::metrics as names;
use kosh_jobs::{job, AnyBackend, Backend, Client, JobError, JobState, Worker};
use metrics_util::debugging::{DebuggingRecorder, Snapshotter};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

mod recorder;
use recorder::{counter, gauge, histogram_len, read};

#[derive(Clone)]
struct Signals {
    /// Notified when the job that waits to be cancelled has started.
    held: Arc<Notify>,
}

#[derive(Serialize, Deserialize)]
struct Step {
    /// ok, fail_once, snooze_once, fail or slow
    how: String,
}

#[job(queue = "metered", max_attempts = 2, backoff = fixed(1ms), timeout = 300ms)]
async fn step(job: Step, ctx: kosh_jobs::JobContext<Signals>) -> Result<(), JobError> {
    match job.how.as_str() {
        "fail_once" if ctx.attempt() == 1 => Err(JobError::retryable("first try fails")),
        "snooze_once" if ctx.checkpoint().is_none() => {
            ctx.progress("snoozed").await?;
            Err(JobError::snooze(Duration::ZERO))
        }
        "fail" => Err(JobError::permanent("never works")),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        }
        _ => Ok(()),
    }
}

#[derive(Serialize, Deserialize)]
struct Hold;

/// Runs until its attempt is cancelled: here, by its lease being lost.
#[job(queue = "metered")]
async fn hold(_job: Hold, ctx: kosh_jobs::JobContext<Signals>) -> Result<(), JobError> {
    ctx.state().held.notify_one();
    ctx.cancellation().cancelled().await;
    Ok(())
}

async fn scripted_run(backend: AnyBackend, snapshotter: &Snapshotter) {
    let client = Client::new(backend.clone());
    let signals = Signals {
        held: Arc::new(Notify::new()),
    };
    let mut handles = Vec::new();
    for how in ["ok", "ok", "ok", "fail_once", "snooze_once", "fail", "slow"] {
        handles.push(
            client
                .enqueue(Step { how: how.into() })
                .await
                .expect("enqueue"),
        );
    }
    let held = client.enqueue(Hold).await.expect("enqueue");
    // A job for a queue no worker listens on: counted as enqueued, never started.
    client
        .push_raw(vec![kosh_jobs::NewJob::new(
            "step",
            "unwatched",
            r#"{"how":"ok"}"#,
            backend.clock().now(),
        )])
        .await
        .expect("push");
    // A queue whose only concurrency slot is taken (a lease held outside any worker): its
    // two other ready jobs are held back, and their group is at its limit too.
    client
        .set_queue_limits(
            "throttled",
            kosh_jobs::QueueLimits::default()
                .with_concurrency(1)
                .with_group_concurrency(1),
        )
        .await
        .expect("limits");
    let raw = |n: u32| {
        let mut j = kosh_jobs::NewJob::new(
            "step",
            "throttled",
            format!(r#"{{"how":"ok","n":{n}}}"#),
            backend.clock().now(),
        );
        j.group = Some("tenant-1".into());
        j
    };
    client
        .push_raw((0..3).map(raw).collect())
        .await
        .expect("push");
    let taken = backend
        .reserve(&kosh_jobs::ReserveRequest {
            queues: vec!["throttled".into()],
            worker: "outside".into(),
            max: 3,
            lease: Duration::from_secs(3600),
        })
        .await
        .expect("reserve");
    assert_eq!(taken.len(), 1, "the limit lets one start");
    // A queue limited per group only: tenant-1's slot is taken, its two other jobs wait for
    // their group while tenant-2's job could start (the queue itself has room).
    client
        .set_queue_limits(
            "per-tenant",
            kosh_jobs::QueueLimits::default().with_group_concurrency(1),
        )
        .await
        .expect("limits");
    let tenant = |g: &str| {
        let mut j = raw(0);
        j.queue = "per-tenant".into();
        j.group = Some(g.into());
        j
    };
    client
        .push_raw(vec![
            tenant("tenant-1"),
            tenant("tenant-1"),
            tenant("tenant-1"),
        ])
        .await
        .expect("push");
    let taken = backend
        .reserve(&kosh_jobs::ReserveRequest {
            queues: vec!["per-tenant".into()],
            worker: "outside".into(),
            max: 3,
            lease: Duration::from_secs(3600),
        })
        .await
        .expect("reserve");
    assert_eq!(taken.len(), 1, "one per group");
    client
        .push_raw(vec![tenant("tenant-2")])
        .await
        .expect("push");
    let worker = Worker::builder(backend.clone())
        .state(signals.clone())
        .register::<Step>()
        .register::<Hold>()
        .concurrency(8)
        .heartbeat_interval(Duration::from_millis(50))
        .lease(Duration::from_secs(2))
        .sample_metrics(Duration::from_secs(1))
        .build()
        .expect("worker")
        .spawn();
    for h in &handles {
        let _ = h.wait_timeout(Duration::from_secs(30)).await;
    }
    tokio::time::timeout(Duration::from_secs(30), signals.held.notified())
        .await
        .expect("the held job starts");
    // Cancelled while running: its worker finds its lease gone.
    backend.cancel(held.id()).await.expect("cancel");
    let rec = held.wait_record_for_test().await;
    assert_eq!(rec, JobState::Cancelled);
    worker.shutdown().await.expect("shutdown");

    let v = read(snapshotter);
    let q = [("queue", "metered"), ("job", "step")];
    let outcome = |o: &str| counter(&v, names::ATTEMPTS, &[q[0], q[1], ("outcome", o)]);
    assert_eq!(counter(&v, names::ENQUEUED, &q), 7, "enqueued");
    assert_eq!(
        counter(
            &v,
            names::ENQUEUED,
            &[("queue", "unwatched"), ("job", "step")]
        ),
        1,
        "enqueued elsewhere"
    );
    assert_eq!(
        counter(&v, names::STARTED, &q),
        10,
        "attempts started: 7 jobs, 2 retried, 1 snoozed"
    );
    assert_eq!(outcome("completed"), 5, "completed");
    assert_eq!(counter(&v, names::SNOOZED, &q), 1, "snoozed");
    assert_eq!(outcome("snoozed"), 0, "a snooze is not an ended attempt");
    assert_eq!(outcome("retry_scheduled"), 1, "retry scheduled");
    assert_eq!(outcome("failed"), 1, "failed for good");
    assert_eq!(outcome("timed_out"), 2, "timed out, on both attempts");
    assert_eq!(outcome("lease_lost"), 0);
    assert_eq!(outcome("panicked"), 0);
    assert_eq!(
        histogram_len(&v, names::ATTEMPT_DURATION, &q),
        10,
        "one duration per attempt"
    );
    // The snoozed job's first attempt starts twice (a snooze gives the attempt back).
    assert_eq!(
        histogram_len(&v, names::WAIT, &q),
        8,
        "one wait per first attempt"
    );
    let h = [("queue", "metered"), ("job", "hold")];
    assert_eq!(counter(&v, names::STARTED, &h), 1, "the held job started");
    assert_eq!(
        counter(
            &v,
            names::ATTEMPTS,
            &[h[0], h[1], ("outcome", "lease_lost")]
        ),
        1,
        "the held job's lease was lost"
    );
    assert_eq!(gauge(&v, names::RUNNING, &h), Some(0.0));
    assert_eq!(
        gauge(&v, names::RUNNING, &q),
        Some(0.0),
        "nothing runs after shutdown"
    );
    assert_eq!(
        gauge(
            &v,
            names::JOBS,
            &[("queue", "unwatched"), ("state", "ready")]
        ),
        Some(1.0),
        "sampled: the job nobody takes is ready"
    );
    assert!(
        gauge(&v, names::WORKERS, &[("queue", "metered")]) == Some(1.0),
        "sampled: one live worker on the queue"
    );
    assert!(
        gauge(&v, names::OLDEST_READY_AGE, &[("queue", "unwatched")]).is_some(),
        "sampled: the age of the oldest ready job"
    );
    assert_eq!(
        gauge(&v, names::HELD_BACK, &[("queue", "throttled")]),
        Some(2.0),
        "sampled: two ready jobs held back by the concurrency limit"
    );
    assert_eq!(
        gauge(&v, names::GROUPS_AT_LIMIT, &[("queue", "throttled")]),
        Some(1.0),
        "sampled: the one group at its limit"
    );
    assert_eq!(
        gauge(&v, names::HELD_BACK, &[("queue", "per-tenant")]),
        Some(2.0),
        "sampled: two ready jobs wait for their group, the other group's job may start"
    );
    assert_eq!(
        gauge(&v, names::HELD_BACK, &[("queue", "unwatched")]),
        None,
        "no gauge for a queue that never had limits"
    );
}

/// Waits until the job is final; its state.
trait WaitForTest {
    async fn wait_record_for_test(&self) -> JobState;
}

impl<J: kosh_jobs::Job> WaitForTest for kosh_jobs::JobHandle<J> {
    async fn wait_record_for_test(&self) -> JobState {
        match self.wait_timeout(Duration::from_secs(30)).await {
            Ok(_) => JobState::Completed,
            Err(_) => self.status().await.expect("status").state,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_on_a_scripted_run() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this process");
    scripted_run(MemoryBackend::new().into_any_backend(), &snapshotter).await;
}
