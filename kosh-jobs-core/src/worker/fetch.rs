//! The fetch loop: leases jobs for the free slots, dispatches each to its own task, waits
//! for work when there is none, recovers expired leases on the backend's pacing, and backs
//! off while the backend is unreachable.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::active::{Active, Entry, Phase};
use super::executor::{self, Shared};
use super::outage::Outage;
use super::WorkerConfig;
use crate::clock::Clock;
use crate::record::{LeasedJob, ReserveRequest};

pub(super) async fn fetch_loop<S, F>(
    shared: &Arc<Shared<S>>,
    config: &WorkerConfig,
    woke_for_nothing: &tokio::sync::Notify,
    shutdown: &mut std::pin::Pin<&mut F>,
) where
    S: Clone + Send + Sync + 'static,
    F: Future,
{
    let backend = &shared.backend;
    let clock = &shared.clock;
    let active = &shared.active;
    // Fetching is what finds the store back when nothing else calls it (no job running): a
    // backoff capped at 1 s, not 5 s, keeps a worker whose link came back from idling for
    // seconds. One warning per outage all the same.
    let mut outage = Outage::new("fetching jobs").max_wait(FETCH_BACKOFF_CAP);
    // Recovery fails together with fetching in an outage: it says so once.
    let mut recover_outage = Outage::new("recovering expired leases");
    let mut next_recover = clock.now();
    let mut last_recover = clock.now();
    // Whether the last wait for work ended before its deadline, on the backend's signal.
    let mut woke_early = false;
    let limited = config.limits.iter().any(|l| *l != usize::MAX);
    loop {
        // Shutdown wins over any other work that is ready at the same moment.
        if shutdown.as_mut().now_or_never().is_some() {
            return;
        }
        let now = clock.now();
        if now >= recover_due(config, next_recover, last_recover, active.in_flight()) {
            last_recover = now;
            next_recover = now + config.recover_interval;
            match backend.recover_expired().await {
                Ok(n) => {
                    recover_outage.ok();
                    if n > 0 {
                        crate::metrics::recovered(n);
                        tracing::info!(jobs = n, "recovered jobs whose leases expired")
                    }
                }
                Err(e) => {
                    recover_outage.failed(&e);
                }
            }
        }
        let free = config.concurrency.saturating_sub(active.in_flight());
        if free == 0 {
            let notified = active.slot_freed.notified();
            if config.concurrency.saturating_sub(active.in_flight()) == 0 {
                let recover_at =
                    recover_due(config, next_recover, last_recover, active.in_flight());
                tokio::select! {
                    biased;
                    _ = shutdown.as_mut() => return,
                    _ = notified => {}
                    _ = clock.sleep_until(recover_at) => {}
                }
            }
            continue;
        }
        if active.in_flight() > 0 {
            // Let other slots free up first, so one reserve fills several.
            tokio::task::yield_now().await;
        }
        let free = config.concurrency.saturating_sub(active.in_flight());
        // Which queues have room, and how much.
        let mut requests: Vec<(Vec<String>, usize)> = Vec::new();
        if limited {
            for (i, q) in config.queues.iter().enumerate() {
                let room = config.limits[i]
                    .saturating_sub(active.in_flight_of(i))
                    .min(free);
                if room > 0 {
                    requests.push((vec![q.clone()], room));
                }
            }
        } else {
            requests.push((config.queues.clone(), free));
        }
        // The queues to wait on if nothing is taken: those with room. A full queue's ready
        // jobs are not work for this worker (a wait on it would return at once, and spin);
        // a slot of it freeing up ends the wait instead.
        let open: Vec<String> = requests.iter().flat_map(|(q, _)| q.clone()).collect();
        let mut got = 0usize;
        let mut failed = false;
        for (queues, max) in requests {
            let req = ReserveRequest {
                queues,
                worker: config.worker_id.clone(),
                max,
                lease: config.lease,
            };
            // Not raced against shutdown: a reserve dropped midway could still lease jobs on
            // the server that nobody would run until their leases expire.
            let answers = active.answers();
            let reserved = backend.reserve(&req).await;
            match reserved {
                Ok(jobs) => {
                    outage.ok();
                    got += jobs.len();
                    if !jobs.is_empty() {
                        shared.worked.tell();
                    }
                    for job in jobs {
                        dispatch(shared, config, job);
                    }
                }
                Err(e) => {
                    failed = true;
                    let pause = outage.failed(&e);
                    if !wait_out(shutdown, clock, pause, active, answers).await {
                        return;
                    }
                    break;
                }
            }
        }
        if got == 0 && !failed && woke_early {
            woke_for_nothing.notify_one();
        }
        woke_early = false;
        if got > 0 || failed {
            continue;
        }
        // Nothing to do: wait for the backend's signal, a freed slot (per-queue limits), the
        // next recovery round, or shutdown.
        let until = (clock.now() + config.idle_wait).min(recover_due(
            config,
            next_recover,
            last_recover,
            active.in_flight(),
        ));
        let notified = active.slot_freed.notified();
        let answers = active.answers();
        let wait = async {
            if open.is_empty() {
                // Every queue is full: only a freed slot (below) or the clock ends this.
                clock.sleep_until(until).await;
                Ok(())
            } else {
                backend.wait_for_work(&open, until).await
            }
        };
        tokio::select! {
            biased;
            _ = shutdown.as_mut() => return,
            r = wait => {
                woke_early = r.is_ok() && clock.now() < until;
                if let Err(e) = r {
                    let pause = outage.failed(&e);
                    if !wait_out(shutdown, clock, pause, active, answers).await {
                        return;
                    }
                }
            }
            _ = notified, if limited && active.in_flight() > 0 => {}
        }
    }
}

