//! One handle type for any backend: what `kosh_jobs::connect(url)` returns and what
//! [`Client`](crate::Client) and [`Worker`](crate::Worker) hold.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::admin::{
    ActionResult, AdminAction, IdPage, LiveWorker, SearchPage, SearchQuery, ThroughputPoint,
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

/// A backend of any kind behind one cheap, cloneable handle (an `Arc` inside).
///
/// `kosh_jobs::connect(url)` returns one; [`Client::new`](crate::Client::new) and
/// [`Worker::builder`](crate::Worker::builder) take it, or any concrete backend, directly.
/// Passing an `AnyBackend` where a backend is expected never wraps it a second time.
///
/// ```
/// use kosh_jobs::{memory::MemoryBackend, AnyBackend, Backend, Client};
///
/// let backend = AnyBackend::new(MemoryBackend::new());
/// let jobs = Client::new(backend.clone()); // shares the same store
/// assert!(AnyBackend::ptr_eq(jobs.backend(), &backend));
/// assert!(!backend.clock().is_manual());
/// ```
#[derive(Clone)]
pub struct AnyBackend(Arc<dyn Backend>);

impl AnyBackend {
    /// Wraps a backend (an `AnyBackend` stays as it is).
    pub fn new(backend: impl Backend) -> Self {
        backend.into_any_backend()
    }

    /// The shared backend inside.
    pub fn as_arc(&self) -> &Arc<dyn Backend> {
        &self.0
    }

    /// Whether two handles share one backend.
    pub fn ptr_eq(a: &AnyBackend, b: &AnyBackend) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }
}

impl From<Arc<dyn Backend>> for AnyBackend {
    fn from(backend: Arc<dyn Backend>) -> Self {
        AnyBackend(backend)
    }
}

impl<B: Backend> From<Arc<B>> for AnyBackend {
    fn from(backend: Arc<B>) -> Self {
        AnyBackend(backend)
    }
}

impl From<Box<dyn Backend>> for AnyBackend {
    fn from(backend: Box<dyn Backend>) -> Self {
        AnyBackend(Arc::from(backend))
    }
}

impl Deref for AnyBackend {
    type Target = dyn Backend;
    fn deref(&self) -> &(dyn Backend + 'static) {
        &*self.0
    }
}

impl std::fmt::Debug for AnyBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnyBackend").finish_non_exhaustive()
    }
}

/// Wraps without a second `Arc`: used by [`Backend::into_any_backend`]'s default.
pub(crate) fn wrap<B: Backend>(backend: B) -> AnyBackend {
    AnyBackend(Arc::new(backend))
}

