//! Groups and holds on SQLite beyond the conformance suite: every way into `ready` gives a
//! group its turn row, the turn rows go away again (and with them the slow path), the admin
//! readers see grouped jobs, a hold outlives removed limits, a schema-6 file migrates
//! with its jobs in their order, and a big group's ready jobs are counted up to the bound.

use std::path::Path;
use std::time::Duration;

use kosh_jobs_core::admin::{AdminAction, JobFilter, SearchQuery, Total, TOTAL_BOUND};
use kosh_jobs_core::limits::{GroupPage, GroupQuery};
use kosh_jobs_core::{
    Backend, Clock, Finish, JobId, JobState, LeasedJob, ListQuery, ManualClock, NewJob, Outcome,
    QueueLimits, ReserveRequest, Timestamp,
};
use kosh_jobs_sqlite::{SqliteBackend, SqliteOptions};
use tempfile::TempDir;

struct Fixture {
    backend: SqliteBackend,
    time: ManualClock,
    dir: TempDir,
}

impl Fixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (clock, time) = Clock::manual();
        let backend = open(&dir.path().join("jobs.db"), clock).await;
        Fixture { backend, time, dir }
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("jobs.db")
    }

    /// The rows of `kosh_turns`, read from the file: (queue, lane key, turn).
    fn turns(&self) -> Vec<(String, String, i64)> {
        let conn = rusqlite::Connection::open(self.path()).expect("open the file");
        let mut stmt = conn
            .prepare("SELECT queue, grp, turn FROM kosh_turns ORDER BY queue, turn, grp")
            .expect("prepare");
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query");
        rows.collect::<Result<_, _>>().expect("rows")
    }

    async fn reserve(&self, queue: &str, max: usize) -> Vec<LeasedJob> {
        self.backend
            .reserve(&req(queue, max))
            .await
            .expect("reserve")
    }

    /// Reserves exactly job `id`, alone.
    async fn reserve_exactly(&self, queue: &str, id: JobId, what: &str) -> LeasedJob {
        let got = self.reserve(queue, 10).await;
        assert_eq!(
            got.iter().map(LeasedJob::id).collect::<Vec<_>>(),
            [id],
            "{what}"
        );
        got.into_iter().next().expect("one job")
    }

    async fn finish(&self, lease: kosh_jobs_core::Lease, outcome: Outcome) {
        let r = self
            .backend
            .finish(vec![Finish { lease, outcome }])
            .await
            .expect("finish");
        assert_eq!(r, [kosh_jobs_core::FinishResult::Applied]);
    }
}

async fn open(path: &Path, clock: Clock) -> SqliteBackend {
    let opts = SqliteOptions::builder(path)
        .clock(clock)
        .build()
        .expect("options");
    SqliteBackend::connect_with(opts).await.expect("open")
}

fn req(queue: &str, max: usize) -> ReserveRequest {
    ReserveRequest {
        queues: vec![queue.to_owned()],
        worker: "test".into(),
        max,
        lease: Duration::from_secs(30),
    }
}

fn grouped(queue: &str, group: &str, at: Timestamp) -> NewJob {
    let mut j = NewJob::new(group, queue, "{}", at);
    j.group = Some(group.to_owned());
    j
}

