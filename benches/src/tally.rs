//! Which job ran how often: the handlers of the bench jobs record each run here, and every run
//! of the bench checks that each job ran exactly once. A benchmark that does not check its
//! work measures nothing.

use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context as _};
use tokio::sync::{mpsc, Notify};

/// The handlers' shared record. Cheap to clone.
#[derive(Clone)]
pub struct Tally {
    inner: Arc<Inner>,
}

struct Inner {
    /// Runs per job number; empty when only counting.
    runs: Vec<AtomicU32>,
    done: AtomicU64,
    /// Runs of job numbers outside `runs`.
    stray: AtomicU64,
    goal: AtomicU64,
    reached: Notify,
    starts: Mutex<Option<mpsc::UnboundedSender<(u64, Instant)>>>,
}

impl Tally {
    /// Records runs of jobs numbered `0..jobs`, each separately.
    pub fn tracking(jobs: u64) -> Tally {
        Tally::with_runs((0..jobs).map(|_| AtomicU32::new(0)).collect())
    }

    /// Only counts runs (for criterion's open-ended loops; check with [`Tally::done`]).
    pub fn counting() -> Tally {
        Tally::with_runs(Vec::new())
    }

    fn with_runs(runs: Vec<AtomicU32>) -> Tally {
        Tally {
            inner: Arc::new(Inner {
                runs,
                done: AtomicU64::new(0),
                stray: AtomicU64::new(0),
                goal: AtomicU64::new(u64::MAX),
                reached: Notify::new(),
                starts: Mutex::new(None),
            }),
        }
    }

    /// A handler ran job `n`.
    pub fn record(&self, n: u64) {
        let i = &self.inner;
        if !i.runs.is_empty() {
            match i.runs.get(n as usize) {
                Some(r) => {
                    r.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    i.stray.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let done = i.done.fetch_add(1, Ordering::AcqRel) + 1;
        if done == i.goal.load(Ordering::Acquire) {
            i.reached.notify_waiters();
        }
    }

    /// A handler started job `n` (latency probes): sent to the receiver of
    /// [`Tally::watch_starts`], if any.
    pub fn started(&self, n: u64) {
        let now = Instant::now();
        if let Some(tx) = self.inner.starts.lock().expect("starts lock").as_ref() {
            let _ = tx.send((n, now));
        }
    }

    /// Receives `(job number, handler start)` for every [`Tally::started`] from now on.
    pub fn watch_starts(&self) -> mpsc::UnboundedReceiver<(u64, Instant)> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.inner.starts.lock().expect("starts lock") = Some(tx);
        rx
    }

    /// Runs recorded so far, by this process.
    pub fn done(&self) -> u64 {
        self.inner.done.load(Ordering::Acquire)
    }

    /// Waits until at least `goal` runs are recorded (goals must not go down between calls).
    pub async fn wait_for(&self, goal: u64) {
        let i = &self.inner;
        i.goal.store(goal, Ordering::Release);
        loop {
            let notified = i.reached.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.done() >= goal {
                return;
            }
            notified.await;
        }
    }

    /// Runs per job number, as recorded so far.
    pub fn runs(&self) -> Vec<u32> {
        self.inner
            .runs
            .iter()
            .map(|r| r.load(Ordering::Relaxed))
            .collect()
    }

    /// Runs of job numbers that were never enqueued.
    pub fn stray(&self) -> u64 {
        self.inner.stray.load(Ordering::Relaxed)
    }

    /// Fails unless each of the jobs ran exactly once and nothing else ran.
    pub fn check(&self) -> anyhow::Result<()> {
        check_exactly_once(&self.runs(), self.stray())
    }
}

/// Fails, naming some offenders, unless every entry of `runs` is 1 and `stray` is 0.
pub fn check_exactly_once(runs: &[u32], stray: u64) -> anyhow::Result<()> {
    let never = runs.iter().filter(|r| **r == 0).count();
    let twice = runs.iter().filter(|r| **r > 1).count();
    if never == 0 && twice == 0 && stray == 0 {
        return Ok(());
    }
    let examples: Vec<String> = runs
        .iter()
        .enumerate()
        .filter(|(_, r)| **r != 1)
        .take(8)
        .map(|(n, r)| format!("job {n} ran {r}×"))
        .collect();
    bail!(
        "NOT EXACTLY ONCE: of {} jobs, {never} never ran and {twice} ran more than once, \
         and there were {stray} runs of jobs never enqueued (e.g. {})",
        runs.len(),
        examples.join(", ")
    )
}

/// Adds the runs of another process (read with [`read_runs`]) to `runs`.
pub fn merge_runs(runs: &mut [u32], other: &[u32]) -> anyhow::Result<()> {
    if runs.len() != other.len() {
        bail!(
            "run records of different lengths: {} and {}",
            runs.len(),
            other.len()
        );
    }
    for (a, b) in runs.iter_mut().zip(other) {
        *a += *b;
    }
    Ok(())
}

/// Writes runs per job number (little-endian `u32`s) for the parent process to merge.
pub fn write_runs(path: &Path, runs: &[u32]) -> anyhow::Result<()> {
    let bytes: Vec<u8> = runs.iter().flat_map(|r| r.to_le_bytes()).collect();
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Reads what [`write_runs`] wrote.
pub fn read_runs(path: &Path) -> anyhow::Result<Vec<u32>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() % 4 != 0 {
        bail!("{}: truncated run record", path.display());
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_once_is_checked() {
        let t = Tally::tracking(3);
        for n in [0, 1, 2] {
            t.record(n);
        }
        t.check().unwrap();
        t.record(1);
        let e = t.check().unwrap_err().to_string();
        assert!(
            e.contains("1 ran more than once") && e.contains("job 1 ran 2×"),
            "{e}"
        );

        let t = Tally::tracking(2);
        t.record(0);
        t.record(7);
        let e = t.check().unwrap_err().to_string();
        assert!(
            e.contains("1 never ran") && e.contains("1 runs of jobs never"),
            "{e}"
        );
    }

    #[test]
    fn records_of_two_processes_merge() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs");
        write_runs(&path, &[1, 0, 1]).unwrap();
        let mut mine = vec![0, 1, 0];
        merge_runs(&mut mine, &read_runs(&path).unwrap()).unwrap();
        check_exactly_once(&mine, 0).unwrap();
        assert!(merge_runs(&mut mine, &[1]).is_err());
    }

    #[tokio::test]
    async fn waits_for_a_goal() {
        let t = Tally::counting();
        let t2 = t.clone();
        let h = tokio::spawn(async move { t2.wait_for(3).await });
        for n in 0..3 {
            t.record(n);
            tokio::task::yield_now().await;
        }
        h.await.unwrap();
        t.wait_for(2).await; // already reached
    }
}
