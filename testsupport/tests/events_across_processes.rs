//! Lifecycle events seen from another process: a child subscribes to a queue's events, this
//! test enqueues four scripted jobs and runs a worker, and the child must print each job's
//! whole lifecycle in order, on SQLite (a file the processes share), on Redis and on Postgres.
//! Then what a subscriber sees when its connection drops or Redis restarts: `Missed`, then
//! events again (for Postgres: `kosh-jobs-postgres/tests/events.rs`).

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use kosh_jobs::events::{Event, EventFilter, JobEventKind};
use kosh_jobs::{Client, JobState, Worker};
use kosh_jobs_testsupport::events::{check_lines, run_scenario};
use kosh_jobs_testsupport::jobs::Double;
use kosh_jobs_testsupport::postgres_server::PostgresServer;
use kosh_jobs_testsupport::redis_server::RedisServer;
use kosh_jobs_testsupport::resp::{RedisAddr, Resp};

const CHILD: &str = env!("CARGO_BIN_EXE_kosh-jobs-test-child");
const LIMIT: Duration = Duration::from_secs(30);

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn line(out: &mut BufReader<ChildStdout>) -> String {
    let mut l = String::new();
    out.read_line(&mut l).expect("read the child's output");
    l.trim().to_owned()
}

async fn across_processes(url: &str) {
    let mut child = Command::new(CHILD)
        .args(["events", url, "scripted"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the child process");
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    let child = Proc(child);
    assert_eq!(line(&mut out), "subscribed", "{url}");

    let backend = kosh_jobs::connect(url).await.unwrap();
    let client = Client::new(backend.clone());
    let expected = run_scenario(&client, backend).await;
    let total: usize = expected.by_job.values().map(Vec::len).sum();
    let read =
        tokio::task::spawn_blocking(move || (0..total).map(|_| line(&mut out)).collect::<Vec<_>>());
    let lines = match tokio::time::timeout(LIMIT, read).await {
        Ok(lines) => lines.unwrap(),
        Err(_) => panic!("{url}: the child did not print {total} events within {LIMIT:?}"),
    };
    check_lines(&lines, &expected);
    drop(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    across_processes(&format!(
        "sqlite://{}?events=true",
        dir.path().join("jobs.db").display()
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis() {
    let server = RedisServer::start().expect("a private redis-server (see scripts/test.sh)");
    across_processes(&format!("{}?prefix=events&events=true", server.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    let server = PostgresServer::start().expect("a private postgres (see scripts/test.sh)");
    across_processes(&format!("{}?schema=events&events=true", server.url())).await;
}

/// The next event, within [`LIMIT`].
async fn next(sub: &mut kosh_jobs::events::Subscription) -> Event {
    tokio::time::timeout(LIMIT, sub.next())
        .await
        .expect("an event within the limit")
        .expect("the feed goes on")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_then_a_restart_are_reported_not_silent() {
    let mut server = RedisServer::start().expect("a private redis-server (see scripts/test.sh)");
    let url = format!("{}?prefix=cut&events=true", server.url());
    let backend = kosh_jobs::connect(&url).await.unwrap();
    let client = Client::new(backend.clone());

    // Redis drops the subscriber's connection (the job is kept): the subscription says it
    // may have missed events and hands over the job as it is now, then goes on.
    let job = client.enqueue(Double { n: 4 }).await.unwrap();
    let mut one = client.subscribe(EventFilter::Job(job.id())).await.unwrap();
    let mut admin = Resp::connect(&RedisAddr::parse(&server.url()).unwrap(), LIMIT).unwrap();
    admin
        .command(&["CLIENT", "KILL", "TYPE", "pubsub"])
        .unwrap();
    match next(&mut one).await {
        Event::Missed { current: Some(rec) } => {
            assert_eq!((rec.id, rec.state), (job.id(), JobState::Ready))
        }
        other => panic!("expected Missed with the job, got {other:?}"),
    }
    let worker = Worker::builder(backend.clone())
        .register::<Double>()
        .build()
        .unwrap()
        .spawn();
    let mut kinds = Vec::new();
    while !kinds.last().is_some_and(|k: &JobEventKind| k.is_final()) {
        match next(&mut one).await {
            Event::Job(e) => kinds.push(e.kind),
            other => panic!("{other:?} after {kinds:?}"),
        }
    }
    assert_eq!(kinds, [JobEventKind::Started, JobEventKind::Completed]);
    worker.shutdown().await.unwrap();

    // Redis restarts (its data gone): `Missed` once subscribed again, then new events.
    let mut all = client.subscribe(EventFilter::All).await.unwrap();
    server.restart().unwrap();
    assert!(
        matches!(next(&mut all).await, Event::Missed { current: None }),
        "a queue-wide subscription reports the gap"
    );
    let after = loop {
        // The backend's own connection comes back on its own; until then enqueue fails.
        match client.enqueue(Double { n: 5 }).await {
            Ok(h) => break h,
            Err(e) if e.is_unavailable() => tokio::task::yield_now().await,
            Err(e) => panic!("{e}"),
        }
    };
    match next(&mut all).await {
        Event::Job(e) => assert_eq!((e.id, e.kind), (after.id(), JobEventKind::Enqueued)),
        other => panic!("expected the new job's event, got {other:?}"),
    }
}

/// Subscribers of one backend share one pub/sub connection (so many `wait`s cost one), and it
/// is closed once the last subscriber is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_of_a_backend_share_one_redis_connection() {
    let server = RedisServer::start().expect("a private redis-server (see scripts/test.sh)");
    let url = format!("{}?prefix=hub&events=true", server.url());
    let client = Client::new(kosh_jobs::connect(&url).await.unwrap());
    let mut admin = Resp::connect(&RedisAddr::parse(&server.url()).unwrap(), LIMIT).unwrap();
    let mut numsub = || {
        let reply = admin.command(&["PUBSUB", "NUMSUB", "hub:events"]).unwrap();
        reply.lines().nth(1).unwrap_or_default().to_owned()
    };
    let mut subs = Vec::new();
    for _ in 0..25 {
        subs.push(client.subscribe(EventFilter::All).await.unwrap());
    }
    assert_eq!(numsub(), "1", "one connection for 25 subscribers");
    // They all get each event.
    let job = client.enqueue(Double { n: 1 }).await.unwrap();
    for sub in &mut subs {
        match next(sub).await {
            Event::Job(e) => assert_eq!((e.id, e.kind), (job.id(), JobEventKind::Enqueued)),
            other => panic!("{other:?}"),
        }
    }
    drop(subs);
    let deadline = std::time::Instant::now() + LIMIT;
    while numsub() != "0" {
        assert!(
            std::time::Instant::now() < deadline,
            "the shared connection is closed with its last subscriber"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
