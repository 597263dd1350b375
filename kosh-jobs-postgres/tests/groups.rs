//! Groups and holds across processes: two backends (two pools) on one schema keep each group
//! under its concurrency limit, share holds, and a schema of the previous release migrates
//! with its jobs in their order.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kosh_jobs_core::admin::Total;
use kosh_jobs_core::limits::{GroupQuery, QueueLimits, RateLimit};
use kosh_jobs_core::{
    Backend, Clock, Finish, JobId, JobState, LeasedJob, NewJob, Outcome, ReserveRequest,
};
use kosh_jobs_postgres::{PostgresBackend, PostgresOptions};
use sqlx::{Connection, PgConnection};

async fn connection() -> PgConnection {
    PgConnection::connect(&support::shared_url())
        .await
        .expect("connect")
}

fn request(queue: &str, worker: &str, max: usize) -> ReserveRequest {
    ReserveRequest {
        queues: vec![queue.to_owned()],
        worker: worker.to_owned(),
        max,
        lease: Duration::from_secs(60),
    }
}

fn grouped(queue: &str, group: &str, now: kosh_jobs_core::Timestamp) -> NewJob {
    let mut j = NewJob::new(group, queue, "{}", now);
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

/// The most running jobs any group of `queue` has, as committed.
async fn most_running_in_a_group(conn: &mut PgConnection, schema: &str, queue: &str) -> i64 {
    let n: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT max(n) FROM (SELECT count(*) AS n FROM \"{schema}\".jobs \
         WHERE state = 'running' AND queue = $1 AND grp IS NOT NULL GROUP BY grp) g"
    )))
    .bind(queue)
    .fetch_one(conn)
    .await
    .expect("running per group");
    n.unwrap_or(0)
}

const GROUPS: usize = 5;
const PER_GROUP: usize = 12;

/// Two reservers, each on its own backend (its own pool, as two processes would be), take
/// batches of up to 3 from one queue whose groups are limited to one running job each: no
/// group ever has two jobs running, and every job runs once.
///
/// Neither check can give a false alarm: a reserver counts a job of a group from the moment
/// its reserve returned until just before its finish is sent (so the count never exceeds the
/// jobs really running), and after each reserve it reads the committed running jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_reservers_never_run_two_jobs_of_a_group() {
    let schema = support::unique_schema("grp2");
    let a = support::backend_on(&schema, None).await;
    let b = support::backend_on(&schema, None).await;
    a.set_queue_limits("imports", QueueLimits::default().with_group_concurrency(1))
        .await
        .expect("set limits");
    let now = b.clock().now();
    let jobs: Vec<NewJob> = (0..PER_GROUP)
        .flat_map(|_| (0..GROUPS).map(|g| grouped("imports", &format!("user-{g}"), now)))
        .collect();
    b.push(jobs).await.expect("push");
    let total = GROUPS * PER_GROUP;

    let in_flight: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let finished = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (i, backend) in [a.clone(), b.clone()].into_iter().enumerate() {
        let (in_flight, finished, schema) = (
            Arc::clone(&in_flight),
            Arc::clone(&finished),
            schema.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut conn = connection().await;
            let worker = format!("w{i}");
            let queues = vec!["imports".to_owned()];
            let mut ran = 0usize;
            while finished.load(Ordering::SeqCst) < total {
                let got = backend
                    .reserve(&request("imports", &worker, 3))
                    .await
                    .expect("reserve");
                if got.is_empty() {
                    let until = backend.clock().now() + Duration::from_secs(1);
                    backend.wait_for_work(&queues, until).await.expect("wait");
                    continue;
                }
                {
                    let mut map = in_flight.lock().expect("in flight");
                    for j in &got {
                        let n = map.entry(j.name.clone()).or_default();
                        *n += 1;
                        assert!(*n <= 1, "group {} has {n} jobs running at once", j.name);
                    }
                }
                let most = most_running_in_a_group(&mut conn, &schema, "imports").await;
                assert!(most <= 1, "{most} running jobs of one group committed");
                tokio::task::yield_now().await;
                {
                    let mut map = in_flight.lock().expect("in flight");
                    for j in &got {
                        if let Some(n) = map.get_mut(&j.name) {
                            *n -= 1;
                        }
                    }
                }
                ran += got.len();
                finish_all(&backend, &got).await;
                finished.fetch_add(got.len(), Ordering::SeqCst);
            }
            ran
        }));
    }
    let mut ran = 0;
    for t in tasks {
        ran += tokio::time::timeout(Duration::from_secs(120), t)
            .await
            .expect("the reservers drain the queue")
            .expect("reserver");
    }
    assert_eq!(ran, total, "every job ran exactly once");
    let c = a
        .counts()
        .await
        .expect("counts")
        .into_iter()
        .find(|c| c.queue == "imports")
        .expect("queue counted");
    assert_eq!((c.completed, c.running, c.ready), (total as u64, 0, 0));
}