/// A queue with one grouped job: after each way back into `ready` (the group's turn row
/// deleted in between, by a reserve that found the group empty), the next reserve leases it.
/// A missing turn row would hide the job from every reserve.
#[tokio::test]
async fn every_way_into_ready_gives_the_group_its_turn() {
    let f = Fixture::new().await;
    let b = &f.backend;
    let now = b.clock().now();
    let id = b.push(vec![grouped("q", "g", now)]).await.expect("push")[0].id;
    // Two backends on one file: the second finishes leases the first took, so it reads the
    // job's queue and group from the row rather than from its own memory of the lease.
    let other = open(&f.path(), b.clock().clone()).await;

    let emptied = |what: &'static str| {
        let f = &f;
        async move {
            assert!(f.reserve("q", 10).await.is_empty(), "{what}: nothing ready");
            assert!(
                f.turns().is_empty(),
                "{what}: the empty group lost its turn row: {:?}",
                f.turns()
            );
        }
    };

    let l = f.reserve_exactly("q", id, "pushed").await;
    emptied("after the push").await;

    f.finish(l.lease, Outcome::retry("boom", b.clock().now()))
        .await;
    let l = f.reserve_exactly("q", id, "retried at once").await;
    emptied("after the retry").await;

    other
        .finish(vec![Finish {
            lease: l.lease,
            outcome: Outcome::retry("boom", b.clock().now()),
        }])
        .await
        .expect("finish from another backend");
    let l = f
        .reserve_exactly("q", id, "retried by another backend")
        .await;
    emptied("after the other backend's retry").await;

    f.finish(
        l.lease,
        Outcome::Snooze {
            until: b.clock().now(),
        },
    )
    .await;
    let l = f.reserve_exactly("q", id, "snoozed until now").await;
    emptied("after the snooze").await;

    b.release(&[l.lease]).await.expect("release");
    // Leased and left to expire.
    f.reserve_exactly("q", id, "released").await;
    emptied("after the release").await;

    f.time.advance(Duration::from_secs(31));
    assert_eq!(b.recover_expired().await.expect("recover"), 1);
    let l = f.reserve_exactly("q", id, "recovered").await;
    emptied("after the recovery").await;

    f.finish(
        l.lease,
        Outcome::retry("later", b.clock().now() + Duration::from_secs(10)),
    )
    .await;
    assert!(f.reserve("q", 10).await.is_empty(), "retried later");
    f.time.advance(Duration::from_secs(10));
    let l = f.reserve_exactly("q", id, "promoted when due").await;
    emptied("after the promotion").await;

    f.finish(l.lease, Outcome::failed("for good")).await;
    assert_eq!(
        b.retry(id).await.expect("retry"),
        kosh_jobs_core::RetryOutcome::Retried
    );
    let l = f.reserve_exactly("q", id, "retried by hand").await;
    emptied("after the retry by hand").await;

    f.finish(l.lease, Outcome::failed("again")).await;
    b.apply(AdminAction::Retry, &[id], &[])
        .await
        .expect("bulk retry");
    let l = f.reserve_exactly("q", id, "retried in bulk").await;
    emptied("after the bulk retry").await;
    f.finish(l.lease, Outcome::Completed { result: None }).await;

    let later = b
        .push(vec![grouped(
            "q",
            "g",
            b.clock().now() + Duration::from_secs(3600),
        )])
        .await
        .expect("push")[0]
        .id;
    assert!(f.reserve("q", 10).await.is_empty(), "scheduled");
    b.apply(AdminAction::Promote, &[later], &[])
        .await
        .expect("promote");
    f.reserve_exactly("q", later, "promoted by hand").await;
    emptied("after the promotion by hand").await;
    other.close().await;
}

/// A queue whose jobs have no group never gets a turn row, so it reserves as before; once a
/// queue's groups are gone, so is the row of its jobs without a group.
#[tokio::test]
async fn turn_rows_exist_only_while_groups_wait() {
    let f = Fixture::new().await;
    let b = &f.backend;
    let now = b.clock().now();
    b.push(
        (0..3)
            .map(|i| NewJob::new("n", "plain", format!("{i}"), now))
            .collect(),
    )
    .await
    .expect("push");
    assert_eq!(f.reserve("plain", 2).await.len(), 2);
    assert!(f.turns().is_empty(), "no groups, no turns");

    b.push(vec![
        grouped("mixed", "a", now),
        grouped("mixed", "a", now),
        NewJob::new("none", "mixed", "{}", now),
        NewJob::new("none", "mixed", "{}", now),
    ])
    .await
    .expect("push");
    let names: Vec<String> = f
        .reserve("mixed", 3)
        .await
        .into_iter()
        .map(|j| j.name)
        .collect();
    assert_eq!(names, ["none", "a", "none"], "the lanes alternate");
    assert_eq!(
        f.turns(),
        [
            ("mixed".to_owned(), "a".to_owned(), 2),
            ("mixed".to_owned(), String::new(), 3)
        ],
        "each lane served went to the back"
    );
    let last = f.reserve("mixed", 3).await;
    assert_eq!(last.len(), 1, "a's second job");
    assert!(f.reserve("mixed", 3).await.is_empty());
    assert!(f.turns().is_empty(), "drained: {:?}", f.turns());

    // The group leaves first: the row of the jobs without a group goes with the next reserve.
    b.push(vec![
        grouped("mixed", "a", now),
        NewJob::new("none", "mixed", "{}", now),
        NewJob::new("none", "mixed", "{}", now),
    ])
    .await
    .expect("push");
    assert_eq!(f.reserve("mixed", 2).await.len(), 2);
    assert_eq!(f.reserve("mixed", 1).await[0].name, "none");
    b.push(vec![NewJob::new("none", "mixed", "{}", now)])
        .await
        .expect("push");
    assert_eq!(f.reserve("mixed", 1).await.len(), 1);
    assert_eq!(
        f.turns(),
        [("mixed".to_owned(), String::new(), 4)],
        "group a found empty and deleted"
    );
    assert!(f.reserve("mixed", 1).await.is_empty());
    assert!(f.turns().is_empty(), "no group left: {:?}", f.turns());
}

