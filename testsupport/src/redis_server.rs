//! A private `redis-server` for a test or bench run: started on a free port in a temporary directory,
//! with persistence off, ready once it answers `PING`, and killed when dropped.
//!
//! The server runs under a small `sh` that also watches this process: it kills the server
//! when the pipe to its standard input closes, which happens when the [`RedisServer`] is
//! dropped and also when the bench process dies without dropping it (a panic with
//! `panic = "abort"`, a signal), so no server outlives its bench.

use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::resp::{RedisAddr, Resp};

/// What to tell someone whose machine has no `redis-server`.
pub const INSTALL_HINT: &str = "install it (`apt-get install redis-server`, `brew install redis`) \
or run the workspace's test script, which installs it (`scripts/test.sh`)";

/// How long the server may take to answer `PING`.
const START_DEADLINE: Duration = Duration::from_secs(15);

/// One `redis-server` process of this bench.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port of 127.0.0.1 and waits until it answers `PING`.
    ///
    /// Fails with a message saying how to install one if `redis-server` is not on `PATH`, or
    /// with the server's log if it did not come up.
    pub fn start() -> anyhow::Result<RedisServer> {
        match Command::new("redis-server").arg("--version").output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => bail!(
                "`redis-server --version` failed ({}); {INSTALL_HINT}",
                o.status
            ),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                bail!("no `redis-server` on PATH; {INSTALL_HINT}")
            }
            Err(e) => bail!("cannot run `redis-server`: {e}; {INSTALL_HINT}"),
        }
        let dir = tempfile::Builder::new()
            .prefix("kosh-test-redis-")
            .tempdir()
            .context("temporary directory for redis-server")?;
        let mut server = RedisServer {
            port: 0,
            dir,
            child: None,
        };
        // Another process may take the port between our probe and the server's bind: retry.
        let mut last = String::new();
        for _ in 0..5 {
            server.port = free_port()?;
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(e) => {
                    last = format!("{e:#}");
                    if !last.contains("Address already in use") {
                        break;
                    }
                }
            }
        }
        bail!("redis-server did not start: {last}")
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let dir = self.dir.path().display().to_string();
        let log = self.log_path().display().to_string();
        let port = self.port.to_string();
        let args = [
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--dir",
            &dir,
            "--logfile",
            &log,
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
            "--daemonize",
            "no",
        ];
        // `cat` returns when our end of the pipe closes (dropped, or this process died).
        let watchdog = r#"redis-server "$@" </dev/null >/dev/null 2>&1 &
server=$!
cat >/dev/null
kill -9 "$server" 2>/dev/null
wait "$server" 2>/dev/null
exit 0"#;
        let child = Command::new("sh")
            .arg("-c")
            .arg(watchdog)
            .arg("kosh-bench-redis")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run sh to start redis-server")?;
        self.child = Some(child);
        let addr = RedisAddr::parse(&self.url())?;
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let answer = Resp::connect(&addr, Duration::from_millis(500))
                .and_then(|mut c| c.command(&["PING"]));
            if matches!(answer.as_deref(), Ok("PONG")) {
                return Ok(());
            }
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            let gone = match self.child.as_mut() {
                Some(c) => matches!(c.try_wait(), Ok(Some(_))),
                None => true,
            };
            let exited = gone || log.contains("Address already in use") || log.contains("# Fatal");
            if exited || Instant::now() > deadline {
                self.stop();
                let why = if exited {
                    "it exited"
                } else {
                    "no PONG within the deadline"
                };
                bail!("{why}; its log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server and waits for it (also done on drop).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take()); // the watchdog kills the server
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("no free port on 127.0.0.1")?;
    Ok(l.local_addr()?.port())
}