async fn turn_rows(conn: &mut PgConnection, schema: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM \"{schema}\".turns"
    )))
    .fetch_one(conn)
    .await
    .expect("turn rows")
}

/// A group's turn row goes once a reserve finds it without ready jobs, and the lane of the
/// jobs without a group goes with the last group: the queue is back on the plain claim, and
/// a group that comes back gets its turn again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_rows_go_when_the_groups_are_drained() {
    let schema = support::unique_schema("grpgone");
    let b = support::backend_on(&schema, None).await;
    let mut conn = connection().await;
    let now = b.clock().now();
    b.push(vec![
        grouped("q", "a", now),
        NewJob::new("n", "q", "{}", now),
    ])
    .await
    .expect("push");
    assert_eq!(turn_rows(&mut conn, &schema).await, 1, "group a has a row");
    let got = b.reserve(&request("q", "w", 10)).await.expect("reserve");
    assert_eq!(got.len(), 2);
    assert!(b
        .reserve(&request("q", "w", 10))
        .await
        .expect("reserve")
        .is_empty());
    assert_eq!(
        turn_rows(&mut conn, &schema).await,
        0,
        "no row left once a reserve found group a empty"
    );
    // A plain job now goes through the plain claim; a grouped one brings the turns back.
    b.push(vec![
        NewJob::new("n", "q", "{}", now),
        grouped("q", "b", now),
    ])
    .await
    .expect("push");
    let got = b.reserve(&request("q", "w", 10)).await.expect("reserve");
    let mut names: Vec<&str> = got.iter().map(|j| j.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["b", "n"]);
}

/// Grouped jobs that were scheduled join the turns when they come due, and a hold set
/// through one backend holds back the other's reserves and shows in its flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_grouped_jobs_take_turns_and_holds_are_shared() {
    let schema = support::unique_schema("grpdue");
    let (clock, manual) = Clock::manual();
    let a = support::backend_on(&schema, Some(clock.clone())).await;
    let b = support::backend_on(&schema, Some(clock)).await;
    let now = a.clock().now();
    a.push((0..4).map(|_| grouped("q", "big", now)).collect())
        .await
        .expect("push");
    let later = now + Duration::from_secs(10);
    a.push(vec![grouped("q", "late", later)])
        .await
        .expect("push");
    let first = b.reserve(&request("q", "w", 1)).await.expect("reserve");
    assert_eq!(first[0].name, "big");
    manual.advance(Duration::from_secs(10));
    let next = b.reserve(&request("q", "w", 1)).await.expect("reserve");
    assert_eq!(next[0].name, "late", "the group that came due goes first");

    let until = a.clock().now() + Duration::from_secs(30);
    a.hold_queue("q", until).await.expect("hold");
    assert!(b
        .reserve(&request("q", "w", 10))
        .await
        .expect("reserve")
        .is_empty());
    let flows = b.queue_flows().await.expect("flows");
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].held_until, Some(until));
    assert_eq!(flows[0].running, 2);
    manual.advance(Duration::from_secs(30));
    assert_eq!(
        b.reserve(&request("q", "w", 10))
            .await
            .expect("reserve")
            .len(),
        3,
        "the hold ended"
    );
    assert!(b.queue_flows().await.expect("flows").is_empty());
}

