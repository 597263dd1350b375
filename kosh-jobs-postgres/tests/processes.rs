//! Faults with real processes on Postgres: a worker process SIGKILLed mid-job; the server
//! taken down mid-run under two worker processes and a producer process; the backend's pool
//! held by the application while a job runs; the password kept out of the workers' logs.
//!
//! The child processes are this test binary itself, started again with `KOSH_PG_CHILD=<role>`
//! to run [`child_process`] only. Workers are the real [`kosh_jobs_core::Worker`] runtime;
//! each handler appends its job's number to a log file of its process (`O_APPEND`), the
//! record outside the system under test that the tests count.

mod support;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kosh_jobs_core::{
    Backend, Handler, Job, JobContext, JobError, JobId, JobRecord, JobState, ListQuery, NewJob,
    Timestamp, Worker,
};
use kosh_jobs_postgres::{PostgresBackend, PostgresOptions};
use kosh_jobs_testsupport::postgres_server::{PostgresServer, PASSWORD};
use serde::{Deserialize, Serialize};
use sqlx::{Connection, PgConnection};
use support::held::{held_worker, Held, HeldState};

const ROLE: &str = "KOSH_PG_CHILD";
const URL: &str = "KOSH_PG_CHILD_URL";
const LOG: &str = "KOSH_PG_CHILD_LOG";
const TRACE: &str = "KOSH_PG_CHILD_TRACE";
const JOBS: &str = "KOSH_PG_CHILD_JOBS";
const LEASE_MS: &str = "KOSH_PG_CHILD_LEASE_MS";

/// How long an operation of a child waits for a connection: an enqueue with the server down
/// fails within about this.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

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

/// `url` with `schema=` (and more parameters) added to its query string.
fn with_params(url: &str, params: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{params}")
}

async fn open(url: &str) -> PostgresBackend {
    let opts = PostgresOptions::from_url(url)
        .expect("url")
        .retention(None)
        .poll_interval(Duration::from_millis(200))
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .build()
        .expect("options");
    PostgresBackend::connect_with(opts).await.expect("connect")
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("child process: {name} not set"))
}

/// Logs of the child's tracing events (warnings, the worker's outage bookkeeping) go to the
/// file named by [`TRACE`], without colours.
fn trace_to_file() {
    let Ok(path) = std::env::var(TRACE) else {
        return;
    };
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("open the trace file");
    tracing_subscriber::fmt()
        .with_writer(Mutex::new(file))
        .with_ansi(false)
        .without_time()
        .with_env_filter(
            "warn,kosh_jobs_core::worker::outage=debug,kosh_jobs_core=info,kosh_jobs_postgres=info",
        )
        .init();
}

/// The entry point of the child processes; does nothing when run as an ordinary test.
#[test]
fn child_process() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    trace_to_file();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let backend = open(&env(URL)).await;
        match role.as_str() {
            "producer" => produce(&backend).await,
            "worker" | "hanging-worker" => {
                let log = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(env(LOG))
                    .expect("open the log");
                let lease = Duration::from_millis(env(LEASE_MS).parse().expect("lease"));
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
            other => panic!("unknown child role {other}"),
        }
    });
}

