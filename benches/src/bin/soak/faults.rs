//! The fault injector: at random intervals drawn from the seed, one of
//!
//! - `kill`: `SIGKILL` a worker process and start a new one;
//! - `stop`: `SIGSTOP` a worker for longer than its lease, then `SIGCONT` it (a zombie that
//!   wakes up holding stale leases);
//! - `restart`: restart the server (Redis with its append-only file; Postgres). Not for
//!   SQLite, which has no server.
//!
//! Faults in handlers (timeouts, panics, threads blocked past the lease, permanent errors)
//! come with the jobs, from the producer. Meanwhile it replaces workers that exited by
//! themselves, and continues stopped ones when their time is up.

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
}

impl std::str::FromStr for Kinds {
    type Err = anyhow::Error;
    /// `kill,stop,restart` or a part of it.
    fn from_str(s: &str) -> anyhow::Result<Kinds> {
        let mut k = Kinds {
            kill: false,
            stop: false,
            restart: false,
        };
        for part in s.split(',') {
            match part {
                "kill" => k.kill = true,
                "stop" => k.stop = true,
                "restart" => k.restart = true,
                _ => anyhow::bail!("unknown fault `{part}`: use kill, stop, restart"),
            }
        }
        Ok(k)
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
    let mut faults = Vec::new();
    let tick = Duration::from_millis(100);
    loop {
        let gap = rand_between(&mut rng, plan.min_gap, plan.max_gap);
        let next = Instant::now() + gap;
        loop {
            let wait = next.saturating_duration_since(Instant::now()).min(tick);
            tokio::select! {
                _ = &mut stop => {
                    pool.continue_due(true)?;
                    return Ok((pool, server, faults));
                }
                () = tokio::time::sleep(wait) => {}
            }
            pool.continue_due(false)?;
            pool.replace_exited()?;
            if Instant::now() >= next {
                break;
            }
        }
        // Weights: restart 30, stop 35, kill 35, over the kinds this run injects.
        let restart_w = if plan.kinds.restart && server.restartable() {
            30
        } else {
            0
        };
        let stop_w = if plan.kinds.stop { 35 } else { 0 };
        let kill_w = if plan.kinds.kill { 35 } else { 0 };
        if restart_w + stop_w + kill_w == 0 {
            continue;
        }
        let roll = rng.u32(0..restart_w + stop_w + kill_w);
        let running: Vec<usize> = (0..pool.procs.len())
            .filter(|&i| pool.procs[i].stopped_until.is_none())
            .collect();
        let at_ms = now_ms();
        let offset = started.elapsed();
        let what = if roll < restart_w {
            let t = Instant::now();
            tokio::task::block_in_place(|| server.restart())?;
            format!(
                "restart the server (back in {} ms)",
                t.elapsed().as_millis()
            )
        } else if roll < restart_w + stop_w && !running.is_empty() {
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
            let pid = pool.kill(i)?;
            let new = pool.spawn()?;
            format!("SIGKILL worker {pid}, started worker {new}")
        } else {
            continue;
        };
        println!("fault at {:6.1} s: {what}", offset.as_secs_f64());
        faults.push(Fault {
            at_ms,
            offset,
            what,
        });
    }
}

/// A duration uniform in `min..max` (`min` when the range is empty).
pub(crate) fn rand_between(rng: &mut fastrand::Rng, min: Duration, max: Duration) -> Duration {
    let (lo, hi) = (min.as_millis() as u64, max.as_millis() as u64);
    Duration::from_millis(if hi > lo { rng.u64(lo..hi) } else { lo })
}
