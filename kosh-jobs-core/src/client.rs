//! The application's handle on its jobs: enqueue, inspect, administer.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::{validate_job_name, validate_queue_name, Backend};
use crate::error::{BackendError, Error};
use crate::job::{Enqueue, Job};
use crate::record::{
    CancelOutcome, Enqueued, JobId, JobRecord, JobState, ListQuery, NewJob, Page, QueueCounts,
    RetryOutcome,
};

/// Enqueues typed jobs and inspects them, over any backend.
///
/// Cheap to clone: clones share the backend.
///
/// ```
/// use kosh_jobs::{Client, Job, JobState, memory::MemoryBackend};
/// use serde::{Deserialize, Serialize};
/// use std::time::Duration;
///
/// #[derive(Serialize, Deserialize)]
/// struct ImportCsv { upload_id: i64 }
/// impl Job for ImportCsv {
///     const NAME: &'static str = "import_csv";
///     const QUEUE: &'static str = "csv-uploads";
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), kosh_jobs::Error> {
/// let jobs = Client::new(MemoryBackend::new());
/// let first = jobs.enqueue(ImportCsv { upload_id: 7 }).await?;
/// let later = jobs
///     .enqueue(ImportCsv { upload_id: 8 }.with().delay(Duration::from_secs(60)).unique("upload-8"))
///     .await?;
/// let again = jobs.enqueue(ImportCsv { upload_id: 8 }.with().unique("upload-8")).await?;
/// assert!(again.existing && again.id == later.id);
///
/// let status = jobs.status(first.id).await?;
/// assert_eq!(status.state, JobState::Ready);
/// assert_eq!(jobs.status(later.id).await?.state, JobState::Scheduled);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    backend: Arc<dyn Backend>,
}

impl Client {
    /// A client over `backend`.
    pub fn new(backend: impl Backend) -> Self {
        Client {
            backend: Arc::new(backend),
        }
    }

    /// A client over a shared backend (e.g. one chosen at run time).
    pub fn from_arc(backend: Arc<dyn Backend>) -> Self {
        Client { backend }
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Turns a typed job and its options into what the backend stores.
    pub fn prepare<J: Job>(&self, job: impl Into<Enqueue<J>>) -> Result<NewJob, Error> {
        let e = job.into();
        let defaults = J::options();
        let payload = serde_json::to_string(&e.job).map_err(|source| Error::Serialize {
            job: J::NAME,
            source,
        })?;
        let queue = e.queue.unwrap_or_else(|| J::QUEUE.to_owned());
        validate_queue_name(&queue).map_err(Error::Config)?;
        validate_job_name(J::NAME).map_err(Error::Config)?;
        let max_attempts = e.max_attempts.unwrap_or(defaults.max_attempts);
        if max_attempts == 0 {
            return Err(Error::Config(format!(
                "job `{}`: max_attempts must be at least 1",
                J::NAME
            )));
        }
        let now = self.backend.clock().now();
        let run_at = match (e.run_at, e.delay) {
            (Some(t), _) => t,
            (None, Some(d)) => now + d,
            (None, None) => now,
        };
        let unique_key = e.unique_key.or_else(|| e.job.unique_key());
        Ok(NewJob {
            name: J::NAME.to_owned(),
            queue,
            payload,
            priority: e.priority.unwrap_or(defaults.priority),
            run_at,
            max_attempts,
            unique_key,
        })
    }

    /// Enqueues one job. With a unique key held by a live job, returns that job's id with
    /// `existing: true` and adds nothing.
    pub async fn enqueue<J: Job>(&self, job: impl Into<Enqueue<J>>) -> Result<Enqueued, Error> {
        let new = self.prepare(job)?;
        let mut out = self.backend.push(vec![new]).await?;
        out.pop().ok_or_else(|| {
            Error::Backend(BackendError::storage("backend returned no id for a push"))
        })
    }

    /// Enqueues many jobs of one type in one atomic batch; results in the same order.
    pub async fn enqueue_batch<J: Job, I>(&self, jobs: I) -> Result<Vec<Enqueued>, Error>
    where
        I: IntoIterator,
        I::Item: Into<Enqueue<J>>,
    {
        let new = jobs
            .into_iter()
            .map(|j| self.prepare(j))
            .collect::<Result<Vec<_>, _>>()?;
        self.push_raw(new).await
    }

    /// Enqueues jobs already prepared (of any types), in one atomic batch.
    pub async fn push_raw(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, Error> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let n = jobs.len();
        let out = self.backend.push(jobs).await?;
        if out.len() != n {
            return Err(Error::Backend(BackendError::storage(format!(
                "backend returned {} ids for {n} jobs",
                out.len()
            ))));
        }
        Ok(out)
    }

    /// A job's state, attempts, progress, errors, result and times.
    pub async fn status(&self, id: JobId) -> Result<JobRecord, Error> {
        self.backend.get(id).await?.ok_or(Error::NotFound(id))
    }

    /// Like [`Client::status`], `None` for an unknown id.
    pub async fn get(&self, id: JobId) -> Result<Option<JobRecord>, Error> {
        Ok(self.backend.get(id).await?)
    }

    /// Counts per queue and state.
    pub async fn counts(&self) -> Result<Vec<QueueCounts>, Error> {
        Ok(self.backend.counts().await?)
    }

    /// One page of jobs in a state.
    pub async fn list(&self, query: &ListQuery) -> Result<Page, Error> {
        Ok(self.backend.list(query).await?)
    }

    /// Puts a failed or cancelled job back to `ready`, with a fresh count of attempts.
    pub async fn retry(&self, id: JobId) -> Result<RetryOutcome, Error> {
        Ok(self.backend.retry(id).await?)
    }

    /// Cancels a job that has not finished.
    pub async fn cancel(&self, id: JobId) -> Result<CancelOutcome, Error> {
        Ok(self.backend.cancel(id).await?)
    }

    /// Deletes completed, failed and cancelled jobs that finished more than `older_than` ago.
    pub async fn purge(&self, older_than: Duration) -> Result<u64, Error> {
        let before = self.backend.clock().now() - older_than;
        Ok(self
            .backend
            .purge(
                &[JobState::Completed, JobState::Failed, JobState::Cancelled],
                before,
            )
            .await?)
    }

    /// Deletes jobs in the given final states that finished more than `older_than` ago.
    pub async fn purge_states(
        &self,
        states: &[JobState],
        older_than: Duration,
    ) -> Result<u64, Error> {
        let before = self.backend.clock().now() - older_than;
        Ok(self.backend.purge(states, before).await?)
    }

    /// Stops workers from taking jobs of `queue`; enqueueing still works.
    pub async fn pause(&self, queue: &str) -> Result<(), Error> {
        Ok(self.backend.pause(queue).await?)
    }

    /// Lets workers take jobs of `queue` again.
    pub async fn resume(&self, queue: &str) -> Result<(), Error> {
        Ok(self.backend.resume(queue).await?)
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}
