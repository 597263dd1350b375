//! Configuring a worker, validated when built.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::time::Duration;

use super::registry::{Registration, Registry};
use super::{Worker, WorkerConfig};
use crate::any::AnyBackend;
use crate::backend::validate_queue_name;
use crate::error::Error;
use crate::job::Handler;

/// Configures a [`Worker`]: its backend, shared state, handlers, concurrency and timings.
///
/// ```
/// use kosh_jobs::{memory::MemoryBackend, Handler, Job, JobContext, JobError, Worker};
/// use serde::{Deserialize, Serialize};
/// use std::time::Duration;
///
/// #[derive(Clone)]
/// struct App { db_url: String }
///
/// #[derive(Serialize, Deserialize)]
/// struct ImportCsv { upload_id: i64 }
/// impl Job for ImportCsv {
///     type Output = ();
///     const NAME: &'static str = "import_csv";
///     const QUEUE: &'static str = "csv-uploads";
/// }
/// impl Handler<App> for ImportCsv {
///     async fn run(self, ctx: JobContext<App>) -> Result<(), JobError> {
///         let _db = &ctx.state().db_url;
///         Ok(())
///     }
/// }
///
/// let worker = Worker::builder(MemoryBackend::new())
///     .state(App { db_url: "sqlite://app.db".into() })
///     .register::<ImportCsv>()
///     .concurrency(8)
///     .queue_concurrency("csv-uploads", 2)
///     .grace_period(Duration::from_secs(30))
///     .build()
///     .expect("valid configuration");
/// # drop(worker);
/// ```
pub struct WorkerBuilder<S, R = Unregistered> {
    backend: AnyBackend,
    registered: PhantomData<R>,
    state: S,
    registrations: Vec<Registration<S>>,
    extra_queues: Vec<String>,
    queue_limits: HashMap<String, usize>,
    concurrency: usize,
    lease: Duration,
    heartbeat: Option<Duration>,
    grace: Duration,
    recover_interval: Option<Duration>,
    idle_wait: Option<Duration>,
    worker_id: Option<String>,
    sample_metrics: Option<Duration>,
    schedules: bool,
    schedule_refresh: Option<Duration>,
}

/// A [`WorkerBuilder`] before its first [`register`](WorkerBuilder::register): the state can
/// still be set.
#[derive(Debug)]
pub enum Unregistered {}

/// A [`WorkerBuilder`] with handlers registered: its state is fixed, so a late
/// [`state`](WorkerBuilder::state) is a compile error rather than a surprise at `build`.
#[derive(Debug)]
pub enum Registered {}

impl WorkerBuilder<()> {
    pub(crate) fn new(backend: AnyBackend) -> Self {
        WorkerBuilder {
            backend,
            registered: PhantomData,
            state: (),
            registrations: Vec::new(),
            extra_queues: Vec::new(),
            queue_limits: HashMap::new(),
            concurrency: 16,
            lease: Duration::from_secs(30),
            heartbeat: None,
            grace: Duration::from_secs(30),
            recover_interval: None,
            idle_wait: None,
            worker_id: None,
            sample_metrics: None,
            schedules: true,
            schedule_refresh: None,
        }
    }
}

impl WorkerBuilder<()> {
    /// Sets the application state handlers reach through [`crate::JobContext::state`] (a
    /// database pool, clients, settings). It comes before the first `register`, which fixes
    /// the state's type; after it, `state` does not compile:
    ///
    /// ```compile_fail
    /// # use kosh_jobs::{memory::MemoryBackend, Handler, Job, JobContext, JobError, Worker};
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct Ping;
    /// # impl Job for Ping { type Output = (); const NAME: &'static str = "ping"; }
    /// # impl<S: Send + Sync + 'static> Handler<S> for Ping { async fn run(self, _c: JobContext<S>) -> Result<(), JobError> { Ok(()) } }
    /// Worker::builder(MemoryBackend::new()).register::<Ping>().state(7_u32);
    /// ```
    pub fn state<T: Clone + Send + Sync + 'static>(self, state: T) -> WorkerBuilder<T> {
        // No handler is registered yet (the typestate guarantees it): none is lost.
        self.retype(|_, _| (state, Vec::new()))
    }
}

