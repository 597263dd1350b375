//! The application's handle on its jobs: enqueue, inspect, administer.

use std::time::Duration;

use crate::any::AnyBackend;
use crate::backend::{validate_job_name, validate_queue_name, Backend};
use crate::error::{BackendError, Error};
use crate::handle::{JobHandle, POLL_MAX, POLL_MIN};
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
///     type Output = ();
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
/// assert!(again.existing() && again.id() == later.id());
///
/// let status = first.status().await?; // or jobs.status(first.id())
/// assert_eq!(status.state, JobState::Ready);
/// assert_eq!(jobs.status(later.id()).await?.state, JobState::Scheduled);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    backend: AnyBackend,
}

impl Client {
    /// A client over `backend`: any backend, or the [`AnyBackend`] that
    /// `kosh_jobs::connect(url)` returns (kept as it is, not wrapped again).
    pub fn new(backend: impl Backend) -> Self {
        Client {
            backend: backend.into_any_backend(),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &AnyBackend {
        &self.backend
    }

    /// Turns a typed job and its options into what the backend stores.
    pub fn prepare<J: Job>(&self, job: impl Into<Enqueue<J>>) -> Result<NewJob, Error> {
        let e = job.into();
        let defaults = J::options();
        let payload = serde_json::to_string(&e.job).map_err(|source| {
            Error::InvalidInput(format!(
                "cannot serialize the payload of job `{}`: {source}",
                J::NAME
            ))
        })?;
        let queue = e.queue.unwrap_or_else(|| J::QUEUE.to_owned());
        validate_queue_name(&queue).map_err(Error::InvalidInput)?;
        validate_job_name(J::NAME).map_err(Error::InvalidInput)?;
        let max_attempts = e.max_attempts.unwrap_or(defaults.max_attempts);
        if max_attempts == 0 {
            return Err(Error::InvalidInput(format!(
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

    /// Enqueues one job; returns a typed [`JobHandle`] to read its result or wait for it.
    /// With a unique key held by a live job, the handle is that job's, with
    /// [`existing()`](JobHandle::existing) true, and nothing is added.
    pub async fn enqueue<J: Job>(&self, job: impl Into<Enqueue<J>>) -> Result<JobHandle<J>, Error> {
        let new = self.prepare(job)?;
        let queue = new.queue.clone();
        let mut out = self.backend.push(vec![new]).await?;
        let e = out.pop().ok_or_else(|| {
            Error::from(BackendError::storage("backend returned no id for a push"))
        })?;
        if !e.existing {
            crate::metrics::enqueued(&queue, J::NAME, 1);
        }
        Ok(JobHandle::new(self.clone(), e.id, e.existing))
    }

    /// Enqueues many jobs of one type in one atomic batch; handles in the same order.
    pub async fn enqueue_batch<J: Job, I>(&self, jobs: I) -> Result<Vec<JobHandle<J>>, Error>
    where
        I: IntoIterator,
        I::Item: Into<Enqueue<J>>,
    {
        let new = jobs
            .into_iter()
            .map(|j| self.prepare(j))
            .collect::<Result<Vec<_>, _>>()?;
        let out = self.push_raw(new).await?;
        Ok(out
            .into_iter()
            .map(|e| JobHandle::new(self.clone(), e.id, e.existing))
            .collect())
    }

    /// The typed handle of a job enqueued earlier (by this process or another), from its id.
    /// The type is not checked against the stored job's name until its result is read.
    pub fn handle<J: Job>(&self, id: JobId) -> JobHandle<J> {
        JobHandle::new(self.clone(), id, false)
    }

    /// Waits until the job has finished; the typed result, or its end as an error. Same as
    /// [`JobHandle::wait`].
    pub async fn wait<J: Job>(&self, handle: &JobHandle<J>) -> Result<J::Output, Error> {
        handle.wait().await
    }

    /// Waits until the job is completed, failed or cancelled and returns it as stored,
    /// whichever way it ended; [`Error::WaitTimeout`] after `timeout`, if one is given;
    /// [`Error::NotFound`] if there is no such job (or it was purged).
    ///
    /// It looks at the job at growing intervals from 5 ms to 500 ms, on the backend's clock.
    pub async fn wait_record(
        &self,
        id: JobId,
        timeout: Option<Duration>,
    ) -> Result<JobRecord, Error> {
        let clock = self.backend.clock().clone();
        let deadline = timeout.map(|t| clock.now() + t);
        let mut pause = POLL_MIN;
        loop {
            let rec = self.status(id).await?;
            if rec.state.is_final() {
                return Ok(rec);
            }
            let mut until = clock.now() + pause;
            if let Some(d) = deadline {
                if clock.now() >= d {
                    return Err(Error::WaitTimeout {
                        id,
                        waited: timeout.unwrap_or_default(),
                    });
                }
                until = until.min(d);
            }
            clock.sleep_until(until).await;
            pause = (pause * 3 / 2).min(POLL_MAX);
        }
    }

    /// Enqueues jobs already prepared (of any types), in one atomic batch.
    pub async fn push_raw(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, Error> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let n = jobs.len();
        // Runs of jobs of one queue and name (a batch is usually one run), for the metrics.
        let mut runs: Vec<(String, String, usize)> = Vec::new();
        for j in &jobs {
            match runs.last_mut() {
                Some((q, name, len)) if *q == j.queue && *name == j.name => *len += 1,
                _ => runs.push((j.queue.clone(), j.name.clone(), 1)),
            }
        }
        let out = self.backend.push(jobs).await?;
        if out.len() != n {
            return Err(Error::from(BackendError::storage(format!(
                "backend returned {} ids for {n} jobs",
                out.len()
            ))));
        }
        let mut at = 0;
        for (queue, name, len) in runs {
            let new = out[at..at + len].iter().filter(|e| !e.existing).count() as u64;
            if new > 0 {
                crate::metrics::enqueued(&queue, &name, new);
            }
            at += len;
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
