//! Several real processes on one database file: a producer and two workers on 20,000 jobs;
//! a worker killed with SIGKILL mid-job; workers sharing a rate limit and a group limit.
//!
//! The child processes are this test binary itself, started again with
//! `KOSH_SQLITE_CHILD=<role>` to run [`child_process`] only. Workers are the real
//! [`kosh_jobs_core::Worker`] runtime; each handler appends its job's number to a log file of its
//! process (opened with `O_APPEND`), which is the side effect the tests count.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kosh_jobs_core::{
    Backend, Handler, Job, JobContext, JobError, JobState, ListQuery, NewJob, Timestamp, Worker,
};
use kosh_jobs_sqlite::{Retention, SqliteBackend, SqliteOptions};
use serde::{Deserialize, Serialize};

const ROLE: &str = "KOSH_SQLITE_CHILD";
const DB: &str = "KOSH_SQLITE_CHILD_DB";
const LOG: &str = "KOSH_SQLITE_CHILD_LOG";
const JOBS: &str = "KOSH_SQLITE_CHILD_JOBS";
const LEASE_MS: &str = "KOSH_SQLITE_CHILD_LEASE_MS";

#[derive(Serialize, Deserialize)]
struct Numbered {
    n: u64,
}

impl Job for Numbered {
    type Output = ();
    const NAME: &'static str = "numbered";
    const QUEUE: &'static str = "mp";
}

#[derive(Clone)]
struct ChildState {
    log: Arc<File>,
    /// Log `started N` and never finish (the process is about to be killed).
    hang: bool,
}

impl Handler<ChildState> for Numbered {
    async fn run(self, ctx: JobContext<ChildState>) -> Result<(), JobError> {
        let st = ctx.state();
        if st.hang {
            (&*st.log).write_all(format!("started {}\n", self.n).as_bytes())?;
            std::future::pending::<()>().await;
        }
        // One write of one line: with O_APPEND it lands whole at the end of the file.
        (&*st.log).write_all(format!("{}\n", self.n).as_bytes())?;
        Ok(())
    }
}

async fn open(db: &Path) -> SqliteBackend {
    // Every process keeps all completed jobs: the tests count them.
    let opts = SqliteOptions::builder(db)
        .retention(Retention::keep_all())
        .poll_interval(Duration::from_millis(100))
        .build()
        .expect("options");
    SqliteBackend::connect_with(opts)
        .await
        .expect("open the database")
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("child process: {name} not set"))
}

/// The entry point of the child processes; does nothing when run as an ordinary test.
#[test]
fn child_process() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let backend = open(Path::new(&env(DB))).await;
        match role.as_str() {
            "producer" => {
                let total: u64 = env(JOBS).parse().unwrap();
                let mut i = 0;
                while i < total {
                    let now = Timestamp::now_system();
                    let batch = (i..(i + 500).min(total))
                        .map(|n| {
                            NewJob::new(
                                Numbered::NAME,
                                Numbered::QUEUE,
                                format!("{{\"n\":{n}}}"),
                                now,
                            )
                        })
                        .collect::<Vec<_>>();
                    i += batch.len() as u64;
                    backend.push(batch).await.expect("push");
                }
            }
            "worker" | "hanging-worker" => {
                let log = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(env(LOG))
                    .expect("open the log");
                let lease = Duration::from_millis(env(LEASE_MS).parse().unwrap());
                let state = ChildState {
                    log: Arc::new(log),
                    hang: role == "hanging-worker",
                };
                // The parent closes our stdin to ask for a graceful shutdown.
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
                    let _ = tx.send(());
                });
                let stats = Worker::builder(backend.clone())
                    .state(state)
                    .register::<Numbered>()
                    .concurrency(if role == "worker" { 16 } else { 4 })
                    .lease(lease)
                    .grace_period(Duration::from_secs(5))
                    .build()
                    .expect("worker")
                    .run_until(rx)
                    .await
                    .expect("worker run");
                eprintln!("worker {} stats: {stats:?}", std::process::id());
            }
            // Opens the database (creating it if missing) and closes it again.
            "open" => {}
            other => panic!("unknown child role {other}"),
        }
        backend.close().await;
    });
}

