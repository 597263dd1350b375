//! The group rate limit on SQLite beyond the conformance suite: two backends on one file
//! share each group's window, a group's log outlives its jobs, the log holds only the
//! window's starts, and limits without a group rate drop it.

use std::path::{Path, PathBuf};
use std::time::Duration;

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
