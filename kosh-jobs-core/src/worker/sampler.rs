//! The metrics sampler: the store-wide gauges, read at a bounded rate by the workers that opt
//! in ([`crate::WorkerBuilder::sample_metrics`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use metrics::gauge;
use tokio_util::sync::CancellationToken;

use super::outage;
use crate::any::AnyBackend;
use crate::backend::Backend;
use crate::clock::Clock;
use crate::metrics::{GROUPS_AT_LIMIT, HELD_BACK, JOBS, OLDEST_READY_AGE, WORKERS};
use crate::record::JobState;

/// Samples every `interval` until `stop` trips.
pub(crate) async fn run(
    backend: AnyBackend,
    clock: Clock,
    interval: Duration,
    stop: CancellationToken,
) {
    // Queues seen before, so a queue that emptied (or lost its limits) reads zero instead of
    // its last value.
    let mut known = Known::default();
    loop {
        if let Err(e) = sample(&backend, &clock, &mut known).await {
            tracing::warn!(error = %outage::chain(&e), "sampling the store's metrics failed");
        }
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

async fn sample(
    backend: &AnyBackend,
    clock: &Clock,
    known: &mut Known,
) -> Result<(), crate::error::BackendError> {
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
    Ok(())
}
