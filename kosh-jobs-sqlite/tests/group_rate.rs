//! The group rate limit on SQLite beyond the conformance suite: two backends on one file
//! share each group's window, a group's log outlives its jobs, the log holds only the
//! window's starts, limits without a group rate drop it, and `queue_groups` lists every kind
//! of group across pages.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kosh_jobs_core::admin::Total;
use kosh_jobs_core::limits::{GroupFlow, GroupQuery};
use kosh_jobs_core::{
    Backend, Clock, Finish, FinishResult, JobState, LeasedJob, ListQuery, ManualClock, NewJob,
    Outcome, QueueFlow, QueueLimits, RateLimit, ReserveRequest,
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

    fn path(&self) -> PathBuf {
        self.dir.path().join("jobs.db")
    }

    /// The rows of the group start log, read from the file: (queue, group, at).
    fn log(&self) -> Vec<(String, String, i64)> {
        let conn = rusqlite::Connection::open(self.path()).expect("open the file");
        let mut stmt = conn
            .prepare("SELECT queue, grp, at FROM kosh_group_starts ORDER BY queue, grp, at")
            .expect("prepare");
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query");
        rows.collect::<Result<_, _>>().expect("rows")
    }

    async fn push(&self, queue: &str, group: &str, n: usize) {
        let now = self.backend.clock().now();
        let jobs = (0..n).map(|_| grouped(queue, group, now)).collect();
        self.backend.push(jobs).await.expect("push");
    }
}

async fn open(path: &Path, clock: Clock) -> SqliteBackend {
    let opts = SqliteOptions::builder(path)
        .clock(clock)
        .build()
        .expect("options");
    SqliteBackend::connect_with(opts).await.expect("open")
}

async fn reserve(b: &SqliteBackend, queue: &str, max: usize) -> Vec<LeasedJob> {
    let req = ReserveRequest {
        queues: vec![queue.to_owned()],
        worker: "test".into(),
        max,
        lease: Duration::from_secs(30),
    };
    b.reserve(&req).await.expect("reserve")
}

async fn complete(b: &SqliteBackend, jobs: &[LeasedJob]) {
    let done = jobs
        .iter()
        .map(|j| Finish {
            lease: j.lease,
            outcome: Outcome::Completed { result: None },
        })
        .collect();
    let r = b.finish(done).await.expect("finish");
    assert!(r.iter().all(|r| *r == FinishResult::Applied), "{r:?}");
}

/// The job's name is its group: a leased job says which group it came from.
fn grouped(queue: &str, group: &str, at: kosh_jobs_core::Timestamp) -> NewJob {
    let mut j = NewJob::new(group, queue, "{}", at);
    j.group = Some(group.to_owned());
    j
}

async fn flow(b: &SqliteBackend, queue: &str) -> QueueFlow {
    let flows = b.queue_flows().await.expect("flows");
    flows
        .into_iter()
        .find(|f| f.queue == queue)
        .unwrap_or_else(|| panic!("queue {queue} is listed with its limits"))
}

/// Two backends on one file (as two processes) take turns reserving one job each: together
/// they start no more of a group than its rate allows, because the window is in the file.
#[tokio::test]
async fn two_backends_share_each_groups_window() {
    let f = Fixture::new().await;
    let one = &f.backend;
    let two = open(&f.path(), one.clock().clone()).await;
    let limits = QueueLimits::default().with_group_rate(RateLimit::new(3, Duration::from_secs(10)));
    one.set_queue_limits("q", limits).await.expect("limits");
    f.push("q", "a", 10).await;
    f.push("q", "b", 2).await;

    let mut names = Vec::new();
    for i in 0..10 {
        let b = if i % 2 == 0 { one } else { &two };
        let got = reserve(b, "q", 1).await;
        complete(b, &got).await;
        names.extend(got.into_iter().map(|j| j.name));
    }
    names.sort_unstable();
    assert_eq!(
        names,
        ["a", "a", "a", "b", "b"],
        "three of a in its window, both of b"
    );
    let f2 = flow(&two, "q").await;
    assert_eq!(f2.limits, limits, "the other backend reads the group rate");
    assert_eq!(
        (f2.groups_running, f2.groups_at_limit),
        (0, 1),
        "a's window is full; b's is not (two starts of three), though b has no job left"
    );

    f.time.advance(Duration::from_secs(10));
    let got = reserve(&two, "q", 10).await;
    assert_eq!(
        got.len(),
        3,
        "a's window opened: three more, whoever reserves"
    );
    assert!(
        reserve(one, "q", 10).await.is_empty(),
        "and a's window is full again"
    );
}

