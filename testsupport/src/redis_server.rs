//! A private `redis-server` for a test or bench run: started on a free port in a temporary directory,
//! with persistence off (or an append-only file, [`RedisServer::start_with_aof`]), ready once it
//! answers `PING`, and killed when dropped.
//!
//! The server runs under a small `sh` that also watches this process: it kills the server
//! when the pipe to its standard input closes, which happens when the [`RedisServer`] is
//! dropped and also when the bench process dies without dropping it (a panic with
//! `panic = "abort"`, a signal), so no server outlives its bench.
//!
//! It listens on 127.0.0.1, and also on the addresses given to
//! [`RedisServerOptions::also_listen_on`] (the chaos soak's workers reach it across a veth
//! pair).

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
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
    opts: RedisServerOptions,
    dir: tempfile::TempDir,
    server: Option<Watched>,
}

/// How a [`RedisServer`] is started: [`RedisServer::options`], then [`RedisServerOptions::start`].
#[derive(Clone, Debug, Default)]
pub struct RedisServerOptions {
    password: Option<String>,
    /// Whether the server keeps an append-only file (`appendfsync always`).
    aof: bool,
    /// Addresses it listens on besides 127.0.0.1.
    also_on: Vec<IpAddr>,
    /// A Redis Cluster node, with this `cluster-node-timeout` (see [`crate::redis_cluster`]).
    cluster_node_timeout: Option<Duration>,
}

impl RedisServerOptions {
    /// Asks clients for `password` (`requirepass`; [`RedisServer::url`] carries it). Keep it
    /// to letters, digits and `-`, which need no escaping in a URL.
    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_owned());
        self
    }

    /// Writes every change to an append-only file before answering (see
    /// [`RedisServer::start_with_aof`]).
    pub fn aof(mut self) -> Self {
        self.aof = true;
        self
    }

    /// Listens on `addr` too (an address of this machine: the server does not start if it
    /// cannot bind it), also after a [`RedisServer::restart`]; [`RedisServer::url_on`] names it.
    pub fn also_listen_on(mut self, addr: IpAddr) -> Self {
        self.also_on.push(addr);
        self
    }

    /// Runs a Redis Cluster node (`cluster-enabled yes`) that declares an unreachable node
    /// failed after `node_timeout`; its cluster bus port (its port + 10000) must be free too.
    /// [`crate::redis_cluster::RedisCluster`] makes a cluster of such nodes.
    pub fn cluster_node(mut self, node_timeout: Duration) -> Self {
        self.cluster_node_timeout = Some(node_timeout);
        self
    }

    /// Starts the server on a free port and waits until it answers `PING` on 127.0.0.1.
    ///
    /// Fails with a message saying how to install one if `redis-server` is not on `PATH`, or
    /// with the server's log if it did not come up.
    pub fn start(self) -> anyhow::Result<RedisServer> {
        RedisServer::start_with(self)
    }
}

impl RedisServer {
    /// Starts a server on a free port of 127.0.0.1 and waits until it answers `PING`.
    ///
    /// Fails with a message saying how to install one if `redis-server` is not on `PATH`, or
    /// with the server's log if it did not come up.
    pub fn start() -> anyhow::Result<RedisServer> {
        Self::options().start()
    }

    /// Options to start a server with (a password, an append-only file, more addresses).
    pub fn options() -> RedisServerOptions {
        RedisServerOptions::default()
    }

    /// Starts a server as [`RedisServer::start`] does, that writes every change to an
    /// append-only file before it answers (`appendonly yes`, `appendfsync always`), so a
    /// [`RedisServer::restart`] (a `SIGKILL` and a new server on the same files) keeps every
    /// acknowledged write, as a production server with AOF does.
    pub fn start_with_aof() -> anyhow::Result<RedisServer> {
        Self::options().aof().start()
    }

    /// Starts a server as [`RedisServer::start`] does, that asks clients for `password`
    /// (`requirepass`; [`RedisServer::url`] carries it). Keep it to letters, digits and `-`,
    /// which need no escaping in a URL.
    pub fn start_with_password(password: &str) -> anyhow::Result<RedisServer> {
        Self::options().password(password).start()
    }

    fn start_with(opts: RedisServerOptions) -> anyhow::Result<RedisServer> {
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
            opts,
            dir,
            server: None,
        };
        let cluster = server.opts.cluster_node_timeout.is_some();
        on_free_port("redis-server", &["Address already in use"], |port| {
            // A cluster node also listens on port + 10000 (its bus).
            if cluster && !bus_port_free(port) {
                bail!("cluster bus port of {port}: Address already in use");
            }
            server.port = port;
            server.spawn()
        })?;
        Ok(server)
    }

    /// `redis://127.0.0.1:PORT`, or `redis://:PASSWORD@127.0.0.1:PORT` with a password.
    pub fn url(&self) -> String {
        self.url_on(IpAddr::from([127, 0, 0, 1]))
    }

    /// The URL of the server at `addr` (127.0.0.1 or one given to
    /// [`RedisServerOptions::also_listen_on`]), with the password if it has one.
    pub fn url_on(&self, addr: IpAddr) -> String {
        let at = SocketAddr::new(addr, self.port);
        match &self.opts.password {
            Some(p) => format!("redis://:{p}@{at}"),
            None => format!("redis://{at}"),
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
        let also: Vec<String> = self.opts.also_on.iter().map(IpAddr::to_string).collect();
        let mut args = vec!["--port", &port, "--bind", "127.0.0.1"];
        // The values of `--bind` follow it, as in the configuration file.
        args.extend(also.iter().map(String::as_str));
        args.extend([
            "--dir",
            &dir,
            "--logfile",
            &log,
            "--save",
            "",
            "--appendonly",
            if self.opts.aof { "yes" } else { "no" },
            "--protected-mode",
            "no",
            "--daemonize",
            "no",
        ]);
        if let Some(p) = &self.opts.password {
            args.extend(["--requirepass", p]);
        }
        if self.opts.aof {
            args.extend(["--appendfsync", "always"]);
        }
        let node_timeout = self
            .opts
            .cluster_node_timeout
            .map(|t| t.as_millis().to_string());
        if let Some(t) = &node_timeout {
            args.extend([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                t,
            ]);
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

    /// Starts the server again after a [`RedisServer::stop`], on the same port and directory
    /// (a cluster node keeps its identity, in `nodes.conf`), and waits until it answers
    /// `PING`. Does nothing if it is running.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        if self.server.is_some() {
            return Ok(());
        }
        self.spawn()
    }

    /// Whether the server was stopped ([`RedisServer::stop`]) and not started again.
    pub fn is_stopped(&self) -> bool {
        self.server.is_none()
    }

    /// Kills the server (`SIGKILL`) and waits for it (also done on drop).
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.stop();
        }
    }
}

/// Whether a cluster node on `port` could bind its bus port, port + 10000.
fn bus_port_free(port: u16) -> bool {
    port.checked_add(10_000)
        .is_some_and(|bus| std::net::TcpListener::bind(("127.0.0.1", bus)).is_ok())
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