/// The readers of ready jobs (list, search by state and queue, counts and the oldest ready
/// job) see grouped jobs as they see the others.
#[tokio::test]
async fn readers_see_grouped_ready_jobs() {
    let f = Fixture::new().await;
    let b = &f.backend;
    let t0 = b.clock().now();
    let mut jobs = Vec::new();
    for i in 0..12 {
        let at = t0 + Duration::from_millis(i);
        let mut j = match i % 3 {
            0 => grouped("q", "a", at),
            1 => NewJob::new("none", "q", "{}", at),
            _ => grouped("q", "b", at),
        };
        j.priority = (i % 2) as i32;
        jobs.push(j);
    }
    // The oldest job (the first) is grouped.
    f.time.advance(Duration::from_millis(20));
    let ids: Vec<JobId> = b
        .push(jobs)
        .await
        .expect("push")
        .iter()
        .map(|e| e.id)
        .collect();

    let listed: Vec<JobId> = b
        .list(&ListQuery::new(JobState::Ready))
        .await
        .expect("list")
        .jobs
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(listed, ids, "list");

    let filter = JobFilter::new().state(JobState::Ready).queue("q");
    let mut paged = Vec::new();
    let mut q = SearchQuery::new(filter.clone()).limit(5).with_total(true);
    loop {
        let page = b.search(&q).await.expect("search");
        if let Some(total) = page.total {
            assert_eq!((total.count, total.exact), (12, true), "total");
        }
        paged.extend(page.jobs.iter().map(|j| j.id));
        match page.next {
            Some(next) => q = SearchQuery::new(filter.clone()).limit(5).after(next),
            None => break,
        }
    }
    assert_eq!(paged, ids, "search by state and queue, by pages");
    let newest: Vec<JobId> = b
        .search(&SearchQuery::new(filter).order(kosh_jobs_core::admin::Order::NewestFirst))
        .await
        .expect("search")
        .jobs
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(newest, ids.iter().rev().copied().collect::<Vec<_>>());

    let c = b.counts().await.expect("counts");
    let c = c.iter().find(|c| c.queue == "q").expect("queue q counted");
    assert_eq!(c.ready, 12);
    assert_eq!(
        c.oldest_ready_at,
        Some(t0),
        "the oldest ready job is a grouped one"
    );

    // A queue with only grouped jobs ready is work.
    b.push(vec![grouped("only", "a", b.clock().now())])
        .await
        .expect("push");
    tokio::time::timeout(
        Duration::from_secs(5),
        b.wait_for_work(
            &["only".to_owned()],
            b.clock().now() + Duration::from_secs(3600),
        ),
    )
    .await
    .expect("a grouped ready job ends the wait at once")
    .expect("wait");
}

/// Removing a queue's limits keeps a hold in force; once the hold has ended, the queue is
/// listed no more and its row goes with the next reserve.
#[tokio::test]
async fn a_hold_outlives_removed_limits() {
    let f = Fixture::new().await;
    let b = &f.backend;
    let now = b.clock().now();
    b.push(vec![NewJob::new("n", "api", "{}", now)])
        .await
        .expect("push");
    b.set_queue_limits("api", QueueLimits::default().with_group_concurrency(2))
        .await
        .expect("limits");
    let until = now + Duration::from_secs(60);
    b.hold_queue("api", until).await.expect("hold");
    b.set_queue_limits("api", QueueLimits::NONE)
        .await
        .expect("no limits");
    let flows = b.queue_flows().await.expect("flows");
    assert_eq!(flows.len(), 1, "{flows:?}");
    assert_eq!(
        (flows[0].held_until, flows[0].limits),
        (Some(until), QueueLimits::NONE)
    );
    assert!(f.reserve("api", 1).await.is_empty(), "held");

    f.time.advance(Duration::from_secs(60));
    assert!(b.queue_flows().await.expect("flows").is_empty());
    assert_eq!(f.reserve("api", 1).await.len(), 1, "the hold ended");
    let conn = rusqlite::Connection::open(f.path()).expect("open the file");
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM kosh_limits", [], |r| r.get(0))
        .expect("count");
    assert_eq!(rows, 0, "an ended hold's row is deleted");
}

