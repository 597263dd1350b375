//! The group rate limit across processes and over time: two backends (two pools) on one
//! schema share each group's window, a group's start log outlives the moment its group has
//! no job and goes once its window has passed, and a schema of the previous release (version
//! 4) migrates with its limits.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use kosh_jobs_core::limits::{QueueLimits, RateLimit};
use kosh_jobs_core::{
    Backend, Clock, Finish, JobState, LeasedJob, NewJob, Outcome, ReserveRequest, Timestamp,
};
use kosh_jobs_postgres::PostgresBackend;
use sqlx::{Connection, PgConnection};

async fn connection() -> PgConnection {
    PgConnection::connect(&support::shared_url())
        .await
        .expect("connect")
}

fn request(worker: &str, max: usize) -> ReserveRequest {
    ReserveRequest {
        queues: vec!["q".to_owned()],
        worker: worker.to_owned(),
        max,
        lease: Duration::from_secs(600),
    }
}

fn grouped(group: &str, now: Timestamp) -> NewJob {
    let mut j = NewJob::new(group, "q", "{}", now);
    j.group = Some(group.to_owned());
    j
}

async fn finish_all(backend: &PostgresBackend, jobs: &[LeasedJob]) {
    let items = jobs
        .iter()
        .map(|j| Finish {
            lease: j.lease,
            outcome: Outcome::Completed { result: None },
        })
        .collect();
    backend.finish(items).await.expect("finish");
}

/// How many jobs of each group of queue `q` have started, as committed.
async fn started_per_group(conn: &mut PgConnection, schema: &str) -> BTreeMap<String, i64> {
    let rows: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT grp, count(*) FROM \"{schema}\".jobs \
         WHERE queue = 'q' AND grp IS NOT NULL AND attempts > 0 GROUP BY grp"
    )))
    .fetch_all(conn)
    .await
    .expect("started per group");
    rows.into_iter().collect()
}

/// The groups with a start log, and their newest start.
async fn logs(conn: &mut PgConnection, schema: &str) -> Vec<(String, i64)> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT grp, last_at FROM \"{schema}\".group_starts WHERE queue = 'q' ORDER BY grp"
    )))
    .fetch_all(conn)
    .await
    .expect("group logs")
}

const GROUPS: usize = 4;
const PER_GROUP: usize = 10;
const RATE: u32 = 3;

/// Two reservers, each on its own backend (its own pool, as two processes would be), race
/// to drain a queue whose groups may start 3 jobs per minute, while the clock stands still:
/// together they start exactly 3 of each group, and 3 more once the window has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_reservers_share_each_groups_window() {
    let schema = support::unique_schema("grate2");
    let (clock, manual) = Clock::manual();
    let a = support::backend_on(&schema, Some(clock.clone())).await;
    let b = support::backend_on(&schema, Some(clock)).await;
    let limits =
        QueueLimits::default().with_group_rate(RateLimit::new(RATE, Duration::from_secs(60)));
    a.set_queue_limits("q", limits).await.expect("set limits");
    let now = b.clock().now();
    let jobs = (0..PER_GROUP)
        .flat_map(|_| (0..GROUPS).map(|g| grouped(&format!("user-{g}"), now)))
        .collect();
    b.push(jobs).await.expect("push");
    let mut conn = connection().await;

    for window in 1..=2i64 {
        let mut tasks = Vec::new();
        for (i, backend) in [a.clone(), b.clone()].into_iter().enumerate() {
            tasks.push(tokio::spawn(async move {
                let worker = format!("w{i}");
                let mut ran = 0;
                // Until a reserve finds nothing it may start: the windows are all full.
                loop {
                    let got = backend
                        .reserve(&request(&worker, 2))
                        .await
                        .expect("reserve");
                    if got.is_empty() {
                        return ran;
                    }
                    ran += got.len();
                    finish_all(&backend, &got).await;
                }
            }));
        }
        let mut ran = 0;
        for t in tasks {
            ran += tokio::time::timeout(Duration::from_secs(60), t)
                .await
                .expect("the reservers stop when the windows are full")
                .expect("reserver");
        }
        let per_group = i64::from(RATE) * window;
        assert_eq!(
            ran,
            GROUPS * RATE as usize,
            "window {window}: 3 starts per group"
        );
        let started = started_per_group(&mut conn, &schema).await;
        assert_eq!(
            started.values().copied().collect::<Vec<_>>(),
            vec![per_group; GROUPS],
            "window {window}: each group's starts, as committed: {started:?}"
        );
        let flow = a.queue_flows().await.expect("flows");
        assert_eq!(
            (flow[0].groups_running, flow[0].groups_at_limit),
            (0, GROUPS as u64),
            "window {window}: every group's window is full"
        );
        manual.advance(Duration::from_secs(60));
    }
}

