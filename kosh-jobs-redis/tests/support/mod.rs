//! Test servers: each test binary starts its own `redis-server` processes on free ports in
//! temporary directories (or uses `KOSH_TEST_REDIS_URL` for the shared one), waits until
//! they accept connections, and kills them when dropped. A watchdog kills them too if the
//! test process dies without dropping them.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub mod schedules;

/// Push, reserve and complete one job: the backend works.
pub async fn round_trip(b: &kosh_jobs_redis::RedisBackend) {
    use kosh_jobs_core::{Backend as _, Finish, FinishResult, NewJob, Outcome, ReserveRequest};
    let now = b.clock().now();
    let id = b
        .push(vec![NewJob::new("n", "q", "{}", now)])
        .await
        .expect("push")[0]
        .id;
    let leased = b
        .reserve(&ReserveRequest {
            queues: vec!["q".into()],
            worker: "test".into(),
            max: 1,
            lease: Duration::from_secs(30),
        })
        .await
        .expect("reserve");
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].id(), id);
    let r = b
        .finish(vec![Finish {
            lease: leased[0].lease,
            outcome: Outcome::Completed { result: None },
        }])
        .await
        .expect("finish");
    assert_eq!(r, vec![FinishResult::Applied]);
}

/// A backend of `server` under `prefix`, with default options.
pub async fn backend(server: &RedisServer, prefix: &str) -> kosh_jobs_redis::RedisBackend {
    kosh_jobs_redis::RedisBackend::connect_with(
        kosh_jobs_redis::RedisOptions::builder(server.url())
            .prefix(prefix)
            .build()
            .expect("options"),
    )
    .await
    .expect("connect")
}

/// Leases up to `max` jobs of `queue` for 30 s as worker `test`.
pub async fn reserve(
    b: &kosh_jobs_redis::RedisBackend,
    queue: &str,
    max: usize,
) -> Vec<kosh_jobs_core::LeasedJob> {
    use kosh_jobs_core::{Backend as _, ReserveRequest};
    b.reserve(&ReserveRequest {
        queues: vec![queue.into()],
        worker: "test".into(),
        max,
        lease: Duration::from_secs(30),
    })
    .await
    .expect("reserve")
}

/// An error with its sources, each shown and debug-printed (to look for leaked passwords).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = format!("{e} / {e:?}");
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(&format!(" / {c} / {c:?}"));
        cur = c.source();
    }
    s
}

const INSTALL_HINT: &str =
    "redis-server not found: install it with `apt-get install redis-server` or set KOSH_TEST_REDIS_URL";

/// How long a server may take to start.
const START_DEADLINE: Duration = Duration::from_secs(20);

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A key prefix no other test (of this or another run) uses.
pub fn unique_prefix(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "kt-{tag}-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Panics with the install hint unless `redis-server` can be run.
pub fn require_redis_server() {
    match Command::new("redis-server").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        _ => panic!("{INSTALL_HINT}"),
    }
}

/// The URL of the server shared by the tests of this binary: `KOSH_TEST_REDIS_URL`, or a
/// server started on first use (killed when the test process exits).
pub fn shared_url() -> String {
    static SHARED: OnceLock<String> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            if let Ok(url) = std::env::var("KOSH_TEST_REDIS_URL") {
                if !url.is_empty() {
                    return url;
                }
            }
            let server = RedisServer::start(&[]);
            let url = server.url();
            server.leak_until_exit();
            url
        })
        .clone()
}

/// A free TCP port on 127.0.0.1 (free when this returns; a collision is retried by `start`).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// One `redis-server` process.
pub struct RedisServer {
    pub port: u16,
    pub dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    /// `rediss://` instead of `redis://` in [`RedisServer::url`].
    pub tls: bool,
    pub password: Option<String>,
    keep_dir: bool,
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique_prefix(tag));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

impl RedisServer {
    /// Starts a server with extra arguments (e.g. `--requirepass`, `--appendonly yes`).
    pub fn start(extra: &[&str]) -> RedisServer {
        Self::start_in(temp_dir("srv"), extra, false)
    }

