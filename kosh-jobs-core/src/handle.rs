//! A typed handle on an enqueued job: its status, typed result and progress, and a wait for
//! it to finish.

use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::client::Client;
use crate::error::Error;
use crate::job::{Job, JobProgress};
use crate::record::{JobId, JobRecord, JobState};

/// The shortest and longest pause between two looks at a job that [`Client::wait_record`]
/// waits for: it starts quick (a short job is seen finished within milliseconds) and backs off
/// to at most one look every half second, whatever the backend.
pub(crate) const POLL_MIN: Duration = Duration::from_millis(5);
pub(crate) const POLL_MAX: Duration = Duration::from_millis(500);

/// A job of type `J` that was enqueued, returned by [`Client::enqueue`]: read its status, its
/// typed result and progress, or wait for it to finish.
///
/// It is only an id and a client: store [`JobHandle::id`] (e.g. in the row of an upload) and
/// rebuild the handle later, in any process, with [`Client::handle`].
///
/// ```
/// use kosh_jobs::{job, memory::MemoryBackend, Client, JobError, Worker};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Add { a: i64, b: i64 }
///
/// #[job]
/// async fn add(job: Add) -> Result<i64, JobError> {
///     Ok(job.a + job.b)
/// }
///
/// # #[tokio::main] async fn main() -> Result<(), kosh_jobs::Error> {
/// let backend = MemoryBackend::new();
/// let jobs = Client::new(backend.clone());
/// let worker = Worker::builder(backend).register::<Add>().build()?.spawn();
///
/// let sum = jobs.enqueue(Add { a: 2, b: 3 }).await?;
/// let five: i64 = sum.wait().await?; // typed: the handler's `Ok` value
/// assert_eq!(five, 5);
/// worker.shutdown().await?;
/// # Ok(()) }
/// ```
pub struct JobHandle<J> {
    client: Client,
    id: JobId,
    existing: bool,
    job: PhantomData<fn() -> J>,
}

impl<J: Job> JobHandle<J> {
    pub(crate) fn new(client: Client, id: JobId, existing: bool) -> Self {
        JobHandle {
            client,
            id,
            existing,
            job: PhantomData,
        }
    }

    /// The job's id.
    pub fn id(&self) -> JobId {
        self.id
    }

    /// `true` when a live job already held the unique key: this handle is that job's, and
    /// nothing was added.
    pub fn existing(&self) -> bool {
        self.existing
    }

    /// The job as stored now: state, attempts, errors, raw progress and result.
    pub async fn status(&self) -> Result<JobRecord, Error> {
        self.client.status(self.id).await
    }

    /// The job's result, typed, once it has completed; `None` before.
    pub async fn result(&self) -> Result<Option<J::Output>, Error> {
        let rec = self.status().await?;
        match rec.state {
            JobState::Completed => decode_output::<J>(&rec).map(Some),
            _ => Ok(None),
        }
    }

    /// The progress the handler last reported, typed as the job declares it
    /// ([`JobProgress`]); `None` if none was reported.
    pub async fn progress(&self) -> Result<Option<J::Progress>, Error>
    where
        J: JobProgress,
    {
        let rec = self.status().await?;
        decode(rec.id, "progress", rec.progress)
    }

    /// Waits until the job has finished and returns its typed result, or its end as an error:
    /// [`Error::JobFailed`] (with the last attempt's error) or [`Error::JobCancelled`].
    ///
    /// Works across processes and on every backend. Where the backend carries
    /// [events](crate::events) (memory; SQLite, Redis and Postgres with `events=true`), the
    /// job's final event wakes it, and it looks at the job only every 5 s besides; otherwise it looks at
    /// growing intervals from 5 ms to 500 ms (so a long job costs two reads a second, a short
    /// one is seen within milliseconds). There is no time limit; see
    /// [`JobHandle::wait_timeout`].
    pub async fn wait(&self) -> Result<J::Output, Error> {
        let rec = self.client.wait_record(self.id, None).await?;
        finished::<J>(rec)
    }

    /// Like [`JobHandle::wait`], giving up with [`Error::WaitTimeout`] after `timeout` (the job
    /// goes on).
    pub async fn wait_timeout(&self, timeout: Duration) -> Result<J::Output, Error> {
        let rec = self.client.wait_record(self.id, Some(timeout)).await?;
        finished::<J>(rec)
    }
}

/// A finished job's typed outcome.
fn finished<J: Job>(rec: JobRecord) -> Result<J::Output, Error> {
    match rec.state {
        JobState::Completed => decode_output::<J>(&rec),
        JobState::Cancelled => Err(Error::JobCancelled(rec.id)),
        _ => Err(Error::JobFailed {
            id: rec.id,
            error: rec.last_error().unwrap_or("no error recorded").to_owned(),
        }),
    }
}

fn decode_output<J: Job>(rec: &JobRecord) -> Result<J::Output, Error> {
    // A handler returning `()` stores no result: read it as JSON `null`.
    let value = rec.result.clone().unwrap_or(serde_json::Value::Null);
    J::Output::deserialize(value).map_err(|source| Error::Decode {
        id: rec.id,
        what: "result",
        source,
    })
}

fn decode<T: DeserializeOwned>(
    id: JobId,
    what: &'static str,
    value: Option<serde_json::Value>,
) -> Result<Option<T>, Error> {
    value
        .map(T::deserialize)
        .transpose()
        .map_err(|source| Error::Decode { id, what, source })
}

impl<J> Clone for JobHandle<J> {
    fn clone(&self) -> Self {
        JobHandle {
            client: self.client.clone(),
            id: self.id,
            existing: self.existing,
            job: PhantomData,
        }
    }
}

impl<J: Job> std::fmt::Debug for JobHandle<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobHandle")
            .field("job", &J::NAME)
            .field("id", &self.id)
            .field("existing", &self.existing)
            .finish()
    }
}