/// A group whose last job finished keeps its log: a new job of it inside the window waits,
/// ready with no attempt counted, until the window opens. The log holds only the starts of
/// the window however many windows pass, and limits without a group rate delete it.
#[tokio::test]
async fn a_groups_log_outlives_its_jobs_and_stays_small() {
    let f = Fixture::new().await;
    let b = &f.backend;
    let per = Duration::from_secs(60);
    let limits = QueueLimits::default().with_group_rate(RateLimit::new(1, per));
    b.set_queue_limits("q", limits).await.expect("limits");
    f.push("q", "a", 1).await;
    let got = reserve(b, "q", 10).await;
    assert_eq!(got.len(), 1);
    complete(b, &got).await;
    assert!(
        reserve(b, "q", 10).await.is_empty(),
        "group a has no job left"
    );
    assert_eq!(
        flow(b, "q").await.groups_at_limit,
        1,
        "a has no job, but its window is full"
    );

    f.time.advance(Duration::from_secs(30));
    f.push("q", "a", 1).await;
    assert!(
        reserve(b, "q", 10).await.is_empty(),
        "a new job of a, 30 s into a's window: held back"
    );
    let held = b
        .list(&ListQuery::new(JobState::Ready))
        .await
        .expect("list");
    assert_eq!(held.jobs.len(), 1, "the held-back job stays ready");
    assert_eq!(held.jobs[0].attempts, 0, "no attempt counted");
    f.time.advance(Duration::from_secs(30));
    let got = reserve(b, "q", 10).await;
    assert_eq!(got.len(), 1, "the window opened");
    complete(b, &got).await;

    // One start per window, each of a new group: the log keeps only the window's starts.
    for i in 0..20 {
        f.time.advance(per);
        f.push("q", &format!("g{i}"), 1).await;
        let got = reserve(b, "q", 10).await;
        assert_eq!(got.len(), 1, "window {i}");
        complete(b, &got).await;
        let log = f.log();
        assert_eq!(
            log.len(),
            1,
            "window {i}: the starts that left the window are gone: {log:?}"
        );
        assert_eq!(log[0].1, format!("g{i}"));
    }

    // Limits without a group rate drop the log: a group may start at once again.
    f.push("q", "g19", 1).await;
    assert!(reserve(b, "q", 10).await.is_empty(), "g19's window is full");
    b.set_queue_limits("q", QueueLimits::default().with_group_concurrency(1))
        .await
        .expect("limits without a group rate");
    assert!(f.log().is_empty(), "the log is dropped: {:?}", f.log());
    assert_eq!(reserve(b, "q", 10).await.len(), 1, "g19 starts again");
    assert!(f.log().is_empty(), "and no start is logged");
}

/// The groups of `queue`, all pages of `limit`, and the `next` of each page.
async fn all_groups(
    b: &SqliteBackend,
    queue: &str,
    limit: usize,
) -> (Vec<GroupFlow>, Vec<Option<String>>) {
    let mut groups = Vec::new();
    let mut nexts = Vec::new();
    let mut q = GroupQuery::new(queue).limit(limit);
    loop {
        let page = b.queue_groups(&q).await.expect("queue_groups");
        assert!(page.groups.len() <= limit, "a page of at most {limit}");
        groups.extend(page.groups);
        nexts.push(page.next.clone());
        match page.next {
            Some(next) => q = GroupQuery::new(queue).limit(limit).after(next),
            None => return (groups, nexts),
        }
    }
}

/// `queue_groups` merges the four ways a group is listed, by key as bytes, across pages of
/// any size: a running job only, a start in the window only, ready jobs, and a scheduled job
/// that is due but not yet promoted (no reserve ran since); a group with only a job due later
/// is not listed. Once the window has passed, its starts (still in the log: no reserve pruned
/// them) no longer list a group.
#[tokio::test]
async fn every_kind_of_group_is_listed_by_key_across_pages() {
    let f = Fixture::new().await;
    let b = &f.backend;
    let per = Duration::from_secs(10);
    let limits = QueueLimits::default().with_group_rate(RateLimit::new(1, per));
    b.set_queue_limits("q", limits).await.expect("limits");
    let t0 = b.clock().now();
    f.push("q", "Run", 1).await;
    f.push("q", "started", 1).await;
    let mut due = grouped("q", "due", t0);
    due.run_at = t0 + Duration::from_secs(5);
    let mut later = grouped("q", "later", t0);
    later.run_at = t0 + Duration::from_secs(3600);
    b.push(vec![due, later]).await.expect("push");
    let got = reserve(b, "q", 10).await;
    assert_eq!(got.len(), 2, "Run's and started's jobs: {got:?}");
    complete(
        b,
        &got.into_iter()
            .filter(|j| j.name == "started")
            .collect::<Vec<_>>(),
    )
    .await;
    f.push("q", "ready", 2).await;
    f.time.advance(Duration::from_secs(5));

    let exact = |count| Total { count, exact: true };
    let full = |g: &str, ready, running| GroupFlow {
        group: g.to_owned(),
        ready: exact(ready),
        running,
        starts_in_window: 1,
        at_limit: true,
        next_start_at: Some(t0 + per),
    };
    let open = |g: &str, ready| GroupFlow {
        group: g.to_owned(),
        ready: exact(ready),
        running: 0,
        starts_in_window: 0,
        at_limit: false,
        next_start_at: None,
    };
    let want = vec![
        full("Run", 0, 1),
        open("due", 1),
        open("ready", 2),
        full("started", 0, 0),
    ];
    for limit in [1, 2, 3, 4, 100] {
        let (groups, nexts) = all_groups(b, "q", limit).await;
        assert_eq!(groups, want, "pages of {limit}");
        let keys: Vec<Option<String>> = want
            .chunks(limit)
            .map(|c| c.last().map(|g| g.group.clone()))
            .collect();
        let mut expected: Vec<Option<String>> = keys;
        if let Some(last) = expected.last_mut() {
            *last = None;
        }
        assert_eq!(
            nexts, expected,
            "pages of {limit}: next is the last key, None at the end"
        );
    }
    let rest = b
        .queue_groups(&GroupQuery::new("q").after("e"))
        .await
        .expect("queue_groups");
    let keys: Vec<&str> = rest.groups.iter().map(|g| g.group.as_str()).collect();
    assert_eq!(keys, ["ready", "started"], "after a key that is no group");

    f.time.advance(per);
    assert_eq!(f.log().len(), 2, "the old starts are still logged");
    let (groups, _) = all_groups(b, "q", 100).await;
    let got: Vec<(&str, u64, bool)> = groups
        .iter()
        .map(|g| (g.group.as_str(), g.starts_in_window, g.at_limit))
        .collect();
    assert_eq!(
        got,
        [("Run", 0, false), ("due", 0, false), ("ready", 0, false)],
        "the window passed: started is gone, no start counts"
    );
}
