//! Registered handlers: from a stored job name to a type-erased runner.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::any::AnyBackend;
use crate::backend::Backend;
use crate::context::JobContext;
use crate::error::Error;
use crate::job::{Handler, JobOptions};
use crate::record::{FailureKind, LeasedJob, NewJob};
use crate::schedule::{Schedule, ScheduleDef};

/// Why an attempt failed, as the worker records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) message: String,
    pub(crate) permanent: bool,
    pub(crate) kind: FailureKind,
    /// Not a failure: the handler asked to run again after this delay
    /// ([`crate::JobError::snooze`]).
    pub(crate) snooze: Option<std::time::Duration>,
}

pub(crate) type AttemptResult = Result<Option<serde_json::Value>, Failure>;

type RunFn<S> = dyn Fn(
        S,
        AnyBackend,
        Arc<LeasedJob>,
        CancellationToken,
        Arc<AtomicBool>,
    ) -> BoxFuture<'static, AttemptResult>
    + Send
    + Sync;

/// One registered job type.
pub(crate) struct Registration<S> {
    pub(crate) name: &'static str,
    pub(crate) type_name: &'static str,
    pub(crate) queue: &'static str,
    pub(crate) options: JobOptions,
    pub(crate) run: Arc<RunFn<S>>,
    /// The schedule declared on the type (`#[job(cron = ...)]`), or why it cannot be used.
    pub(crate) schedule: Option<Result<ScheduleDef, String>>,
}

impl<S> Clone for Registration<S> {
    fn clone(&self) -> Self {
        Registration {
            name: self.name,
            type_name: self.type_name,
            queue: self.queue,
            options: self.options,
            run: self.run.clone(),
            schedule: self.schedule.clone(),
        }
    }
}

impl<S: Clone + Send + Sync + 'static> Registration<S> {
    pub(crate) fn of<J: Handler<S>>() -> Self {
        let run: Arc<RunFn<S>> = Arc::new(|state, backend, job, cancel, in_store| {
            Box::pin(async move {
                let payload: J = serde_json::from_str(&job.payload).map_err(|e| Failure {
                    message: format!(
                        "job `{}` (id {}): payload does not deserialize: {e}",
                        J::NAME,
                        job.lease.id
                    ),
                    permanent: true,
                    kind: FailureKind::Error,
                    snooze: None,
                })?;
                let hold = (backend.clone(), job.queue.clone());
                let ctx = JobContext::new(state, backend, job, cancel).with_in_store(in_store);
                match payload.run(ctx).await {
                    Ok(out) => match serde_json::to_value(out) {
                        Ok(serde_json::Value::Null) => Ok(None),
                        Ok(v) => Ok(Some(v)),
                        Err(e) => Err(Failure {
                            message: format!(
                                "job `{}`: its result does not serialize: {e}",
                                J::NAME
                            ),
                            permanent: true,
                            kind: FailureKind::Error,
                            snooze: None,
                        }),
                    },
                    Err(e) => {
                        if let (true, Some(delay)) = (e.holds_queue(), e.snoozed_for()) {
                            hold_queue(&hold.0, &hold.1, delay).await;
                        }
                        Err(Failure {
                            message: e.message(),
                            permanent: e.is_permanent(),
                            kind: FailureKind::Error,
                            snooze: e.snoozed_for(),
                        })
                    }
                }
            })
        });
        let options = J::options();
        Registration {
            name: J::NAME,
            type_name: std::any::type_name::<J>(),
            queue: J::QUEUE,
            options,
            run,
            schedule: declared::<J>(&options),
        }
    }
}

/// Holds `queue` back for `delay` for a handler that returned
/// [`JobError::rate_limited`](crate::JobError::rate_limited). A store that cannot be reached
/// only loses the hold: the job itself is still snoozed.
async fn hold_queue(backend: &AnyBackend, queue: &str, delay: std::time::Duration) {
    let until = backend.clock().now() + delay;
    if let Err(e) = backend.hold_queue(queue, until).await {
        tracing::warn!(queue, error = %e, "could not hold the queue back after a rate-limited attempt");
    } else {
        tracing::info!(queue, hold_for = ?delay, "queue held back: a handler was rate limited");
    }
}

/// The handlers of one worker, by job name.
pub(crate) struct Registry<S> {
    by_name: HashMap<&'static str, Registration<S>>,
}

impl<S> Registry<S> {
    /// Builds the registry; invalid job names and two registrations with one name are
    /// refused.
    pub(crate) fn new(regs: Vec<Registration<S>>) -> Result<Self, Error> {
        let mut by_name: HashMap<&'static str, Registration<S>> = HashMap::new();
        let mut clashes = Vec::new();
        for reg in regs {
            // A hand-written `impl Job` can name itself anything; the macro checks at compile
            // time. A name no backend would store is a configuration error, found at build.
            if let Err(e) = crate::backend::validate_job_name(reg.name) {
                clashes.push(format!("`{}`: {e}", reg.type_name));
                continue;
            }
            if let Some(Err(e)) = &reg.schedule {
                clashes.push(format!("`{}`: its declared schedule: {e}", reg.type_name));
                continue;
            }
            if let Some(existing) = by_name.get(reg.name) {
                clashes.push(if existing.type_name == reg.type_name {
                    format!(
                        "`{}` is registered twice (job name `{}`)",
                        reg.type_name, reg.name
                    )
                } else {
                    format!(
                        "job name `{}` is used by both `{}` and `{}`",
                        reg.name, existing.type_name, reg.type_name
                    )
                });
                continue;
            }
            by_name.insert(reg.name, reg);
        }
        if !clashes.is_empty() {
            return Err(Error::InvalidInput(clashes.join("; ")));
        }
        Ok(Registry { by_name })
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Registration<S>> {
        self.by_name.get(name)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Queues of the registered jobs, sorted, without duplicates.
    pub(crate) fn queues(&self) -> Vec<String> {
        let mut q: Vec<String> = self.by_name.values().map(|r| r.queue.to_owned()).collect();
        q.sort();
        q.dedup();
        q
    }

    /// The schedules declared on the registered job types.
    pub(crate) fn schedules(&self) -> Vec<ScheduleDef> {
        let mut out: Vec<ScheduleDef> = self
            .by_name
            .values()
            .filter_map(|r| r.schedule.clone().and_then(Result::ok))
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// The registered names, sorted, for error messages.
    pub(crate) fn names(&self) -> Vec<&'static str> {
        let mut n: Vec<&'static str> = self.by_name.keys().copied().collect();
        n.sort_unstable();
        n
    }
}

/// The stored form of the schedule declared on `J`, if any.
fn declared<J: crate::job::Job>(options: &JobOptions) -> Option<Result<ScheduleDef, String>> {
    let decl = J::declared_schedule()?;
    Some((|| {
        let payload = serde_json::to_string(&decl.payload)
            .map_err(|e| format!("its default payload does not serialize: {e}"))?;
        let template = NewJob {
            name: J::NAME.to_owned(),
            queue: J::QUEUE.to_owned(),
            payload,
            priority: options.priority,
            run_at: crate::clock::Timestamp::EPOCH,
            max_attempts: options.max_attempts,
            unique_key: None,
            group: decl.payload.group_key(),
            trace: None,
        };
        let schedule = Schedule::cron(J::NAME, decl.cron)
            .and_then(|s| s.time_zone(decl.tz))
            .map_err(|e| e.to_string())?;
        Ok(schedule.into_def(&template))
    })())
}
