//! Every request the app's processes send, from Redis's `MONITOR` feed: counted per process
//! (web or worker, by the connection's owner, see [`crate::procs`]) and per command, a script
//! call named by its script (`push`, `reserve`, …) rather than by its SHA.
//!
//! A request is a command a client sent; the commands a script runs inside (`[0 lua]` in the
//! feed) are not requests, as hosted Redis bills a script call as one command.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::procs::Owners;

/// The scripts of kosh-jobs-redis, by the name their text starts with (`-- push: …`).
const SCRIPTS: &[&str] = &[
    "push",
    "reserve",
    "finish",
    "heartbeat",
    "progress",
    "release",
    "recover",
    "cancel",
    "retry",
    "purge",
    "counts",
    "list",
    "get",
    "pause",
    "register",
    "due",
    "limits",
    "flows",
    "groups",
    "hold",
    "search",
    "apply",
    "throughput",
    "running",
    "worker",
    "cron_upsert",
    "cron_edit",
    "cron_due",
    "cron_fire",
];

/// Requests per (process, command or script).
#[derive(Clone, Debug, Default)]
pub(crate) struct Tally {
    pub(crate) calls: BTreeMap<(&'static str, String), u64>,
}

impl Tally {
    /// What was sent between `before` and `self`.
    pub(crate) fn since(&self, before: &Tally) -> Tally {
        let calls = self
            .calls
            .iter()
            .filter_map(|(k, n)| {
                let d = n - before.calls.get(k).copied().unwrap_or(0).min(*n);
                (d > 0).then(|| (k.clone(), d))
            })
            .collect();
        Tally { calls }
    }

    /// All requests of `role` (`None`: of every watched process).
    pub(crate) fn requests(&self, role: Option<&str>) -> u64 {
        self.calls
            .iter()
            .filter(|((r, _), _)| role.is_none_or(|x| x == *r))
            .map(|(_, n)| n)
            .sum()
    }

    /// `role`'s requests by command, e.g. `reserve 2, blpop 1`.
    pub(crate) fn detail(&self, role: &str) -> String {
        let mut v: Vec<_> = self.calls.iter().filter(|((r, _), _)| *r == role).collect();
        v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        v.iter()
            .map(|((_, what), n)| format!("{what} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Default)]
struct State {
    owners: Owners,
    /// Script SHA → name, learnt from the `EVAL`s that load them.
    names: HashMap<String, &'static str>,
    /// Per (process, command; `sha:<sha>` for a script call).
    raw: BTreeMap<(&'static str, String), u64>,
    /// When a watched process last sent a request.
    last: Option<Instant>,
    /// Requests of connections no watched process owns (the runner's probes are expected;
    /// anything else is reported).
    foreign: u64,
    ended: Option<String>,
}

/// The feed, read on a thread of its own.
#[derive(Clone)]
pub(crate) struct Monitor {
    state: Arc<Mutex<State>>,
}

impl Monitor {
    /// Opens a `MONITOR` connection to `127.0.0.1:port`.
    pub(crate) fn start(port: u16) -> anyhow::Result<Monitor> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .with_context(|| format!("connecting to redis on port {port} for MONITOR"))?;
        stream.write_all(b"MONITOR\r\n")?;
        let mut reader = BufReader::new(stream);
        let mut ok = String::new();
        reader.read_line(&mut ok)?;
        if ok.trim_end() != "+OK" {
            bail!("MONITOR refused: {ok}");
        }
        let state = Arc::new(Mutex::new(State::default()));
        let feed = state.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) => break,
                    Ok(_) => {
                        let mut s = feed.lock().expect("monitor state");
                        s.take(line.trim_end());
                    }
                    Err(e) => {
                        feed.lock().expect("monitor state").ended = Some(e.to_string());
                        break;
                    }
                }
            }
        });
        Ok(Monitor { state })
    }

    /// Counts the connections of process `pid` as `role`'s.
    pub(crate) fn watch(&self, pid: u32, role: &'static str) {
        self.state
            .lock()
            .expect("monitor state")
            .owners
            .add(pid, role);
    }

    /// The requests so far.
    pub(crate) fn tally(&self) -> Tally {
        let s = self.state.lock().expect("monitor state");
        let mut calls = BTreeMap::new();
        for ((role, what), n) in &s.raw {
            let name = match what.strip_prefix("sha:") {
                Some(sha) => s.names.get(sha).copied().unwrap_or("script ?").to_owned(),
                None => what.clone(),
            };
            *calls.entry((*role, name)).or_insert(0) += n;
        }
        Tally { calls }
    }

