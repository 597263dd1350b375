//! A private `redis-server` for a test or bench run: started on a free port in a temporary directory,
//! with persistence off (or an append-only file, [`RedisServer::start_with_aof`]), ready once it
//! answers `PING`, and killed when dropped.
//!
//! The server runs under a small `sh` that also watches this process: it kills the server
//! when the pipe to its standard input closes, which happens when the [`RedisServer`] is
//! dropped and also when the bench process dies without dropping it (a panic with
//! `panic = "abort"`, a signal), so no server outlives its bench.

use std::io::ErrorKind;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::resp::{RedisAddr, Resp};
use crate::watched::{on_free_port, Startup, Watched};

/// What to tell someone whose machine has no `redis-server`.
pub const INSTALL_HINT: &str = "install it (`apt-get install redis-server`, `brew install redis`) \
or run the workspace's test script, which installs it (`scripts/test.sh`)";

/// How long the server may take to answer `PING`.
const START_DEADLINE: Duration = Duration::from_secs(15);

/// One `redis-server` process of this bench.
pub struct RedisServer {
    port: u16,
    password: Option<String>,
    /// Whether the server keeps an append-only file (`appendfsync always`).
    aof: bool,
    dir: tempfile::TempDir,
    server: Option<Watched>,
}

impl RedisServer {
    /// Starts a server on a free port of 127.0.0.1 and waits until it answers `PING`.
    ///
    /// Fails with a message saying how to install one if `redis-server` is not on `PATH`, or
    /// with the server's log if it did not come up.
    pub fn start() -> anyhow::Result<RedisServer> {
        Self::start_with(None, false)
    }

    /// Starts a server as [`RedisServer::start`] does, that writes every change to an
    /// append-only file before it answers (`appendonly yes`, `appendfsync always`), so a
    /// [`RedisServer::restart`] (a `SIGKILL` and a new server on the same files) keeps every
    /// acknowledged write, as a production server with AOF does.
    pub fn start_with_aof() -> anyhow::Result<RedisServer> {
        Self::start_with(None, true)
    }

    /// Starts a server as [`RedisServer::start`] does, that asks clients for `password`
    /// (`requirepass`; [`RedisServer::url`] carries it). Keep it to letters, digits and `-`,
    /// which need no escaping in a URL.
    pub fn start_with_password(password: &str) -> anyhow::Result<RedisServer> {
        Self::start_with(Some(password), false)
    }

    fn start_with(password: Option<&str>, aof: bool) -> anyhow::Result<RedisServer> {
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
            password: password.map(str::to_owned),
            aof,
            dir,
            server: None,
        };
        on_free_port("redis-server", &["Address already in use"], |port| {
            server.port = port;
            server.spawn()
        })?;
        Ok(server)
    }

    /// `redis://127.0.0.1:PORT`, or `redis://:PASSWORD@127.0.0.1:PORT` with a password.
    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
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
        let mut args = vec![
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
            if self.aof { "yes" } else { "no" },
            "--protected-mode",
            "no",
            "--daemonize",
            "no",
        ];
        if let Some(p) = &self.password {
            args.extend(["--requirepass", p]);
        }
        if self.aof {
            args.extend(["--appendfsync", "always"]);
        }
        // `cat` returns when our end of the pipe closes (dropped, or this process died).
        let watchdog = r#"redis-server "$@" </dev/null >/dev/null 2>&1 &
server=$!
cat >/dev/null
kill -9 "$server" 2>/dev/null
wait "$server" 2>/dev/null
exit 0"#;
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg(watchdog)
            .arg("kosh-bench-redis")
            .args(args);
        let addr = RedisAddr::parse(&self.url())?;
        let log = self.log_path();
        let startup = Startup {
            what: "redis-server",
            log: &log,
            fatal: &["Address already in use", "# Fatal"],
            not_ready: "no PONG within the deadline",
            deadline: START_DEADLINE,
        };
        self.server = Some(Watched::start(&mut sh, &startup, || {
            let answer = Resp::connect(&addr, Duration::from_millis(500))
                .and_then(|mut c| c.command(&["PING"]));
            matches!(answer.as_deref(), Ok("PONG"))
        })?);
        Ok(())
    }

    /// Kills the server (`SIGKILL`) and starts a new one on the same port and directory,
    /// waiting until it answers `PING`. Every client connection drops. Without an append-only
    /// file the data is gone; with one ([`RedisServer::start_with_aof`]) the new server loads
    /// every write the old one acknowledged.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.spawn()
    }

    /// Kills the server and waits for it (also done on drop).
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.stop();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
