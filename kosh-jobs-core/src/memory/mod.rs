//! The in-memory backend: for unit tests, docs, benchmarks and single-process programs.
//!
//! [`MemoryBackend`] keeps every job in the process's memory under one lock, with an index per
//! question it must answer quickly: ready jobs per queue ordered by priority then id,
//! scheduled jobs by due time, running jobs by lease end, finished jobs by finish time, and
//! the unique keys of live jobs. Every operation is a few `O(log n)` steps, so the worker
//! runtime, not the store, is the bottleneck.
//!
//! It implements the whole [`Backend`] contract and passes the conformance suite
//! (`kosh_jobs::testkit`), so code tested against it behaves the same on SQLite and Redis.
//!
//! # Waiting for work
//!
//! [`Backend::wait_for_work`] returns at once if a listed, unpaused queue has a ready job;
//! otherwise it sleeps on the clock until `until` or the next due scheduled job or lease end,
//! whichever is first, and is woken early by a push, retry, release, recovery or resume on one
//! of its queues (one [`tokio::sync::Notify`] per queue). Spurious wake-ups only re-check;
//! it never polls.
//!
//! # Retention
//!
//! Finished jobs (completed, failed, cancelled) are kept until [`Backend::purge`] deletes
//! them (for example [`crate::Client::purge`] on a timer). Nothing is persisted: the jobs are
//! gone when the backend is dropped.
//!
//! # Time
//!
//! All time comes from the backend's [`Clock`]: with [`Clock::manual`], delayed jobs, retries
//! and lease expiry happen when the test moves the clock, without sleeping.
//!
//! ```
//! use std::time::Duration;
//! use kosh_jobs::{Backend, Clock, JobState, NewJob, ReserveRequest, memory::MemoryBackend};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), kosh_jobs::BackendError> {
//! let (clock, time) = Clock::manual();
//! let backend = MemoryBackend::with_clock(clock.clone());
//! let in_a_minute = clock.now() + Duration::from_secs(60);
//! let ids = backend.push(vec![NewJob::new("report", "mail", "{}", in_a_minute)]).await?;
//! assert_eq!(backend.get(ids[0].id).await?.unwrap().state, JobState::Scheduled);
//!
//! let req = ReserveRequest {
//!     queues: vec!["mail".into()],
//!     worker: "doc".into(),
//!     max: 10,
//!     lease: Duration::from_secs(30),
//! };
//! assert!(backend.reserve(&req).await?.is_empty()); // not due yet
//! time.advance(Duration::from_secs(60));
//! assert_eq!(backend.reserve(&req).await?.len(), 1); // due now
//! # Ok(()) }
//! ```

mod admin;
pub(crate) mod index;
mod schedules;
mod state;

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::admin::{
    ActionResult, AdminAction, LiveWorker, SearchPage, SearchQuery, ThroughputPoint,
    ThroughputQuery, WorkerInfo,
};
use crate::backend::Backend;
use crate::clock::{Clock, Timestamp};
use crate::error::BackendError;
use crate::limits::{GroupPage, GroupQuery, QueueFlow, QueueLimits};
use crate::record::{
    CancelOutcome, Enqueued, Finish, FinishResult, JobId, JobRecord, JobState, Lease, LeasedJob,
    ListQuery, NewJob, Page, QueueCounts, ReserveRequest, RetryOutcome,
};
use crate::schedule::{FireOutcome, Resumed, ScheduleDef, ScheduleFire, ScheduleRecord, Upserted};

use state::{State, WaitCheck};

/// A [`Backend`] that keeps jobs in memory, for tests, docs, benchmarks and one process.
///
/// Cheap to share behind an [`Arc`]; every operation takes one short lock and never holds it
/// across an `.await`. Finished jobs stay until purged (see the [module docs](self)).
///
/// ```
/// use std::time::Duration;
/// use kosh_jobs::{Backend, Finish, JobState, NewJob, Outcome, ReserveRequest};
/// use kosh_jobs::memory::MemoryBackend;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), kosh_jobs::BackendError> {
/// let backend = MemoryBackend::new();
/// let now = backend.clock().now();
/// let ids = backend.push(vec![NewJob::new("import_csv", "csv-uploads", r#"{"upload_id":7}"#, now)]).await?;
///
/// let req = ReserveRequest {
///     queues: vec!["csv-uploads".into()],
///     worker: "worker-1".into(),
///     max: 8,
///     lease: Duration::from_secs(30),
/// };
/// let leased = backend.reserve(&req).await?;
/// assert_eq!(leased[0].id(), ids[0].id);
/// assert_eq!(leased[0].attempt, 1);
///
/// backend
///     .finish(vec![Finish { lease: leased[0].lease, outcome: Outcome::Completed { result: None } }])
///     .await?;
/// assert_eq!(backend.get(ids[0].id).await?.unwrap().state, JobState::Completed);
/// # Ok(()) }
/// ```
///
/// It is a cheap handle: clones share the same jobs.
#[derive(Clone)]
pub struct MemoryBackend {
    clock: Clock,
    state: Arc<Mutex<State>>,
    events: tokio::sync::broadcast::Sender<Vec<crate::events::JobEvent>>,
}

