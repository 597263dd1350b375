//! The fault injector: at random intervals drawn from the seed, one of
//!
//! - `kill`: `SIGKILL` a worker process and start a new one;
//! - `stop`: `SIGSTOP` a worker for longer than its lease, then `SIGCONT` it (a zombie that
//!   wakes up holding stale leases);
//! - `restart`: restart the server (Redis with its append-only file; Postgres). Not for
//!   SQLite, which has no server.
//! - `partition`: cut a worker off the server for 1.5 to 3 leases (its slot's veth pair goes
//!   down, see `net`), then reconnect it; it must come back by itself. Not for SQLite.
//! - `failover`: on the Redis Cluster, `SIGKILL` the master that serves the soak's queue and
//!   let its replica take over; the killed node is started again a few seconds later and
//!   rejoins as a replica.
//!
//! Faults in handlers (timeouts, panics, threads blocked past the lease, permanent errors)
//! come with the jobs, from the producer. Meanwhile it replaces workers that exited by
//! themselves, continues stopped ones and reconnects cut-off ones when their time is up.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::jobs::now_ms;
use crate::pool::Pool;
use crate::server::Server;

/// One fault injected.
#[derive(Clone, Debug)]
pub(crate) struct Fault {
    /// When, in milliseconds since the Unix epoch.
    pub(crate) at_ms: u64,
    /// When, since the run started.
    pub(crate) offset: Duration,
    pub(crate) what: String,
    /// For a partition: who was cut off, and when the link came back.
    pub(crate) cut: Option<Cut>,
    /// A cluster failover: writes the killed master had not sent its replica are lost.
    pub(crate) failover: bool,
}

/// A worker cut off the server by a partition.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cut {
    pub(crate) pid: u32,
    /// When its link came back up, in milliseconds since the Unix epoch, and since the run
    /// started (`None` if it never did: the run failed first).
    pub(crate) healed: Option<(u64, Duration)>,
}

/// How often faults come, and how long a worker stays stopped.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    pub(crate) seed: u64,
    /// Gaps between faults are uniform in `min_gap..max_gap`.
    pub(crate) min_gap: Duration,
    pub(crate) max_gap: Duration,
    pub(crate) lease: Duration,
    /// Which faults to inject (`--faults`).
    pub(crate) kinds: Kinds,
}

/// The fault kinds a run injects.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Kinds {
    pub(crate) kill: bool,
    pub(crate) stop: bool,
    pub(crate) restart: bool,
    pub(crate) partition: bool,
    pub(crate) failover: bool,
}

impl std::str::FromStr for Kinds {
    type Err = anyhow::Error;
    /// `kill,stop,restart,partition,failover` or a part of it.
    fn from_str(s: &str) -> anyhow::Result<Kinds> {
        let mut k = Kinds {
            kill: false,
            stop: false,
            restart: false,
            partition: false,
            failover: false,
        };
        for part in s.split(',') {
            match part {
                "kill" => k.kill = true,
                "stop" => k.stop = true,
                "restart" => k.restart = true,
                "partition" => k.partition = true,
                "failover" => k.failover = true,
                _ => anyhow::bail!(
                    "unknown fault `{part}`: use kill, stop, restart, partition, failover"
                ),
            }
        }
        Ok(k)
    }
}

impl fmt::Display for Kinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on = [
            (self.kill, "kill"),
            (self.stop, "stop"),
            (self.restart, "restart"),
            (self.partition, "partition"),
            (self.failover, "failover"),
        ];
        let names: Vec<_> = on.iter().filter(|(b, _)| *b).map(|(_, n)| *n).collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(","))
        }
    }
}

