//! Stores attempt outcomes in batches: whatever finished while the previous batch was being
//! written goes in the next one, so a busy worker makes one `finish` call per many jobs.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::active::Active;
use super::executor::{Done, EventIdent};
use super::outage::Outage;
use crate::any::AnyBackend;
use crate::backend::Backend;
use crate::clock::Clock;
use crate::events::{JobEvent, JobEventKind};
use crate::record::{Finish, FinishResult, JobState, Outcome};

const MAX_BATCH: usize = 1024;

/// Counts of what the finisher stored.
#[derive(Default, Debug, Clone, Copy)]
pub(crate) struct Tally {
    pub(crate) completed: u64,
    pub(crate) retried: u64,
    pub(crate) failed: u64,
    pub(crate) lost: u64,
    pub(crate) snoozed: u64,
}

/// Runs until the channel closes (all senders dropped) and everything received is stored, or
/// until `give_up` is tripped while the backend is unreachable (the unstored leases then
/// expire and their jobs are recovered elsewhere).
pub(crate) async fn run(
    backend: AnyBackend,
    clock: Clock,
    active: Arc<Active>,
    mut rx: mpsc::UnboundedReceiver<Done>,
    give_up: CancellationToken,
    events_order: Arc<tokio::sync::RwLock<()>>,
) -> Tally {
    let mut tally = Tally::default();
    let mut outage = Outage::new("storing job results");
    let mut batch = Vec::with_capacity(64);
    loop {
        let first = tokio::select! {
            biased;
            r = rx.recv() => match r {
                Some(f) => f,
                None => break,
            },
            _ = give_up.cancelled() => break,
        };
        batch.clear();
        batch.push(first);
        // Let the other attempts that are finishing right now reach the channel, so one
        // `finish` call stores many outcomes.
        tokio::task::yield_now().await;
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(f) => batch.push(f),
                Err(_) => break,
            }
        }
        let leases: Vec<_> = batch.iter().map(|d| d.finish.lease).collect();
        let finishes: Vec<Finish> = batch.iter().map(|d| d.finish.clone()).collect();
        // With events, hold back this worker's `Started` events from storing the outcomes
        // until their own events are sent (see `Shared::events_order`).
        let announces = batch.iter().any(|d| d.ident.is_some());
        loop {
            let order = if announces {
                Some(events_order.write().await)
            } else {
                None
            };
            match backend.finish(finishes.clone()).await {
                Ok(mut results) => {
                    outage.ok();
                    active.store_answered();
                    let confirmed = confirm_in_store(&backend, &batch, &mut results).await;
                    let mut events = Vec::new();
                    for (i, (d, r)) in batch.iter().zip(&results).enumerate() {
                        // A completion the handler stored itself is told as one.
                        let stored;
                        let f = if confirmed.contains(&i) {
                            stored = Finish {
                                lease: d.finish.lease,
                                outcome: match &d.finish.outcome {
                                    o @ Outcome::Completed { .. } => o.clone(),
                                    _ => Outcome::Completed { result: None },
                                },
                            };
                            &stored
                        } else {
                            &d.finish
                        };
                        if let (FinishResult::Applied, Some(ident)) = (r, &d.ident) {
                            events.push(event_of(ident, f, clock.now()));
                        }
                        match r {
                            // A snooze is not an attempt that ended: it has its own counter.
                            FinishResult::Applied
                                if matches!(f.outcome, Outcome::Snooze { .. }) =>
                            {
                                d.metrics.snoozed.increment(1)
                            }
                            FinishResult::Applied => {
                                d.metrics.ended(f.outcome.attempt_outcome()).increment(1)
                            }
                            FinishResult::LeaseLost => d.metrics.lease_lost.increment(1),
                        }
                        match (r, &f.outcome) {
                            (FinishResult::LeaseLost, _) => {
                                tally.lost += 1;
                                tracing::warn!(job.id = %f.lease.id, "result refused: the lease was lost (job recovered elsewhere or cancelled)");
                            }
                            (FinishResult::Applied, Outcome::Completed { .. }) => {
                                tally.completed += 1
                            }
                            (FinishResult::Applied, Outcome::Retry { .. }) => tally.retried += 1,
                            (FinishResult::Applied, Outcome::Failed { .. }) => tally.failed += 1,
                            (FinishResult::Applied, Outcome::Snooze { .. }) => tally.snoozed += 1,
                        }
                    }
                    if !events.is_empty() {
                        backend.publish_events(events);
                    }
                    drop(order);
                    break;
                }
                Err(e) => {
                    drop(order);
                    let wait = outage.failed(&e);
                    tokio::select! {
                        _ = clock.sleep(wait) => {}
                        _ = give_up.cancelled() => {
                            tracing::error!(jobs = batch.len(), "giving up storing results at shutdown; their leases will expire and the jobs run again");
                            break;
                        }
                    }
                }
            }
        }
        active.remove(&leases);
    }
    tally
}

/// For each refused finish of an attempt whose handler stored its completion itself (inside
/// its own transaction), looks at the job: completed by that attempt, the refusal was the
/// handler's own completion, and the result becomes `Applied`. The outcome applied is then
/// the completion, whatever the handler returned after its transaction committed.
/// Returns the positions of the results it turned.
async fn confirm_in_store(
    backend: &AnyBackend,
    batch: &[Done],
    results: &mut [FinishResult],
) -> Vec<usize> {
    let mut confirmed = Vec::new();
    for (i, (d, r)) in batch.iter().zip(results.iter_mut()).enumerate() {
        let Some(attempt) = d.in_store else {
            continue;
        };
        if *r != FinishResult::LeaseLost {
            continue;
        }
        match backend.get(d.finish.lease.id).await {
            Ok(Some(rec)) if rec.state == JobState::Completed && rec.attempts == attempt => {
                *r = FinishResult::Applied;
                confirmed.push(i);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(job.id = %d.finish.lease.id, error = %e, "cannot check a job its handler completed in its own transaction; counted as a lost lease");
            }
        }
    }
    confirmed
}

/// The lifecycle event of a stored outcome.
fn event_of(ident: &EventIdent, f: &Finish, at: crate::clock::Timestamp) -> JobEvent {
    let (kind, error) = match &f.outcome {
        Outcome::Completed { .. } => (JobEventKind::Completed, None),
        Outcome::Retry { error, .. } => (JobEventKind::RetryScheduled, Some(error.clone())),
        Outcome::Failed { error, .. } => (JobEventKind::Failed, Some(error.clone())),
        Outcome::Snooze { .. } => (JobEventKind::Snoozed, None),
    };
    let mut e = ident.event(f.lease.id, kind, at);
    e.error = error;
    e
}