/// A schema left by an older release (version 3) is migrated to the current version by the next
/// backend that connects: its ready jobs keep their order (priority, then id), its scheduled
/// job and its limits are kept, and groups work on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_3_schema_migrates_with_its_jobs_in_order() {
    let schema = support::unique_schema("grpmig");
    let mut conn = connection().await;
    support::schema_at(&mut conn, &schema, 3).await;
    // As version 3 stored them: priorities 0, 5, 0, 5, then one scheduled far ahead.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO \"{schema}\".jobs (name, queue, payload, state, priority, run_at, \
           max_attempts, created_at) VALUES \
           ('j1', 'q', '{{}}', 'ready', 0, 0, 3, 0), ('j2', 'q', '{{}}', 'ready', 5, 0, 3, 0), \
           ('j3', 'q', '{{}}', 'ready', 0, 0, 3, 0), ('j4', 'q', '{{}}', 'ready', 5, 0, 3, 0), \
           ('later', 'q', '{{}}', 'scheduled', 0, 9000000000000, 3, 0); \
         INSERT INTO \"{schema}\".queue_limits (name, concurrency) VALUES ('q', 10)"
    )))
    .execute(&mut conn)
    .await
    .expect("version 3 rows");
    let b = support::backend_on(&schema, None).await;
    let version: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT value FROM \"{schema}\".meta WHERE key = 'schema_version'"
    )))
    .fetch_one(&mut conn)
    .await
    .expect("version");
    assert_eq!(version, kosh_jobs_postgres::SCHEMA_VERSION);
    let flows = b.queue_flows().await.expect("flows");
    assert_eq!(flows[0].limits, QueueLimits::default().with_concurrency(10));
    let mut order = Vec::new();
    for _ in 0..4 {
        let got = b.reserve(&request("q", "w", 1)).await.expect("reserve");
        order.extend(got.iter().map(|j| j.name.clone()));
    }
    assert_eq!(order, ["j2", "j4", "j1", "j3"], "priority, then id");
    let c = b.counts().await.expect("counts");
    assert_eq!((c[0].running, c[0].scheduled), (4, 1));

    let now = b.clock().now();
    let ids = b
        .push(vec![grouped("q", "x", now), grouped("q", "x", now)])
        .await
        .expect("push");
    let job = b.get(ids[0].id).await.expect("get").expect("stored");
    assert_eq!(job.group.as_deref(), Some("x"));
    assert_eq!(job.state, JobState::Ready);
    let got: Vec<JobId> = b
        .reserve(&request("q", "w", 10))
        .await
        .expect("reserve")
        .iter()
        .map(|j| j.lease.id)
        .collect();
    assert_eq!(got, [ids[0].id, ids[1].id]);
}

/// A database of its own whose collation is ICU's English (which sorts "a" before "B", and
/// "Ä" before "b"), and a backend on it.
/// Each group of queue `q` with its ready count, from the first page.
async fn ready_by_group(b: &PostgresBackend) -> Vec<(String, Total)> {
    let page = b.queue_groups(&GroupQuery::new("q")).await.expect("groups");
    page.groups
        .into_iter()
        .map(|g| (g.group, g.ready))
        .collect()
}

/// `(key, ready)` pairs as the assertions write them.
fn pairs(got: &[(String, Total)]) -> Vec<(&str, Total)> {
    got.iter().map(|(g, t)| (g.as_str(), *t)).collect()
}

async fn backend_on_english_database(tag: &str, clock: Clock) -> PostgresBackend {
    let db = support::unique_schema(tag);
    let mut conn = connection().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE \"{db}\" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en'"
    )))
    .execute(&mut conn)
    .await
    .expect("an ICU database");
    let shared = support::shared_url();
    let (server, _) = shared.rsplit_once('/').expect("a database in the url");
    let url = format!("{server}/{db}");
    let mut on_db = PgConnection::connect(&url).await.expect("connect");
    let sorted: bool = sqlx::query_scalar("SELECT 'a'::text < 'B'::text AND 'Ä' < 'b'")
        .fetch_one(&mut on_db)
        .await
        .expect("compare");
    assert!(sorted, "the database sorts by its English collation");
    let options = PostgresOptions::from_url(&url)
        .expect("url")
        .schema("kosh".to_owned())
        .max_connections(2)
        .clock(clock);
    PostgresBackend::connect_with(options.build().expect("options"))
        .await
        .expect("connect")
}

