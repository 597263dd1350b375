//! Runs one attempt: the handler in its own task, with panics caught, a timeout, and
//! cancellation when the lease is lost or the worker shuts down.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::active::{Active, Phase};
use super::registry::{AttemptResult, Failure, Registration, Registry};
use crate::any::AnyBackend;
use crate::clock::Clock;
use crate::metrics::{JobMetrics, MetricsCache};
use crate::record::{FailureKind, Finish, LeasedJob, Outcome};
use crate::retry::{decide, Decision};

/// What every executor of a worker shares.
pub(crate) struct Shared<S> {
    pub(crate) backend: AnyBackend,
    pub(crate) clock: Clock,
    pub(crate) state: S,
    pub(crate) registry: Registry<S>,
    pub(crate) active: Arc<Active>,
    pub(crate) finished: mpsc::UnboundedSender<Done>,
    pub(crate) metrics: MetricsCache,
    /// Orders this worker's lifecycle events: the finisher holds it from storing outcomes
    /// until their events are sent, so a job retried at once and leased again meanwhile
    /// cannot announce its next start before its retry.
    pub(crate) events_order: Arc<tokio::sync::RwLock<()>>,
    /// Signalled when this worker leases jobs: the metrics sampler, resting while the store is
    /// quiet, samples again.
    pub(crate) worked: Arc<super::sampler::Worked>,
}

/// An attempt's outcome on its way to the finisher, with the metric handles of its job.
pub(crate) struct Done {
    pub(crate) finish: Finish,
    pub(crate) metrics: Arc<JobMetrics>,
    /// The job's queue, name and attempt, for its lifecycle event; `None` when the backend
    /// carries no events.
    pub(crate) ident: Option<Arc<EventIdent>>,
    /// The attempt's number, when its handler said it wrote its completion to the store
    /// itself ([`crate::JobContext::completed_in_store`]): a refused finish is then checked
    /// against the job before it counts as a lost lease.
    pub(crate) in_store: Option<u32>,
}

/// What a lifecycle event names besides the job's id.
pub(crate) struct EventIdent {
    pub(crate) queue: String,
    pub(crate) name: String,
    pub(crate) attempt: u32,
}

impl EventIdent {
    fn of(shared_events: bool, job: &LeasedJob) -> Option<Arc<EventIdent>> {
        shared_events.then(|| {
            Arc::new(EventIdent {
                queue: job.queue.clone(),
                name: job.name.clone(),
                attempt: job.attempt,
            })
        })
    }

    /// The event `kind` of this attempt of job `id`, at `at`.
    pub(crate) fn event(
        &self,
        id: crate::record::JobId,
        kind: crate::events::JobEventKind,
        at: crate::clock::Timestamp,
    ) -> crate::events::JobEvent {
        crate::events::JobEvent {
            id,
            queue: self.queue.clone(),
            job: self.name.clone(),
            kind,
            attempt: self.attempt,
            at,
            progress: None,
            error: None,
        }
    }
}

/// Keeps the running gauge right on every way out of an attempt.
struct RunningGuard(Arc<JobMetrics>);

impl RunningGuard {
    fn new(m: &Arc<JobMetrics>) -> Self {
        m.running.increment(1.0);
        RunningGuard(m.clone())
    }
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.running.decrement(1.0);
    }
}

