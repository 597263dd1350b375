//! What a handler gets besides its payload: the app's state, the job's identity, progress
//! reporting and cancellation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::any::AnyBackend;
use crate::backend::Backend;
use crate::client::Client;
use crate::error::Error;
use crate::record::{JobId, Lease, LeasedJob};

/// The context of one attempt.
///
/// ```
/// use kosh_jobs::{JobContext, JobError};
///
/// #[derive(Clone)]
/// struct App { greeting: String }
///
/// async fn handler(ctx: JobContext<App>) -> Result<(), JobError> {
///     println!("{} from job {} (attempt {})", ctx.state().greeting, ctx.id(), ctx.attempt());
///     ctx.progress(serde_json::json!({ "rows": 10 })).await?;
///     Ok(())
/// }
/// ```
pub struct JobContext<S> {
    state: S,
    client: Client,
    job: Arc<LeasedJob>,
    cancel: CancellationToken,
    /// Set by [`JobContext::completed_in_store`].
    in_store: Arc<AtomicBool>,
}

impl<S> JobContext<S> {
    /// Builds a context. The worker does this; tests of handlers can too.
    pub fn new(
        state: S,
        backend: impl Backend,
        job: Arc<LeasedJob>,
        cancel: CancellationToken,
    ) -> Self {
        JobContext {
            state,
            client: Client::new(backend),
            job,
            cancel,
            in_store: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The context of an attempt whose worker reads `in_store` once the handler returns.
    pub(crate) fn with_in_store(mut self, in_store: Arc<AtomicBool>) -> Self {
        self.in_store = in_store;
        self
    }

    /// Tells the worker that the handler wrote this attempt's completion to the store itself,
    /// inside a transaction of its own, so that the job completes if and only if the
    /// handler's other writes commit (`PostgresBackend::complete_in` calls this; a handler
    /// rarely needs to). The worker then stores the handler's outcome as usual; if it finds
    /// the job already completed by this attempt, it counts the attempt as completed instead
    /// of as a lost lease. Called when no such write committed, it changes nothing: the
    /// worker checks the job in the store before believing it.
    pub fn completed_in_store(&self) {
        self.in_store.store(true, Ordering::Release);
    }

    /// The worker's shared application state (a database pool, clients, settings).
    pub fn state(&self) -> &S {
        &self.state
    }

    /// The job's id.
    pub fn id(&self) -> JobId {
        self.job.lease.id
    }

    /// The job's stable name.
    pub fn name(&self) -> &str {
        &self.job.name
    }

    /// The job's queue.
    pub fn queue(&self) -> &str {
        &self.job.queue
    }

    /// This attempt's number, from 1.
    pub fn attempt(&self) -> u32 {
        self.job.attempt
    }

    /// Attempts allowed.
    pub fn max_attempts(&self) -> u32 {
        self.job.max_attempts
    }

    /// The lease this attempt runs under.
    pub fn lease(&self) -> Lease {
        self.job.lease
    }

    /// The progress last stored for this job, by this or an earlier attempt: a checkpoint to
    /// resume from after a crash.
    pub fn checkpoint(&self) -> Option<&serde_json::Value> {
        self.job.progress.as_ref()
    }

    /// The progress last stored, read as `P` (e.g. the job's
    /// [`JobProgress::Progress`](crate::JobProgress::Progress)); `Ok(None)` if none was.
    pub fn checkpoint_as<P: DeserializeOwned>(&self) -> Result<Option<P>, Error> {
        self.job
            .progress
            .as_ref()
            .map(|v| P::deserialize(v))
            .transpose()
            .map_err(|source| Error::Decode {
                id: self.id(),
                what: "progress",
                source,
            })
    }

    /// Stores progress (any small serializable value: the job's declared
    /// [`JobProgress::Progress`](crate::JobProgress::Progress), or `json!(...)`), readable
    /// by clients while the job runs and by the next attempt as [`JobContext::checkpoint`].
    ///
    /// Fails with [`Error::LeaseLost`] if this attempt's lease is gone (the job was recovered
    /// by another worker or cancelled): stop working when it does.
    pub async fn progress(&self, value: impl Serialize) -> Result<(), Error> {
        let value = serde_json::to_value(value).map_err(|e| {
            Error::InvalidInput(format!(
                "cannot serialize the progress of job {}: {e}",
                self.id()
            ))
        })?;
        let event = self
            .client
            .backend()
            .events_enabled()
            .then(|| value.clone());
        if self
            .client
            .backend()
            .progress(self.job.lease, value)
            .await?
        {
            if let Some(progress) = event {
                let job = &self.job;
                let mut e = self.client.event(
                    job.lease.id,
                    job.queue.clone(),
                    &job.name,
                    crate::events::JobEventKind::Progress,
                );
                e.attempt = job.attempt;
                e.progress = Some(progress);
                self.client.publish(vec![e]);
            }
            Ok(())
        } else {
            Err(Error::LeaseLost(self.job.lease.id))
        }
    }

    /// Tripped when the attempt must stop: timeout, lost lease, or the worker shutting down
    /// past its grace period. Async code is dropped at that point anyway; blocking code
    /// (inside `spawn_blocking`) should check [`CancellationToken::is_cancelled`] now and then.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Whether the attempt must stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// A client on the worker's backend, to enqueue follow-up jobs or look at others.
    ///
    /// ```
    /// # use kosh_jobs::{job, JobContext, JobError};
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct Notify { user: i64 }
    /// # #[job] async fn notify(_j: Notify) -> Result<(), JobError> { Ok(()) }
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct Import { user: i64 }
    /// #[job(queue = "csv-uploads")]
    /// async fn import(job: Import, ctx: JobContext<()>) -> Result<(), JobError> {
    ///     // ... import the rows ...
    ///     ctx.client().enqueue(Notify { user: job.user }).await?;
    ///     Ok(())
    /// }
    /// ```
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The backend.
    pub fn backend(&self) -> &AnyBackend {
        self.client.backend()
    }

    /// The schedule tick this job was fired for, if a [schedule](crate::schedule) enqueued it
    /// (read from the store: one request).
    pub async fn scheduled_tick(&self) -> Result<Option<crate::schedule::ScheduledTick>, Error> {
        let rec = self.client.status(self.id()).await?;
        Ok(crate::schedule::ScheduledTick::of(&rec))
    }

    /// A check for blocking code: `Err` once cancelled.
    pub fn check_cancelled(&self) -> Result<(), Error> {
        if self.cancel.is_cancelled() {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }
}

impl<S: Clone> Clone for JobContext<S> {
    fn clone(&self) -> Self {
        JobContext {
            state: self.state.clone(),
            client: self.client.clone(),
            job: self.job.clone(),
            cancel: self.cancel.clone(),
            in_store: self.in_store.clone(),
        }
    }
}

impl<S> std::fmt::Debug for JobContext<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext")
            .field("id", &self.job.lease.id)
            .field("name", &self.job.name)
            .field("attempt", &self.job.attempt)
            .finish_non_exhaustive()
    }
}
