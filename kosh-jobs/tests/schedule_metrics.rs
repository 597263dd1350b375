//! `kosh_jobs_schedule_ticks_total` by outcome, read back from a test recorder after a
//! scripted run on a manual clock: a tick enqueued, one skipped while the previous job runs
//! (overlap), then downtime where the latest tick fires and the older ones are missed.
//!
//! One test per process: a metrics recorder is global.

use std::sync::Arc;
use std::time::Duration;

use kosh_jobs::memory::MemoryBackend;
use kosh_jobs::metrics as names;
use kosh_jobs::schedule::{Overlap, Schedule};
use kosh_jobs::{job, Client, Clock, JobContext, JobError, Timestamp, Worker};
use metrics_util::debugging::DebuggingRecorder;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, Semaphore};

mod recorder;
use recorder::{counter, read};

#[derive(Clone)]
struct Gate {
    started: Arc<Notify>,
    hold: Arc<Semaphore>,
}

#[derive(Serialize, Deserialize, Default)]
struct Sweep;

#[job(queue = "sched-metrics", max_attempts = 1)]
async fn sweep(_job: Sweep, ctx: JobContext<Gate>) -> Result<(), JobError> {
    ctx.state().started.notify_one();
    let _ = ctx.state().hold.acquire().await.map(|p| p.forget());
    Ok(())
}

const MINUTE: Duration = Duration::from_secs(60);
const GUARD: Duration = Duration::from_secs(20);

#[test]
fn schedule_ticks_are_counted_by_outcome() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::set_global_recorder(recorder).expect("the only recorder of this process");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (clock, time) = Clock::manual();
        let backend = MemoryBackend::with_clock(clock);
        let client = Client::new(backend.clone());
        let start = time.now();
        client
            .upsert_schedule(
                Schedule::every("sweep", MINUTE)
                    .unwrap()
                    .overlap(Overlap::Skip),
                Sweep,
            )
            .await
            .unwrap();
        let gate = Gate {
            started: Arc::new(Notify::new()),
            hold: Arc::new(Semaphore::new(0)),
        };
        let w = Worker::builder(backend)
            .state(gate.clone())
            .register::<Sweep>()
            .lease(Duration::from_secs(3600))
            .build()
            .unwrap()
            .spawn();
        let cursor_at = |t: Timestamp| {
            let client = client.clone();
            async move {
                let deadline = std::time::Instant::now() + GUARD;
                while client.schedule("sweep").await.unwrap().unwrap().next_fire != Some(t) {
                    assert!(std::time::Instant::now() < deadline, "cursor at {t:?}");
                    tokio::task::yield_now().await;
                }
            }
        };
        // Tick 1 is enqueued and its job holds.
        time.advance(MINUTE);
        tokio::time::timeout(GUARD, gate.started.notified())
            .await
            .expect("the first job starts");
        // Tick 2 comes while it runs: skipped as overlapping.
        time.advance(MINUTE);
        cursor_at(start + MINUTE * 3).await;
        // The job ends; then no worker looks for three minutes (the clock jumps): the latest
        // tick fires, the two before it are missed.
        gate.hold.add_permits(100);
        let deadline = std::time::Instant::now() + GUARD;
        loop {
            let counts = client.counts().await.unwrap();
            if counts.iter().all(|c| c.running == 0 && c.ready == 0) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the first job ends");
            tokio::task::yield_now().await;
        }
        time.advance(MINUTE * 3 + Duration::from_secs(10));
        cursor_at(start + MINUTE * 6).await;
        w.shutdown().await.unwrap();
    });
    let values = read(&snapshotter);
    let ticks = |outcome: &str| {
        counter(
            &values,
            names::SCHEDULE_TICKS,
            &[
                ("queue", "sched-metrics"),
                ("job", "sweep"),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(ticks("enqueued"), 2, "ticks 1 and 5");
    assert_eq!(ticks("overlapping"), 1, "tick 2");
    assert_eq!(ticks("missed"), 2, "ticks 3 and 4");
}
