//! A server process of a test, on a free port, watched so that it never outlives the test.
//!
//! The server runs under a small `sh` (the caller's script) that reads its standard input:
//! when the pipe closes, which happens when the [`Watched`] is stopped or dropped and also when
//! the test process dies without dropping it (a panic with `panic = "abort"`, a signal), the
//! script kills the server. [`Watched::start`] waits until the server answers, and fails with
//! its log if it exits or does not answer in time; [`on_free_port`] retries on another port
//! when another process took the one probed.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// How a server says it came up or gave up.
pub(crate) struct Startup<'a> {
    /// The program, for messages (`redis-server`).
    pub(crate) what: &'a str,
    /// Its log file.
    pub(crate) log: &'a Path,
    /// Texts of its log that mean it cannot start (it exits, or will).
    pub(crate) fatal: &'a [&'a str],
    /// Why it is given up on when it does not answer in time, for messages.
    pub(crate) not_ready: &'a str,
    /// How long it may take to answer.
    pub(crate) deadline: Duration,
}

/// The watchdog `sh` of one server process; stopping it (or dropping it) kills the server.
pub(crate) struct Watched {
    child: Option<Child>,
}

impl Watched {
    /// Spawns `sh` (a watchdog script that reads its standard input, which is piped to this
    /// process) and polls `ready` until it says the server answers.
    ///
    /// Fails, having stopped the watchdog, with the server's log when the watchdog exits, the
    /// log holds one of `startup.fatal`, or `startup.deadline` passes.
    pub(crate) fn start(
        sh: &mut Command,
        startup: &Startup<'_>,
        mut ready: impl FnMut() -> bool,
    ) -> anyhow::Result<Watched> {
        let child = sh
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot run sh to start {}", startup.what))?;
        let mut watched = Watched { child: Some(child) };
        let deadline = Instant::now() + startup.deadline;
        loop {
            if ready() {
                return Ok(watched);
            }
            // Whether it ended before reading the log: a log read after the end is complete.
            let gone = !watched.is_running();
            let log = std::fs::read_to_string(startup.log).unwrap_or_default();
            let exited = gone || startup.fatal.iter().any(|f| log.contains(f));
            if exited || Instant::now() > deadline {
                watched.stop();
                let why = if exited {
                    "it exited"
                } else {
                    startup.not_ready
                };
                bail!("{why}; its log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the watchdog (and so the server) still runs.
    pub(crate) fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Writes `line` (and a newline) to the watchdog's input, for watchdogs that take
    /// commands (the Postgres one restarts its server on `restart`).
    pub(crate) fn send(&mut self, line: &str) -> anyhow::Result<()> {
        use std::io::Write as _;
        let stdin = self
            .child
            .as_mut()
            .and_then(|c| c.stdin.as_mut())
            .context("the watchdog has stopped")?;
        writeln!(stdin, "{line}").context("writing to the watchdog")?;
        stdin.flush().context("writing to the watchdog")?;
        Ok(())
    }

    /// Closes the watchdog's input (it kills the server) and waits for it, killing it after
    /// 10 seconds. Also done on drop.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take());
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

impl Drop for Watched {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `start` with a free port of 127.0.0.1, again with another (5 tries in all) when it
/// fails with an error holding one of `taken` (another process took the port between the
/// probe and the server's bind).
pub(crate) fn on_free_port<T>(
    what: &str,
    taken: &[&str],
    mut start: impl FnMut(u16) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mut last = String::new();
    for _ in 0..5 {
        match start(free_port()?) {
            Ok(t) => return Ok(t),
            Err(e) => {
                last = format!("{e:#}");
                if !taken.iter().any(|t| last.contains(t)) {
                    break;
                }
            }
        }
    }
    bail!("{what} did not start: {last}")
}

fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("no free port on 127.0.0.1")?;
    Ok(l.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn startup<'a>(log: &'a Path, deadline: Duration) -> Startup<'a> {
        Startup {
            what: "test-server",
            log,
            fatal: &["# Fatal"],
            not_ready: "no answer within the deadline",
            deadline,
        }
    }

    /// `sh -c SCRIPT test LOG`.
    fn sh(script: &str, log: &Path) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c").arg(script).arg("test").arg(log);
        c
    }

    /// The error of starting `sh -c SCRIPT test LOG` for a server that never answers.
    fn never_ready(script: &str, deadline: Duration) -> String {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        match Watched::start(&mut sh(script, &log), &startup(&log, deadline), || false) {
            Ok(_) => panic!("started"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn a_server_that_exits_is_reported_with_its_log() {
        let e = never_ready(
            r#"echo "no config file" >"$1"; exit 3"#,
            Duration::from_secs(20),
        );
        assert!(e.starts_with("it exited; its log:\nno config file"), "{e}");
    }

    #[test]
    fn a_fatal_log_line_ends_the_wait_and_the_watchdog() {
        let e = never_ready(
            r##"echo "# Fatal: port taken" >"$1"; cat >/dev/null"##,
            Duration::from_secs(20),
        );
        assert!(
            e.starts_with("it exited; its log:\n# Fatal: port taken"),
            "{e}"
        );
    }

    #[test]
    fn a_server_that_does_not_answer_in_time_is_given_up() {
        let e = never_ready("cat >/dev/null", Duration::from_millis(200));
        assert!(e.starts_with("no answer within the deadline"), "{e}");
    }

    #[test]
    fn a_ready_server_runs_until_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        // Reads its input to the end, as the watchdogs do, then says so.
        let mut c = sh(r#"cat >/dev/null; echo "input closed" >"$1""#, &log);
        let polls = Cell::new(0);
        let mut w = Watched::start(&mut c, &startup(&log, Duration::from_secs(20)), || {
            polls.set(polls.get() + 1);
            polls.get() == 3
        })
        .unwrap();
        assert!(w.is_running());
        assert_eq!(std::fs::read_to_string(&log).unwrap_or_default(), "");
        w.stop();
        assert!(!w.is_running());
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "input closed\n");
    }

    #[test]
    fn on_free_port_retries_only_a_taken_port() {
        let mut ports = Vec::new();
        let got = on_free_port("test-server", &["in use"], |port| {
            ports.push(port);
            if ports.len() < 3 {
                bail!("port {port} in use")
            }
            Ok(port)
        })
        .unwrap();
        assert_eq!((ports.len(), ports.last()), (3, Some(&got)));

        let mut calls = 0;
        let e = on_free_port("test-server", &["in use"], |_| -> anyhow::Result<()> {
            calls += 1;
            bail!("no config file")
        })
        .unwrap_err();
        assert_eq!(
            (calls, format!("{e:#}").as_str()),
            (1, "test-server did not start: no config file")
        );
    }
}
