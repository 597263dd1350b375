//! The lifecycle-events scenario every backend runs: four jobs whose lifecycles differ, and
//! the sequence of events each must show.

use std::collections::HashMap;
use std::time::Duration;

use kosh_jobs::events::{Event, JobEventKind, Subscription};
use kosh_jobs::{Client, Job, JobId, Worker};

use crate::jobs::{Script, Scripted};

/// What each job must show, in order.
pub struct Expected {
    /// Job id → its kinds, in order.
    pub by_job: HashMap<JobId, Vec<JobEventKind>>,
}

impl Expected {
    /// Whether every job has reached its final event in `seen`.
    pub fn complete(&self, seen: &HashMap<JobId, Vec<JobEventKind>>) -> bool {
        self.by_job.keys().all(|id| {
            seen.get(id)
                .is_some_and(|k| k.last().is_some_and(|k| k.is_final()))
        })
    }

    /// Panics unless `seen` holds exactly the expected sequences.
    pub fn check(&self, seen: &HashMap<JobId, Vec<JobEventKind>>) {
        for (id, want) in &self.by_job {
            assert_eq!(seen.get(id), Some(want), "events of job {id}: {seen:?}");
        }
    }
}

/// Enqueues the four scripted jobs through `client`, cancels the delayed one, then runs a
/// worker on `worker_backend` until the others have ended. Returns what each must show.
pub async fn run_scenario(client: &Client, worker: kosh_jobs::AnyBackend) -> Expected {
    use JobEventKind::*;
    let job = |script| Scripted { script };
    let a = client
        .enqueue(job(Script::ProgressThenComplete))
        .await
        .expect("enqueue");
    let b = client
        .enqueue(job(Script::FailOnce))
        .await
        .expect("enqueue");
    let c = client.enqueue(job(Script::Fail)).await.expect("enqueue");
    let d = client
        .enqueue(job(Script::Fail).with().delay(Duration::from_secs(3600)))
        .await
        .expect("enqueue");
    client.cancel(d.id()).await.expect("cancel");
    let w = Worker::builder(worker)
        .register::<Scripted>()
        .build()
        .expect("worker")
        .spawn();
    for id in [a.id(), b.id(), c.id()] {
        client
            .wait_record(id, Some(Duration::from_secs(30)))
            .await
            .expect("job ends");
    }
    w.shutdown().await.expect("shutdown");
    Expected {
        by_job: HashMap::from([
            (a.id(), vec![Enqueued, Started, Progress, Completed]),
            (
                b.id(),
                vec![Enqueued, Started, RetryScheduled, Started, Completed],
            ),
            (c.id(), vec![Enqueued, Started, Failed]),
            (d.id(), vec![Enqueued, Cancelled]),
        ]),
    }
}

/// Takes events from `sub` until every job of `expected` has ended (or `limit` passes),
/// then checks them. `Missed` fails the test: nothing was cut here.
pub async fn collect_and_check(sub: &mut Subscription, expected: &Expected, limit: Duration) {
    let mut seen: HashMap<JobId, Vec<JobEventKind>> = HashMap::new();
    let deadline = tokio::time::Instant::now() + limit;
    while !expected.complete(&seen) {
        match tokio::time::timeout_at(deadline, sub.next()).await {
            Ok(Some(Event::Job(e))) => seen.entry(e.id).or_default().push(e.kind),
            Ok(Some(Event::Missed { .. })) => panic!("events missed with no fault: {seen:?}"),
            Ok(None) => panic!("the feed ended: {seen:?}"),
            Err(_) => panic!("events did not all arrive within {limit:?}: {seen:?}"),
        }
    }
    expected.check(&seen);
}

/// The same check on lines a subscriber in another process printed (`<id> <kind>`).
pub fn check_lines(lines: &[String], expected: &Expected) {
    let mut seen: HashMap<JobId, Vec<JobEventKind>> = HashMap::new();
    for l in lines {
        let (id, kind) = l.split_once(' ').unwrap_or_else(|| panic!("line `{l}`"));
        assert_ne!(id, "missed", "events missed with no fault: {lines:?}");
        let id = JobId::new(id.parse().unwrap_or_else(|_| panic!("line `{l}`")));
        let kind: JobEventKind = serde_json::from_value(serde_json::Value::String(kind.to_owned()))
            .unwrap_or_else(|_| panic!("line `{l}`"));
        seen.entry(id).or_default().push(kind);
    }
    expected.check(&seen);
}