/// A file written at schema version 6 migrates to 7: its ready jobs keep their order
/// (priority, then id), its other jobs their state, and groups work on it at once.
#[tokio::test]
async fn a_schema_6_file_migrates_and_keeps_its_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("v6.db");
    {
        let mut conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute_batch("PRAGMA journal_mode = WAL;")
            .expect("wal");
        let tx = conn.transaction().expect("transaction");
        for sql in [
            include_str!("../migrations/0001_initial.sql"),
            include_str!("../migrations/0002_admin.sql"),
            include_str!("../migrations/0003_schedules.sql"),
            include_str!("../migrations/0004_counts.sql"),
            include_str!("../migrations/0005_start_ack.sql"),
            include_str!("../migrations/0006_flow.sql"),
        ] {
            tx.execute_batch(sql).expect("an old migration");
        }
        tx.execute_batch(
            "PRAGMA user_version = 6; PRAGMA application_id = 1263489864;
             INSERT INTO kosh_limits (queue, concurrency) VALUES ('q', 10);",
        )
        .expect("version");
        // Ready jobs 1..=6 with priorities 0, 5, 0, 5, 1, 0; job 7 scheduled far ahead.
        for (id, priority) in [(1, 0), (2, 5), (3, 0), (4, 5), (5, 1), (6, 0)] {
            tx.execute(
                "INSERT INTO kosh_jobs (id, name, queue, payload, state, priority, run_at, \
                 max_attempts, created_at) VALUES (?1, 'old', 'q', '{}', 'ready', ?2, 0, 3, 0)",
                [id, priority],
            )
            .expect("insert");
        }
        tx.execute(
            "INSERT INTO kosh_jobs (id, name, queue, payload, state, priority, run_at, \
             max_attempts, created_at) VALUES (7, 'old', 'q', '{}', 'scheduled', 0, \
             9000000000000, 3, 0)",
            [],
        )
        .expect("insert");
        tx.execute_batch(
            "INSERT INTO kosh_counts (queue, state, n) VALUES ('q', 'ready', 6), \
             ('q', 'scheduled', 1);",
        )
        .expect("counts");
        tx.commit().expect("commit");
    }
    let (clock, _time) = Clock::manual();
    let b = open(&path, clock).await;
    let version: i64 = rusqlite::Connection::open(&path)
        .expect("open")
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(
        version,
        kosh_jobs_sqlite::SCHEMA_VERSION,
        "on to the newest"
    );
    let flows = b.queue_flows().await.expect("flows");
    assert_eq!(flows[0].limits, QueueLimits::default().with_concurrency(10));

    let now = b.clock().now();
    b.push(vec![grouped("q", "g", now)]).await.expect("push");
    let order: Vec<u64> = b
        .reserve(&req("q", 3))
        .await
        .expect("reserve")
        .iter()
        .map(|j| j.id().get())
        .collect();
    assert_eq!(
        order,
        [2, 8, 4],
        "the old lane and the new group take turns"
    );
    let order: Vec<u64> = b
        .reserve(&req("q", 10))
        .await
        .expect("reserve")
        .iter()
        .map(|j| j.id().get())
        .collect();
    assert_eq!(order, [5, 1, 3, 6], "then the old jobs in their order");
    let job7 = b.get(JobId::new(7)).await.expect("get").expect("job 7");
    assert_eq!((job7.state, job7.group), (JobState::Scheduled, None));
    b.close().await;
}

/// A group's ready jobs are counted up to `TOTAL_BOUND`: past it, due scheduled jobs
/// included, the count is the bound and not exact, and `queue_flows` counts at most the
/// bound for the group among the jobs held by their group's limit.
#[tokio::test]
async fn a_big_group_is_counted_up_to_the_bound() {
    let f = Fixture::new().await;
    let b = &f.backend;
    b.set_queue_limits("q", QueueLimits::default().with_group_concurrency(1))
        .await
        .expect("limits");
    let now = b.clock().now();
    let bound = usize::try_from(TOTAL_BOUND).expect("a small bound");
    b.push((0..bound).map(|_| grouped("q", "big", now)).collect())
        .await
        .expect("push");
    let ready_of = |page: GroupPage| {
        page.groups
            .into_iter()
            .map(|g| (g.group, g.ready, g.running, g.at_limit))
            .collect::<Vec<_>>()
    };
    let exact = |count| Total { count, exact: true };
    let page = b
        .queue_groups(&GroupQuery::new("q"))
        .await
        .expect("queue_groups");
    assert_eq!(
        ready_of(page),
        [("big".to_owned(), exact(TOTAL_BOUND), 0, false)],
        "the bound itself is exact"
    );

    assert_eq!(f.reserve("q", 10).await.len(), 1, "one slot for the group");
    let mut later: Vec<NewJob> = (0..2).map(|_| grouped("q", "big", now)).collect();
    for j in &mut later {
        j.run_at = now + Duration::from_secs(1);
    }
    b.push(later).await.expect("push");
    f.time.advance(Duration::from_secs(1));
    let page = b
        .queue_groups(&GroupQuery::new("q"))
        .await
        .expect("queue_groups");
    let over = Total {
        count: TOTAL_BOUND,
        exact: false,
    };
    assert_eq!(
        ready_of(page),
        [("big".to_owned(), over, 1, true)],
        "bound - 1 ready and 2 due: past the bound"
    );
    let flow = b
        .queue_flows()
        .await
        .expect("flows")
        .into_iter()
        .find(|f| f.queue == "q")
        .expect("q has limits");
    assert_eq!(
        (flow.groups_at_limit, flow.held_in_groups),
        (1, TOTAL_BOUND),
        "the group at its limit holds back its jobs, counted up to the bound"
    );
}