impl MemoryBackend {
    /// An empty backend on the system clock.
    ///
    /// ```
    /// use kosh_jobs::{Backend, memory::MemoryBackend};
    /// let backend = MemoryBackend::new();
    /// assert!(!backend.clock().is_manual());
    /// ```
    pub fn new() -> Self {
        Self::with_clock(Clock::system())
    }

    /// An empty backend reading time from `clock` (e.g. [`Clock::manual`] in tests).
    ///
    /// ```
    /// use kosh_jobs::{Backend, Clock, memory::MemoryBackend};
    /// let (clock, _time) = Clock::manual();
    /// let backend = MemoryBackend::with_clock(clock);
    /// assert!(backend.clock().is_manual());
    /// ```
    pub fn with_clock(clock: Clock) -> Self {
        MemoryBackend {
            clock,
            state: Arc::new(Mutex::new(State::new())),
            events: tokio::sync::broadcast::channel(1024).0,
        }
    }

    /// Locks the state. A panic while locked cannot leave the indexes half-updated in a way
    /// that breaks later operations (they tolerate missing entries), so a poisoned lock is
    /// taken over rather than turned into a panic here.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `op` under the lock with the current time, then wakes the waiters it marked.
    fn with_state<T>(&self, op: impl FnOnce(&mut State, Timestamp) -> T) -> T {
        let mut st = self.lock();
        let now = self.clock.now();
        let out = op(&mut st, now);
        st.ix.flush_wakes();
        out
    }
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn clock(&self) -> &Clock {
        &self.clock
    }

    fn events_enabled(&self) -> bool {
        true
    }

    fn publish_events(&self, events: Vec<crate::events::JobEvent>) {
        // No subscriber: nothing to do.
        let _ = self.events.send(events);
    }

    async fn subscribe_events(&self) -> Result<crate::events::EventFeed, BackendError> {
        use tokio::sync::broadcast::error::RecvError;
        let mut rx = self.events.subscribe();
        let (tx, feed) = crate::events::EventFeed::channel();
        tokio::spawn(async move {
            loop {
                let item = tokio::select! {
                    r = rx.recv() => match r {
                        Ok(batch) => crate::events::FeedItem::Events(batch),
                        Err(RecvError::Lagged(_)) => crate::events::FeedItem::Missed,
                        Err(RecvError::Closed) => break,
                    },
                    _ = tx.closed() => break,
                };
                if tx.send(item).await.is_err() {
                    break;
                }
            }
        });
        Ok(feed)
    }