/// In a database that sorts keys otherwise, `queue_groups` pages through the groups by key as
/// bytes, whether a group is there by a ready job, a running one, a delayed job that came due
/// or only a start in its rate window, and each page continues after the last key of the one
/// before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_are_paged_by_bytes_whatever_the_collation() {
    let (clock, manual) = Clock::manual();
    let b = backend_on_english_database("grpbytes", clock).await;
    let limits = QueueLimits::default()
        .with_group_concurrency(1)
        .with_group_rate(RateLimit::new(5, Duration::from_secs(60)));
    b.set_queue_limits("q", limits).await.expect("limits");
    let now = b.clock().now();
    // "gone" starts, finishes and leaves only its start in the window.
    b.push(vec![grouped("q", "gone", now)]).await.expect("push");
    let started = b.reserve(&request("q", "w", 10)).await.expect("reserve");
    finish_all(&b, &started).await;
    b.push(
        ["b", "Ä", "a", "B", "é"]
            .iter()
            .map(|g| grouped("q", g, now))
            .collect(),
    )
    .await
    .expect("push");
    // One job of each group starts, one more stays ready: each group at its limit.
    let running = b.reserve(&request("q", "w", 10)).await.expect("reserve");
    assert_eq!(running.len(), 5, "{running:?}");
    b.push(vec![grouped("q", "b", now)]).await.expect("push");
    b.push(vec![grouped("q", "C", now + Duration::from_secs(5))])
        .await
        .expect("push");
    manual.advance(Duration::from_secs(5));

    let mut pages = Vec::new();
    let mut query = GroupQuery::new("q").limit(2);
    loop {
        let page = b.queue_groups(&query).await.expect("groups");
        pages.push(
            page.groups
                .iter()
                .map(|g| (g.group.clone(), g.ready.count, g.running, g.at_limit))
                .collect::<Vec<_>>(),
        );
        match page.next {
            Some(next) => {
                assert_eq!(Some(&next), page.groups.last().map(|g| &g.group));
                query = query.after(next);
            }
            None => break,
        }
        assert!(pages.len() < 10, "the pages end: {pages:?}");
    }
    let s = |g: &str, ready, running, at_limit| (g.to_owned(), ready, running, at_limit);
    assert_eq!(
        pages,
        [
            vec![s("B", 0, 1, true), s("C", 1, 0, false)],
            vec![s("a", 0, 1, true), s("b", 1, 1, true)],
            vec![s("gone", 0, 0, false), s("Ä", 0, 1, true)],
            vec![s("é", 0, 1, true)],
        ],
        "by bytes: the due group C, the group with only a start, the others"
    );
    let flows = b.queue_flows().await.expect("flows");
    assert_eq!(
        (flows[0].groups_at_limit, flows[0].held_in_groups),
        (5, 1),
        "five groups at their concurrency limit; b's second job waits for its group"
    );
}

/// The delayed jobs that came due but no reserve made ready (the queue is paused here) are
/// read up to a bound by `queue_groups`: their group is listed, and past the bound its count
/// says it is not exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_jobs_past_the_bound_are_not_counted_exactly() {
    let schema = support::unique_schema("grpbound");
    let (clock, manual) = Clock::manual();
    let b = support::backend_on(&schema, Some(clock)).await;
    b.pause("q").await.expect("pause");
    let later = b.clock().now() + Duration::from_secs(1);
    b.push((0..999).map(|_| grouped("q", "g", later)).collect())
        .await
        .expect("push");
    manual.advance(Duration::from_secs(1));
    let got = ready_by_group(&b).await;
    let got = pairs(&got);
    assert_eq!(
        got,
        [(
            "g",
            Total {
                count: 999,
                exact: true
            }
        )],
        "every due job read"
    );
    let last = later + Duration::from_secs(1);
    b.push(vec![grouped("q", "g", last), grouped("q", "h", last)])
        .await
        .expect("push");
    manual.advance(Duration::from_secs(1));
    let got = ready_by_group(&b).await;
    let got = pairs(&got);
    assert_eq!(
        got,
        [(
            "g",
            Total {
                count: 1000,
                exact: false
            }
        )],
        "the oldest 1,000 due jobs read, the others not"
    );
}