fn spawn(role: &str, db: &Path, extra: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args([
        "--exact",
        "child_process",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(ROLE, role)
    .env(DB, db)
    .stdin(Stdio::piped())
    .stdout(Stdio::null());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn a child process")
}

/// Waits for a child to exit, failing the test past the deadline.
fn wait_exit(child: &mut Child, what: &str, deadline: Instant) {
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            assert!(status.success(), "{what} exited with {status}");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not exit in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `check` until it returns `Some`, failing the test past the deadline.
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The numbers logged in `path` (lines `N`) and the started ones (lines `started N`).
/// Starts a worker that hangs in every job it takes (with room for 4) and SIGKILLs it once
/// it has started `n` jobs and the store knows their attempts started (its first renewal:
/// their expiry then counts; a kill before that gives the attempts back, which the
/// conformance suite covers). Returns the jobs it took and when it was killed.
async fn kill_a_hanging_worker(db: &Path, log: &Path, n: usize) -> (Vec<u64>, Timestamp) {
    let mut victim = spawn(
        "hanging-worker",
        db,
        &[(LOG, log.display().to_string()), (LEASE_MS, "1000".into())],
    );
    eventually(
        &format!("the victim started {n} jobs"),
        Duration::from_secs(60),
        || async {
            let (_, started) = read_log(log);
            (started.len() >= n).then_some(())
        },
    )
    .await;
    eventually(
        &format!("the store knows the victim's {n} attempts started"),
        Duration::from_secs(60),
        || async {
            let conn = rusqlite::Connection::open(db).ok()?;
            let started: i64 = conn
                .query_row(
                    "SELECT count(*) FROM kosh_jobs WHERE state = 'running' AND lease_started = 1",
                    [],
                    |r| r.get(0),
                )
                .ok()?;
            (usize::try_from(started).ok()? >= n).then_some(())
        },
    )
    .await;
    victim.kill().expect("SIGKILL the victim");
    let killed_at = Timestamp::now_system();
    victim.wait().expect("reap the victim");
    // Every job it ever started, read once it is dead.
    (read_log(log).1, killed_at)
}

fn read_log(path: &Path) -> (Vec<u64>, Vec<u64>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let (mut done, mut started) = (Vec::new(), Vec::new());
    for line in text.lines() {
        match line.strip_prefix("started ") {
            Some(n) => started.push(n.parse().expect("log line")),
            None => done.push(line.parse().expect("log line")),
        }
    }
    (done, started)
}

async fn all_jobs(b: &SqliteBackend, state: JobState) -> Vec<kosh_jobs_core::JobRecord> {
    let mut out = Vec::new();
    let mut q = ListQuery::new(state).limit(1000);
    loop {
        let page = b.list(&q).await.expect("list");
        out.extend(page.jobs);
        match page.next {
            Some(next) => q = q.after(next),
            None => return out,
        }
    }
}

fn payload_n(rec: &kosh_jobs_core::JobRecord) -> u64 {
    serde_json::from_str::<Numbered>(&rec.payload)
        .expect("payload")
        .n
}

/// Processes that start at once on a file that does not exist yet race to create it, turn on
/// WAL and create the schema; every one of them must open it. SQLite answers a connection that
/// would deadlock (it holds a read lock and wants the write lock another one holds) with an
/// immediate `SQLITE_BUSY` its busy handler never sees; the backend has to retry those.
#[test]
fn processes_racing_to_create_a_file_all_open_it() {
    const ROUNDS: usize = 15;
    const PROCESSES: usize = 6;
    let dir = tempfile::tempdir().unwrap();
    for round in 0..ROUNDS {
        let db = dir.path().join(format!("race{round}.db"));
        let mut children: Vec<Child> = (0..PROCESSES).map(|_| spawn("open", &db, &[])).collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        for (i, child) in children.iter_mut().enumerate() {
            wait_exit(child, &format!("round {round}, process {i}"), deadline);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_and_two_workers_run_every_job_exactly_once() {
    const TOTAL: u64 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    let logs: Vec<PathBuf> = (0..2)
        .map(|i| dir.path().join(format!("worker{i}.log")))
        .collect();
    // The workers start at once on a file that does not exist yet: they race to create it.
    let mut workers: Vec<Child> = logs
        .iter()
        .map(|log| {
            spawn(
                "worker",
                &db,
                &[(LOG, log.display().to_string()), (LEASE_MS, "30000".into())],
            )
        })
        .collect();
    // Both workers are up (each creates its log once its backend is open) before the jobs
    // come, so each gets a share.
    eventually("both workers started", Duration::from_secs(60), || {
        // A worker that died (it could not open the file) fails the test now, not in a minute.
        for (i, w) in workers.iter_mut().enumerate() {
            if let Some(status) = w.try_wait().expect("try_wait") {
                panic!("worker {i} exited with {status} before it started");
            }
        }
        let started = logs.iter().all(|l| l.exists());
        async move { started.then_some(()) }
    })
    .await;
    let mut producer = spawn("producer", &db, &[(JOBS, TOTAL.to_string())]);
    let deadline = Instant::now() + Duration::from_secs(300);
    wait_exit(&mut producer, "the producer", deadline);

    let b = open(&db).await;
    let counts = eventually("all jobs completed", Duration::from_secs(300), || async {
        let c = b.counts().await.expect("counts");
        let mp = c.into_iter().find(|c| c.queue == "mp")?;
        (mp.completed == TOTAL).then_some(mp)
    })
    .await;
    assert_eq!(
        counts.live() + counts.failed + counts.cancelled,
        0,
        "{counts:?}"
    );

    for (i, w) in workers.iter_mut().enumerate() {
        drop(w.stdin.take()); // graceful shutdown
        wait_exit(
            w,
            &format!("worker {i}"),
            Instant::now() + Duration::from_secs(60),
        );
    }

    // Side effects: every job exactly once, across both workers; both took part.
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for log in &logs {
        let (done, started) = read_log(log);
        assert!(started.is_empty());
        assert!(!done.is_empty(), "{} ran no job", log.display());
        eprintln!("{}: {} jobs", log.display(), done.len());
        for n in done {
            *seen.entry(n).or_default() += 1;
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).take(10).collect();
    assert!(twice.is_empty(), "jobs run more than once: {twice:?}");
    let missing: Vec<_> = (0..TOTAL)
        .filter(|n| !seen.contains_key(n))
        .take(10)
        .collect();
    assert!(missing.is_empty(), "jobs never run: {missing:?}");
    assert_eq!(seen.len() as u64, TOTAL);

    // And the database agrees: each job completed on its first attempt.
    let done = all_jobs(&b, JobState::Completed).await;
    assert_eq!(done.len() as u64, TOTAL);
    assert!(done.iter().all(|r| r.attempts == 1 && r.errors.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_of_a_killed_worker_runs_again_after_its_lease_expires() {
    const TOTAL: u64 = 20;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kill.db");
    let b = open(&db).await;
    let now = Timestamp::now_system();
    let jobs = (0..TOTAL)
        .map(|n| {
            NewJob::new(
                Numbered::NAME,
                Numbered::QUEUE,
                format!("{{\"n\":{n}}}"),
                now,
            )
        })
        .collect();
    let ids = b.push(jobs).await.unwrap();

    // The victim takes 4 jobs (its concurrency) and hangs in all of them.
    let victim_log = dir.path().join("victim.log");
    let (taken, killed_at) = kill_a_hanging_worker(&db, &victim_log, 4).await;
    let running = all_jobs(&b, JobState::Running).await;
    let mut running_n: Vec<u64> = running.iter().map(payload_n).collect();
    running_n.sort_unstable();
    let mut taken_sorted = taken.clone();
    taken_sorted.sort_unstable();
    assert_eq!(
        running_n, taken_sorted,
        "the killed worker's jobs are still leased to it"
    );

    // A second worker finishes everything: the 16 waiting jobs at once, the victim's 4 once
    // their leases expire.
    let rescuer_log = dir.path().join("rescuer.log");
    let mut rescuer = spawn(
        "worker",
        &db,
        &[
            (LOG, rescuer_log.display().to_string()),
            (LEASE_MS, "1000".into()),
        ],
    );
    eventually("all jobs completed", Duration::from_secs(60), || async {
        let c = b.counts().await.expect("counts");
        let mp = c.into_iter().find(|c| c.queue == "mp")?;
        (mp.completed == TOTAL).then_some(())
    })
    .await;
    drop(rescuer.stdin.take());
    wait_exit(
        &mut rescuer,
        "the rescuer",
        Instant::now() + Duration::from_secs(60),
    );

    let (done, started) = read_log(&rescuer_log);
    assert!(started.is_empty());
    let mut done_sorted = done.clone();
    done_sorted.sort_unstable();
    assert_eq!(
        done_sorted,
        (0..TOTAL).collect::<Vec<_>>(),
        "each job ran once to completion"
    );
    let (victim_done, _) = read_log(&victim_log);
    assert!(victim_done.is_empty(), "the victim completed nothing");

    let records: BTreeMap<u64, kosh_jobs_core::JobRecord> = all_jobs(&b, JobState::Completed)
        .await
        .into_iter()
        .map(|r| (payload_n(&r), r))
        .collect();
    assert_eq!(records.len() as u64, TOTAL);
    for (n, rec) in &records {
        assert!(ids.iter().any(|e| e.id == rec.id));
        if taken.contains(n) {
            assert_eq!(rec.attempts, 2, "job {n}: the killed attempt is counted");
            assert_eq!(rec.errors.len(), 1, "job {n}: {:?}", rec.errors);
            assert_eq!(rec.errors[0].attempt, 1);
            assert_eq!(rec.errors[0].error, "lease expired");
            let second_start = rec.started_at.expect("started");
            assert!(
                second_start >= killed_at,
                "job {n}: rerun only after the kill ({second_start} < {killed_at})"
            );
        } else {
            assert_eq!(rec.attempts, 1, "job {n}");
            assert!(rec.errors.is_empty(), "job {n}: {:?}", rec.errors);
        }
    }
}

/// Three worker processes on one file share one rate limit of 100 starts per second: the
/// store's start times (each job's `started_at`, written by the reserve that leased it) have
/// at most 100 in any window of one second, every job runs exactly once, and no attempt is
/// spent on a job held back. How close to 100 a second the workers get is measured by the
/// throughput runner (`--scenario rate`), not asserted here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_worker_processes_share_one_rate_limit() {
    const TOTAL: u64 = 1_000;
    const PER_SECOND: u32 = 100;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("limited.db");
    let b = open(&db).await;
    let limits = kosh_jobs_core::QueueLimits::default().with_rate(kosh_jobs_core::RateLimit::new(
        PER_SECOND,
        Duration::from_secs(1),
    ));
    b.set_queue_limits(Numbered::QUEUE, limits)
        .await
        .expect("set the limit");
    let now = Timestamp::now_system();
    let jobs: Vec<NewJob> = (0..TOTAL)
        .map(|n| {
            NewJob::new(
                Numbered::NAME,
                Numbered::QUEUE,
                format!("{{\"n\":{n}}}"),
                now,
            )
        })
        .collect();
    b.push(jobs).await.expect("push");

    let logs: Vec<PathBuf> = (0..3)
        .map(|i| dir.path().join(format!("worker{i}.log")))
        .collect();
    let mut workers: Vec<Child> = logs
        .iter()
        .map(|log| {
            spawn(
                "worker",
                &db,
                &[(LOG, log.display().to_string()), (LEASE_MS, "30000".into())],
            )
        })
        .collect();
    eventually("all jobs completed", Duration::from_secs(120), || async {
        let c = b.counts().await.expect("counts");
        let q = c.into_iter().find(|c| c.queue == Numbered::QUEUE)?;
        (q.completed == TOTAL).then_some(())
    })
    .await;
    for (i, w) in workers.iter_mut().enumerate() {
        drop(w.stdin.take());
        wait_exit(
            w,
            &format!("worker {i}"),
            Instant::now() + Duration::from_secs(60),
        );
    }

    let mut seen: HashMap<u64, usize> = HashMap::new();
    let mut active = 0;
    for log in &logs {
        let (done, _) = read_log(log);
        active += usize::from(!done.is_empty());
        for n in done {
            *seen.entry(n).or_default() += 1;
        }
    }
    assert_eq!(seen.len() as u64, TOTAL, "every job ran");
    assert!(seen.values().all(|&c| c == 1), "no job ran twice");
    assert!(
        active >= 2,
        "the limit is shared, not one process's: {active} ran jobs"
    );

    let done = all_jobs(&b, JobState::Completed).await;
    assert!(
        done.iter().all(|r| r.attempts == 1),
        "a held-back job spent no attempt"
    );
    let mut starts: Vec<i64> = done
        .iter()
        .map(|r| {
            r.started_at
                .expect("a completed job has a start")
                .as_millis()
        })
        .collect();
    starts.sort_unstable();
    // The busiest window of one second ending at a start: (t - 1000 ms, t].
    let mut busiest = (0, 0);
    let mut from = 0;
    for (i, &t) in starts.iter().enumerate() {
        while starts[from] <= t - 1000 {
            from += 1;
        }
        if i + 1 - from > busiest.0 {
            busiest = (i + 1 - from, t);
        }
    }
    assert!(
        busiest.0 <= PER_SECOND as usize,
        "{} starts in the second ending at {} ms",
        busiest.0,
        busiest.1
    );
    let span = starts[starts.len() - 1] - starts[0];
    eprintln!(
        "{TOTAL} starts over {span} ms; busiest second: {} starts",
        busiest.0
    );
}

/// Two worker processes on one file, with a group concurrency limit of 1: group `a` has 8
/// jobs, group `b` 3, all pushed before the workers start. Across both processes no two jobs
/// of a group ever run at once (each job of a group starts after the one before it
/// finished, by the store's times), and `b` takes its turns while `a` still has work: all of
/// b's jobs start before a's last job does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_share_one_group_limit() {
    const A: u64 = 8;
    const B: u64 = 3;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("groups.db");
    let b = open(&db).await;
    b.set_queue_limits(
        Numbered::QUEUE,
        kosh_jobs_core::QueueLimits::default().with_group_concurrency(1),
    )
    .await
    .expect("set the limit");
    let now = Timestamp::now_system();
    let jobs: Vec<NewJob> = (0..A + B)
        .map(|n| {
            let mut j = NewJob::new(
                Numbered::NAME,
                Numbered::QUEUE,
                format!("{{\"n\":{n}}}"),
                now,
            );
            j.group = Some(if n < A { "a" } else { "b" }.to_owned());
            j
        })
        .collect();
    b.push(jobs).await.expect("push");

    let logs: Vec<PathBuf> = (0..2)
        .map(|i| dir.path().join(format!("worker{i}.log")))
        .collect();
    let mut workers: Vec<Child> = logs
        .iter()
        .map(|log| {
            spawn(
                "worker",
                &db,
                &[(LOG, log.display().to_string()), (LEASE_MS, "30000".into())],
            )
        })
        .collect();
    eventually("all jobs completed", Duration::from_secs(120), || async {
        let c = b.counts().await.expect("counts");
        let q = c.into_iter().find(|c| c.queue == Numbered::QUEUE)?;
        (q.completed == A + B).then_some(())
    })
    .await;
    for (i, w) in workers.iter_mut().enumerate() {
        drop(w.stdin.take());
        wait_exit(
            w,
            &format!("worker {i}"),
            Instant::now() + Duration::from_secs(60),
        );
    }

    let mut seen: HashMap<u64, usize> = HashMap::new();
    for log in &logs {
        for n in read_log(log).0 {
            *seen.entry(n).or_default() += 1;
        }
    }
    assert_eq!(seen.len() as u64, A + B, "every job ran");
    assert!(seen.values().all(|&c| c == 1), "no job ran twice");

    // (start, finish) of each job of each group, by start.
    let mut runs: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    for r in all_jobs(&b, JobState::Completed).await {
        assert_eq!(r.attempts, 1, "a held-back job spent no attempt");
        let start = r
            .started_at
            .expect("a completed job has a start")
            .as_millis();
        let end = r
            .finished_at
            .expect("a completed job has a finish")
            .as_millis();
        runs.entry(r.group.clone().expect("a grouped job"))
            .or_default()
            .push((start, end));
    }
    for (group, times) in &mut runs {
        times.sort_unstable();
        for pair in times.windows(2) {
            assert!(
                pair[1].0 >= pair[0].1,
                "two jobs of group {group} ran at once: {pair:?} (all: {times:?})"
            );
        }
    }
    let last_a_start = runs["a"].last().expect("a ran").0;
    let last_b_start = runs["b"].last().expect("b ran").0;
    assert!(
        last_b_start < last_a_start,
        "b waited for a: b's last start at {last_b_start}, a's at {last_a_start} ({runs:?})"
    );
}

/// A worker SIGKILLed while it holds a group's only slot does not keep it: the group's other
/// jobs wait (no second job of the group starts while the dead worker's lease stands), and
/// run once the lease expires and is recovered. The victim, with room for 4 jobs, takes only
/// the group's one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_frees_its_group_slot_when_its_lease_is_recovered() {
    const TOTAL: u64 = 5;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("group-kill.db");
    let b = open(&db).await;
    b.set_queue_limits(
        Numbered::QUEUE,
        kosh_jobs_core::QueueLimits::default().with_group_concurrency(1),
    )
    .await
    .expect("set the limit");
    let now = Timestamp::now_system();
    let jobs: Vec<NewJob> = (0..TOTAL)
        .map(|n| {
            let mut j = NewJob::new(
                Numbered::NAME,
                Numbered::QUEUE,
                format!("{{\"n\":{n}}}"),
                now,
            );
            j.group = Some("user-a".to_owned());
            j
        })
        .collect();
    b.push(jobs).await.expect("push");

    let victim_log = dir.path().join("victim.log");
    let (taken, killed_at) = kill_a_hanging_worker(&db, &victim_log, 1).await;
    assert_eq!(
        taken.len(),
        1,
        "with room for 4, the victim took only the group's one slot: {taken:?}"
    );
    assert_eq!(
        all_jobs(&b, JobState::Running).await.len(),
        1,
        "the dead worker's lease still holds the slot"
    );

    let rescuer_log = dir.path().join("rescuer.log");
    let mut rescuer = spawn(
        "worker",
        &db,
        &[
            (LOG, rescuer_log.display().to_string()),
            (LEASE_MS, "1000".into()),
        ],
    );
    eventually("all jobs completed", Duration::from_secs(60), || async {
        let c = b.counts().await.expect("counts");
        let q = c.into_iter().find(|c| c.queue == Numbered::QUEUE)?;
        (q.completed == TOTAL).then_some(())
    })
    .await;
    drop(rescuer.stdin.take());
    wait_exit(
        &mut rescuer,
        "the rescuer",
        Instant::now() + Duration::from_secs(60),
    );

    let mut records = all_jobs(&b, JobState::Completed).await;
    records.sort_by_key(|r| r.started_at);
    // Nothing of the group ran while the dead worker's lease held the slot: the first job to
    // run after the kill is the victim's own, recovered (the group's oldest, so first again).
    assert_eq!(
        records.first().map(payload_n),
        taken.first().copied(),
        "the first job run after the kill is the recovered one"
    );
    // One at a time: each job started after the one before it finished.
    for pair in records.windows(2) {
        assert!(
            pair[1].started_at >= pair[0].finished_at,
            "two jobs of the group overlapped: {:?} and {:?}",
            pair[0],
            pair[1]
        );
    }
    for rec in &records {
        let n = payload_n(rec);
        let start = rec.started_at.expect("started");
        assert!(
            start >= killed_at,
            "job {n} started at {start}, before the kill at {killed_at}: the slot was free"
        );
        if taken.contains(&n) {
            assert_eq!(rec.attempts, 2, "job {n}: the killed attempt is counted");
            assert_eq!(rec.last_error(), Some("lease expired"));
        } else {
            assert_eq!(rec.attempts, 1, "job {n}");
        }
    }
}
