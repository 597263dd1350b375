//! The worker runtime: fetches jobs, runs their handlers, stores outcomes, renews leases,
//! recovers dead workers' jobs and shuts down gracefully.
//!
//! - Up to `concurrency` jobs run at once (and up to a per-queue limit); the worker leases in
//!   batches as many jobs as it has free slots, and sleeps on the backend's wake-up signal
//!   when there is nothing to do.
//! - Each handler runs in its own task: a panic fails that attempt with the panic message.
//! - A timeout drops the handler's future at the deadline and fails the attempt as a timeout.
//! - Leases are renewed from a dedicated thread, so a handler that blocks its thread does not
//!   make its job look stalled. A lease found lost cancels the attempt; the backend refuses its
//!   result anyway.
//! - Graceful shutdown stops fetching, waits for running jobs up to the grace period, then
//!   cancels the rest and releases their leases so another worker takes them at once.

mod active;
mod builder;
mod executor;
mod fetch;
mod finisher;
mod heartbeat;
pub(crate) mod outage;
mod registry;
mod sampler;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use builder::{Registered, Unregistered, WorkerBuilder};

use self::active::Active;
use self::executor::Shared;
use self::outage::Outage;
use self::registry::Registry;
use crate::admin::WorkerInfo;
use crate::any::AnyBackend;
use crate::backend::Backend;
use crate::client::Client;
use crate::error::Error;

/// Runs registered jobs from a backend. Built with [`Worker::builder`].
///
/// ```
/// use kosh_jobs::{memory::MemoryBackend, Client, Handler, Job, JobContext, JobError, Worker};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Greet { name: String }
/// impl Job for Greet { type Output = String; const NAME: &'static str = "greet"; }
/// impl Handler<()> for Greet {
///     async fn run(self, _ctx: JobContext<()>) -> Result<String, JobError> {
///         Ok(format!("hello, {}", self.name))
///     }
/// }
///
/// # #[tokio::main] async fn main() -> Result<(), kosh_jobs::Error> {
/// let backend = MemoryBackend::new();
/// let client = Client::new(backend.clone());
/// let greeting = client.enqueue(Greet { name: "Ada".into() }).await?;
///
/// let handle = Worker::builder(backend).register::<Greet>().build()?.spawn();
/// assert_eq!(greeting.wait().await?, "hello, Ada");
/// let stats = handle.shutdown().await?;
/// assert_eq!(stats.completed, 1);
/// # Ok(()) }
/// ```
pub struct Worker<S> {
    backend: AnyBackend,
    state: S,
    registry: Registry<S>,
    config: WorkerConfig,
}

#[derive(Clone, Debug)]
struct WorkerConfig {
    queues: Vec<String>,
    limits: Vec<usize>,
    concurrency: usize,
    lease: Duration,
    heartbeat: Duration,
    grace: Duration,
    recover_interval: Duration,
    idle_wait: Duration,
    worker_id: String,
    sample_metrics: Option<Duration>,
    schedules: Option<Duration>,
    register_every: Duration,
    registration_ttl: Duration,
}

/// What a worker did before it stopped: see the example of [`Worker`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStats {
    /// Jobs completed.
    pub completed: u64,
    /// Attempts failed and scheduled for retry.
    pub retried: u64,
    /// Jobs failed for good.
    pub failed: u64,
    /// Results refused because the lease had been lost.
    pub lost: u64,
    /// Jobs released at shutdown (back to ready, attempt not counted).
    pub released: u64,
    /// Attempts whose handler said "not now" ([`JobError::snooze`](crate::JobError::snooze)):
    /// the job waits again, attempt not counted.
    pub snoozed: u64,
}

impl Worker<()> {
    /// Starts configuring a worker over `backend`: any backend, or the [`AnyBackend`] that
    /// `kosh_jobs::connect(url)` returns.
    ///
    /// [`AnyBackend`]: crate::AnyBackend
    pub fn builder(backend: impl Backend) -> WorkerBuilder<()> {
        WorkerBuilder::new(backend.into_any_backend())
    }
}