/// Pushes numbered jobs in batches of 10 (unique key `n-N`, so a batch retried after an
/// error whose commit did happen is not stored twice) until at least `JOBS` are stored and
/// a push has failed: it keeps producing through an outage. Its log has a line `pushed N`
/// per stored batch, `failed MS UNAVAILABLE ERROR` per failed push (how long it took, its
/// kind and its message), and `done N` at the end.
async fn produce(backend: &PostgresBackend) {
    let total: u64 = env(JOBS).parse().expect("jobs");
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(env(LOG))
        .expect("open the log");
    let mut next = 0u64;
    let mut failed = false;
    while next < total || !failed {
        assert!(next < 100_000, "the outage never reached the producer");
        let now = Timestamp::now_system();
        let batch: Vec<NewJob> = (next..next + 10)
            .map(|n| {
                let mut j = NewJob::new(
                    Numbered::NAME,
                    Numbered::QUEUE,
                    format!("{{\"n\":{n}}}"),
                    now,
                );
                j.unique_key = Some(format!("n-{n}"));
                j
            })
            .collect();
        let started = Instant::now();
        match backend.push(batch).await {
            Ok(_) => {
                next += 10;
                writeln!(log, "pushed {next}").expect("log");
                // The producer's pace: about 1,000 jobs a second.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => {
                failed = true;
                let text = format!("{e} / {e:?}").replace('\n', " ");
                writeln!(
                    log,
                    "failed {} {} {text}",
                    started.elapsed().as_millis(),
                    e.is_unavailable()
                )
                .expect("log");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    writeln!(log, "done {next}").expect("log");
}

fn spawn(role: &str, url: &str, extra: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args([
        "--exact",
        "child_process",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(ROLE, role)
    .env(URL, url)
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

/// Asks a worker process for a graceful shutdown and waits for it.
fn shut_down(child: &mut Child, what: &str) {
    drop(child.stdin.take());
    wait_exit(child, what, Instant::now() + Duration::from_secs(60));
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

async fn all_jobs(b: &PostgresBackend, state: JobState) -> Vec<JobRecord> {
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

fn payload_n(rec: &JobRecord) -> u64 {
    serde_json::from_str::<Numbered>(&rec.payload)
        .expect("payload")
        .n
}

async fn completed_in(b: &PostgresBackend, queue: &str) -> u64 {
    let counts = b.counts().await.expect("counts");
    counts
        .into_iter()
        .find(|c| c.queue == queue)
        .map_or(0, |c| c.completed)
}

fn numbered_jobs(range: std::ops::Range<u64>) -> Vec<NewJob> {
    let now = Timestamp::now_system();
    range
        .map(|n| {
            NewJob::new(
                Numbered::NAME,
                Numbered::QUEUE,
                format!("{{\"n\":{n}}}"),
                now,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_of_a_killed_worker_runs_again_after_its_lease_expires() {
    const TOTAL: u64 = 20;
    let schema = support::unique_schema("kill");
    let url = with_params(&support::shared_url(), &format!("schema={schema}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let b = open(&url).await;
    let ids = b.push(numbered_jobs(0..TOTAL)).await.expect("push");

    // The victim takes 4 jobs (its concurrency) and hangs in all of them. It is killed once
    // the store knows their attempts started (its first renewal): their expiry then counts.
    let victim_log = dir.path().join("victim.log");
    let mut victim = spawn(
        "hanging-worker",
        &url,
        &[
            (LOG, victim_log.display().to_string()),
            (LEASE_MS, "1000".into()),
        ],
    );
    eventually("the victim started 4 jobs", Duration::from_secs(30), || {
        let started = read_log(&victim_log).1.len();
        async move { (started >= 4).then_some(()) }
    })
    .await;
    let probe = sqlx::PgPool::connect(&support::shared_url())
        .await
        .expect("connections of the test");
    eventually(
        "the store knows the victim's 4 attempts started",
        Duration::from_secs(30),
        || {
            let sql = format!(
                "SELECT count(*) FROM \"{schema}\".jobs WHERE state = 'running' AND lease_started"
            );
            let probe = probe.clone();
            async move {
                let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_one(&probe)
                    .await
                    .ok()?;
                (n >= 4).then_some(())
            }
        },
    )
    .await;
    victim.kill().expect("SIGKILL the victim");
    let killed_at = Timestamp::now_system();
    victim.wait().expect("reap the victim");
    let taken = read_log(&victim_log).1;
    let mut running: Vec<u64> = all_jobs(&b, JobState::Running)
        .await
        .iter()
        .map(payload_n)
        .collect();
    running.sort_unstable();
    let mut taken_sorted = taken.clone();
    taken_sorted.sort_unstable();
    assert_eq!(
        running, taken_sorted,
        "the killed worker's jobs are still leased to it"
    );

    // A second worker finishes everything: the 16 waiting jobs at once, the victim's 4 once
    // their leases expire.
    let rescuer_log = dir.path().join("rescuer.log");
    let mut rescuer = spawn(
        "worker",
        &url,
        &[
            (LOG, rescuer_log.display().to_string()),
            (LEASE_MS, "1000".into()),
        ],
    );
    eventually("all jobs completed", Duration::from_secs(30), || async {
        (completed_in(&b, Numbered::QUEUE).await == TOTAL).then_some(())
    })
    .await;
    shut_down(&mut rescuer, "the rescuer");

    let (mut done, started) = read_log(&rescuer_log);
    assert!(started.is_empty());
    done.sort_unstable();
    assert_eq!(
        done,
        (0..TOTAL).collect::<Vec<_>>(),
        "each job ran once to completion"
    );
    assert!(
        read_log(&victim_log).0.is_empty(),
        "the victim completed nothing"
    );
    let records = all_jobs(&b, JobState::Completed).await;
    assert_eq!(records.len() as u64, TOTAL, "nothing lost");
    for rec in &records {
        let n = payload_n(rec);
        assert!(ids.iter().any(|e| e.id == rec.id));
        if taken.contains(&n) {
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

/// The producer's log: the pushes that failed (how long each took, whether it was
/// `Unavailable`, its text), and the number of jobs it stored in all.
fn read_producer_log(path: &Path) -> (Vec<(u128, bool, String)>, u64, Option<u64>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let (mut failures, mut pushed, mut done) = (Vec::new(), 0, None);
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("failed ") {
            let mut parts = rest.splitn(3, ' ');
            let ms = parts.next().and_then(|m| m.parse().ok()).expect("ms");
            let unavailable = parts.next() == Some("true");
            failures.push((ms, unavailable, parts.next().unwrap_or("").to_owned()));
        } else if let Some(n) = line.strip_prefix("pushed ") {
            pushed = n.parse().expect("pushed");
        } else if let Some(n) = line.strip_prefix("done ") {
            done = Some(n.parse().expect("done"));
        }
    }
    (failures, pushed, done)
}

/// The warnings of the kosh-jobs crates in a child's trace, each with how often it was
/// logged: the message only, without its fields (`error=…`), which differ between retries.
fn warnings(trace: &str) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for line in trace.lines() {
        let Some(rest) = line.trim_start().strip_prefix("WARN ") else {
            continue;
        };
        if !rest.starts_with("kosh_jobs") {
            continue;
        }
        let message: Vec<&str> = rest
            .split(' ')
            .take_while(|word| !word.contains('='))
            .collect();
        *out.entry(message.join(" ")).or_default() += 1;
    }
    out
}

/// Two worker processes and a producer process run while the server goes down and comes
/// back: the producer's enqueues fail as `Unavailable` within about the acquire timeout
/// while it is down, then succeed again; the workers reconnect by themselves and every job
/// runs exactly once. Each worker logs the outage once per loop that met it (not once per
/// poll, although it polled several times), and never the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_and_a_producer_ride_out_a_server_outage() {
    const TOTAL: u64 = 2_000;
    // A cluster of its own, to take down.
    let mut server = PostgresServer::start().expect("test postgres");
    let url = with_params(&server.url(), "schema=outage");
    assert!(url.contains(PASSWORD), "the URL carries the password");
    let dir = tempfile::tempdir().expect("tempdir");
    let b = open(&url).await;

    let logs: Vec<PathBuf> = (0..2)
        .map(|i| dir.path().join(format!("worker{i}.log")))
        .collect();
    let traces: Vec<PathBuf> = (0..2)
        .map(|i| dir.path().join(format!("worker{i}.trace")))
        .collect();
    // Leases far longer than the outage: no lease expires, so no warning is about a job.
    let mut workers: Vec<Child> = logs
        .iter()
        .zip(&traces)
        .map(|(log, trace)| {
            spawn(
                "worker",
                &url,
                &[
                    (LOG, log.display().to_string()),
                    (TRACE, trace.display().to_string()),
                    (LEASE_MS, "30000".into()),
                ],
            )
        })
        .collect();
    let producer_log = dir.path().join("producer.log");
    let mut producer = spawn(
        "producer",
        &url,
        &[
            (LOG, producer_log.display().to_string()),
            (JOBS, TOTAL.to_string()),
        ],
    );
    // Mid-run: jobs stored, and both workers running them.
    eventually("the run is under way", Duration::from_secs(30), || {
        let pushed = read_producer_log(&producer_log).1;
        let working = logs.iter().all(|l| !read_log(l).0.is_empty());
        async move { (pushed >= 300 && working).then_some(()) }
    })
    .await;

    server.down().expect("take the server down");
    // While it is down: the producer has had an enqueue fail, and each worker has met the
    // outage and kept polling (its fetch loop failed at least 3 times).
    eventually(
        "the producer and both workers met the outage",
        Duration::from_secs(30),
        || {
            let failed = !read_producer_log(&producer_log).0.is_empty();
            let polled = traces.iter().all(|t| {
                std::fs::read_to_string(t)
                    .unwrap_or_default()
                    .lines()
                    .any(|l| {
                        l.contains("fetching jobs: still failing")
                            && l.split(' ').any(|w| {
                                w.strip_prefix("failures=")
                                    .and_then(|n| n.parse::<u32>().ok())
                                    .is_some_and(|n| n >= 3)
                            })
                    })
            });
            async move { (failed && polled).then_some(()) }
        },
    )
    .await;
    server.up().expect("bring the server back");

    wait_exit(
        &mut producer,
        "the producer",
        Instant::now() + Duration::from_secs(60),
    );
    let (failures, _, done) = read_producer_log(&producer_log);
    let stored = done.expect("the producer logged its total");
    assert!(stored >= TOTAL);
    eventually("all jobs completed", Duration::from_secs(60), || async {
        (completed_in(&b, Numbered::QUEUE).await == stored).then_some(())
    })
    .await;
    for (i, w) in workers.iter_mut().enumerate() {
        shut_down(w, &format!("worker {i}"));
    }

    // Enqueue while down: an error, `Unavailable`, within the acquire timeout (2 s; the bound
    // is generous, it only tells "returned" from "hung"), and without the password.
    assert!(!failures.is_empty());
    for (ms, unavailable, text) in &failures {
        assert!(*unavailable, "a failed push was not `Unavailable`: {text}");
        assert!(*ms < 20_000, "a push took {ms} ms to fail: {text}");
        assert!(!text.contains(PASSWORD), "{text}");
    }
    // Nothing lost, nothing run twice.
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for log in &logs {
        for n in read_log(log).0 {
            *seen.entry(n).or_default() += 1;
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).take(10).collect();
    assert!(twice.is_empty(), "jobs run more than once: {twice:?}");
    let missing: Vec<_> = (0..stored)
        .filter(|n| !seen.contains_key(n))
        .take(10)
        .collect();
    assert!(missing.is_empty(), "jobs never run: {missing:?}");
    assert_eq!(seen.len() as u64, stored);
    // The outage in the workers' logs: said, once per message, and the password never.
    for trace in &traces {
        let text = std::fs::read_to_string(trace).expect("trace");
        assert!(
            !text.contains(PASSWORD),
            "the password in {}",
            trace.display()
        );
        let warned = warnings(&text);
        assert!(
            warned.keys().any(|m| m.contains("fetching jobs")),
            "{} does not log the outage: {warned:?}",
            trace.display()
        );
        let repeated: Vec<_> = warned.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            repeated.is_empty(),
            "{} logs the outage more than once: {repeated:?}\n{text}",
            trace.display()
        );
    }
}

/// The application holds every connection of the backend's pool (pushes it makes through the
/// backend wait on a unique key that its own open transaction holds) while a job runs with a
/// 1-second lease: the lease is still renewed, for several lease lengths, so a second
/// backend's worker, ready to recover it, never runs the job again; it completes on its
/// first attempt once the application lets go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_does_not_starve_lease_renewal() {
    const LEASE: Duration = Duration::from_secs(1);
    let schema = support::unique_schema("starve");
    let app_name = format!("kosh_starve_{}", std::process::id());
    let url = with_params(
        &support::shared_url(),
        &format!("schema={schema}&application_name={app_name}"),
    );
    let opts = PostgresOptions::from_url(&url)
        .expect("url")
        .max_connections(2)
        .acquire_timeout(Duration::from_millis(500))
        .build()
        .expect("options");
    let app_backend = PostgresBackend::connect_with(opts).await.expect("connect");
    let rescue_backend = open(&with_params(
        &support::shared_url(),
        &format!("schema={schema}"),
    ))
    .await;
    let now = Timestamp::now_system();
    let id: JobId = app_backend
        .push(vec![NewJob::new(Held::NAME, Held::QUEUE, "{}", now)])
        .await
        .expect("push")[0]
        .id;

    let (finish_tx, finish_rx) = tokio::sync::watch::channel(false);
    let state = HeldState {
        starts: Arc::default(),
        finish: finish_rx,
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker = held_worker(&app_backend, state.clone(), stop_rx.clone());
    eventually("the job started", Duration::from_secs(30), || {
        let n = state.starts.load(Ordering::SeqCst);
        async move { (n == 1).then_some(()) }
    })
    .await;
    // A second backend's worker, which would run the job again if its lease expired.
    let rescuer = held_worker(&rescue_backend, state.clone(), stop_rx);

    // The application's transaction holds unique key `k`; its pushes of `k` through the
    // backend wait for it, each on a connection of the backend's pool, until both are taken.
    let mut app = PgConnection::connect(&support::shared_url())
        .await
        .expect("app connection");
    let mut tx = app.begin().await.expect("begin");
    let keyed = || {
        let mut j = NewJob::new("other", "elsewhere", "{}", Timestamp::now_system());
        j.unique_key = Some("k".into());
        j
    };
    app_backend
        .push_in(&mut tx, vec![keyed()])
        .await
        .expect("push in the transaction");
    let blocked: Vec<_> = (0..2)
        .map(|_| {
            let b = app_backend.clone();
            let job = keyed();
            tokio::spawn(async move { b.push(vec![job]).await })
        })
        .collect();
    let watcher = sqlx::PgPool::connect(&support::shared_url())
        .await
        .expect("connections of the test");
    eventually(
        "both connections of the pool wait on the application's lock",
        Duration::from_secs(30),
        || {
            let watcher = watcher.clone();
            let app_name = app_name.clone();
            async move {
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE application_name = $1 AND wait_event_type = 'Lock'",
                )
                .bind(app_name)
                .fetch_one(&watcher)
                .await
                .ok()?;
                (n == 2).then_some(())
            }
        },
    )
    .await;
    let e = app_backend
        .counts()
        .await
        .expect_err("the pool is exhausted");
    assert!(e.is_unavailable(), "{e:?}");

    // Renewed past several lease lengths while the pool stays exhausted, never run twice.
    let exhausted_at = Timestamp::now_system();
    eventually(
        "the lease renewed past 4 lease lengths",
        Duration::from_secs(30),
        || {
            let (rescue_backend, state) = (&rescue_backend, &state);
            async move {
                assert_eq!(state.starts.load(Ordering::SeqCst), 1, "the job ran again");
                let rec = rescue_backend.get(id).await.expect("get").expect("the job");
                assert_eq!((rec.state, rec.attempts), (JobState::Running, 1), "{rec:?}");
                let until = rec.lease_expires_at.expect("a running job has a lease");
                (until >= exhausted_at + LEASE * 4).then_some(())
            }
        },
    )
    .await;
    assert!(
        blocked.iter().all(|t| !t.is_finished()),
        "the pool stayed exhausted meanwhile"
    );

    tx.rollback().await.expect("rollback");
    for t in blocked {
        t.await
            .expect("push task")
            .expect("push after the lock went");
    }
    finish_tx.send(true).expect("let the job finish");
    let rec = eventually("the job completed", Duration::from_secs(30), || async {
        let rec = rescue_backend.get(id).await.expect("get")?;
        (rec.state == JobState::Completed).then_some(rec)
    })
    .await;
    assert_eq!(rec.attempts, 1, "{rec:?}");
    assert!(rec.errors.is_empty(), "{rec:?}");
    assert_eq!(state.starts.load(Ordering::SeqCst), 1);
    stop_tx.send(true).expect("stop the workers");
    worker.await.expect("worker");
    rescuer.await.expect("rescuer");
}
