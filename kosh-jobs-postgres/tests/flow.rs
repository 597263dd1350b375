//! Flow control across processes: two backends (two pools, two listeners) on one schema
//! obey the same limits, because a reserve on a limited queue locks the queue's row.

mod support;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kosh_jobs_core::limits::{QueueLimits, RateLimit};
use kosh_jobs_core::{Backend, Finish, NewJob, Outcome, ReserveRequest};
use sqlx::{Connection, PgConnection};

fn request(queue: &str, worker: &str, max: usize) -> ReserveRequest {
    ReserveRequest {
        queues: vec![queue.to_owned()],
        worker: worker.to_owned(),
        max,
        lease: Duration::from_secs(60),
    }
}

fn done() -> Outcome {
    Outcome::Completed { result: None }
}

/// Running jobs of `queue` as the database has them committed.
async fn running_in_db(conn: &mut PgConnection, schema: &str, queue: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM \"{schema}\".jobs WHERE state = 'running' AND queue = $1"
    )))
    .bind(queue)
    .fetch_one(conn)
    .await
    .expect("count running")
}

const LIMIT: u64 = 3;
const JOBS: usize = 60;

/// Workers of two backends reserve concurrently (batches of up to 4) on a queue limited to 3
/// running jobs: never more than 3 run at once in total, and every job runs once.
///
/// Two checks that cannot give a false alarm: each worker counts a job from the moment its
/// reserve returned to the moment before its finish is sent (so the count is never above the
/// jobs really running), and after each reserve reads the committed running count.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_backends_never_exceed_a_concurrency_limit_together() {
    let schema = support::unique_schema("flow2");
    let a = support::backend_on(&schema, None).await;
    let b = support::backend_on(&schema, None).await;
    a.set_queue_limits("imports", QueueLimits::default().with_concurrency(3))
        .await
        .expect("set limits");
    let now = b.clock().now();
    // Pushed through the backend that did not set the limits, which has no hint of them.
    b.push(
        (0..JOBS)
            .map(|_| NewJob::new("n", "imports", "{}", now))
            .collect(),
    )
    .await
    .expect("push");

    let in_flight = Arc::new(AtomicU64::new(0));
    let peak = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (i, backend) in [
        a.clone(),
        b.clone(),
        a.clone(),
        b.clone(),
        a.clone(),
        b.clone(),
    ]
    .into_iter()
    .enumerate()
    {
        let (in_flight, peak, finished) = (
            Arc::clone(&in_flight),
            Arc::clone(&peak),
            Arc::clone(&finished),
        );
        let schema = schema.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = PgConnection::connect(&support::shared_url())
                .await
                .expect("check connection");
            let worker = format!("w{i}");
            let queues = vec!["imports".to_owned()];
            let mut ran = 0usize;
            while finished.load(Ordering::SeqCst) < JOBS {
                let got = backend
                    .reserve(&request("imports", &worker, 4))
                    .await
                    .expect("reserve");
                if got.is_empty() {
                    let until = backend.clock().now() + Duration::from_secs(1);
                    backend.wait_for_work(&queues, until).await.expect("wait");
                    continue;
                }
                let n = in_flight.fetch_add(got.len() as u64, Ordering::SeqCst) + got.len() as u64;
                peak.fetch_max(n, Ordering::SeqCst);
                assert!(n <= LIMIT, "{n} jobs running at once, limit {LIMIT}");
                let committed = running_in_db(&mut conn, &schema, "imports").await;
                assert!(
                    committed <= LIMIT as i64,
                    "{committed} running jobs committed, limit {LIMIT}"
                );
                tokio::task::yield_now().await;
                in_flight.fetch_sub(got.len() as u64, Ordering::SeqCst);
                ran += got.len();
                let items = got
                    .iter()
                    .map(|j| Finish {
                        lease: j.lease,
                        outcome: done(),
                    })
                    .collect();
                backend.finish(items).await.expect("finish");
                finished.fetch_add(got.len(), Ordering::SeqCst);
            }
            ran
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += tokio::time::timeout(Duration::from_secs(120), t)
            .await
            .expect("the workers drain the queue")
            .expect("worker");
    }
    assert_eq!(total, JOBS, "every job ran exactly once");
    let c = a
        .counts()
        .await
        .expect("counts")
        .into_iter()
        .find(|c| c.queue == "imports")
        .expect("queue counted");
    assert_eq!((c.completed, c.running, c.ready), (JOBS as u64, 0, 0));
    assert!(peak.load(Ordering::SeqCst) >= 1);
}