/// Injects faults until `stop` fires; then continues every stopped worker and gives back the
/// pool, the server and what it did.
pub(crate) async fn inject(
    plan: Plan,
    mut pool: Pool,
    mut server: Server,
    started: Instant,
    mut stop: oneshot::Receiver<()>,
) -> anyhow::Result<(Pool, Server, Vec<Fault>)> {
    let mut rng = fastrand::Rng::with_seed(plan.seed);
    let mut faults: Vec<Fault> = Vec::new();
    // Slots cut off now → their fault's index.
    let mut cuts: HashMap<usize, usize> = HashMap::new();
    let tick = Duration::from_millis(100);
    loop {
        let gap = rand_between(&mut rng, plan.min_gap, plan.max_gap);
        let next = Instant::now() + gap;
        loop {
            let wait = next.saturating_duration_since(Instant::now()).min(tick);
            tokio::select! {
                _ = &mut stop => {
                    pool.continue_due(true)?;
                    heal(&mut pool, &mut faults, &mut cuts, started, true)?;
                    rejoin(&mut server, started, true)?;
                    return Ok((pool, server, faults));
                }
                () = tokio::time::sleep(wait) => {}
            }
            pool.continue_due(false)?;
            rejoin(&mut server, started, false)?;
            heal(&mut pool, &mut faults, &mut cuts, started, false)?;
            pool.replace_exited()?;
            if Instant::now() >= next {
                break;
            }
        }
        // Weights: restart 30, stop 35, kill 35, partition 30, over the kinds this run
        // injects.
        let restart_w = if plan.kinds.restart && server.restartable() {
            30
        } else {
            0
        };
        let stop_w = if plan.kinds.stop { 35 } else { 0 };
        let kill_w = if plan.kinds.kill { 35 } else { 0 };
        let cut_w = if plan.kinds.partition && pool.net().is_some() {
            30
        } else {
            0
        };
        // Failover 30 (cluster only), drawn below the others: without it, a seed draws the
        // same faults as before it existed.
        let fail_w = if plan.kinds.failover && server.can_fail_over() {
            30
        } else {
            0
        };
        if restart_w + stop_w + kill_w + cut_w + fail_w == 0 {
            continue;
        }
        let roll = rng.u32(0..restart_w + stop_w + kill_w + cut_w + fail_w);
        let running: Vec<usize> = (0..pool.procs.len())
            .filter(|&i| pool.procs[i].stopped_until.is_none())
            .collect();
        // Running workers still connected: the ones a partition may cut off.
        let connected: Vec<usize> = running
            .iter()
            .copied()
            .filter(|&i| !cuts.contains_key(&pool.procs[i].slot))
            .collect();
        let at_ms = now_ms();
        let offset = started.elapsed();
        let mut cut = None;
        let failover = roll >= restart_w + stop_w + kill_w + cut_w;
        let what = if failover {
            tokio::task::block_in_place(|| server.fail_over())?
        } else if roll < cut_w {
            if connected.is_empty() {
                continue;
            }
            let i = connected[rng.usize(0..connected.len())];
            let (pid, slot) = (pool.procs[i].pid, pool.procs[i].slot);
            let cut_for = plan.lease.mul_f64(1.5 + rng.f64() * 1.5);
            if let Some(net) = pool.net() {
                net.cut(slot, Instant::now() + cut_for)?;
            }
            cuts.insert(slot, faults.len());
            cut = Some(Cut { pid, healed: None });
            format!(
                "cut worker {pid} (slot {slot}) off the server for {} ms",
                cut_for.as_millis()
            )
        } else if roll < cut_w + restart_w {
            let t = Instant::now();
            tokio::task::block_in_place(|| server.restart())?;
            format!(
                "restart the server (back in {} ms)",
                t.elapsed().as_millis()
            )
        } else if roll < cut_w + restart_w + stop_w && !running.is_empty() {
            let i = running[rng.usize(0..running.len())];
            let extra = rand_between(
                &mut rng,
                Duration::from_millis(500),
                Duration::from_millis(2_000),
            );
            let stopped = plan.lease + extra;
            let pid = pool.stop(i, Instant::now() + stopped)?;
            format!("SIGSTOP worker {pid} for {} ms", stopped.as_millis())
        } else if kill_w > 0 && !pool.procs.is_empty() {
            let i = rng.usize(0..pool.procs.len());
            let (pid, slot) = pool.kill(i)?;
            let new = pool.spawn(slot)?;
            format!("SIGKILL worker {pid}, started worker {new}")
        } else {
            continue;
        };
        println!("fault at {:6.1} s: {what}", offset.as_secs_f64());
        faults.push(Fault {
            at_ms,
            offset,
            what,
            cut,
            failover,
        });
    }
}

/// Starts again a cluster node a failover killed, once its time is up (all with `all`).
fn rejoin(server: &mut Server, started: Instant, all: bool) -> anyhow::Result<()> {
    if let Some(note) = tokio::task::block_in_place(|| server.rejoin_due(all))? {
        println!(
            "       at {:6.1} s: {note}",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Brings back the links whose time has come (all with `all`), noting when in their faults.
fn heal(
    pool: &mut Pool,
    faults: &mut [Fault],
    cuts: &mut HashMap<usize, usize>,
    started: Instant,
    all: bool,
) -> anyhow::Result<()> {
    let Some(net) = pool.net() else {
        return Ok(());
    };
    for slot in net.heal_due(all)? {
        let (at_ms, offset) = (now_ms(), started.elapsed());
        if let Some(c) = cuts.remove(&slot).and_then(|i| faults[i].cut.as_mut()) {
            c.healed = Some((at_ms, offset));
            println!(
                "link back at {:6.1} s: worker slot {slot} (worker {} was cut off)",
                offset.as_secs_f64(),
                c.pid
            );
        }
    }
    Ok(())
}

/// A duration uniform in `min..max` (`min` when the range is empty).
pub(crate) fn rand_between(rng: &mut fastrand::Rng, min: Duration, max: Duration) -> Duration {
    let (lo, hi) = (min.as_millis() as u64, max.as_millis() as u64);
    Duration::from_millis(if hi > lo { rng.u64(lo..hi) } else { lo })
}