/// A worker running in the background, from [`Worker::spawn`]; see the example of
/// [`Worker`].
///
/// ```
/// # use kosh_jobs::{memory::MemoryBackend, Handler, Job, JobContext, JobError, Worker};
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Ping;
/// # impl Job for Ping { type Output = (); const NAME: &'static str = "ping"; }
/// # impl Handler<()> for Ping { async fn run(self, _c: JobContext<()>) -> Result<(), JobError> { Ok(()) } }
/// # #[tokio::main] async fn main() -> Result<(), kosh_jobs::Error> {
/// let handle = Worker::builder(MemoryBackend::new()).register::<Ping>().build()?.spawn();
/// let stop = handle.stop_token(); // e.g. for a signal handler
/// stop.cancel();
/// let stats = handle.join().await?;
/// assert_eq!(stats.completed, 0);
/// # Ok(()) }
/// ```
pub struct WorkerHandle {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<WorkerStats, Error>>,
}

impl WorkerHandle {
    /// Starts a graceful shutdown and waits for it to complete.
    pub async fn shutdown(self) -> Result<WorkerStats, Error> {
        self.stop.cancel();
        self.join().await
    }

    /// A token that starts the graceful shutdown when cancelled.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Waits for the worker to stop (after a shutdown was started elsewhere).
    pub async fn join(self) -> Result<WorkerStats, Error> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(Error::WorkerAborted(e.to_string())),
        }
    }
}

