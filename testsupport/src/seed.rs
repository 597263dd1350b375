//! A store with jobs in every state and a live worker, through the library: what the tests of
//! the operator tools (the `kosh-jobs` CLI, the dashboard) look at.

use std::ops::RangeInclusive;
use std::time::Duration;

use kosh_jobs::admin::WorkerInfo;
use kosh_jobs::{AnyBackend, Backend, Finish, JobId, NewJob, Outcome, ReserveRequest};
use serde_json::{json, Value};

/// How [`seed`] shapes its `csv-uploads` jobs, numbered 1 to 6 in the order they are pushed
/// (`"upload_id": N` in the payload): 1 to 3 fail, 4 and 5 complete, 6 runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seed {
    /// The jobs whose payload also names their statement file: `"file": "statement-N.csv"`.
    pub files: RangeInclusive<u32>,
    /// Text that job 3 (failed) carries in its payload (`"note"`), its unique key
    /// (`upload-3-TEXT`) and its error (`database is locked TEXT`).
    pub hostile: Option<&'static str>,
}

impl Default for Seed {
    /// Every job names its file; nothing hostile.
    fn default() -> Self {
        Seed {
            files: 1..=6,
            hostile: None,
        }
    }
}

/// What [`seed`] made.
#[derive(Clone, Debug)]
pub struct Seeded {
    /// csv-uploads, failed with "database is locked" (oldest first): jobs 1 to 3.
    pub failed: Vec<JobId>,
    /// csv-uploads, completed with the result `{"rows": 120}`: jobs 4 and 5.
    pub completed: Vec<JobId>,
    /// csv-uploads, running, held by the worker `test-worker`: job 6.
    pub running: JobId,
    /// mail, ready.
    pub ready: JobId,
    /// mail, scheduled in an hour.
    pub scheduled: JobId,
}

/// The worker that holds the running job.
pub const WORKER: &str = "test-worker";

/// The trace context (a `traceparent`) that job 1, the first failed job, was enqueued with.
pub const TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn req(queue: &str, max: usize) -> ReserveRequest {
    ReserveRequest {
        queues: vec![queue.into()],
        worker: WORKER.into(),
        max,
        lease: Duration::from_secs(3600),
    }
}

/// Seeds `b`: 3 failed + 2 completed + 1 running job on `csv-uploads`, shaped by `how`; 1
/// ready and 1 scheduled on `mail`; and a live worker [`WORKER`] holding the running job.
///
/// Panics (it is for tests) when the backend fails or does not behave as it should.
pub async fn seed(b: &AnyBackend, how: &Seed) -> Seeded {
    let now = b.clock().now();
    let job = |n: u32, attempts: u32| {
        let mut payload = json!({ "upload_id": n });
        if how.files.contains(&n) {
            payload["file"] = json!(format!("statement-{n}.csv"));
        }
        let hostile = how.hostile.filter(|_| n == 3);
        if let Some(text) = hostile {
            payload["note"] = json!(text);
        }
        let mut j = NewJob::new("import_csv", "csv-uploads", payload.to_string(), now);
        j.unique_key = hostile.map(|text| format!("upload-3-{text}"));
        j.max_attempts = attempts;
        j.trace = (n == 1).then(|| TRACE.to_owned());
        j
    };
    let pushed = b.push((1..=3).map(|n| job(n, 1)).collect()).await.unwrap();
    let hostile_id = pushed[2].id;
    let leased = b.reserve(&req("csv-uploads", 3)).await.unwrap();
    assert_eq!(leased.len(), 3);
    b.finish(
        leased
            .iter()
            .map(|j| Finish {
                lease: j.lease,
                outcome: Outcome::failed(match how.hostile {
                    Some(text) if j.id() == hostile_id => format!("database is locked {text}"),
                    _ => "database is locked".to_owned(),
                }),
            })
            .collect(),
    )
    .await
    .unwrap();
    let failed = leased.iter().map(|j| j.id()).collect();

    b.push((4..=5).map(|n| job(n, 3)).collect()).await.unwrap();
    let done = b.reserve(&req("csv-uploads", 2)).await.unwrap();
    assert_eq!(done.len(), 2);
    b.finish(
        done.iter()
            .map(|j| Finish {
                lease: j.lease,
                outcome: Outcome::Completed {
                    result: Some(json!({"rows": 120})),
                },
            })
            .collect(),
    )
    .await
    .unwrap();
    let completed = done.iter().map(|j| j.id()).collect();

    b.push(vec![job(6, 3)]).await.unwrap();
    let running = b.reserve(&req("csv-uploads", 1)).await.unwrap()[0].id();
    b.register_worker(
        &WorkerInfo {
            id: WORKER.into(),
            host: "test-host".into(),
            pid: std::process::id(),
            version: "0.1.0".into(),
            queues: vec!["csv-uploads".into()],
            concurrency: 4,
            started_at: now,
        },
        Duration::from_secs(3600),
    )
    .await
    .unwrap();

    let mail = |payload: Value, at| NewJob::new("send_mail", "mail", payload.to_string(), at);
    let ready = b
        .push(vec![mail(json!({"to": "a@example.com"}), now)])
        .await
        .unwrap()[0]
        .id;
    let scheduled = b
        .push(vec![mail(
            json!({"to": "b@example.com"}),
            now + Duration::from_secs(3600),
        )])
        .await
        .unwrap()[0]
        .id;
    Seeded {
        failed,
        completed,
        running,
        ready,
        scheduled,
    }
}

/// Seeds queue `per-user` with one running slot per group: groups `ann` (3 jobs, one
/// running), `bob` (1, running) and `it's me` (2 ready).
pub async fn seed_groups(b: &AnyBackend) {
    b.set_queue_limits(
        "per-user",
        kosh_jobs::QueueLimits::default().with_group_concurrency(1),
    )
    .await
    .expect("set limits");
    let now = b.clock().now();
    let job = |group: &str| {
        let mut j = NewJob::new("import", "per-user", "{}", now);
        j.group = Some(group.to_owned());
        j
    };
    b.push(vec![job("ann"), job("ann"), job("ann"), job("bob")])
        .await
        .expect("push");
    let req = ReserveRequest {
        queues: vec!["per-user".into()],
        worker: "cli-test".into(),
        max: 10,
        lease: Duration::from_secs(600),
    };
    assert_eq!(
        b.reserve(&req).await.expect("reserve").len(),
        2,
        "ann's and bob's"
    );
    b.push(vec![job("it's me"), job("it's me")])
        .await
        .expect("push");
}
