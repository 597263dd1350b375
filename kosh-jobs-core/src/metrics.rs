//! Metrics, through the [`metrics`](https://docs.rs/metrics) facade.
//!
//! The application picks where they go by installing a recorder (Prometheus with
//! `metrics-exporter-prometheus`, OpenTelemetry, StatsD, ...) **before** it starts its workers
//! and clients; with no recorder installed, nothing is recorded and the instrumentation costs
//! next to nothing (the handles are no-ops).
//!
//! Every metric is labelled with `queue` and `job` (the job's stable name) only, never with
//! ids or attempt numbers, so the number of series stays bounded. Counters are incremented
//! where the event happens, never derived from stored jobs, so retention settings do not
//! change them.
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | `kosh_jobs_enqueued_total` | counter | queue, job | jobs stored by a client (not those a unique key turned away) |
//! | `kosh_jobs_started_total` | counter | queue, job | attempts started by a worker |
//! | `kosh_jobs_attempts_total` | counter | queue, job, outcome | attempts ended, by `outcome`: `completed`, `retry_scheduled`, `failed`, `timed_out`, `panicked`, `lease_lost` (the store refused the result: the job was recovered elsewhere or cancelled) |
//! | `kosh_jobs_released_total` | counter | queue, job | attempts given back at shutdown (they run again elsewhere) |
//! | `kosh_jobs_snoozed_total` | counter | queue, job | attempts whose handler said "not now" ([`JobError::snooze`](crate::JobError::snooze)); not counted as attempts |
//! | `kosh_jobs_leases_recovered_total` | counter | — | expired leases this process recovered (jobs whose worker stalled or died) |
//! | `kosh_jobs_attempt_duration_seconds` | histogram | queue, job | run time of an attempt's handler |
//! | `kosh_jobs_wait_seconds` | histogram | queue, job | from enqueue to the start of the first attempt |
//! | `kosh_jobs_running` | gauge | queue, job | attempts running in this worker |
//! | `kosh_jobs_jobs` | gauge | queue, state | jobs in the store per state (sampler) |
//! | `kosh_jobs_oldest_ready_age_seconds` | gauge | queue | how long the oldest ready job has waited: the number that grows when a queue is stuck (sampler) |
//! | `kosh_jobs_workers` | gauge | queue | live workers taking jobs from the queue (sampler) |
//! | `kosh_jobs_held_back` | gauge | queue | ready jobs the queue's concurrency or rate limit, a hold, or their group's limit keeps back now ([`crate::limits`]; sampler) |
//! | `kosh_jobs_groups_at_limit` | gauge | queue | groups whose running jobs reached the group concurrency limit ([`crate::limits#groups`]; sampler) |
//! | `kosh_jobs_schedule_ticks_total` | counter | queue, job, outcome | schedule ticks this process handled, by `outcome`: `enqueued`, `missed` (skipped by the missed-tick policy), `overlapping` (skipped while the previous job was live) |
//!
//! The store-wide gauges (marked sampler) are read by a worker that opts in with
//! [`WorkerBuilder::sample_metrics`](crate::WorkerBuilder::sample_metrics), at its interval:
//! run it in one or a few workers, not all, so a hundred workers do not multiply the load on
//! the store. While no job is ready or running anywhere it reads them only once per idle wait
//! of the worker, and an interval after the worker gets a job (see `sample_metrics`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

use crate::admin::AttemptOutcome;

