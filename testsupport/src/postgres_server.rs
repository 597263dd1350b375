//! A private Postgres cluster for a test or bench run: made with `initdb` in a temporary
//! directory, started on a free port of 127.0.0.1 with `fsync=off`, ready once it accepts a
//! connection, and stopped (its directory removed) when dropped.
//!
//! The programs come from the newest `/usr/lib/postgresql/<version>/bin` (Debian's layout),
//! else from `PATH`. `initdb` refuses to run as root: as root, the cluster's directory belongs
//! to the `postgres` user (else `nobody`) and `initdb` and `postgres` run as that user through
//! `setpriv`. The server runs under a small `sh` watchdog that stops it (fast shutdown) and
//! removes its directory when the pipe to its standard input closes: when the
//! [`PostgresServer`] is dropped, and also when the test process dies without dropping it.
//!
//! [`PostgresServer::start_also_on`] makes it listen on more addresses (the chaos soak's
//! workers reach it across a veth pair).

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::watched::{on_free_port, Startup, Watched};

/// What to tell someone whose machine has no Postgres.
pub const INSTALL_HINT: &str =
    "install it (`apt-get install postgresql`, `brew install postgresql`) \
or run the workspace's test script, which installs it (`scripts/test.sh`)";

/// How long the server may take to accept connections.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// What the server logs once it accepts connections.
const READY: &str = "database system is ready to accept connections";

/// What the server logs once it has shut down.
const SHUT_DOWN: &str = "database system is shut down";

/// The password of the `postgres` user of every test cluster: TCP connections must give it
/// (SCRAM), so tests can check that it never shows in errors.
pub const PASSWORD: &str = "kosh-test-secret-7f3a";

/// One Postgres cluster of this test run.
pub struct PostgresServer {
    port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// As root: (user, its group id) the cluster runs as.
    user: Option<(String, String)>,
    /// Addresses it listens on besides 127.0.0.1.
    also_on: Vec<IpAddr>,
    /// With TLS: its certificate and key, copied into the cluster's directory.
    tls: Option<(PathBuf, PathBuf)>,
    server: Option<Watched>,
}

impl PostgresServer {
    /// Makes a cluster with `initdb`, starts it on a free port of 127.0.0.1 and waits until it
    /// accepts a connection.
    ///
    /// Fails with a message saying how to install Postgres if `initdb` cannot be found, or
    /// with the server's log if it did not come up.
    pub fn start() -> anyhow::Result<PostgresServer> {
        Self::start_also_on(&[])
    }

    /// Starts a cluster as [`PostgresServer::start`] does, that also listens on `addrs`
    /// (addresses of this machine: it does not start if it cannot bind one), also after a
    /// [`PostgresServer::restart`]; [`PostgresServer::url_on`] names them. With addresses,
    /// it takes TCP connections with the password from every network this machine is
    /// directly on (`samenet` in `pg_hba.conf`), not only from 127.0.0.1.
    pub fn start_also_on(addrs: &[IpAddr]) -> anyhow::Result<PostgresServer> {
        Self::start_with(addrs, None)
    }

    /// Starts a cluster as [`PostgresServer::start`] does, with TLS on (`ssl=on`) with the
    /// PEM certificate (chain) `cert` and its key `key`. Clients may still connect without
    /// TLS unless they ask for it (`sslmode=require` and up).
    pub fn start_tls(cert: &Path, key: &Path) -> anyhow::Result<PostgresServer> {
        Self::start_with(&[], Some((cert, key)))
    }

