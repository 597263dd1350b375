//! Headless Chromium for browser tests: a private `chromedriver` on a free port, killed when
//! dropped, and a [`fantoccini::Client`] connected to it.
//!
//! The driver runs under a small `sh` in a process group of its own, which also watches this
//! process: when the pipe to its standard input closes (the [`ChromeDriver`] is dropped, or
//! the test process died without dropping it) it kills its whole group, so neither the
//! driver nor the browsers it started outlive the test.
//!
//! Missing programs are an error, not a skipped test: the message names the Debian packages
//! (`chromium`, `chromium-driver`) that `scripts/test.sh` installs.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _};
use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use crate::watched::{on_free_port, Startup, Watched};

/// The browser the driver starts (Debian's `chromium`).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// What to tell someone whose machine has no Chromium or no driver for it.
pub const INSTALL_HINT: &str = "the browser tests need Debian's `chromium` and \
`chromium-driver` packages: install them (`apt-get install chromium chromium-driver`) or run \
the workspace's test script, which installs them (`scripts/test.sh --install-only`)";

/// How long the driver may take to answer `/status` with `ready`.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// The arguments Chromium runs with: headless, no sandbox (CI runs as root, where Chromium's
/// sandbox refuses to start), no GPU, a laptop-sized window.
pub const CHROMIUM_ARGS: [&str; 5] = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--window-size=1280,900",
    // Containers often have a small /dev/shm, where Chromium's renderers crash.
    "--disable-dev-shm-usage",
];

/// One `chromedriver` process of this test.
pub struct ChromeDriver {
    port: u16,
    dir: tempfile::TempDir,
    driver: Option<Watched>,
}

impl ChromeDriver {
    /// Starts `chromedriver` on a free port of 127.0.0.1 and waits until its `/status` says
    /// it is ready.
    ///
    /// Fails with a message naming the Debian packages to install if `chromedriver` is not on
    /// `PATH` or [`CHROMIUM`] does not exist, or with the driver's log if it did not come up.
    pub fn start() -> anyhow::Result<ChromeDriver> {
        check_installed()?;
        let dir = tempfile::Builder::new()
            .prefix("kosh-test-chromedriver-")
            .tempdir()
            .context("temporary directory for chromedriver")?;
        let mut driver = ChromeDriver {
            port: 0,
            dir,
            driver: None,
        };
        on_free_port(
            "chromedriver",
            &["Address already in use", "bind"],
            |port| {
                driver.port = port;
                driver.spawn()
            },
        )?;
        Ok(driver)
    }

    /// `http://127.0.0.1:PORT`, the WebDriver endpoint.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A new session in headless Chromium ([`CHROMIUM_ARGS`]).
    pub async fn client(&self) -> anyhow::Result<Client> {
        let mut caps = Capabilities::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": CHROMIUM, "args": CHROMIUM_ARGS }),
        );
        // chromedriver listens on loopback over plain HTTP: no TLS stack, no certificates.
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url())
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "chromedriver could not start {CHROMIUM}: {e}\nchromedriver's log:\n{}",
                    self.log()
                )
            })?;
        Ok(client)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("chromedriver.log")
    }

    /// What the driver wrote so far (its own log and what the browser wrote to stderr).
    pub fn log(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        // The log repeats every command: its tail says what went wrong.
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        // `cat` returns when our end of the pipe closes (dropped, or this process died);
        // `kill 0` then ends the whole group: the driver, the browsers it started, this sh.
        let watchdog = r#"chromedriver "$@" </dev/null >"$KOSH_CHROMEDRIVER_LOG" 2>&1 &
cat >/dev/null
kill -9 0"#;
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg(watchdog)
            .arg("kosh-test-chromedriver")
            .arg(format!("--port={}", self.port))
            .env("KOSH_CHROMEDRIVER_LOG", self.log_path())
            .process_group(0);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let log = self.log_path();
        let startup = Startup {
            what: "chromedriver",
            log: &log,
            fatal: &["Address already in use", "bind() failed", "Exiting..."],
            not_ready: "its /status did not say ready within the deadline",
            deadline: START_DEADLINE,
        };
        self.driver = Some(Watched::start(&mut sh, &startup, || {
            get_status(addr).is_ok_and(|status| {
                status.contains(r#""ready":true"#) || status.contains(r#""ready": true"#)
            })
        })?);
        Ok(())
    }

    /// Kills the driver and the browsers it started, and waits for them (also done on drop).
    pub fn stop(&mut self) {
        if let Some(mut driver) = self.driver.take() {
            driver.stop(); // the watchdog kills its group
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A driver and a session in it. Call [`Browser::close`] at the end of a test to end the
/// session politely; dropping it (a failed test) kills the driver and its browsers.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    // Dropped after `client`: fields drop in declaration order.
    driver: ChromeDriver,
}

impl Browser {
    /// Starts `chromedriver` and opens a session in headless Chromium.
    pub async fn start() -> anyhow::Result<Browser> {
        let driver = tokio::task::spawn_blocking(ChromeDriver::start)
            .await
            .context("starting chromedriver")??;
        let client = driver.client().await?;
        Ok(Browser { client, driver })
    }

    /// The driver's log, for a failure message.
    pub fn log(&self) -> String {
        self.driver.log()
    }

    /// Ends the session (the browser quits), then the driver.
    pub async fn close(self) -> anyhow::Result<()> {
        let Browser { client, mut driver } = self;
        let closed = client.close().await;
        tokio::task::spawn_blocking(move || driver.stop())
            .await
            .context("stopping chromedriver")?;
        closed.context("closing the WebDriver session")
    }
}

/// Fails with [`INSTALL_HINT`] unless `chromedriver` runs and [`CHROMIUM`] exists.
fn check_installed() -> anyhow::Result<()> {
    match Command::new("chromedriver").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => bail!(
            "`chromedriver --version` failed ({}): {}; {INSTALL_HINT}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            bail!("no `chromedriver` on PATH; {INSTALL_HINT}")
        }
        Err(e) => bail!("cannot run `chromedriver`: {e}; {INSTALL_HINT}"),
    }
    if !Path::new(CHROMIUM).exists() {
        bail!("no browser at {CHROMIUM}; {INSTALL_HINT}");
    }
    Ok(())
}

/// `GET /status` of the driver: the body, or an error if it does not answer (yet).
///
/// The driver keeps the connection open after its answer: read up to `Content-Length`.
fn get_status(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    let request = format!(
        "GET /status HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
        addr.port()
    );
    s.write_all(request.as_bytes())?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&answer);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok());
            if length.is_some_and(|l| answer.len() >= end + 4 + l) {
                break;
            }
        }
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}