impl<S, R> WorkerBuilder<S, R> {
    /// The same settings with another state and registration marker.
    fn retype<T, R2>(
        self,
        map: impl FnOnce(S, Vec<Registration<S>>) -> (T, Vec<Registration<T>>),
    ) -> WorkerBuilder<T, R2> {
        let (state, registrations) = map(self.state, self.registrations);
        WorkerBuilder {
            backend: self.backend,
            registered: PhantomData,
            state,
            registrations,
            extra_queues: self.extra_queues,
            queue_limits: self.queue_limits,
            concurrency: self.concurrency,
            lease: self.lease,
            heartbeat: self.heartbeat,
            grace: self.grace,
            recover_interval: self.recover_interval,
            idle_wait: self.idle_wait,
            worker_id: self.worker_id,
            sample_metrics: self.sample_metrics,
            schedules: self.schedules,
            schedule_refresh: self.schedule_refresh,
        }
    }
}

impl<S: Clone + Send + Sync + 'static, R> WorkerBuilder<S, R> {
    /// Registers the handler of job type `J`; the worker listens on `J::QUEUE`.
    pub fn register<J: Handler<S>>(self) -> WorkerBuilder<S, Registered> {
        self.retype(|state, mut registrations| {
            registrations.push(Registration::of::<J>());
            (state, registrations)
        })
    }

    /// Also listens on `queue` (e.g. one that jobs are sent to with `Enqueue::queue`).
    pub fn listen(mut self, queue: impl Into<String>) -> Self {
        self.extra_queues.push(queue.into());
        self
    }

    /// Jobs run at once, across all queues (default 16).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Jobs of `queue` run at once, at most (within the overall concurrency).
    pub fn queue_concurrency(mut self, queue: impl Into<String>, n: usize) -> Self {
        self.queue_limits.insert(queue.into(), n);
        self
    }

    /// Lease length (default 30 s): a job whose worker stops renewing is recovered this long
    /// after the last renewal.
    pub fn lease(mut self, d: Duration) -> Self {
        self.lease = d;
        self
    }

    /// How often leases are renewed (default a third of the lease).
    pub fn heartbeat_interval(mut self, d: Duration) -> Self {
        self.heartbeat = Some(d);
        self
    }

    /// How long shutdown waits for running jobs before cancelling and releasing them
    /// (default 30 s).
    pub fn grace_period(mut self, d: Duration) -> Self {
        self.grace = d;
        self
    }

    /// How often this worker recovers expired leases of dead workers (default: the backend's
    /// [`Pacing`](crate::backend::Pacing), once a lease period unless it says otherwise).
    pub fn recover_interval(mut self, d: Duration) -> Self {
        self.recover_interval = Some(d);
        self
    }

    /// Longest single wait for work when idle (default: the backend's
    /// [`Pacing`](crate::backend::Pacing), 30 s unless it says otherwise); the backend's
    /// wake-up signal usually ends it sooner.
    pub fn idle_wait(mut self, d: Duration) -> Self {
        self.idle_wait = Some(d);
        self
    }

    /// A name for this worker in leases and logs (default `hostname-pid`-like).
    pub fn worker_id(mut self, id: impl Into<String>) -> Self {
        self.worker_id = Some(id.into());
        self
    }

    /// Makes this worker read the store-wide gauges of [`crate::metrics`] (jobs per queue and
    /// state, the age of the oldest ready job, live workers per queue) every `interval`: three
    /// reads of the store per interval (at least 1 s). Off by default; turn it on in one or a
    /// few workers, not in all of them.
    ///
    /// While the store is quiet (no job ready or running in any queue) it reads them only
    /// once per [`idle_wait`](Self::idle_wait) (ten minutes on Redis), and again `interval`
    /// after this worker is handed a job: a quiet store's gauges change only when work comes,
    /// which wakes the worker. Changes that touch no queue of this worker (a job enqueued to
    /// another queue, a worker joining) show within `idle_wait` then.
    pub fn sample_metrics(mut self, interval: Duration) -> Self {
        self.sample_metrics = Some(interval);
        self
    }

    /// Whether this worker fires due [schedules](crate::schedule) (default: yes). Every
    /// worker may fire them: each tick is enqueued once whichever fires it. An idle worker
    /// reads the schedules due before its next read once per refresh (see
    /// [`schedule_refresh`](Self::schedule_refresh)), and sleeps until the first.
    pub fn schedules(mut self, fire: bool) -> Self {
        self.schedules = fire;
        self
    }

    /// Fires schedules, reading them every `refresh` (at least 100 ms; default: the backend's
    /// [`Pacing`](crate::backend::Pacing), one minute unless it says otherwise): the longest
    /// a schedule created or changed by another process goes unseen. Sooner when the store
    /// wakes a waiting worker for it (Redis does): a wait for work that ends with nothing to
    /// take makes the worker read the schedules again, at most every 5 s.
    pub fn schedule_refresh(mut self, refresh: Duration) -> Self {
        self.schedules = true;
        self.schedule_refresh = Some(refresh);
        self
    }

    /// Checks the configuration and builds the worker.
    pub fn build(self) -> Result<Worker<S>, Error> {
        let mut errors = Vec::new();
        let registry = match Registry::new(self.registrations) {
            Ok(r) => Some(r),
            Err(e) => {
                errors.push(
                    e.to_string()
                        .trim_start_matches("invalid input: ")
                        .to_owned(),
                );
                None
            }
        };
        if registry.as_ref().is_some_and(|r| r.is_empty()) {
            errors.push("no job handlers registered".into());
        }
        if self.concurrency == 0 {
            errors.push("concurrency must be at least 1".into());
        }
        if self.lease < Duration::from_millis(100) {
            errors.push(format!(
                "lease of {:?} is too short (at least 100ms)",
                self.lease
            ));
        }
        let heartbeat = self.heartbeat.unwrap_or(self.lease / 3);
        if heartbeat >= self.lease || heartbeat.is_zero() {
            errors.push(format!(
                "heartbeat interval {heartbeat:?} must be above zero and shorter than the lease {:?}",
                self.lease
            ));
        }
        let pacing = self.backend.pacing();
        let recover_interval = self
            .recover_interval
            .or(pacing.recover_every)
            .unwrap_or(self.lease);
        if recover_interval.is_zero() {
            errors.push("recover interval must be above zero".into());
        }
        let idle_wait = self.idle_wait.unwrap_or(pacing.idle_wait);
        if idle_wait.is_zero() {
            errors.push("idle wait must be above zero".into());
        }
        let schedules = self
            .schedules
            .then(|| self.schedule_refresh.unwrap_or(pacing.schedule_refresh));
        if let Some(i) = self.sample_metrics.filter(|i| *i < Duration::from_secs(1)) {
            errors.push(format!(
                "metrics sampling interval of {i:?} is too short (at least 1s)"
            ));
        }
        if let Some(r) = schedules.filter(|r| *r < Duration::from_millis(100)) {
            errors.push(format!(
                "schedule refresh of {r:?} is too short (at least 100ms)"
            ));
        }
        let mut queues = registry.as_ref().map(|r| r.queues()).unwrap_or_default();
        queues.extend(self.extra_queues);
        queues.sort();
        queues.dedup();
        for q in &queues {
            if let Err(e) = validate_queue_name(q) {
                errors.push(e);
            }
        }
        let mut limits = vec![usize::MAX; queues.len()];
        for (q, n) in &self.queue_limits {
            match queues.iter().position(|x| x == q) {
                Some(i) if *n > 0 => limits[i] = *n,
                Some(_) => errors.push(format!("concurrency of queue `{q}` must be at least 1")),
                None => errors.push(format!(
                    "queue_concurrency names `{q}`, which this worker does not listen on (it listens on: {})",
                    queues.join(", ")
                )),
            }
        }
        match (registry, errors.is_empty()) {
            (Some(registry), true) => Ok(Worker {
                backend: self.backend,
                state: self.state,
                registry,
                config: WorkerConfig {
                    queues,
                    limits,
                    concurrency: self.concurrency,
                    lease: self.lease,
                    heartbeat,
                    grace: self.grace,
                    recover_interval,
                    idle_wait,
                    worker_id: self.worker_id.unwrap_or_else(default_worker_id),
                    sample_metrics: self.sample_metrics,
                    schedules,
                    register_every: pacing.register_every.max(Duration::from_millis(100)),
                    registration_ttl: pacing.registration_ttl().max(Duration::from_millis(250)),
                },
            }),
            _ => Err(Error::InvalidInput(errors.join("; "))),
        }
    }
}

fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    format!("{host}-{}-{:04x}", std::process::id(), fastrand::u16(..))
}