    fn start_with(addrs: &[IpAddr], tls: Option<(&Path, &Path)>) -> anyhow::Result<PostgresServer> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("kosh-test-pg-")
            .tempdir()
            .context("temporary directory for postgres")?;
        let user = run_as_user()?;
        // Postgres reads the key only if its owner alone may (0600), so both files are
        // copied to the cluster's directory, which belongs to the user it runs as.
        let tls = match tls {
            Some((cert, key)) => {
                let (c, k) = (dir.path().join("server.crt"), dir.path().join("server.key"));
                std::fs::copy(cert, &c).context("copy the TLS certificate")?;
                std::fs::copy(key, &k).context("copy the TLS key")?;
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600))
                    .context("chmod the TLS key")?;
                if let Some((user, _)) = &user {
                    chown(&c, user)?;
                    chown(&k, user)?;
                }
                Some((c, k))
            }
            None => None,
        };
        if let Some((user, _)) = &user {
            // The cluster's files, the socket directory and the log belong to the user.
            chown(dir.path(), user)?;
        }
        let mut server = PostgresServer {
            port: 0,
            bin,
            dir,
            user,
            also_on: addrs.to_vec(),
            tls,
            server: None,
        };
        server.initdb()?;
        on_free_port(
            "postgres",
            &["could not bind", "Address already in use"],
            |port| {
                server.port = port;
                server.spawn()
            },
        )?;
        Ok(server)
    }

    /// `postgres://postgres:PASSWORD@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// The URL of database `db` of this cluster.
    pub fn url_for(&self, db: &str) -> String {
        self.url_on(IpAddr::from([127, 0, 0, 1]), db)
    }

    /// The URL of database `db` at `addr` (127.0.0.1 or one given to
    /// [`PostgresServer::start_also_on`]).
    pub fn url_on(&self, addr: IpAddr, db: &str) -> String {
        let at = SocketAddr::new(addr, self.port);
        format!("postgres://postgres:{PASSWORD}@{at}/{db}")
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn socket_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// `program` of the bin directory, run as the cluster's user.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.user {
            Some((user, gid)) => {
                let mut c = Command::new("setpriv");
                c.args(["--reuid", user, "--regid", gid, "--clear-groups", "--"])
                    .arg(path);
                c
            }
            None => Command::new(path),
        }
    }

    fn initdb(&self) -> anyhow::Result<()> {
        let pwfile = self.dir.path().join("pwfile");
        std::fs::write(&pwfile, PASSWORD).context("writing the password file")?;
        if let Some((user, _)) = &self.user {
            chown(&pwfile, user)?;
        }
        let out = self
            .command("initdb")
            .arg("-D")
            .arg(self.data())
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .context("cannot run initdb")?;
        if !out.status.success() {
            bail!(
                "initdb failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if !self.also_on.is_empty() {
            // initdb lets TCP clients in from loopback only.
            let hba = self.data().join("pg_hba.conf");
            let mut text = std::fs::read_to_string(&hba)
                .with_context(|| format!("reading {}", hba.display()))?;
            text.push_str("host all all samenet scram-sha-256\n");
            std::fs::write(&hba, text).with_context(|| format!("writing {}", hba.display()))?;
        }
        Ok(())
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let port = self.port.to_string();
        let listen = std::iter::once("127.0.0.1".to_owned())
            .chain(self.also_on.iter().map(IpAddr::to_string))
            .collect::<Vec<_>>()
            .join(",");
        let log = self.log_path();
        // `read` fails when our end of the pipe closes (dropped, or this process died); then a
        // fast shutdown (SIGINT), and the directory goes. A `restart` line stops the server
        // the same way and starts it again on the same files; a `down` line stops it until
        // an `up` line starts it again.
        let watchdog = r#"dir=$1; log=$2; shift 2
while :; do
    "$@" </dev/null >>"$log" 2>&1 &
    server=$!
    read -r cmd || cmd=stop
    kill -INT "$server" 2>/dev/null
    wait "$server" 2>/dev/null
    if [ "$cmd" = down ]; then read -r cmd || cmd=stop; fi
    [ "$cmd" = restart ] || [ "$cmd" = up ] || break
done
rm -rf "$dir"
exit 0"#;
        let server = self.command("postgres");
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg(watchdog)
            .arg("kosh-test-postgres")
            .arg(self.dir.path())
            .arg(&log)
            .arg(server.get_program())
            .args(server.get_args())
            .arg("-D")
            .arg(self.data())
            .args(["-p", &port, "-c", &format!("listen_addresses={listen}")])
            .arg("-k")
            .arg(self.socket_dir())
            .args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
                "-c",
                "logging_collector=off",
            ]);
        if let Some((cert, key)) = &self.tls {
            sh.args(["-c", "ssl=on", "-c"])
                .arg(format!("ssl_cert_file={}", cert.display()))
                .arg("-c")
                .arg(format!("ssl_key_file={}", key.display()));
        }
        let startup = Startup {
            what: "postgres",
            log: &log,
            fatal: &["could not bind", "FATAL:  could not", "PANIC"],
            not_ready: "it did not accept connections within the deadline",
            deadline: START_DEADLINE,
        };
        let isready = self.bin.join("pg_isready");
        let sockets = self.socket_dir();
        let port = self.port;
        self.server = Some(Watched::start(&mut sh, &startup, || {
            // 0: accepting connections. 1 ("rejecting", e.g. "the database system is starting
            // up") and 2 (no answer yet) are not failures: keep polling until the deadline.
            Command::new(&isready)
                .arg("-h")
                .arg(&sockets)
                .args(["-p", &port.to_string(), "-U", "postgres", "-t", "1"])
                .output()
                .is_ok_and(|o| o.status.success())
        })?);
        Ok(())
    }

    /// Stops the server (a fast shutdown: clients are disconnected) and starts it again on
    /// the same port and files; returns once it accepts connections again.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.command_until("restart", READY, "come back after a restart")
    }

    /// Stops the server (a fast shutdown) and keeps it down, its files kept, until
    /// [`PostgresServer::up`]; returns once it has shut down.
    pub fn down(&mut self) -> anyhow::Result<()> {
        self.command_until("down", SHUT_DOWN, "shut down")
    }

    /// Starts a server taken [`PostgresServer::down`] again on the same port and files;
    /// returns once it accepts connections.
    pub fn up(&mut self) -> anyhow::Result<()> {
        self.command_until("up", READY, "come back up")
    }

    /// Sends `cmd` to the watchdog and waits until the log says `line` once more.
    fn command_until(&mut self, cmd: &str, line: &str, what: &str) -> anyhow::Result<()> {
        let log = self.log_path();
        let count = || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .matches(line)
                .count()
        };
        let before = count();
        self.server
            .as_mut()
            .context("the server is stopped")?
            .send(cmd)?;
        let deadline = std::time::Instant::now() + START_DEADLINE;
        while count() <= before {
            if std::time::Instant::now() > deadline {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                bail!("postgres did not {what}; its log:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Stops the server and waits for it (also done on drop).
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.stop();
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb`, else the directory of
/// `initdb` on `PATH`.
fn bin_dir() -> anyhow::Result<PathBuf> {
    let mut best: Option<(u32, PathBuf)> = None;
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let version: u32 = match name.split('.').next().and_then(|v| v.parse().ok()) {
                Some(v) => v,
                None => continue,
            };
            let bin = e.path().join("bin");
            if bin.join("initdb").exists() && best.as_ref().is_none_or(|(v, _)| version > *v) {
                best = Some((version, bin));
            }
        }
    }
    if let Some((_, bin)) = best {
        return Ok(bin);
    }
    match Command::new("initdb").arg("--version").output() {
        Ok(o) if o.status.success() => {
            let path = std::env::var_os("PATH").unwrap_or_default();
            for dir in std::env::split_paths(&path) {
                if dir.join("initdb").exists() {
                    return Ok(dir);
                }
            }
            bail!("initdb runs but is not found on PATH; {INSTALL_HINT}")
        }
        Ok(o) => bail!("`initdb --version` failed ({}); {INSTALL_HINT}", o.status),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            bail!("no initdb in /usr/lib/postgresql/*/bin nor on PATH; {INSTALL_HINT}")
        }
        Err(e) => bail!("cannot run initdb: {e}; {INSTALL_HINT}"),
    }
}

/// As root, the user the cluster runs as (`postgres`, else `nobody`); otherwise `None`.
fn run_as_user() -> anyhow::Result<Option<(String, String)>> {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .context("cannot run `id -u`")?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Ok(None);
    }
    for user in ["postgres", "nobody"] {
        let gid = Command::new("id").args(["-g", user]).output();
        if let Some(o) = gid.ok().filter(|o| o.status.success()) {
            let gid = String::from_utf8_lossy(&o.stdout).trim().to_owned();
            return Ok(Some((user.to_owned(), gid)));
        }
    }
    bail!("running as root, and neither a `postgres` nor a `nobody` user exists to run initdb as")
}

fn chown(path: &Path, user: &str) -> anyhow::Result<()> {
    let status = Command::new("chown")
        .arg(format!("{user}:"))
        .arg(path)
        .status()
        .context("cannot run chown")?;
    if !status.success() {
        bail!("chown {user} {} failed ({status})", path.display());
    }
    Ok(())
}