/// A group's start log outlives the moment its group has no job (its turn row is gone): a
/// job of it pushed within the window waits. The log goes at the first reserve after its
/// window, and with the group rate when the limits are set without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_groups_log_outlives_its_jobs_and_goes_with_its_window() {
    let schema = support::unique_schema("gratelog");
    let (clock, manual) = Clock::manual();
    let b = support::backend_on(&schema, Some(clock)).await;
    let mut conn = connection().await;
    let ten = Duration::from_secs(10);
    b.set_queue_limits(
        "q",
        QueueLimits::default().with_group_rate(RateLimit::new(1, ten)),
    )
    .await
    .expect("set limits");
    let t0 = b.clock().now();
    b.push(vec![grouped("a", t0)]).await.expect("push");
    let first = b.reserve(&request("w", 10)).await.expect("reserve");
    assert_eq!(first.len(), 1);
    finish_all(&b, &first).await;
    assert!(b
        .reserve(&request("w", 10))
        .await
        .expect("reserve")
        .is_empty());
    let turns: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM \"{schema}\".turns"
    )))
    .fetch_one(&mut conn)
    .await
    .expect("turn rows");
    assert_eq!(turns, 0, "group a has no job left: its turn row is gone");
    assert_eq!(
        logs(&mut conn, &schema).await,
        [("a".to_owned(), t0.as_millis())]
    );

    manual.advance(ten - Duration::from_millis(1));
    let again = b
        .push(vec![grouped("a", b.clock().now())])
        .await
        .expect("push");
    assert!(
        b.reserve(&request("w", 10))
            .await
            .expect("reserve")
            .is_empty(),
        "a's window is still full though the group was empty meanwhile"
    );
    let held = b.get(again[0].id).await.expect("get").expect("stored");
    assert_eq!((held.state, held.attempts), (JobState::Ready, 0));

    manual.advance(Duration::from_millis(1));
    let second = b.reserve(&request("w", 10)).await.expect("reserve");
    assert_eq!(second.len(), 1, "a's window opened");
    let t1 = b.clock().now();
    assert_eq!(
        logs(&mut conn, &schema).await,
        [("a".to_owned(), t1.as_millis())],
        "the old log was forgotten and a new one begun"
    );

    manual.advance(ten);
    b.push(vec![grouped("b", b.clock().now())])
        .await
        .expect("push");
    assert_eq!(
        b.reserve(&request("w", 10)).await.expect("reserve").len(),
        1
    );
    let t2 = b.clock().now();
    assert_eq!(
        logs(&mut conn, &schema).await,
        [("b".to_owned(), t2.as_millis())],
        "a's log left the window and was deleted by the reserve"
    );

    b.set_queue_limits("q", QueueLimits::default().with_group_concurrency(1))
        .await
        .expect("set limits");
    assert!(
        logs(&mut conn, &schema).await.is_empty(),
        "limits without a group rate drop the logs"
    );
}

/// A schema left by the previous release (version 4), with limits and grouped jobs, is
/// migrated to version 5 by the next backend that connects: its limits read back as they
/// were, and a group rate can then be set and holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_4_schema_migrates_and_takes_a_group_rate() {
    let schema = support::unique_schema("gratemig");
    let mut conn = connection().await;
    support::schema_at(&mut conn, &schema, 4).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO \"{schema}\".jobs (name, queue, payload, state, priority, run_at, \
           max_attempts, created_at, grp) VALUES \
           ('x', 'q', '{{}}', 'ready', 0, 0, 3, 0, 'x'), \
           ('x', 'q', '{{}}', 'ready', 0, 0, 3, 0, 'x'), \
           ('y', 'q', '{{}}', 'ready', 0, 0, 3, 0, 'y'); \
         INSERT INTO \"{schema}\".queue_limits (name, group_concurrency) VALUES ('q', 2)"
    )))
    .execute(&mut conn)
    .await
    .expect("version 4 rows");
    let (clock, _manual) = Clock::manual();
    let b = support::backend_on(&schema, Some(clock)).await;
    let version: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT value FROM \"{schema}\".meta WHERE key = 'schema_version'"
    )))
    .fetch_one(&mut conn)
    .await
    .expect("version");
    assert_eq!(version, kosh_jobs_postgres::SCHEMA_VERSION);
    let flows = b.queue_flows().await.expect("flows");
    let kept = QueueLimits::default().with_group_concurrency(2);
    assert_eq!(flows[0].limits, kept);

    let limits = kept.with_group_rate(RateLimit::new(1, Duration::from_secs(60)));
    b.set_queue_limits("q", limits).await.expect("set limits");
    let mut names: Vec<String> = b
        .reserve(&request("w", 10))
        .await
        .expect("reserve")
        .into_iter()
        .map(|j| j.name)
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["x", "y"], "one start per group in the window");
    assert_eq!(b.queue_flows().await.expect("flows")[0].limits, limits);
}