#[async_trait]
impl Backend for AnyBackend {
    fn clock(&self) -> &Clock {
        self.0.clock()
    }
    fn into_any_backend(self) -> AnyBackend {
        self
    }
    fn events_enabled(&self) -> bool {
        self.0.events_enabled()
    }
    fn pacing(&self) -> crate::backend::Pacing {
        self.0.pacing()
    }
    fn publish_events(&self, events: Vec<crate::events::JobEvent>) {
        self.0.publish_events(events)
    }
    async fn subscribe_events(&self) -> Result<crate::events::EventFeed, BackendError> {
        self.0.subscribe_events().await
    }
    async fn push(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, BackendError> {
        self.0.push(jobs).await
    }
    async fn reserve(&self, req: &ReserveRequest) -> Result<Vec<LeasedJob>, BackendError> {
        self.0.reserve(req).await
    }
    async fn finish(&self, items: Vec<Finish>) -> Result<Vec<FinishResult>, BackendError> {
        self.0.finish(items).await
    }
    async fn heartbeat(
        &self,
        leases: &[Lease],
        extend: Duration,
    ) -> Result<Vec<Lease>, BackendError> {
        self.0.heartbeat(leases, extend).await
    }
    async fn progress(
        &self,
        lease: Lease,
        progress: serde_json::Value,
    ) -> Result<bool, BackendError> {
        self.0.progress(lease, progress).await
    }
    async fn release(&self, leases: &[Lease]) -> Result<(), BackendError> {
        self.0.release(leases).await
    }
    async fn recover_expired(&self) -> Result<u64, BackendError> {
        self.0.recover_expired().await
    }
    async fn wait_for_work(&self, queues: &[String], until: Timestamp) -> Result<(), BackendError> {
        self.0.wait_for_work(queues, until).await
    }
    async fn get(&self, id: JobId) -> Result<Option<JobRecord>, BackendError> {
        self.0.get(id).await
    }
    async fn counts(&self) -> Result<Vec<QueueCounts>, BackendError> {
        self.0.counts().await
    }
    async fn list(&self, query: &ListQuery) -> Result<Page, BackendError> {
        self.0.list(query).await
    }
    async fn retry(&self, id: JobId) -> Result<RetryOutcome, BackendError> {
        self.0.retry(id).await
    }
    async fn cancel(&self, id: JobId) -> Result<CancelOutcome, BackendError> {
        self.0.cancel(id).await
    }
    async fn purge(
        &self,
        states: &[JobState],
        finished_before: Timestamp,
    ) -> Result<u64, BackendError> {
        self.0.purge(states, finished_before).await
    }
    async fn pause(&self, queue: &str) -> Result<(), BackendError> {
        self.0.pause(queue).await
    }
    async fn resume(&self, queue: &str) -> Result<(), BackendError> {
        self.0.resume(queue).await
    }
    async fn set_queue_limits(&self, queue: &str, limits: QueueLimits) -> Result<(), BackendError> {
        self.0.set_queue_limits(queue, limits).await
    }
    async fn hold_queue(&self, queue: &str, until: Timestamp) -> Result<(), BackendError> {
        self.0.hold_queue(queue, until).await
    }
    async fn queue_flows(&self) -> Result<Vec<QueueFlow>, BackendError> {
        self.0.queue_flows().await
    }
    async fn queue_groups(&self, query: &GroupQuery) -> Result<GroupPage, BackendError> {
        self.0.queue_groups(query).await
    }
    async fn search(&self, query: &SearchQuery) -> Result<SearchPage, BackendError> {
        self.0.search(query).await
    }
    async fn search_ids(&self, query: &SearchQuery) -> Result<IdPage, BackendError> {
        self.0.search_ids(query).await
    }
    async fn apply(
        &self,
        action: AdminAction,
        ids: &[JobId],
        only: &[JobState],
    ) -> Result<Vec<ActionResult>, BackendError> {
        self.0.apply(action, ids, only).await
    }
    async fn throughput(
        &self,
        query: &ThroughputQuery,
    ) -> Result<Vec<ThroughputPoint>, BackendError> {
        self.0.throughput(query).await
    }
    async fn register_worker(&self, info: &WorkerInfo, ttl: Duration) -> Result<(), BackendError> {
        self.0.register_worker(info, ttl).await
    }
    async fn deregister_worker(&self, id: &str) -> Result<(), BackendError> {
        self.0.deregister_worker(id).await
    }
    async fn workers(&self) -> Result<Vec<LiveWorker>, BackendError> {
        self.0.workers().await
    }

    async fn upsert_schedule(
        &self,
        def: &ScheduleDef,
        next_fire: Option<Timestamp>,
    ) -> Result<Upserted, BackendError> {
        self.0.upsert_schedule(def, next_fire).await
    }
    async fn remove_schedule(&self, id: &str) -> Result<bool, BackendError> {
        self.0.remove_schedule(id).await
    }
    async fn pause_schedule(&self, id: &str) -> Result<bool, BackendError> {
        self.0.pause_schedule(id).await
    }
    async fn resume_schedule(
        &self,
        id: &str,
        revision: u64,
        next_fire: Option<Timestamp>,
    ) -> Result<Resumed, BackendError> {
        self.0.resume_schedule(id, revision, next_fire).await
    }
    async fn schedules(&self) -> Result<Vec<ScheduleRecord>, BackendError> {
        self.0.schedules().await
    }
    async fn schedule(&self, id: &str) -> Result<Option<ScheduleRecord>, BackendError> {
        self.0.schedule(id).await
    }
    async fn due_schedules(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<ScheduleRecord>, BackendError> {
        self.0.due_schedules(before, limit).await
    }
    async fn fire_schedules(
        &self,
        fires: Vec<ScheduleFire>,
    ) -> Result<Vec<FireOutcome>, BackendError> {
        self.0.fire_schedules(fires).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryBackend;

    #[test]
    fn wrapping_an_any_backend_keeps_the_same_handle() {
        let a = AnyBackend::new(MemoryBackend::new());
        let b = AnyBackend::new(a.clone());
        assert!(AnyBackend::ptr_eq(&a, &b));
        let c = AnyBackend::from(a.as_arc().clone());
        assert!(AnyBackend::ptr_eq(&a, &c));
        assert!(!AnyBackend::ptr_eq(
            &a,
            &AnyBackend::new(MemoryBackend::new())
        ));
    }
}