/// Waits out a failed fetch: `pause`, unless a renewal or a stored outcome gets through
/// first (the store is back; `answers` is the count before the fetch). False if shutdown
/// came first.
async fn wait_out<F: Future>(
    shutdown: &mut std::pin::Pin<&mut F>,
    clock: &Clock,
    pause: Duration,
    active: &Active,
    answers: u64,
) -> bool {
    tokio::select! {
        biased;
        _ = shutdown.as_mut() => false,
        _ = clock.sleep(pause) => true,
        () = active.answered_since(answers) => true,
    }
}

/// The longest a worker waits between failed fetches (see `fetch_loop`); a renewal or a stored
/// outcome that gets through ends the wait sooner.
const FETCH_BACKOFF_CAP: Duration = Duration::from_secs(1);

/// When the worker next recovers expired leases: every `recover_interval` (the backend's
/// pacing), and while it runs jobs at least once a lease period. An idle worker's waits end at
/// the leases' deadlines and its reserves recover them, on a backend that paces it slowly
/// (Redis); a busy one does not reserve from a full queue, and its renewals cost more requests
/// than one recovery a lease period anyway.
fn recover_due(
    config: &WorkerConfig,
    next_recover: crate::clock::Timestamp,
    last_recover: crate::clock::Timestamp,
    in_flight: usize,
) -> crate::clock::Timestamp {
    if in_flight > 0 {
        next_recover.min(last_recover + config.lease)
    } else {
        next_recover
    }
}

fn dispatch<S: Clone + Send + Sync + 'static>(
    shared: &Arc<Shared<S>>,
    config: &WorkerConfig,
    job: LeasedJob,
) {
    let cancel = CancellationToken::new();
    let reg = shared.registry.get(&job.name).cloned();
    let timeout = reg.as_ref().and_then(|r| r.options.timeout);
    let slot = config
        .queues
        .iter()
        .position(|q| *q == job.queue)
        .unwrap_or(usize::MAX);
    let metrics = shared.metrics.get(&job.queue, &job.name);
    metrics.started.increment(1);
    if job.attempt == 1 {
        let waited = shared.clock.now().saturating_duration_since(job.created_at);
        metrics.wait.record(waited.as_secs_f64());
    }
    let now = shared.clock.now();
    shared.active.insert(Entry {
        lease: job.lease,
        queue_slot: slot,
        phase: Phase::Running,
        cancel: cancel.clone(),
        deadline: timeout.map(|t| now + t),
        ack_at: None,
        started: false,
        lease_ends: job.lease_expires_at,
        holds_slot: true,
        metrics: metrics.clone(),
    });
    let span = crate::trace::attempt_span(&job);
    // Boxed first: the task then moves a pointer, not the whole future, through spawn.
    tokio::spawn(Box::pin(
        executor::execute(shared.clone(), job, reg, cancel, metrics).instrument(span),
    ));
}