    /// Requests of connections that belong to neither process.
    pub(crate) fn foreign(&self) -> u64 {
        self.state.lock().expect("monitor state").foreign
    }

    /// How long since a watched process last sent a request.
    pub(crate) fn quiet_for(&self) -> Duration {
        self.state
            .lock()
            .expect("monitor state")
            .last
            .map_or(Duration::MAX, |t| t.elapsed())
    }

    /// Waits until neither process has sent a request for `quiet`, at most `limit`.
    pub(crate) async fn settle(&self, quiet: Duration, limit: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if let Some(e) = &self.state.lock().expect("monitor state").ended {
                bail!("the MONITOR connection ended: {e}");
            }
            let q = self.quiet_for();
            if q >= quiet {
                return Ok(());
            }
            if start.elapsed() > limit {
                bail!("the app did not go quiet within {limit:?}");
            }
            tokio::time::sleep(quiet - q).await;
        }
    }
}

impl State {
    /// One line of the feed: `+1733356200.123456 [0 127.0.0.1:54321] "evalsha" "…" …`.
    fn take(&mut self, line: &str) {
        let Some((client, args)) = line
            .split_once(" [")
            .and_then(|(_, rest)| rest.split_once("] "))
        else {
            return;
        };
        let Some(addr) = client.split_once(' ').map(|(_, a)| a) else {
            return;
        };
        if addr == "lua" {
            return; // run inside a script: not a request
        }
        let args = parse_args(args);
        let Some(cmd) = args
            .first()
            .map(|a| String::from_utf8_lossy(a).to_lowercase())
        else {
            return;
        };
        let port = addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok());
        let Some(role) = port.and_then(|p| self.owners.of_port(p)) else {
            self.foreign += 1;
            return;
        };
        self.last = Some(Instant::now());
        let what = match (cmd.as_str(), args.get(1)) {
            ("evalsha", Some(sha)) => format!("sha:{}", String::from_utf8_lossy(sha)),
            ("eval", Some(body)) => {
                let sha = sha1_smol::Sha1::from(body).digest().to_string();
                let name = script_name(&String::from_utf8_lossy(body));
                self.names.insert(sha.clone(), name);
                format!("sha:{sha}")
            }
            _ => cmd,
        };
        *self.raw.entry((role, what)).or_insert(0) += 1;
    }
}

/// The script's own name from its text: the first `-- name:` header line naming a known
/// script (the `lib.lua` parts before it have comments of their own).
fn script_name(body: &str) -> &'static str {
    body.lines()
        .filter_map(|l| l.strip_prefix("-- ")?.split_once(':').map(|(n, _)| n))
        .find_map(|n| SCRIPTS.iter().find(|s| **s == n).copied())
        .unwrap_or("script ?")
}

/// The quoted arguments of a feed line, unescaped (`\"`, `\\`, `\n`, `\r`, `\t`, `\a`,
/// `\b`, `\xHH`, as Redis writes them).
fn parse_args(s: &str) -> Vec<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'"' {
            i += 1;
            continue;
        }
        i += 1;
        let mut arg = Vec::new();
        while i < b.len() && b[i] != b'"' {
            if b[i] == b'\\' && i + 1 < b.len() {
                i += 1;
                match b[i] {
                    b'n' => arg.push(b'\n'),
                    b'r' => arg.push(b'\r'),
                    b't' => arg.push(b'\t'),
                    b'a' => arg.push(7),
                    b'b' => arg.push(8),
                    b'x' if i + 2 < b.len() => {
                        let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("3f");
                        arg.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                        i += 2;
                    }
                    c => arg.push(c),
                }
            } else {
                arg.push(b[i]);
            }
            i += 1;
        }
        out.push(arg);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_lines_are_unescaped_and_scripts_named() {
        let args = parse_args(r#""eval" "-- x: lib\n-- push: stores \"a\"\x41" "0""#);
        assert_eq!(args.len(), 3);
        assert_eq!(args[1], b"-- x: lib\n-- push: stores \"a\"A");
        assert_eq!(script_name(&String::from_utf8_lossy(&args[1])), "push");
        assert_eq!(script_name("-- lease: x\nreturn 1"), "script ?");
    }
}