    /// Starts a server whose plain port is off and whose `--tls-port` is the chosen port.
    pub fn start_tls(extra: &[&str]) -> RedisServer {
        Self::start_in(temp_dir("tls"), extra, true)
    }

    /// Starts a TLS-only server presenting the server certificate of `certs` (clients are not
    /// asked for certificates of their own); its [`RedisServer::url`] is `rediss://127.0.0.1:port`.
    pub fn start_tls_with(certs: &TestCerts, extra: &[&str]) -> RedisServer {
        require_redis_tls();
        let mut args = certs.server_args();
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Self::start_tls(&args)
    }

    fn start_in(dir: PathBuf, extra: &[&str], tls: bool) -> RedisServer {
        require_redis_server();
        let args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let password = args
            .iter()
            .position(|a| a == "--requirepass")
            .and_then(|i| args.get(i + 1).cloned());
        let mut last_log = String::new();
        for _ in 0..10 {
            let mut s = RedisServer {
                port: free_port(),
                dir: dir.clone(),
                args: args.clone(),
                child: None,
                tls,
                password: password.clone(),
                keep_dir: false,
            };
            match s.spawn() {
                Ok(()) => return s,
                Err(log) => {
                    last_log = log;
                    s.keep_dir = true; // the next try uses the same directory
                    if !last_log.contains("Address already in use") {
                        break;
                    }
                }
            }
        }
        panic!("redis-server did not start; its log:\n{last_log}");
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(format!("redis-{}.log", self.port))
    }

    fn pid_path(&self) -> PathBuf {
        self.dir.join("redis.pid")
    }

    /// Starts the process and waits until it accepts connections; on failure, its log.
    fn spawn(&mut self) -> Result<(), String> {
        let log = self.log_path();
        let _ = std::fs::remove_file(&log);
        let _ = std::fs::remove_file(self.pid_path());
        let port = self.port.to_string();
        let mut args: Vec<String> = vec![
            "--bind".into(),
            "127.0.0.1".into(),
            "--dir".into(),
            self.dir.display().to_string(),
            "--logfile".into(),
            log.display().to_string(),
            "--pidfile".into(),
            self.pid_path().display().to_string(),
            "--save".into(),
            "".into(),
            "--protected-mode".into(),
            "no".into(),
        ];
        if self.tls {
            args.extend(["--port".into(), "0".into(), "--tls-port".into(), port]);
        } else {
            args.extend(["--port".into(), port]);
        }
        args.extend(self.args.iter().cloned());
        // The shell keeps a watchdog that kills the server once our end of its stdin closes,
        // which also happens when the test process dies.
        // (Background jobs of a non-interactive shell read /dev/null unless told otherwise.)
        // A server left running until the process exits (see `leak_until_exit`) also gets its
        // directory removed then.
        let script = r#"exec 3<&0
dir=$1
shift
redis-server "$@" </dev/null &
pid=$!
( cat <&3 >/dev/null; kill -9 $pid 2>/dev/null; [ -e "$dir/.remove-on-exit" ] && rm -rf "$dir" ) &
wait $pid"#;
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(&self.dir)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run sh: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("Ready to accept connections") {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .map(|c| matches!(c.try_wait(), Ok(Some(_))))
                .unwrap_or(true);
            if exited || Instant::now() > deadline {
                self.kill();
                return Err(if text.is_empty() {
                    "(empty log)".into()
                } else {
                    text
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `redis://127.0.0.1:port` (with the password, if any).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        match &self.password {
            Some(p) => format!("{scheme}://:{p}@127.0.0.1:{}", self.port),
            None => format!("{scheme}://127.0.0.1:{}", self.port),
        }
    }

    fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.pid_path())
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Kills the server at once (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
        self.reap();
    }

    /// Stops the server the way an operator's restart does (SIGTERM: it writes its append-only
    /// file and exits), and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        self.reap();
    }

    fn reap(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take());
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }
    }