/// Runs `job` to the end of its attempt and hands the outcome to the finisher.
pub(crate) async fn execute<S: Clone + Send + Sync + 'static>(
    shared: Arc<Shared<S>>,
    job: LeasedJob,
    reg: Option<Registration<S>>,
    cancel: CancellationToken,
    metrics: Arc<JobMetrics>,
) {
    let id = job.lease.id;
    let lease = job.lease;
    let attempt = job.attempt;
    let ident = EventIdent::of(shared.backend.events_enabled(), &job);
    let max_attempts = job.max_attempts;
    let Some(reg) = reg else {
        let message = format!(
            "no handler is registered for job `{}` in queue `{}` on this worker (it knows: {}); \
             retry the job once a worker with that handler runs",
            job.name,
            job.queue,
            shared.registry.names().join(", ")
        );
        tracing::error!(job.id = %id, job.name = %job.name, "{message}");
        settle(&shared, lease, Outcome::failed(message), &metrics, ident);
        return;
    };
    let backoff = reg.options.backoff;
    let timeout = reg.options.timeout;
    let run = reg.run;
    tracing::debug!("job started");
    if let Some(ident) = &ident {
        let _order = shared.events_order.read().await;
        let e = ident.event(id, crate::events::JobEventKind::Started, shared.clock.now());
        shared.backend.publish_events(vec![e]);
    }

    // From here the handler runs (the store hears of it at the next renewal, or sooner), unless
    // the job is no longer this worker's to run.
    let go = shared.active.handler_started(lease, shared.clock.now());
    let running = RunningGuard::new(&metrics);
    let started = Instant::now();
    let in_store = Arc::new(AtomicBool::new(false));
    let handler = AssertUnwindSafe(run(
        shared.state.clone(),
        shared.backend.clone(),
        Arc::new(job),
        cancel.clone(),
        in_store.clone(),
    ))
    .catch_unwind();
    let clock = shared.clock.clone();
    let timer = async {
        match timeout {
            Some(t) => clock.sleep(t).await,
            None => std::future::pending().await,
        }
    };

    let result: Option<AttemptResult> = if !go {
        None
    } else {
        tokio::select! {
            biased;
            r = handler => Some(match r {
                Ok(r) => r,
                Err(panic) => Err(Failure {
                    message: format!("handler panicked: {}", panic_message(&*panic)),
                    permanent: false,
                    kind: FailureKind::Panicked,
                    snooze: None,
                }),
            }),
            _ = cancel.cancelled() => None,
            _ = timer => {
                shared.active.time_out(lease);
                None
            }
        }
    };

    if go {
        metrics.duration.record(started.elapsed().as_secs_f64());
    }
    drop(running);

    // Decide who settles the job: only a job still running (or timed out) is finished here.
    let Some(phase) = shared.active.begin_finishing(lease) else {
        return;
    };
    // The handler completed the job in its own transaction: whatever happened since (its
    // lease seen lost once the job left `running`, a timeout), the finisher checks the job.
    let in_store = in_store.load(Ordering::Acquire).then_some(attempt);
    let result = match (phase, result) {
        (Phase::Running, Some(r)) => r,
        (Phase::Lost, r) if in_store.is_some() => match r {
            Some(Ok(v)) => Ok(v),
            _ => Ok(None),
        },
        // The handler cancelled its own attempt's token.
        (Phase::Running, None) => Err(Failure {
            message: "the handler cancelled its attempt".into(),
            permanent: false,
            kind: FailureKind::Error,
            snooze: None,
        }),
        (Phase::TimedOut, _) => Err(Failure {
            message: format!(
                "timed out after {}",
                format_duration(timeout.unwrap_or_default())
            ),
            permanent: false,
            kind: FailureKind::TimedOut,
            snooze: None,
        }),
        (Phase::Lost, _) => {
            metrics.lease_lost.increment(1);
            tracing::warn!("lease lost while running (recovered by another worker or cancelled); result dropped");
            shared.active.remove(&[lease]);
            return;
        }
        // Released at shutdown (the shutdown path frees the slot) or already finishing.
        (Phase::Released | Phase::Finishing, _) => return,
    };

    let outcome = match result {
        Ok(value) => {
            tracing::debug!("job completed");
            Outcome::Completed { result: value }
        }
        Err(Failure {
            snooze: Some(delay),
            ..
        }) => {
            tracing::debug!(snooze_for = ?delay, "attempt snoozed; will run again");
            Outcome::Snooze {
                until: shared.clock.now() + delay,
            }
        }
        Err(f) => match decide(
            attempt,
            max_attempts,
            f.permanent,
            &backoff,
            fastrand::f64(),
        ) {
            Decision::Retry(delay) => {
                tracing::warn!(error = %f.message, retry_in = ?delay, "attempt failed; will retry");
                Outcome::Retry {
                    error: f.message,
                    retry_at: shared.clock.now() + delay,
                    kind: f.kind,
                }
            }
            Decision::Fail => {
                tracing::error!(error = %f.message, permanent = f.permanent, "job failed");
                Outcome::Failed {
                    error: f.message,
                    kind: f.kind,
                }
            }
        },
    };
    let done = Done {
        finish: Finish { lease, outcome },
        metrics,
        ident,
        in_store,
    };
    if shared.finished.send(done).is_err() {
        // The finisher is gone (worker torn down): the lease expires and the job is recovered.
        shared.active.remove(&[lease]);
    }
}

/// Hands an outcome to the finisher for a job that never started its handler.
fn settle<S>(
    shared: &Shared<S>,
    lease: crate::record::Lease,
    outcome: Outcome,
    metrics: &Arc<JobMetrics>,
    ident: Option<Arc<EventIdent>>,
) {
    let done = Done {
        finish: Finish { lease, outcome },
        metrics: metrics.clone(),
        ident,
        in_store: None,
    };
    if shared.active.begin_finishing(lease) == Some(Phase::Running)
        && shared.finished.send(done).is_err()
    {
        shared.active.remove(&[lease]);
    }
}

pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string panic payload".to_owned()
    }
}

/// `1h 2m 3s`, `250ms`.
pub(crate) fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = Vec::new();
    if h > 0 {
        out.push(format!("{h}h"));
    }
    if m > 0 {
        out.push(format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push(format!("{s}s"));
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(900)), "15m");
        assert_eq!(format_duration(Duration::from_secs(3723)), "1h 2m 3s");
    }

    #[test]
    fn panic_messages_are_extracted() {
        let p: Box<dyn Any + Send> = Box::new("boom");
        assert_eq!(panic_message(&*p), "boom");
        let p: Box<dyn Any + Send> = Box::new(String::from("row 7"));
        assert_eq!(panic_message(&*p), "row 7");
        let p: Box<dyn Any + Send> = Box::new(42u8);
        assert_eq!(panic_message(&*p), "a non-string panic payload");
    }
}