/// Two backends reserving at once on a queue allowed 5 starts a minute start exactly 5 jobs
/// between them, and both show the same log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_backends_share_one_rate_window() {
    let schema = support::unique_schema("flowrate");
    let a = support::backend_on(&schema, None).await;
    let b = support::backend_on(&schema, None).await;
    let limits = QueueLimits::default().with_rate(RateLimit::new(5, Duration::from_secs(60)));
    b.set_queue_limits("api", limits).await.expect("set limits");
    let now = a.clock().now();
    a.push(
        (0..20)
            .map(|_| NewJob::new("n", "api", "{}", now))
            .collect(),
    )
    .await
    .expect("push");
    let mut tasks = Vec::new();
    for (i, backend) in [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .enumerate()
    {
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            for _ in 0..5 {
                n += backend
                    .reserve(&request("api", &format!("w{i}"), 2))
                    .await
                    .expect("reserve")
                    .len();
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("reserver");
    }
    assert_eq!(total, 5, "five starts in the window, whoever took them");
    for backend in [&a, &b] {
        let flows = backend.queue_flows().await.expect("flows");
        assert_eq!(flows.len(), 1);
        assert_eq!(flows[0].starts_in_window, 5);
        assert!(flows[0].next_start_at.is_some(), "the window is full");
    }
}

/// The hint a backend keeps of which queues have limits never decides: limits set by
/// another backend are obeyed at once, and limits removed by another backend stop holding
/// jobs back at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_set_or_removed_by_another_backend_apply_at_once() {
    let schema = support::unique_schema("flowhint");
    let a = support::backend_on(&schema, None).await;
    let b = support::backend_on(&schema, None).await;
    let now = a.clock().now();
    a.push((0..6).map(|_| NewJob::new("n", "q", "{}", now)).collect())
        .await
        .expect("push");
    // `a` has never seen `q` limited: its plain claim must find b's limit by itself.
    b.set_queue_limits("q", QueueLimits::default().with_concurrency(1))
        .await
        .expect("set limits");
    assert_eq!(
        a.reserve(&request("q", "w", 10))
            .await
            .expect("reserve")
            .len(),
        1
    );
    assert!(a
        .reserve(&request("q", "w", 10))
        .await
        .expect("reserve")
        .is_empty());
    // `a` now takes the locking path for `q`; with the limit gone it takes everything.
    b.set_queue_limits("q", QueueLimits::NONE)
        .await
        .expect("remove limits");
    assert_eq!(
        a.reserve(&request("q", "w", 10))
            .await
            .expect("reserve")
            .len(),
        5
    );
    let c = b.counts().await.expect("counts");
    assert_eq!(c[0].running, 6);
}

/// A schema at version 2 (before flow control) is migrated to the current version by the
/// next backend that connects, keeping its jobs, and limits work on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_2_schema_is_migrated_to_flow_control() {
    let schema = support::unique_schema("flowmig");
    let mut conn = PgConnection::connect(&support::shared_url())
        .await
        .expect("connect");
    support::schema_at(&mut conn, &schema, 2).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO \"{schema}\".jobs (name, queue, payload, state, priority, run_at, \
           max_attempts, created_at) VALUES ('n', 'q', '{{}}', 'ready', 0, 0, 3, 0)"
    )))
    .execute(&mut conn)
    .await
    .expect("a version 2 job");
    let b = support::backend_on(&schema, None).await;
    let version: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT value FROM \"{schema}\".meta WHERE key = 'schema_version'"
    )))
    .fetch_one(&mut conn)
    .await
    .expect("version");
    assert_eq!(version, kosh_jobs_postgres::SCHEMA_VERSION);
    let c = b.counts().await.expect("counts");
    assert_eq!(
        (c[0].queue.as_str(), c[0].ready),
        ("q", 1),
        "the job is kept"
    );
    b.set_queue_limits("q", QueueLimits::default().with_concurrency(1))
        .await
        .expect("set limits");
    b.push(vec![NewJob::new("n", "q", "{}", b.clock().now())])
        .await
        .expect("push");
    assert_eq!(b.queue_flows().await.expect("flows").len(), 1);
    assert_eq!(
        b.reserve(&request("q", "w", 5))
            .await
            .expect("reserve")
            .len(),
        1
    );
}