impl<S: Clone + Send + Sync + 'static> Worker<S> {
    /// Runs in a background task until [`WorkerHandle::shutdown`].
    pub fn spawn(self) -> WorkerHandle {
        let stop = CancellationToken::new();
        let s2 = stop.clone();
        let task = tokio::spawn(async move { self.run_until(s2.cancelled_owned()).await });
        WorkerHandle { stop, task }
    }

    /// Runs until `shutdown` resolves (e.g. `tokio::signal::ctrl_c()`), then shuts down
    /// gracefully and returns what it did.
    pub async fn run_until<F>(self, shutdown: F) -> Result<WorkerStats, Error>
    where
        F: Future + Send,
    {
        let Worker {
            backend,
            state,
            registry,
            config,
        } = self;
        let clock = backend.clock().clone();
        let active = Active::new(
            config.queues.len(),
            crate::backend::START_ACK_DELAY.min(config.heartbeat),
        );
        let (tx, rx) = mpsc::unbounded_channel();
        let give_up = CancellationToken::new();
        let events_order = Arc::new(tokio::sync::RwLock::new(()));
        let finisher = tokio::spawn(finisher::run(
            backend.clone(),
            clock.clone(),
            active.clone(),
            rx,
            give_up.clone(),
            events_order.clone(),
        ));
        let heartbeat = heartbeat::Heartbeat::start(
            backend.clone(),
            clock.clone(),
            active.clone(),
            config.heartbeat,
            config.lease,
        )
        .map_err(|e| Error::WorkerAborted(format!("cannot start the lease-renewal thread: {e}")))?;
        let shared = Arc::new(Shared {
            backend: backend.clone(),
            clock: clock.clone(),
            state,
            registry,
            active: active.clone(),
            finished: tx,
            metrics: crate::metrics::MetricsCache::default(),
            events_order,
            worked: Arc::default(),
        });
        tracing::info!(worker = %config.worker_id, queues = ?config.queues, concurrency = config.concurrency, "worker started");

        let info = WorkerInfo {
            id: config.worker_id.clone(),
            host: host_name(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            queues: config.queues.clone(),
            concurrency: u32::try_from(config.concurrency).unwrap_or(u32::MAX),
            started_at: clock.now(),
        };
        // Registered before the first job is leased, so the list of workers never shows a
        // job held by a worker it does not list (and the sampler's first read sees it).
        if let Err(e) = backend
            .register_worker(&info, config.registration_ttl)
            .await
        {
            tracing::warn!(error = %crate::ErrorChain(&e), "registering the worker failed; it is missing from the list of workers until the next try");
        }
        // Schedules declared on the job types (`#[job(cron = ...)]`): upserting is idempotent,
        // so every worker does it; the store keeps one of each.
        let declared = Client::new(backend.clone());
        for def in shared.registry.schedules() {
            let id = def.id.clone();
            if let Err(e) = declared.upsert_schedule_def(def).await {
                tracing::warn!(schedule = %id, error = %crate::ErrorChain(&e), "could not store the job's declared schedule; it fires once a worker stores it");
            }
        }
        let sampler_stop = CancellationToken::new();
        let sampler = config.sample_metrics.map(|interval| {
            tokio::spawn(sampler::run(
                backend.clone(),
                clock.clone(),
                interval,
                config.idle_wait,
                shared.worked.clone(),
                sampler_stop.clone(),
            ))
        });
        // Refreshed on its own timer, not the fetch loop's: a refresh never cuts a long wait
        // for work short (each cut costs a request or two on a store that bills them).
        let registration = tokio::spawn(refresh_registration(
            backend.clone(),
            clock.clone(),
            info.clone(),
            config.register_every,
            config.registration_ttl,
            sampler_stop.clone(),
        ));
        // The fetch loop tells the schedule runner when a wait for work ended with nothing to
        // take: a schedule created or resumed elsewhere wakes a waiter (on Redis), and the
        // runner reads the schedules again rather than at its next refresh.
        let schedules_changed = Arc::new(tokio::sync::Notify::new());
        let scheduler = config.schedules.map(|refresh| {
            tokio::spawn(crate::schedule::runner::run(
                backend.clone(),
                clock.clone(),
                refresh,
                schedules_changed.clone(),
                sampler_stop.clone(),
            ))
        });
        {
            let shutdown = shutdown;
            tokio::pin!(shutdown);
            fetch::fetch_loop(&shared, &config, &schedules_changed, &mut shutdown).await;
        }
        sampler_stop.cancel();
        let _ = registration.await;
        if let Some(s) = sampler {
            let _ = s.await;
        }
        if let Some(s) = scheduler {
            let _ = s.await;
        }
        tracing::info!(worker = %config.worker_id, running = active.in_flight(), "worker stopping: no new jobs");

        // Let running jobs finish, up to the grace period.
        let deadline = clock.now() + config.grace;
        loop {
            let notified = active.slot_freed.notified();
            if active.in_flight() == 0 || clock.now() >= deadline {
                break;
            }
            tokio::select! {
                _ = notified => {}
                _ = clock.sleep_until(deadline) => {}
            }
        }
        // Cancel and release what is still running.
        let to_release = active.release_running();
        let released = to_release.len() as u64;
        if !to_release.is_empty() {
            tracing::warn!(
                jobs = to_release.len(),
                "grace period over: cancelling and releasing running jobs"
            );
            let mut outage = Outage::new("releasing jobs at shutdown");
            let mut tries = 0;
            loop {
                match backend.release(&to_release).await {
                    Ok(()) => break,
                    Err(e) if tries < 5 => {
                        tries += 1;
                        clock.sleep(outage.failed(&e)).await;
                    }
                    Err(e) => {
                        tracing::error!(error = %crate::ErrorChain(&e), "could not release jobs; they will be recovered when their leases expire");
                        break;
                    }
                }
            }
            active.remove(&to_release);
        }
        // Outcomes already handed over are stored before returning; bounded, in case a handler
        // blocks its thread forever (its lease was released above).
        drop(shared);
        let finish_deadline = clock.now() + config.grace.max(Duration::from_secs(5));
        let mut finisher = finisher;
        let tally = tokio::select! {
            t = &mut finisher => t.ok(),
            _ = clock.sleep_until(finish_deadline) => {
                give_up.cancel();
                finisher.await.ok()
            }
        }
        .unwrap_or_default();
        heartbeat.stop().await;
        if let Err(e) = backend.deregister_worker(&info.id).await {
            tracing::warn!(error = %crate::ErrorChain(&e), "could not deregister the worker; it drops out of the list when its registration expires");
        }
        let stats = WorkerStats {
            completed: tally.completed,
            retried: tally.retried,
            failed: tally.failed,
            lost: tally.lost,
            released,
            snoozed: tally.snoozed,
        };
        tracing::info!(worker = %config.worker_id, ?stats, "worker stopped");
        Ok(stats)
    }
}

/// Refreshes the worker's registration every `every` until `stop` trips.
async fn refresh_registration(
    backend: AnyBackend,
    clock: crate::clock::Clock,
    info: WorkerInfo,
    every: Duration,
    ttl: Duration,
    stop: CancellationToken,
) {
    // Registration fails together with fetching in an outage: it says so once.
    let mut outage = Outage::new("registering the worker");
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = clock.sleep(every) => {}
        }
        match backend.register_worker(&info, ttl).await {
            Ok(()) => outage.ok(),
            // Missing from the list of workers until the next try.
            Err(e) => {
                outage.failed(&e);
            }
        }
    }
}

/// This machine's name, for the list of workers: `HOSTNAME`, else the kernel's, else
/// `unknown`.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}
