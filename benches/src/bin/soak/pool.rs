//! The worker processes of a run: started, signalled, cut off the server, replaced, and
//! stopped at the end. Each runs in a slot (`--workers` of them), and a replacement takes the
//! slot of the process it replaces: with partitions, a slot is a network namespace.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::child::ChildArgs;
use crate::net::Net;

/// One worker process.
pub(crate) struct WorkerProc {
    child: Child,
    pub(crate) pid: u32,
    pub(crate) slot: usize,
    /// Set while it is stopped (`SIGSTOP`): when to continue it.
    pub(crate) stopped_until: Option<Instant>,
}

/// Where a slot's workers run: the store's URL as seen from there, and with partitions the
/// slot's network namespace.
#[derive(Clone, Debug)]
pub(crate) struct Slot {
    pub(crate) url: String,
    pub(crate) netns: Option<String>,
}

/// The worker processes, and how to start another.
pub(crate) struct Pool {
    exe: PathBuf,
    template: ChildArgs,
    logs: PathBuf,
    slots: Vec<Slot>,
    /// The slots' network namespaces, with partitions (dropped after the processes).
    net: Option<Net>,
    pub(crate) procs: Vec<WorkerProc>,
    started: u32,
    /// Processes that exited by themselves (not killed by the soak).
    pub(crate) unexpected_exits: Vec<String>,
}

impl Pool {
    /// Starts a worker in each slot; `net` holds the slots' namespaces, if they have some.
    pub(crate) fn start(
        template: ChildArgs,
        logs: PathBuf,
        slots: Vec<Slot>,
        net: Option<Net>,
    ) -> anyhow::Result<Pool> {
        let mut pool = Pool {
            exe: std::env::current_exe().context("path of this program")?,
            template,
            logs,
            slots,
            net,
            procs: Vec::new(),
            started: 0,
            unexpected_exits: Vec::new(),
        };
        for slot in 0..pool.slots.len() {
            pool.spawn(slot)?;
        }
        Ok(pool)
    }

    /// Starts one more worker process in `slot`; returns its pid.
    pub(crate) fn spawn(&mut self, slot: usize) -> anyhow::Result<u32> {
        self.started += 1;
        let mut args = self.template.clone();
        args.log = self.logs.join(format!("worker-{}.log", self.started));
        args.url = self.slots[slot].url.clone();
        // `ip netns exec` enters the namespace and execs the program: the pid stays.
        let mut command = match &self.slots[slot].netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.exe);
                c
            }
            None => Command::new(&self.exe),
        };
        let child = command
            .args(args.to_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting a worker process")?;
        let pid = child.id();
        self.procs.push(WorkerProc {
            child,
            pid,
            slot,
            stopped_until: None,
        });
        Ok(pid)
    }

    /// Worker processes started so far.
    pub(crate) fn started(&self) -> u32 {
        self.started
    }

    /// `SIGKILL`s the process at `index` and forgets it; returns its pid and slot.
    pub(crate) fn kill(&mut self, index: usize) -> anyhow::Result<(u32, usize)> {
        let mut p = self.procs.remove(index);
        p.child.kill().context("SIGKILL")?;
        p.child.wait()?;
        Ok((p.pid, p.slot))
    }

    /// The slot links of the run, if its workers can be cut off (partitions).
    pub(crate) fn net(&mut self) -> Option<&mut Net> {
        self.net.as_mut()
    }

    /// `SIGSTOP`s the process at `index` until `until`.
    pub(crate) fn stop(&mut self, index: usize, until: Instant) -> anyhow::Result<u32> {
        let p = &mut self.procs[index];
        signal("-STOP", p.pid)?;
        p.stopped_until = Some(until);
        Ok(p.pid)
    }

    /// Continues the stopped processes whose time has come (all of them with `all`).
    pub(crate) fn continue_due(&mut self, all: bool) -> anyhow::Result<()> {
        let now = Instant::now();
        for p in &mut self.procs {
            if p.stopped_until.is_some_and(|t| all || t <= now) {
                signal("-CONT", p.pid)?;
                p.stopped_until = None;
            }
        }
        Ok(())
    }

    /// Replaces the processes that exited by themselves, noting each.
    pub(crate) fn replace_exited(&mut self) -> anyhow::Result<()> {
        let mut i = 0;
        while i < self.procs.len() {
            if let Some(status) = self.procs[i].child.try_wait()? {
                let p = self.procs.remove(i);
                self.unexpected_exits
                    .push(format!("worker {} exited by itself: {status}", p.pid));
                self.spawn(p.slot)?;
            } else {
                i += 1;
            }
        }
        Ok(())
    }

    /// Closes every worker's standard input (a graceful shutdown) and waits up to `within`
    /// for them, then kills what is left. Returns the pids that had to be killed.
    pub(crate) fn shutdown(&mut self, within: Duration) -> anyhow::Result<Vec<u32>> {
        self.continue_due(true)?;
        if let Some(net) = &mut self.net {
            net.heal_due(true)?;
        }
        for p in &mut self.procs {
            drop(p.child.stdin.take());
        }
        let deadline = Instant::now() + within;
        let mut killed = Vec::new();
        for mut p in self.procs.drain(..) {
            loop {
                match p.child.try_wait()? {
                    Some(status) if !status.success() => self
                        .unexpected_exits
                        .push(format!("worker {} ended with {status} at shutdown", p.pid)),
                    Some(_) => {}
                    None if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                    None => {
                        let _ = p.child.kill();
                        let _ = p.child.wait();
                        killed.push(p.pid);
                    }
                }
                break;
            }
        }
        Ok(killed)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

/// Sends a signal with `kill(1)` (the workspace forbids `unsafe`, which `libc::kill` needs).
fn signal(which: &str, pid: u32) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args([which, &pid.to_string()])
        .status()
        .with_context(|| format!("running kill {which} {pid}"))?;
    if !status.success() {
        bail!("kill {which} {pid} failed: {status}");
    }
    Ok(())
}
