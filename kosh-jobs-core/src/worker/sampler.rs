//! The metrics sampler: the store-wide gauges, read at a bounded rate by the workers that opt
//! in ([`crate::WorkerBuilder::sample_metrics`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metrics::gauge;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::any::AnyBackend;
use crate::backend::Backend;
use crate::clock::Clock;
use crate::metrics::{GROUPS_AT_LIMIT, HELD_BACK, JOBS, OLDEST_READY_AGE, WORKERS};
use crate::record::JobState;

/// Work handed to a worker: how many times, and a signal each time, so the metrics sampler
/// resting on a quiet store samples again.
#[derive(Debug, Default)]
pub(crate) struct Worked {
    times: AtomicU64,
    signal: Notify,
}

impl Worked {
    /// The worker leased jobs.
    pub(crate) fn tell(&self) {
        self.times.fetch_add(1, Ordering::AcqRel);
        self.signal.notify_waiters();
    }

    fn times(&self) -> u64 {
        self.times.load(Ordering::Acquire)
    }
}

/// Samples every `interval` while jobs are in motion; while the store is quiet (no job
/// ready or running in any queue) only every `quiet_wait` (the worker's longest wait for
/// work, ten minutes on Redis), or `interval` after this worker is handed work (`worked`),
/// until `stop` trips.
///
/// A quiet store's gauges do not change by themselves: the next job wakes the workers, and
/// the sample after it shows it. What can go unseen for up to `quiet_wait` is what touches no
/// queue this worker serves (a job enqueued to another queue, a worker joining), so a store
/// billed per request (a hosted Redis) is not read every `interval` all day for nothing.
pub(crate) async fn run(
    backend: AnyBackend,
    clock: Clock,
    interval: Duration,
    quiet_wait: Duration,
    worked: Arc<Worked>,
    stop: CancellationToken,
) {
    // Queues seen before, so a queue that emptied (or lost its limits) reads zero instead of
    // its last value.
    let mut known = Known::default();
    loop {
        let before = worked.times();
        let quiet = match sample(&backend, &clock, &mut known).await {
            Ok(quiet) => quiet,
            Err(e) => {
                tracing::warn!(error = %crate::ErrorChain(&e), "sampling the store's metrics failed");
                false
            }
        };
        let woken = worked.signal.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        // Jobs leased while the sample was read may not be in it: sample again as usual.
        if quiet && quiet_wait > interval && worked.times() == before {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = clock.sleep(quiet_wait) => continue,
                _ = woken => {}
            }
        }
        // Sampled an interval after work came, as when sampling all along.
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = clock.sleep(interval) => {}
        }
    }
}

/// The queues the gauges were set for.
#[derive(Default)]
struct Known {
    queues: BTreeSet<String>,
    limited: BTreeSet<String>,
}

/// Sets the gauges; returns whether the store is quiet (no job ready or running).
async fn sample(
    backend: &AnyBackend,
    clock: &Clock,
    known: &mut Known,
) -> Result<bool, crate::error::BackendError> {
    let counts = backend.counts().await?;
    let workers = backend.workers().await?;
    let flows = backend.queue_flows().await?;
    let now = clock.now();
    // Ready jobs a queue's limits hold back: those beyond what they let start now.
    let mut held: BTreeMap<String, f64> = known.limited.iter().map(|q| (q.clone(), 0.0)).collect();
    let mut groups: BTreeMap<String, f64> =
        known.limited.iter().map(|q| (q.clone(), 0.0)).collect();
    for f in &flows {
        let ready = counts
            .iter()
            .find(|c| c.queue == f.queue)
            .map_or(0, |c| c.ready);
        groups.insert(f.queue.clone(), f.groups_at_limit as f64);
        held.insert(f.queue.clone(), f.held_back(ready) as f64);
    }
    for (q, n) in held {
        gauge!(HELD_BACK, "queue" => q.clone()).set(n);
        known.limited.insert(q);
    }
    for (q, n) in groups {
        gauge!(GROUPS_AT_LIMIT, "queue" => q).set(n);
    }
    let known = &mut known.queues;
    let mut per_queue: BTreeMap<String, f64> = known.iter().map(|q| (q.clone(), 0.0)).collect();
    // A queue that emptied is left out of `counts`: its gauges drop to zero.
    for q in known.iter() {
        if !counts.iter().any(|c| c.queue == *q) {
            for st in JobState::ALL {
                gauge!(JOBS, "queue" => q.clone(), "state" => st.as_str()).set(0.0);
            }
            gauge!(OLDEST_READY_AGE, "queue" => q.clone()).set(0.0);
        }
    }
    for c in &counts {
        per_queue.entry(c.queue.clone()).or_insert(0.0);
        for st in JobState::ALL {
            gauge!(JOBS, "queue" => c.queue.clone(), "state" => st.as_str()).set(c.get(st) as f64);
        }
        let age = c
            .oldest_ready_at
            .map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
        gauge!(OLDEST_READY_AGE, "queue" => c.queue.clone()).set(age);
    }
    for w in &workers {
        for q in &w.info.queues {
            *per_queue.entry(q.clone()).or_insert(0.0) += 1.0;
        }
    }
    for (q, n) in per_queue {
        gauge!(WORKERS, "queue" => q.clone()).set(n);
        known.insert(q);
    }
    Ok(counts.iter().all(|c| c.ready == 0 && c.running == 0))
}
