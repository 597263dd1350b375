//! The application's handle on its jobs: enqueue, inspect, administer.

use std::time::Duration;

use tracing::Instrument;

use crate::any::AnyBackend;
use crate::backend::{validate_group_key, validate_job_name, validate_queue_name, Backend};
use crate::clock::{Clock, Timestamp};
use crate::error::{BackendError, Error};
use crate::events::{Event, EventFilter, JobEvent, JobEventKind, Subscription};
use crate::handle::{JobHandle, POLL_MAX, POLL_MIN};
use crate::limits::{GroupPage, GroupQuery, QueueFlow, QueueLimits};

/// The longest pause between two looks at a job that [`Client::wait_record`] waits for when
/// events tell it the job ended: the looks only guard against a lost event.
const POLL_MAX_WITH_EVENTS: Duration = Duration::from_secs(5);

/// Waits until an event of `sub` says the job ended or may have (`Missed`), or until `until`;
/// `false` if the feed has ended.
async fn wait_for_end(sub: &mut Subscription, clock: &Clock, until: Timestamp) -> bool {
    let sleep = clock.sleep_until(until);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            event = sub.next() => match event {
                Some(Event::Job(e)) if !e.kind.is_final() => continue,
                Some(_) => return true,
                None => return false,
            },
            () = &mut sleep => return true,
        }
    }
}
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

    /// Turns a typed job and its options into what the backend stores. With the
    /// `opentelemetry` feature, its [`trace`](NewJob::trace) is the current span's context
    /// (see [`crate::trace`]).
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
        let group = e.group.or_else(|| e.job.group_key());
        if let Some(g) = &group {
            validate_group_key(g)
                .map_err(|m| Error::InvalidInput(format!("job `{}`: {m}", J::NAME)))?;
        }
        Ok(NewJob {
            name: J::NAME.to_owned(),
            queue,
            payload,
            priority: e.priority.unwrap_or(defaults.priority),
            run_at,
            max_attempts,
            unique_key,
            group,
            trace: crate::trace::current(),
        })
    }

    /// Enqueues one job; returns a typed [`JobHandle`] to read its result or wait for it.
    /// With a unique key held by a live job, the handle is that job's, with
    /// [`existing()`](JobHandle::existing) true, and nothing is added.
    pub async fn enqueue<J: Job>(&self, job: impl Into<Enqueue<J>>) -> Result<JobHandle<J>, Error> {
        let span = crate::trace::enqueue_span(J::NAME);
        let new = span.in_scope(|| self.prepare(job))?;
        let queue = new.queue.clone();
        let mut out = self
            .backend
            .push(vec![new])
            .instrument(span.clone())
            .await?;
        let e = out.pop().ok_or_else(|| {
            Error::from(BackendError::storage("backend returned no id for a push"))
        })?;
        span.record("job.id", e.id.get());
        if !e.existing {
            crate::metrics::enqueued(&queue, J::NAME, 1);
            if self.backend.events_enabled() {
                self.publish(vec![self.event(
                    e.id,
                    queue,
                    J::NAME,
                    JobEventKind::Enqueued,
                )]);
            }
        }
        Ok(JobHandle::new(self.clone(), e.id, e.existing))
    }

    /// Enqueues many jobs of one type in one atomic batch; handles in the same order.
    pub async fn enqueue_batch<J: Job, I>(&self, jobs: I) -> Result<Vec<JobHandle<J>>, Error>
    where
        I: IntoIterator,
        I::Item: Into<Enqueue<J>>,
    {
        let span = crate::trace::enqueue_span(J::NAME);
        let new = span.in_scope(|| {
            jobs.into_iter()
                .map(|j| self.prepare(j))
                .collect::<Result<Vec<_>, _>>()
        })?;
        let out = self.push_raw(new).instrument(span).await?;
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
    /// On a backend that carries [events](crate::events), it looks at the job when an event
    /// says it ended (all waits of a backend share one feed), and once every 5 s in case an
    /// event was lost. Otherwise it looks at growing intervals from 5 ms to 500 ms, on the
    /// backend's clock.
    pub async fn wait_record(
        &self,
        id: JobId,
        timeout: Option<Duration>,
    ) -> Result<JobRecord, Error> {
        let clock = self.backend.clock().clone();
        let deadline = timeout.map(|t| clock.now() + t);
        // Subscribed before the first look, so an end between the two is not missed.
        let mut events = if self.backend.events_enabled() {
            match self.subscribe(EventFilter::Job(id)).await {
                Ok(sub) => Some(sub),
                Err(e) => {
                    tracing::debug!(job = %id, error = %e, "wait: no events, polling");
                    None
                }
            }
        } else {
            None
        };
        let mut pause = POLL_MIN;
        loop {
            let rec = self.status(id).await?;
            if rec.state.is_final() {
                return Ok(rec);
            }
            let max = if events.is_some() {
                POLL_MAX_WITH_EVENTS
            } else {
                POLL_MAX
            };
            pause = pause.min(max);
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
            match events.as_mut() {
                Some(sub) => {
                    if !wait_for_end(sub, &clock, until).await {
                        // The feed ended (the backend is closing): poll from here on.
                        events = None;
                    }
                }
                None => clock.sleep_until(until).await,
            }
            pause = (pause * 3 / 2).min(max);
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
        let events = self.backend.events_enabled().then(|| {
            jobs.iter()
                .map(|j| (j.queue.clone(), j.name.clone()))
                .collect::<Vec<_>>()
        });
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
        if let Some(names) = events {
            let events = out
                .iter()
                .zip(names)
                .filter(|(e, _)| !e.existing)
                .map(|(e, (queue, name))| self.event(e.id, queue, &name, JobEventKind::Enqueued))
                .collect::<Vec<_>>();
            self.publish(events);
        }
        Ok(out)
    }

    /// Events as they happen, from any process, of one job, one queue or all: see
    /// [`crate::events`]. The backend must carry events (memory does; SQLite, Redis and
    /// Postgres with `?events=true` in their URL or `events(true)` in their options);
    /// otherwise an [`Error::InvalidInput`] says how to turn them on.
    ///
    /// Events published before the call are not delivered: to follow one job, subscribe, then
    /// read its state, then take the events.
    pub async fn subscribe(&self, filter: EventFilter) -> Result<Subscription, Error> {
        let feed = self.backend.subscribe_events().await?;
        Ok(Subscription {
            filter,
            feed,
            pending: Default::default(),
            client: self.clone(),
        })
    }

    /// An event of this client, stamped with the backend's clock.
    pub(crate) fn event(
        &self,
        id: JobId,
        queue: String,
        job: &str,
        kind: JobEventKind,
    ) -> JobEvent {
        JobEvent {
            id,
            queue,
            job: job.to_owned(),
            kind,
            attempt: 0,
            at: self.backend.clock().now(),
            progress: None,
            error: None,
        }
    }

    /// Publishes events if the backend carries them.
    pub(crate) fn publish(&self, events: Vec<JobEvent>) {
        if !events.is_empty() && self.backend.events_enabled() {
            self.backend.publish_events(events);
        }
    }

    /// Publishes a job's event read from its record (after an operator's action).
    async fn publish_for(&self, id: JobId, kind: JobEventKind) {
        if !self.backend.events_enabled() {
            return;
        }
        if let Ok(Some(rec)) = self.backend.get(id).await {
            let mut e = self.event(id, rec.queue.clone(), &rec.name, kind);
            e.attempt = rec.attempts;
            self.publish(vec![e]);
        }
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
        let out = self.backend.retry(id).await?;
        if out == RetryOutcome::Retried {
            self.publish_for(id, JobEventKind::Enqueued).await;
        }
        Ok(out)
    }

    /// Cancels a job that has not finished.
    pub async fn cancel(&self, id: JobId) -> Result<CancelOutcome, Error> {
        let out = self.backend.cancel(id).await?;
        if out == CancelOutcome::Cancelled {
            self.publish_for(id, JobEventKind::Cancelled).await;
        }
        Ok(out)
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

    /// Sets the flow-control limits of `queue`: at most so many jobs running at once and at
    /// most so many starts in any window of so long, across every worker of every process
    /// (see [`crate::limits`]). They are kept in the store and apply from the next reserve of
    /// any worker; [`QueueLimits::NONE`] removes them.
    ///
    /// ```
    /// # async fn f(jobs: kosh_jobs_core::Client) -> Result<(), kosh_jobs_core::Error> {
    /// use std::time::Duration;
    /// use kosh_jobs_core::{QueueLimits, RateLimit};
    ///
    /// // The bank's API answers 429 past 10 calls a second.
    /// let limits = QueueLimits::default().with_rate(RateLimit::new(10, Duration::from_secs(1)));
    /// jobs.set_queue_limits("bank-sync", limits).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_queue_limits(&self, queue: &str, limits: QueueLimits) -> Result<(), Error> {
        Ok(self.backend.set_queue_limits(queue, limits).await?)
    }

    /// Holds `queue` back until `until` (see [`Backend::hold_queue`]): no job of it starts
    /// before then.
    pub async fn hold_queue(&self, queue: &str, until: Timestamp) -> Result<(), Error> {
        Ok(self.backend.hold_queue(queue, until).await?)
    }

    /// Every queue with limits or a hold, by name: its limits, running jobs, starts in the
    /// current rate window, when the next job may start if the rate limit holds jobs back
    /// now, the end of its hold, and its groups running and at their limit.
    pub async fn queue_flows(&self) -> Result<Vec<QueueFlow>, Error> {
        Ok(self.backend.queue_flows().await?)
    }

    /// One page of a queue's groups, by key: each group's ready and running jobs, its starts
    /// in the group rate window and whether it is at its limit (see
    /// [`Backend::queue_groups`](crate::Backend::queue_groups)).
    pub async fn queue_groups(&self, query: &GroupQuery) -> Result<GroupPage, Error> {
        Ok(self.backend.queue_groups(query).await?)
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}