/// `kosh_jobs_enqueued_total`.
pub const ENQUEUED: &str = "kosh_jobs_enqueued_total";
/// `kosh_jobs_started_total`.
pub const STARTED: &str = "kosh_jobs_started_total";
/// `kosh_jobs_attempts_total`.
pub const ATTEMPTS: &str = "kosh_jobs_attempts_total";
/// `kosh_jobs_released_total`.
pub const RELEASED: &str = "kosh_jobs_released_total";
/// `kosh_jobs_snoozed_total`.
pub const SNOOZED: &str = "kosh_jobs_snoozed_total";
/// `kosh_jobs_leases_recovered_total`.
pub const LEASES_RECOVERED: &str = "kosh_jobs_leases_recovered_total";
/// `kosh_jobs_attempt_duration_seconds`.
pub const ATTEMPT_DURATION: &str = "kosh_jobs_attempt_duration_seconds";
/// `kosh_jobs_wait_seconds`.
pub const WAIT: &str = "kosh_jobs_wait_seconds";
/// `kosh_jobs_running`.
pub const RUNNING: &str = "kosh_jobs_running";
/// `kosh_jobs_jobs`.
pub const JOBS: &str = "kosh_jobs_jobs";
/// `kosh_jobs_oldest_ready_age_seconds`.
pub const OLDEST_READY_AGE: &str = "kosh_jobs_oldest_ready_age_seconds";
/// `kosh_jobs_workers`.
pub const WORKERS: &str = "kosh_jobs_workers";
/// `kosh_jobs_held_back`.
pub const HELD_BACK: &str = "kosh_jobs_held_back";
/// `kosh_jobs_groups_at_limit`.
pub const GROUPS_AT_LIMIT: &str = "kosh_jobs_groups_at_limit";
/// `kosh_jobs_schedule_ticks_total`.
pub const SCHEDULE_TICKS: &str = "kosh_jobs_schedule_ticks_total";

/// The `outcome` label of an attempt whose result the store refused.
pub const LEASE_LOST: &str = "lease_lost";

/// The handles of one (queue, job name) pair, registered once and reused for every attempt.
pub(crate) struct JobMetrics {
    pub(crate) started: Counter,
    pub(crate) released: Counter,
    pub(crate) snoozed: Counter,
    pub(crate) duration: Histogram,
    pub(crate) wait: Histogram,
    pub(crate) running: Gauge,
    outcomes: [Counter; AttemptOutcome::ALL.len()],
    pub(crate) lease_lost: Counter,
}

impl JobMetrics {
    fn register(queue: &str, job: &str) -> Self {
        let labels = [("queue", queue.to_owned()), ("job", job.to_owned())];
        let outcome = |o: &'static str| counter!(ATTEMPTS, "queue" => queue.to_owned(), "job" => job.to_owned(), "outcome" => o);
        JobMetrics {
            started: counter!(STARTED, &labels),
            released: counter!(RELEASED, &labels),
            snoozed: counter!(SNOOZED, &labels),
            duration: histogram!(ATTEMPT_DURATION, &labels),
            wait: histogram!(WAIT, &labels),
            running: gauge!(RUNNING, &labels),
            outcomes: AttemptOutcome::ALL.map(|o| outcome(o.as_str())),
            lease_lost: outcome(LEASE_LOST),
        }
    }

    /// The counter of attempts that ended with `outcome`.
    pub(crate) fn ended(&self, outcome: AttemptOutcome) -> &Counter {
        let i = AttemptOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(0);
        &self.outcomes[i]
    }
}

/// The handles of every (queue, job name) pair a worker has seen.
#[derive(Default)]
pub(crate) struct MetricsCache {
    by_queue: Mutex<HashMap<String, HashMap<String, Arc<JobMetrics>>>>,
}

impl MetricsCache {
    /// The handles of `job` in `queue`, registering them the first time.
    pub(crate) fn get(&self, queue: &str, job: &str) -> Arc<JobMetrics> {
        let mut map = self.by_queue.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = map.get(queue).and_then(|jobs| jobs.get(job)) {
            return m.clone();
        }
        let m = Arc::new(JobMetrics::register(queue, job));
        map.entry(queue.to_owned())
            .or_default()
            .insert(job.to_owned(), m.clone());
        m
    }
}

/// Counts jobs a client stored.
pub(crate) fn enqueued(queue: &str, job: &str, n: u64) {
    counter!(ENQUEUED, "queue" => queue.to_owned(), "job" => job.to_owned()).increment(n);
}

/// Counts leases this process recovered.
pub(crate) fn recovered(n: u64) {
    counter!(LEASES_RECOVERED).increment(n);
}

/// Counts schedule ticks this process handled, by outcome (`enqueued`, `missed`,
/// `overlapping`).
pub(crate) fn schedule_ticks(queue: &str, job: &str, outcome: &'static str, n: u64) {
    if n > 0 {
        counter!(SCHEDULE_TICKS, "queue" => queue.to_owned(), "job" => job.to_owned(), "outcome" => outcome)
            .increment(n);
    }
}
