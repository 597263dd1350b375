//! A server that closes idle connections (Redis's `timeout`, the idle limit of a hosted
//! Redis): the backend learns of the close when it happens, and its next request opens a new
//! connection instead of failing. A web process that enqueues once an hour gets no error,
//! and the job is stored once. (A worker, which retries, is tested in `tests/server.rs`.)

mod support;

use std::sync::OnceLock;
use std::time::Duration;

use kosh_jobs_core::{Backend, JobId, NewJob};
use kosh_jobs_redis::RedisBackend;
use support::{
    chain, command_stats, query_value, reserve, round_trip, unique_prefix, RedisServer, TestCerts,
};
use tokio::sync::watch;

/// The log of this test binary (the backend's debug events), to wait on.
fn logs() -> watch::Receiver<String> {
    static LOG: OnceLock<watch::Sender<String>> = OnceLock::new();
    LOG.get_or_init(|| {
        let (tx, _) = watch::channel(String::new());
        let writer = tx.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("kosh_jobs_redis=debug")
            .with_writer(move || LogWriter(writer.clone()))
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("set the subscriber");
        tx
    })
    .subscribe()
}

struct LogWriter(watch::Sender<String>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.send_modify(|log| log.push_str(&text));
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Waits until the backend of the server at `port` has logged `n` connections closed by the
/// server (Redis closes a client idle for a second within about two).
async fn closed_by_the_server(logs: &mut watch::Receiver<String>, port: u16, n: usize) {
    let addr = format!("addr=127.0.0.1:{port}");
    let seen = |log: &String| {
        log.lines()
            .filter(|l| l.contains("redis closed the connection") && l.contains(&addr))
            .count()
            >= n
    };
    let waited = tokio::time::timeout(Duration::from_secs(30), logs.wait_for(seen))
        .await
        .map(|r| r.is_ok());
    if waited != Ok(true) {
        panic!(
            "the backend never saw close number {n} of the idle connection:\n{}",
            logs.borrow().as_str()
        );
    }
}

async fn push_one(b: &RedisBackend, queue: &str) -> JobId {
    let now = b.clock().now();
    b.push(vec![NewJob::new("n", queue, "{}", now)])
        .await
        .unwrap_or_else(|e| {
            panic!(
                "an enqueue after the server closed the idle connection: {}",
                chain(&e)
            )
        })[0]
        .id
}

/// The calls of `PING` and of `AUTH` the server at `port` has run, read in one query (whose
/// own `AUTH` is counted).
fn pings_and_auths(port: u16) -> (u64, u64) {
    let stats = command_stats(port, Some(PASSWORD));
    let calls = |command: &str| {
        stats
            .iter()
            .find(|(name, _)| name == command)
            .map_or(0, |(_, n)| *n)
    };
    (calls("ping"), calls("auth"))
}

const PASSWORD: &str = "idle-Pw";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueue_after_the_server_closed_the_idle_connection_is_stored_once() {
    let mut logs = logs();
    let server = RedisServer::start(&["--timeout", "1", "--requirepass", PASSWORD]);
    let url = format!("{}?prefix={}", server.url(), unique_prefix("idle-enqueue"));
    let b = RedisBackend::connect(&url).await.expect("connect");
    let first = push_one(&b, "q").await;
    closed_by_the_server(&mut logs, server.port, 1).await;
    let (pings, auths) = pings_and_auths(server.port);
    let second = push_one(&b, "q").await;
    // Reopening cost one request, its `AUTH` (the other is the count's own), and no `PING`.
    assert_eq!(pings_and_auths(server.port), (pings, auths + 2));
    // Both stored, once each: the closed connection carried no request.
    let leased = reserve(&b, "q", 10).await;
    let ids: Vec<JobId> = leased.iter().map(|l| l.id()).collect();
    assert_eq!(ids, vec![first, second]);
    // And again, after the new connection idled out in turn.
    closed_by_the_server(&mut logs, server.port, 2).await;
    round_trip(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_connection_closed_while_idle_is_reopened() {
    let mut logs = logs();
    let certs = TestCerts::generate("idle");
    let server =
        RedisServer::start_tls_with(&certs, &["--requirepass", "idle-Pw", "--timeout", "1"]);
    let url = format!(
        "{}?prefix={}&ca_file={}",
        server.url(),
        unique_prefix("idle-tls"),
        query_value(&certs.ca().display().to_string())
    );
    let b = RedisBackend::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("connect over TLS: {}", chain(&e)));
    round_trip(&b).await;
    closed_by_the_server(&mut logs, server.port, 1).await;
    round_trip(&b).await;
}