    /// Starts the server again on the same port and directory.
    pub fn restart(&mut self) {
        let mut last = String::new();
        let deadline = Instant::now() + START_DEADLINE;
        while Instant::now() < deadline {
            match self.spawn() {
                Ok(()) => return,
                // The old socket may linger for a moment.
                Err(log) if log.contains("Address already in use") => last = log,
                Err(log) => panic!("redis-server did not restart; its log:\n{log}"),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not restart; its log:\n{last}");
    }

    /// Keeps the server running until the test process exits, then kills it and removes its
    /// directory (for servers shared through a `static`).
    pub fn leak_until_exit(self) {
        let _ = std::fs::write(self.dir.join(".remove-on-exit"), b"");
        std::mem::forget(self);
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Sends one command over a plain TCP connection (RESP), returning the raw reply text.
/// For test checks only (no TLS).
pub fn raw_command(port: u16, password: Option<&str>, args: &[&str]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to redis");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut send = |args: &[&str]| {
        let mut buf = format!("*{}\r\n", args.len());
        for a in args {
            buf.push_str(&format!("${}\r\n{}\r\n", a.len(), a));
        }
        s.write_all(buf.as_bytes()).expect("write to redis");
    };
    if let Some(p) = password {
        send(&["AUTH", p]);
    }
    send(args);
    let mut r = BufReader::new(s.try_clone().expect("clone stream"));
    if password.is_some() {
        let mut line = String::new();
        r.read_line(&mut line).expect("read AUTH reply");
    }
    read_reply(&mut r)
}

fn read_reply(r: &mut impl BufRead) -> String {
    let mut line = String::new();
    r.read_line(&mut line).expect("read reply");
    let line = line.trim_end().to_string();
    match line.chars().next() {
        Some('$') => {
            let n: i64 = line[1..].parse().unwrap_or(-1);
            if n < 0 {
                return String::new();
            }
            let mut buf = vec![0u8; n as usize + 2];
            r.read_exact(&mut buf).expect("read bulk");
            String::from_utf8_lossy(&buf[..n as usize]).into_owned()
        }
        Some('*') => {
            let n: i64 = line[1..].parse().unwrap_or(0);
            (0..n.max(0))
                .map(|_| read_reply(r))
                .collect::<Vec<_>>()
                .join("\n")
        }
        _ => line,
    }
}

/// The "jobs are ready" tokens (`1`) in a wake-up list: each wakes one waiter into a
/// reserve. A reserve that takes a queue's earliest lease also leaves an `s:<origin>` token,
/// which only waiters of other processes act on (they learn the lease's deadline).
pub fn ready_tokens(port: u16, key: &str) -> usize {
    raw_command(port, None, &["LRANGE", key, "0", "-1"])
        .lines()
        .filter(|t| *t == "1")
        .count()
}

/// Total calls per command from `INFO commandstats`, e.g. `evalsha` → 12.
pub fn command_stats(port: u16, password: Option<&str>) -> Vec<(String, u64)> {
    let info = raw_command(port, password, &["INFO", "commandstats"]);
    info.lines()
        .filter_map(|l| {
            let l = l.strip_prefix("cmdstat_")?;
            let (name, rest) = l.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_string(), calls.parse().ok()?))
        })
        .collect()
}

/// The index in `nodes` of the master serving `slot`, as the cluster itself says (`CLUSTER
/// NODES`, each node's own line), not as an even split of the slots would put it:
/// `redis-cli --cluster create` gives the first master one slot fewer than the second.
pub fn node_serving(nodes: &[ClusterNode], slot: usize) -> Option<usize> {
    nodes.iter().position(|node| {
        let table = raw_command(node.port, None, &["CLUSTER", "NODES"]);
        let Some(mine) = table.lines().find(|l| l.contains("myself")) else {
            return false;
        };
        mine.split_whitespace().skip(8).any(|range| {
            let range = range.trim_start_matches('[').trim_end_matches(']');
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            match (a.parse::<usize>(), b.parse::<usize>()) {
                (Ok(a), Ok(b)) => (a..=b).contains(&slot),
                _ => false,
            }
        })
    })
}

/// A Redis Cluster of `n` masters (no replicas, no persistence): testsupport's
/// [`kosh_jobs_testsupport::redis_cluster::RedisCluster`], with its nodes' ports at hand.
pub struct RedisCluster {
    pub nodes: Vec<ClusterNode>,
    inner: kosh_jobs_testsupport::redis_cluster::RedisCluster,
}

/// One node of a [`RedisCluster`].
pub struct ClusterNode {
    pub port: u16,
}

impl RedisCluster {
    pub fn start(n: usize) -> RedisCluster {
        let inner = kosh_jobs_testsupport::redis_cluster::RedisCluster::start_with(
            n,
            0,
            kosh_jobs_testsupport::redis_server::RedisServer::options(),
            Duration::from_secs(5),
        )
        .unwrap_or_else(|e| panic!("the test cluster did not start: {e:#}"));
        let nodes = inner
            .nodes()
            .iter()
            .map(|s| ClusterNode { port: s.port() })
            .collect();
        RedisCluster { nodes, inner }
    }

