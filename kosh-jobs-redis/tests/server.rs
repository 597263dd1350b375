//! Connection set-up against real servers: TLS, an unreachable server, the eviction-policy
//! warning, and the command count of an idle worker (passwords and ACLs: `tests/access.rs`).

mod support;

use std::io::Write as _;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kosh_jobs_core::{
    Backend, Clock, Finish, FinishResult, Handler, Job, JobContext, JobError, ManualClock, NewJob,
    Outcome, ReserveRequest, Worker,
};
use kosh_jobs_redis::{RedisBackend, RedisOptions};
use serde::{Deserialize, Serialize};
use support::{
    chain, command_stats, free_port, raw_command, round_trip, unique_prefix, RedisServer,
};

#[tokio::test]
async fn unreachable_at_start_names_host_and_port_not_password() {
    let port = free_port();
    let started = Instant::now();
    let e = RedisBackend::connect_with(
        RedisOptions::builder(format!("redis://alice:hunter2-Pw@127.0.0.1:{port}/1"))
            .timeout(Duration::from_secs(2))
            .build()
            .expect("options"),
    )
    .await
    .expect_err("nothing listens there");
    let text = chain(&e);
    assert_eq!(
        e.to_string(),
        format!("cannot reach redis at 127.0.0.1:{port}")
    );
    assert!(e.is_unavailable());
    assert!(!text.contains("hunter2"), "password leaked: {text}");
    assert!(
        kosh_jobs_core::BackendError::from(e).is_unavailable(),
        "maps to BackendError::Unavailable"
    );
    eprintln!("connection refused reported after {:?}", started.elapsed());
}

/// Captures the log lines of the whole test binary.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn captured_logs() -> Capture {
    static CAPTURE: std::sync::OnceLock<Capture> = std::sync::OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let c = Capture::default();
            let writer = c.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .with_max_level(tracing::Level::INFO)
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("set the subscriber");
            c
        })
        .clone()
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

#[tokio::test]
async fn warns_at_start_when_keys_may_be_evicted() {
    let logs = captured_logs();
    let lru = RedisServer::start(&["--maxmemory-policy", "allkeys-lru"]);
    let safe = RedisServer::start(&["--maxmemory-policy", "noeviction"]);
    let _b1 = RedisBackend::connect(&lru.url()).await.expect("connect");
    let _b2 = RedisBackend::connect(&safe.url()).await.expect("connect");
    let text = logs.text();
    let warned = |port: u16| {
        text.lines().any(|l| {
            l.contains("WARN")
                && l.contains("maxmemory-policy")
                && l.contains(&format!("127.0.0.1:{port}"))
        })
    };
    assert!(warned(lru.port), "a warning for allkeys-lru:\n{text}");
    assert!(
        text.contains("allkeys-lru"),
        "the warning names the policy:\n{text}"
    );
    assert!(!warned(safe.port), "no warning for noeviction:\n{text}");
}

#[derive(Serialize, Deserialize)]
struct Idle;

impl Job for Idle {
    type Output = ();
    const NAME: &'static str = "idle";
    const QUEUE: &'static str = "idle";
}

impl Handler<()> for Idle {
    async fn run(self, _ctx: JobContext<()>) -> Result<(), JobError> {
        Ok(())
    }
}