    async fn push(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, BackendError> {
        self.with_state(|st, now| st.push(jobs, now))
    }

    async fn reserve(&self, req: &ReserveRequest) -> Result<Vec<LeasedJob>, BackendError> {
        Ok(self.with_state(|st, now| st.reserve(req, now)))
    }

    async fn finish(&self, items: Vec<Finish>) -> Result<Vec<FinishResult>, BackendError> {
        Ok(self.with_state(|st, now| st.finish(items, now)))
    }

    async fn heartbeat(
        &self,
        leases: &[Lease],
        extend: Duration,
    ) -> Result<Vec<Lease>, BackendError> {
        Ok(self.with_state(|st, now| st.heartbeat(leases, extend, now)))
    }

    async fn progress(
        &self,
        lease: Lease,
        progress: serde_json::Value,
    ) -> Result<bool, BackendError> {
        Ok(self.with_state(|st, _| st.progress(lease, progress)))
    }

    async fn release(&self, leases: &[Lease]) -> Result<(), BackendError> {
        self.with_state(|st, now| st.release(leases, now));
        Ok(())
    }

    async fn recover_expired(&self) -> Result<u64, BackendError> {
        Ok(self.with_state(|st, now| st.recover_expired(now)))
    }

    async fn wait_for_work(&self, queues: &[String], until: Timestamp) -> Result<(), BackendError> {
        let (slots, notifies): (Vec<usize>, Vec<Arc<Notify>>) = {
            let mut st = self.lock();
            queues
                .iter()
                .map(|q| {
                    let slot = st.ix.queue_slot_or_create(q);
                    (slot, st.ix.queues[slot].notify.clone())
                })
                .unzip()
        };
        loop {
            // Register for wake-ups before looking, so a push between the look and the wait
            // is not missed.
            let mut armed: Vec<Pin<Box<tokio::sync::futures::Notified<'_>>>> =
                notifies.iter().map(|n| Box::pin(n.notified())).collect();
            for n in &mut armed {
                n.as_mut().enable();
            }
            let deadline = {
                let mut st = self.lock();
                let now = self.clock.now();
                if now >= until {
                    return Ok(());
                }
                st.promote_due(now);
                st.ix.flush_wakes();
                match st.wait_check(&slots, now) {
                    WaitCheck::Work => return Ok(()),
                    WaitCheck::Idle(next) => next.map_or(until, |t| t.min(until)),
                }
            };
            if armed.is_empty() {
                self.clock.sleep_until(deadline).await;
                continue;
            }
            tokio::select! {
                _ = futures_util::future::select_all(armed) => {}
                _ = self.clock.sleep_until(deadline) => {}
            }
        }
    }

    async fn get(&self, id: JobId) -> Result<Option<JobRecord>, BackendError> {
        Ok(self.with_state(|st, now| {
            st.promote_due(now);
            st.get(id)
        }))
    }

    async fn counts(&self) -> Result<Vec<QueueCounts>, BackendError> {
        Ok(self.with_state(|st, now| {
            st.promote_due(now);
            st.counts()
        }))
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, BackendError> {
        Ok(self.with_state(|st, now| {
            st.promote_due(now);
            st.list(query)
        }))
    }

    async fn retry(&self, id: JobId) -> Result<RetryOutcome, BackendError> {
        Ok(self.with_state(|st, now| st.retry(id, now)))
    }

    async fn cancel(&self, id: JobId) -> Result<CancelOutcome, BackendError> {
        Ok(self.with_state(|st, now| st.cancel(id, now)))
    }

    async fn purge(
        &self,
        states: &[JobState],
        finished_before: Timestamp,
    ) -> Result<u64, BackendError> {
        self.with_state(|st, _| st.purge(states, finished_before))
    }

    async fn pause(&self, queue: &str) -> Result<(), BackendError> {
        self.with_state(|st, _| st.set_paused(queue, true))
    }

    async fn resume(&self, queue: &str) -> Result<(), BackendError> {
        self.with_state(|st, _| st.set_paused(queue, false))
    }

    async fn set_queue_limits(&self, queue: &str, limits: QueueLimits) -> Result<(), BackendError> {
        self.with_state(|st, _| st.set_limits(queue, limits))
    }

    async fn hold_queue(&self, queue: &str, until: Timestamp) -> Result<(), BackendError> {
        self.with_state(|st, _| st.hold(queue, until))
    }

    async fn queue_flows(&self) -> Result<Vec<QueueFlow>, BackendError> {
        Ok(self.with_state(|st, now| st.flows(now)))
    }

    async fn queue_groups(&self, query: &GroupQuery) -> Result<GroupPage, BackendError> {
        self.with_state(|st, now| st.groups(query, now))
    }

    async fn search(&self, query: &SearchQuery) -> Result<SearchPage, BackendError> {
        self.with_state(|st, now| {
            st.promote_due(now);
            st.search(query)
        })
    }

    async fn apply(
        &self,
        action: AdminAction,
        ids: &[JobId],
        only: &[JobState],
    ) -> Result<Vec<ActionResult>, BackendError> {
        self.with_state(|st, now| {
            st.promote_due(now);
            st.apply(action, ids, only, now)
        })
    }

    async fn throughput(
        &self,
        query: &ThroughputQuery,
    ) -> Result<Vec<ThroughputPoint>, BackendError> {
        self.with_state(|st, _| st.throughput(query))
    }

    async fn register_worker(&self, info: &WorkerInfo, ttl: Duration) -> Result<(), BackendError> {
        self.with_state(|st, now| st.register_worker(info, ttl, now));
        Ok(())
    }

    async fn deregister_worker(&self, id: &str) -> Result<(), BackendError> {
        self.with_state(|st, _| st.workers.remove(id));
        Ok(())
    }

    async fn workers(&self) -> Result<Vec<LiveWorker>, BackendError> {
        Ok(self.with_state(|st, now| st.workers(now)))
    }

    async fn upsert_schedule(
        &self,
        def: &ScheduleDef,
        next_fire: Option<Timestamp>,
    ) -> Result<Upserted, BackendError> {
        self.with_state(|st, _| st.upsert_schedule(def, next_fire))
    }

    async fn remove_schedule(&self, id: &str) -> Result<bool, BackendError> {
        Ok(self.with_state(|st, _| st.schedules.remove(id).is_some()))
    }

    async fn pause_schedule(&self, id: &str) -> Result<bool, BackendError> {
        Ok(self.with_state(|st, _| st.set_schedule_paused(id)))
    }

    async fn resume_schedule(
        &self,
        id: &str,
        revision: u64,
        next_fire: Option<Timestamp>,
    ) -> Result<Resumed, BackendError> {
        Ok(self.with_state(|st, _| st.resume_schedule(id, revision, next_fire)))
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRecord>, BackendError> {
        Ok(self.with_state(|st, _| st.schedules.values().cloned().collect()))
    }

    async fn schedule(&self, id: &str) -> Result<Option<ScheduleRecord>, BackendError> {
        Ok(self.with_state(|st, _| st.schedules.get(id).cloned()))
    }

    async fn due_schedules(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<ScheduleRecord>, BackendError> {
        Ok(self.with_state(|st, _| st.due_schedules(before, limit)))
    }

    async fn fire_schedules(
        &self,
        fires: Vec<ScheduleFire>,
    ) -> Result<Vec<FireOutcome>, BackendError> {
        self.with_state(|st, now| st.fire_schedules(fires, now))
    }
}

#[cfg(test)]
mod tests;