    /// Keeps the nodes running until the test process exits (each node's watchdog stops it
    /// then).
    pub fn leak_until_exit(self) {
        std::mem::forget(self.inner);
    }

    /// A `redis+cluster://` URL of the first node; the others are found from it.
    pub fn url(&self) -> String {
        format!("redis+cluster://127.0.0.1:{}", self.nodes[0].port)
    }

    /// A `redis+cluster://` URL that lists every node as a seed.
    pub fn seeds_url(&self) -> String {
        self.inner.url()
    }
}

/// Panics with a hint unless this `redis-server` was built with TLS (Debian's and Homebrew's
/// are).
pub fn require_redis_tls() {
    static HAS_TLS: OnceLock<bool> = OnceLock::new();
    let has = *HAS_TLS.get_or_init(|| {
        require_redis_server();
        // A build without TLS refuses the option itself ("... not supported ..."); one with
        // TLS only complains about the missing certificate files.
        let out = Command::new("redis-server")
            .args(["--tls-port", "0", "--port", "0", "--test-memory", "0"])
            .output();
        !matches!(out, Ok(o) if {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            text.contains("TLS") && text.contains("not")
        })
    });
    assert!(
        has,
        "this redis-server was built without TLS support; install Debian's \
         (`apt-get install redis-server`) or one built with BUILD_TLS=yes"
    );
}

/// The throwaway CA and server certificate of the TLS tests (shared with the Postgres tests).
pub use kosh_jobs_testsupport::certs::TestCerts;

/// `s` percent-encoded for a URL's query string (a file path as an option value).
pub fn query_value(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// A private server, a fresh key prefix and a manual clock: for tests that read the keys a
/// queue `q` leaves behind.
pub struct KeysSetup {
    pub server: RedisServer,
    pub prefix: String,
    pub clock: kosh_jobs_core::Clock,
    pub manual: kosh_jobs_core::ManualClock,
}

impl KeysSetup {
    pub fn new(tag: &str) -> KeysSetup {
        let (clock, manual) = kosh_jobs_core::Clock::manual();
        KeysSetup {
            server: RedisServer::start(&[]),
            prefix: unique_prefix(tag),
            clock,
            manual,
        }
    }

    /// A backend on the manual clock, with the options `opts` adds.
    pub async fn backend(
        &self,
        opts: impl FnOnce(kosh_jobs_redis::RedisOptionsBuilder) -> kosh_jobs_redis::RedisOptionsBuilder,
    ) -> kosh_jobs_redis::RedisBackend {
        let builder = kosh_jobs_redis::RedisOptions::builder(self.server.url())
            .prefix(self.prefix.as_str())
            .clock(self.clock.clone());
        kosh_jobs_redis::RedisBackend::connect_with(opts(builder).build().expect("options"))
            .await
            .expect("connect")
    }

    /// Key `k` of queue `q`.
    pub fn key(&self, k: &str) -> String {
        format!("{{{}:q}}:{k}", self.prefix)
    }

    /// A command's reply, trimmed.
    pub fn cmd(&self, args: &[&str]) -> String {
        raw_command(self.server.port, None, args).trim().to_owned()
    }
}