fn info_field(port: u16, section: &str, field: &str) -> u64 {
    raw_command(port, None, &["INFO", section])
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn calls(port: u16) -> Vec<(String, u64)> {
    command_stats(port, None)
        .into_iter()
        .filter(|(name, _)| name != "info")
        .collect()
}

fn total(c: &[(String, u64)]) -> u64 {
    c.iter().map(|(_, n)| n).sum()
}

/// Waits until the worker is blocked in `BLPOP` for the `n`-th time.
async fn blocked_for_the(port: u16, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let blpops = command_stats(port, None)
            .into_iter()
            .find(|(k, _)| k == "blpop")
            .map_or(0, |(_, n)| n);
        if blpops >= n && info_field(port, "clients", "blocked_clients") >= 1 {
            return;
        }
        assert!(Instant::now() < deadline, "the worker never blocked again");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Every command the server receives from clients, from `MONITOR` (commands run inside
/// scripts are marked `lua` there and are left out: they are not requests).
struct Monitor {
    lines: Arc<Mutex<Vec<String>>>,
}

impl Monitor {
    fn start(port: u16) -> Monitor {
        use std::io::BufRead as _;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.write_all(b"MONITOR\r\n").expect("MONITOR");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(s).lines() {
                let Ok(line) = line else { return };
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        Monitor { lines }
    }

    /// Requests between the `ECHO` markers `from` and `to`, without the test's own probes.
    async fn requests_between(&self, port: u16, from: &str, to: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let start = lines.iter().position(|l| l.contains(from));
            let end = lines.iter().position(|l| l.contains(to));
            if let (Some(a), Some(b)) = (start, end) {
                return lines[a + 1..b]
                    .iter()
                    .filter(|l| !l.contains(" lua]") && !l.contains("\"INFO\""))
                    .cloned()
                    .collect();
            }
            assert!(Instant::now() < deadline, "MONITOR markers not seen");
            let _ = port;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Waits until a worker on the manual clock `hand` has done what the last advance woke it
/// for: no sleep on the clock is left at or before now (every sleeper the advance woke has
/// run and slept again, or ended), the worker is blocked in Redis again, and three looks in a
/// row agree.
async fn settled(port: u16, hand: &ManualClock) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut agreeing = 0;
    let mut last = Vec::new();
    loop {
        let now = hand.now();
        let sleepers = hand.sleepers();
        let quiet = !sleepers.is_empty()
            && sleepers.iter().all(|t| *t > now)
            && info_field(port, "clients", "blocked_clients") >= 1;
        agreeing = if quiet && sleepers == last {
            agreeing + 1
        } else {
            0
        };
        if agreeing == 2 {
            return;
        }
        last = sleepers;
        assert!(
            Instant::now() < deadline,
            "the worker never settled: sleepers {last:?} at {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An idle worker with the backend's pacing over twenty minutes of a manual clock, moved 30 s
/// at a time, counting the requests it sends: at most one a minute (issue #21). Everything it
/// does by default counts: waiting, reserving, recovering leases, its registration, reading
/// the schedules. With a manual clock each wait that times out ends with one extra request
/// (the clock cannot end `BLPOP` by itself); with the system clock `BLPOP`'s own timeout
/// does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_worker_sends_at_most_one_request_a_minute() {
    let server = RedisServer::start(&[]);
    let monitor = Monitor::start(server.port);
    let (clock, time) = Clock::manual();
    let b = RedisBackend::connect_with(
        RedisOptions::builder(server.url())
            .prefix(unique_prefix("idle"))
            .clock(clock)
            .build()
            .expect("options"),
    )
    .await
    .expect("connect");
    let worker = Worker::builder(b)
        .register::<Idle>()
        .build()
        .expect("worker")
        .spawn();
    blocked_for_the(server.port, 1).await;
    settled(server.port, &time).await;
    raw_command(server.port, None, &["ECHO", "idle-window-start"]);
    let before = calls(server.port);
    const MINUTES: u64 = 20;
    for _ in 1..=MINUTES * 2 {
        time.advance(Duration::from_secs(30));
        settled(server.port, &time).await;
    }
    let after = calls(server.port);
    raw_command(server.port, None, &["ECHO", "idle-window-end"]);
    let requests = monitor
        .requests_between(server.port, "idle-window-start", "idle-window-end")
        .await;
    let per_minute = requests.len() as f64 / MINUTES as f64;
    let breakdown: Vec<(String, u64)> = after
        .iter()
        .map(|(k, n)| {
            let b = before.iter().find(|(x, _)| x == k).map_or(0, |(_, n)| *n);
            (k.clone(), n - b)
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    let mut names: Vec<String> = requests
        .iter()
        .filter_map(|l| l.split('"').nth(1).map(str::to_owned))
        .collect();
    names.sort();
    let _ = writeln!(
        std::io::stderr(),
        "idle worker: {} requests in {MINUTES} minutes of clock = {per_minute:.2}/min ({}); \
         commands run by Redis including those inside scripts: {} ({breakdown:?})",
        requests.len(),
        names.join(" "),
        total(&after) - total(&before),
    );
    assert!(
        per_minute <= 1.0,
        "an idle worker sent {per_minute:.2} requests a minute: {requests:#?}"
    );
    worker.shutdown().await.expect("shutdown");
}

/// A waiter of one process learns of a lease another process takes while it waits, so it
/// can wake at that lease's deadline (and its reserve recover the job if that process died)
/// instead of at the end of a ten-minute wait. The other process's own waiter, blocked first,
/// takes the push's wake-up token; the lease it then takes is the queue's earliest and wakes
/// the second waiter, whose wait has nothing else to end it (no job is ready, none is
/// scheduled, `until` is an hour away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_hears_of_another_process_lease() {
    let server = RedisServer::start(&[]);
    let prefix = unique_prefix("lease-wake");
    let (clock, _time) = Clock::manual();
    let open = || connect_on(&server, &prefix, clock.clone());
    let (a, b) = (
        open().await.expect("connect a"),
        open().await.expect("connect b"),
    );
    let until = clock.now() + Duration::from_secs(3600);
    let queues = vec!["lw".to_owned()];
    let wait_on = |backend: &RedisBackend| {
        let (backend, queues) = (backend.clone(), queues.clone());
        tokio::spawn(async move { backend.wait_for_work(&queues, until).await })
    };
    let a_waits = wait_on(&a);
    blocked_clients(server.port, 1).await;
    let b_waits = wait_on(&b);
    blocked_clients(server.port, 2).await;

    a.push(vec![NewJob::new("n", "lw", "{}", clock.now())])
        .await
        .expect("push");
    tokio::time::timeout(Duration::from_secs(10), a_waits)
        .await
        .expect("the push wakes the first waiter")
        .expect("task")
        .expect("wait");
    round_trip(&b).await;
    assert!(!b_waits.is_finished(), "one token, one waiter woken");

    let leased = a
        .reserve(&ReserveRequest {
            queues: queues.clone(),
            worker: "a".into(),
            max: 1,
            lease: Duration::from_secs(30),
        })
        .await
        .expect("reserve");
    assert_eq!(leased.len(), 1);
    tokio::time::timeout(Duration::from_secs(10), b_waits)
        .await
        .expect("the earliest lease wakes the other process's waiter")
        .expect("task")
        .expect("wait");
    // A later lease of the same length is not the earliest: it wakes nobody.
    a.push(vec![NewJob::new("n", "lw", "{}", clock.now())])
        .await
        .expect("push");
    let again = a
        .reserve(&ReserveRequest {
            queues: queues.clone(),
            worker: "a".into(),
            max: 1,
            lease: Duration::from_secs(30),
        })
        .await
        .expect("reserve");
    assert_eq!(again.len(), 1);
    let tokens = raw_command(
        server.port,
        None,
        &["LLEN", &format!("{{{prefix}:lw}}:wake")],
    );
    assert_eq!(tokens.trim(), ":0", "no token left for a later lease");
}

/// A hosted Redis closes connections idle for longer than its `timeout` (here 1 s). The
/// worker's blocked wait is exempt (Redis never times out a blocked client); its command
/// connection is closed while it waits. A job pushed afterwards still runs: the worker's
/// next request finds the connection closed, it is opened again, and the worker retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_closing_idle_connections_loses_nothing() {
    let server = RedisServer::start(&["--timeout", "1"]);
    let prefix = unique_prefix("idle-close");
    let open = || connect_on(&server, &prefix, Clock::system());
    let worker = Worker::builder(open().await.expect("connect"))
        .register::<Idle>()
        .build()
        .expect("worker")
        .spawn();
    blocked_clients(server.port, 1).await;
    // The server closes the idle command connection; only the blocked one is left (and the
    // one asking).
    let deadline = Instant::now() + Duration::from_secs(30);
    while info_field(server.port, "clients", "connected_clients") > 2 {
        assert!(
            Instant::now() < deadline,
            "the server never closed the idle connection"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        info_field(server.port, "clients", "blocked_clients"),
        1,
        "the blocked wait survives the idle timeout"
    );
    let pusher = open().await.expect("connect");
    let id = pusher
        .push(vec![NewJob::new(
            Idle::NAME,
            Idle::QUEUE,
            "null",
            pusher.clock().now(),
        )])
        .await
        .expect("push")[0]
        .id;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rec = pusher.get(id).await.expect("get").expect("the job");
        if rec.state == kosh_jobs_core::JobState::Completed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the job never completed after the idle connection was closed: {rec:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.shutdown().await.expect("shutdown");
}

#[derive(Serialize, Deserialize, Default)]
struct Tick {}

impl Job for Tick {
    type Output = ();
    const NAME: &'static str = "tick";
    const QUEUE: &'static str = "ticks";
}

impl Handler<()> for Tick {
    async fn run(self, _ctx: JobContext<()>) -> Result<(), JobError> {
        Ok(())
    }
}

/// An idle worker reads the schedules every ten minutes on Redis, yet a schedule another
/// process creates fires within seconds: creating it wakes a waiter of its queue, whose
/// worker, finding no job, reads the schedules again (not sooner than 5 s after its last
/// read). The clock moves a second at a time; without the wake-up the first tick would wait
/// for the ten-minute refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_made_by_another_process_fires_before_the_refresh() {
    let server = RedisServer::start(&[]);
    let prefix = unique_prefix("sched-wake");
    let (clock, time) = Clock::manual();
    let open = || connect_on(&server, &prefix, clock.clone());
    let (w, app) = (
        open().await.expect("connect"),
        open().await.expect("connect"),
    );
    let worker = Worker::builder(w)
        .register::<Tick>()
        .build()
        .expect("worker")
        .spawn();
    blocked_for_the(server.port, 1).await;
    settled(server.port, &time).await;
    let client = kosh_jobs_core::Client::new(app.clone());
    let every = kosh_jobs_core::schedule::Schedule::every("tick-2s", Duration::from_secs(2))
        .expect("schedule");
    client
        .upsert_schedule(every, Tick {})
        .await
        .expect("upsert");
    let completed = || async {
        app.counts()
            .await
            .expect("counts")
            .iter()
            .find(|c| c.queue == Tick::QUEUE)
            .map_or(0, |c| c.completed)
    };
    let mut seconds = 0;
    while completed().await == 0 {
        assert!(
            seconds < 20,
            "no tick ran within {seconds} s of clock after the schedule was made"
        );
        time.advance(Duration::from_secs(1));
        seconds += 1;
        settled(server.port, &time).await;
    }
    worker.shutdown().await.expect("shutdown");
}

/// A backend of the test's own server under `prefix`, on `clock`: each call is another
/// process as far as the store can tell (its own connections and wake-up origin).
async fn connect_on(
    server: &RedisServer,
    prefix: &str,
    clock: Clock,
) -> Result<RedisBackend, kosh_jobs_redis::RedisError> {
    RedisBackend::connect_with(
        RedisOptions::builder(server.url())
            .prefix(prefix)
            .clock(clock)
            .build()
            .expect("options"),
    )
    .await
}

/// Waits until `n` clients are blocked in Redis.
async fn blocked_clients(port: u16, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while info_field(port, "clients", "blocked_clients") < n {
        assert!(Instant::now() < deadline, "{n} clients never blocked");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether this redis-server was built with TLS.
fn redis_has_tls() -> bool {
    support::require_redis_server();
    let out = Command::new("redis-server")
        .args(["--tls-port", "0", "--port", "0", "--test-memory", "0"])
        .output();
    // A build without TLS rejects the option itself.
    !matches!(out, Ok(o) if String::from_utf8_lossy(&o.stderr).contains("TLS")
        && String::from_utf8_lossy(&o.stderr).contains("not"))
}

#[tokio::test]
async fn tls_with_a_private_ca() {
    if !redis_has_tls() {
        // Only on a developer's machine: CI installs Debian's redis-server, which has TLS,
        // and must never count this test as passed without running it.
        assert!(
            std::env::var_os("CI").is_none(),
            "this redis-server was built without TLS, and CI must run the TLS test"
        );
        eprintln!("NOTICE: this redis-server was built without TLS; the TLS test cannot run");
        return;
    }
    let certs = kosh_jobs_testsupport::certs::TestCerts::generate("redis-server");
    let mut args = certs.server_args();
    args.extend(["--requirepass".to_owned(), "tls-Pw".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = RedisServer::start_tls(&args);
    let ca = certs.ca_pem();
    let b = RedisBackend::connect_with(
        RedisOptions::builder(server.url())
            .tls_root_cert_pem(ca)
            .prefix(unique_prefix("tls"))
            .build()
            .expect("options"),
    )
    .await
    .expect("connect over TLS");
    round_trip(&b).await;
    // Without trusting the private CA, the certificate is refused.
    let e = RedisBackend::connect(&server.url())
        .await
        .expect_err("untrusted certificate");
    assert!(!chain(&e).contains("tls-Pw"), "{}", chain(&e));
}

/// Operations make progress when called from another runtime while every worker thread of
/// the runtime that created the backend is blocked (a handler parsing a CSV file, say).
#[test]
fn operations_progress_while_the_creating_runtime_is_blocked() {
    let server = RedisServer::start(&[]);
    let blocked_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let b = blocked_rt
        .block_on(RedisBackend::connect_with(
            RedisOptions::builder(server.url())
                .prefix(unique_prefix("blocked"))
                .build()
                .expect("options"),
        ))
        .expect("connect");
    // Block the creating runtime's only worker thread until the other runtime is done.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    blocked_rt.spawn(async move {
        let _ = started_tx.send(());
        let _ = done_rx.recv(); // blocks the thread, not just the task
    });
    started_rx.recv().expect("the blocking task runs");
    let other = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    other.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), round_trip(&b))
            .await
            .expect("operations finish while the creating runtime is blocked");
        let until = b.clock().now() + Duration::from_millis(50);
        tokio::time::timeout(
            Duration::from_secs(20),
            b.wait_for_work(&["empty".into()], until),
        )
        .await
        .expect("a wait ends")
        .expect("wait_for_work");
    });
    done_tx.send(()).expect("unblock");
}

/// A paused queue whose scheduled jobs are due gives idle workers nothing to wake up for:
/// `wait_for_work` waits (until resumed) instead of returning at once, again and again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_queue_with_due_jobs_does_not_spin() {
    let (clock, time) = Clock::manual();
    let b = RedisBackend::connect_with(
        RedisOptions::builder(support::shared_url())
            .prefix(unique_prefix("paused"))
            .clock(clock)
            .build()
            .expect("options"),
    )
    .await
    .expect("connect");
    let now = b.clock().now();
    b.push(vec![NewJob::new(
        "n",
        "p",
        "{}",
        now + Duration::from_secs(10),
    )])
    .await
    .expect("push");
    b.pause("p").await.expect("pause");
    time.advance(Duration::from_secs(20));
    let req = ReserveRequest {
        queues: vec!["p".into()],
        worker: "test".into(),
        max: 10,
        lease: Duration::from_secs(30),
    };
    assert!(b.reserve(&req).await.expect("reserve").is_empty());
    let b2 = b.clone();
    let until = b.clock().now() + Duration::from_secs(3600);
    let wait = tokio::spawn(async move { b2.wait_for_work(&["p".into()], until).await });
    // A round trip lets the wait reach its blocking command.
    b.counts().await.expect("counts");
    b.counts().await.expect("counts");
    assert!(
        !wait.is_finished(),
        "the wait returned although the queue is paused"
    );
    b.resume("p").await.expect("resume");
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .expect("resume ends the wait")
        .expect("join")
        .expect("wait_for_work");
    assert_eq!(b.reserve(&req).await.expect("reserve").len(), 1);
}

async fn complete_one(b: &RedisBackend, queue: &str, outcome: Outcome) -> kosh_jobs_core::JobId {
    let now = b.clock().now();
    b.push(vec![NewJob::new("n", queue, "{}", now)])
        .await
        .expect("push");
    let l = b
        .reserve(&ReserveRequest {
            queues: vec![queue.into()],
            worker: "test".into(),
            max: 1,
            lease: Duration::from_secs(30),
        })
        .await
        .expect("reserve")
        .remove(0);
    let r = b
        .finish(vec![Finish {
            lease: l.lease,
            outcome,
        }])
        .await
        .expect("finish");
    assert_eq!(r, vec![FinishResult::Applied]);
    l.id()
}

/// Completed jobs beyond the count limit and older than the age limit are deleted, oldest
/// first; failed jobs are kept.
#[tokio::test]
async fn retention_deletes_old_completed_jobs_and_keeps_failed_ones() {
    let (clock, time) = Clock::manual();
    let b = RedisBackend::connect_with(
        RedisOptions::builder(support::shared_url())
            .prefix(unique_prefix("retention"))
            .clock(clock)
            .keep_completed_max(Some(3))
            .keep_completed_for(Some(Duration::from_secs(3600)))
            .build()
            .expect("options"),
    )
    .await
    .expect("connect");
    let done = || Outcome::Completed { result: None };
    let failed = complete_one(&b, "q", Outcome::failed("x")).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(complete_one(&b, "q", done()).await);
    }
    let counts = |b: RedisBackend| async move {
        let c = b.counts().await.expect("counts");
        let q = c.iter().find(|c| c.queue == "q").expect("queue q");
        (q.completed, q.failed)
    };
    assert_eq!(counts(b.clone()).await, (3, 1), "three completed jobs kept");
    for (i, id) in ids.iter().enumerate() {
        let kept = b.get(*id).await.expect("get").is_some();
        assert_eq!(kept, i >= 2, "job {i}: only the newest three are kept");
    }
    // An hour later, the next completion also removes those older than an hour.
    time.advance(Duration::from_secs(3601));
    let newest = complete_one(&b, "q", done()).await;
    assert_eq!(
        counts(b.clone()).await,
        (1, 1),
        "only the new completed job is left"
    );
    assert!(b.get(newest).await.expect("get").is_some());
    assert!(
        b.get(failed).await.expect("get").is_some(),
        "failed jobs are kept until purged"
    );
}

/// On a single server a unique key is unique across queues, as on the other backends.
#[tokio::test]
async fn unique_keys_span_queues() {
    let b = RedisBackend::connect_with(
        RedisOptions::builder(support::shared_url())
            .prefix(unique_prefix("uniq"))
            .build()
            .expect("options"),
    )
    .await
    .expect("connect");
    let job = |queue: &str| {
        let mut j = NewJob::new("n", queue, "{}", b.clock().now());
        j.unique_key = Some("report-2024".into());
        j
    };
    let first = b.push(vec![job("a")]).await.expect("push")[0];
    let again = b.push(vec![job("b")]).await.expect("push")[0];
    assert!(!first.existing);
    assert!(again.existing, "the key is held by the job in queue a");
    assert_eq!(again.id, first.id);
    assert_eq!(
        b.cancel(first.id).await.expect("cancel"),
        kosh_jobs_core::CancelOutcome::Cancelled
    );
    let other = b.push(vec![job("b")]).await.expect("push")[0];
    assert!(!other.existing, "freed once the holder was cancelled");
    assert_eq!(
        b.retry(first.id).await.expect("retry"),
        kosh_jobs_core::RetryOutcome::UniqueConflict(other.id),
        "retrying the cancelled job sees the holder in queue b"
    );
}
