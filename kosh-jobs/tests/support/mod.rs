//! Helpers for the worker tests: a spy backend, gates and waits on conditions.
#![allow(dead_code, unreachable_pub)]

use kosh_jobs::schedule::{
    FireOutcome, Resumed, ScheduleDef, ScheduleFire, ScheduleRecord, Upserted,
};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kosh_jobs::admin::{
    ActionResult, AdminAction, LiveWorker, SearchPage, SearchQuery, ThroughputPoint,
    ThroughputQuery, WorkerInfo,
};
use kosh_jobs::memory::MemoryBackend;
use kosh_jobs::{
    AnyBackend, Backend, BackendError, CancelOutcome, Client, Clock, Enqueued, Finish,
    FinishResult, JobId, JobRecord, JobState, Lease, LeasedJob, ListQuery, ManualClock, NewJob,
    Page, QueueCounts, ReserveRequest, RetryOutcome, Timestamp,
};
use tokio::sync::Notify;

/// Wraps the memory backend, counting calls and able to drop heartbeats (a partitioned
/// worker).
pub struct Spy {
    pub inner: MemoryBackend,
    pub reserves: AtomicUsize,
    pub reserve_sizes: Mutex<Vec<(usize, usize)>>,
    pub waits: AtomicUsize,
    pub recovers: AtomicUsize,
    pub heartbeats: AtomicUsize,
    pub drop_heartbeats: AtomicBool,
    pub fail_reserve: AtomicBool,
    pub fail_finish: AtomicBool,
    pub fail_recover: AtomicBool,
    pub finishes: AtomicUsize,
    /// Calls of `counts` (the metrics sampler's first read).
    pub counts_reads: AtomicUsize,
    /// When set, `finish` waits for this gate before storing anything.
    pub finish_gate: Mutex<Option<Gate>>,
    /// When set, `finish` stores, then answers only once one of the jobs it finished was
    /// leased again (or 5 s passed): a store whose answer travels slower than its wake-up.
    pub answer_after_release: AtomicBool,
    /// Ids `reserve` handed out, for `answer_after_release`.
    pub leased: Mutex<Vec<JobId>>,
    pub calls: Notify,
}

impl Spy {
    pub fn new(clock: Clock) -> Arc<Self> {
        Arc::new(Spy {
            inner: MemoryBackend::with_clock(clock),
            reserves: AtomicUsize::new(0),
            reserve_sizes: Mutex::new(Vec::new()),
            waits: AtomicUsize::new(0),
            recovers: AtomicUsize::new(0),
            heartbeats: AtomicUsize::new(0),
            drop_heartbeats: AtomicBool::new(false),
            fail_reserve: AtomicBool::new(false),
            fail_finish: AtomicBool::new(false),
            fail_recover: AtomicBool::new(false),
            finishes: AtomicUsize::new(0),
            counts_reads: AtomicUsize::new(0),
            finish_gate: Mutex::new(None),
            answer_after_release: AtomicBool::new(false),
            leased: Mutex::new(Vec::new()),
            calls: Notify::new(),
        })
    }
}

#[async_trait]
impl Backend for Spy {
    fn clock(&self) -> &Clock {
        self.inner.clock()
    }
    async fn push(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, BackendError> {
        self.inner.push(jobs).await
    }
    async fn reserve(&self, req: &ReserveRequest) -> Result<Vec<LeasedJob>, BackendError> {
        self.reserves.fetch_add(1, Ordering::SeqCst);
        if self.fail_reserve.load(Ordering::SeqCst) {
            self.calls.notify_waiters();
            return Err(BackendError::unavailable(std::io::Error::other(
                "spy: connection refused",
            )));
        }
        let r = self.inner.reserve(req).await;
        if let Ok(jobs) = &r {
            self.reserve_sizes
                .lock()
                .unwrap()
                .push((req.max, jobs.len()));
            self.leased
                .lock()
                .unwrap()
                .extend(jobs.iter().map(|j| j.id()));
        }
        self.calls.notify_waiters();
        r
    }
    async fn finish(&self, items: Vec<Finish>) -> Result<Vec<FinishResult>, BackendError> {
        self.finishes.fetch_add(1, Ordering::SeqCst);
        if self.fail_finish.load(Ordering::SeqCst) {
            return Err(BackendError::unavailable(std::io::Error::other(
                "spy: connection reset",
            )));
        }
        let gate = self.finish_gate.lock().unwrap().clone();
        if let Some(gate) = gate {
            gate.wait().await;
        }
        if !self.answer_after_release.load(Ordering::SeqCst) {
            return self.inner.finish(items).await;
        }
        // Only a retried job can be leased again.
        let ids: Vec<JobId> = items
            .iter()
            .filter(|f| matches!(f.outcome, kosh_jobs::Outcome::Retry { .. }))
            .map(|f| f.lease.id)
            .collect();
        if ids.is_empty() {
            return self.inner.finish(items).await;
        }
        self.leased.lock().unwrap().clear();
        let out = self.inner.finish(items).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let notified = self.calls.notified();
            if self
                .leased
                .lock()
                .unwrap()
                .iter()
                .any(|id| ids.contains(id))
                || tokio::time::Instant::now() >= deadline
            {
                break;
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
        out
    }
    async fn heartbeat(
        &self,
        leases: &[Lease],
        extend: Duration,
    ) -> Result<Vec<Lease>, BackendError> {
        self.heartbeats.fetch_add(1, Ordering::SeqCst);
        self.calls.notify_waiters();
        if self.drop_heartbeats.load(Ordering::SeqCst) {
            return Ok(Vec::new());
        }
        self.inner.heartbeat(leases, extend).await
    }
    async fn progress(
        &self,
        lease: Lease,
        progress: serde_json::Value,
    ) -> Result<bool, BackendError> {
        self.inner.progress(lease, progress).await
    }
    async fn release(&self, leases: &[Lease]) -> Result<(), BackendError> {
        self.inner.release(leases).await
    }
    async fn recover_expired(&self) -> Result<u64, BackendError> {
        self.recovers.fetch_add(1, Ordering::SeqCst);
        if self.fail_recover.load(Ordering::SeqCst) {
            self.calls.notify_waiters();
            return Err(BackendError::unavailable(std::io::Error::other(
                "connection refused",
            )));
        }
        let r = self.inner.recover_expired().await;
        self.calls.notify_waiters();
        r
    }
    async fn wait_for_work(&self, queues: &[String], until: Timestamp) -> Result<(), BackendError> {
        self.waits.fetch_add(1, Ordering::SeqCst);
        self.calls.notify_waiters();
        self.inner.wait_for_work(queues, until).await
    }
    async fn get(&self, id: JobId) -> Result<Option<JobRecord>, BackendError> {
        self.inner.get(id).await
    }
    async fn counts(&self) -> Result<Vec<QueueCounts>, BackendError> {
        self.counts_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.counts().await
    }
    async fn list(&self, query: &ListQuery) -> Result<Page, BackendError> {
        self.inner.list(query).await
    }
    async fn retry(&self, id: JobId) -> Result<RetryOutcome, BackendError> {
        self.inner.retry(id).await
    }
    async fn cancel(&self, id: JobId) -> Result<CancelOutcome, BackendError> {
        self.inner.cancel(id).await
    }
    async fn purge(
        &self,
        states: &[JobState],
        finished_before: Timestamp,
    ) -> Result<u64, BackendError> {
        self.inner.purge(states, finished_before).await
    }
    async fn pause(&self, queue: &str) -> Result<(), BackendError> {
        self.inner.pause(queue).await
    }
    async fn resume(&self, queue: &str) -> Result<(), BackendError> {
        self.inner.resume(queue).await
    }
    async fn set_queue_limits(
        &self,
        queue: &str,
        limits: kosh_jobs::QueueLimits,
    ) -> Result<(), BackendError> {
        self.inner.set_queue_limits(queue, limits).await
    }
    async fn hold_queue(
        &self,
        queue: &str,
        until: kosh_jobs::Timestamp,
    ) -> Result<(), BackendError> {
        self.inner.hold_queue(queue, until).await
    }
    async fn queue_flows(&self) -> Result<Vec<kosh_jobs::QueueFlow>, BackendError> {
        self.inner.queue_flows().await
    }
    async fn queue_groups(
        &self,
        query: &kosh_jobs::GroupQuery,
    ) -> Result<kosh_jobs::GroupPage, BackendError> {
        self.inner.queue_groups(query).await
    }
    async fn search(&self, query: &SearchQuery) -> Result<SearchPage, BackendError> {
        self.inner.search(query).await
    }
    async fn apply(
        &self,
        action: AdminAction,
        ids: &[JobId],
        only: &[JobState],
    ) -> Result<Vec<ActionResult>, BackendError> {
        self.inner.apply(action, ids, only).await
    }
    async fn throughput(
        &self,
        query: &ThroughputQuery,
    ) -> Result<Vec<ThroughputPoint>, BackendError> {
        self.inner.throughput(query).await
    }
    async fn register_worker(&self, info: &WorkerInfo, ttl: Duration) -> Result<(), BackendError> {
        self.inner.register_worker(info, ttl).await
    }
    async fn deregister_worker(&self, id: &str) -> Result<(), BackendError> {
        self.inner.deregister_worker(id).await
    }
    async fn workers(&self) -> Result<Vec<LiveWorker>, BackendError> {
        self.inner.workers().await
    }

    async fn upsert_schedule(
        &self,
        def: &ScheduleDef,
        next_fire: Option<Timestamp>,
    ) -> Result<Upserted, BackendError> {
        self.inner.upsert_schedule(def, next_fire).await
    }
    async fn remove_schedule(&self, id: &str) -> Result<bool, BackendError> {
        self.inner.remove_schedule(id).await
    }
    async fn pause_schedule(&self, id: &str) -> Result<bool, BackendError> {
        self.inner.pause_schedule(id).await
    }
    async fn resume_schedule(
        &self,
        id: &str,
        revision: u64,
        next_fire: Option<Timestamp>,
    ) -> Result<Resumed, BackendError> {
        self.inner.resume_schedule(id, revision, next_fire).await
    }
    async fn schedules(&self) -> Result<Vec<ScheduleRecord>, BackendError> {
        self.inner.schedules().await
    }
    async fn schedule(&self, id: &str) -> Result<Option<ScheduleRecord>, BackendError> {
        self.inner.schedule(id).await
    }
    async fn due_schedules(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<ScheduleRecord>, BackendError> {
        self.inner.due_schedules(before, limit).await
    }
    async fn fire_schedules(
        &self,
        fires: Vec<ScheduleFire>,
    ) -> Result<Vec<FireOutcome>, BackendError> {
        self.inner.fire_schedules(fires).await
    }
}

/// A manual clock, a spy backend over it and a client.
pub fn setup() -> (Arc<Spy>, Client, ManualClock) {
    let (clock, handle) = Clock::manual();
    let spy = Spy::new(clock);
    let client = Client::new(AnyBackend::from(spy.clone()));
    (spy, client, handle)
}

/// How long a test waits for something that should happen promptly before failing. A guard
/// against hangs, not a timing assertion.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Waits until `check` holds, re-checking whenever `wake` fires or every few milliseconds;
/// fails the test with `what` after [`PATIENCE`].
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits until the job is in `state`; returns its record.
pub async fn wait_state(client: &Client, id: JobId, state: JobState) -> JobRecord {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let rec = client.status(id).await.expect("status");
        if rec.state == state {
            return rec;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("job {id} never reached {state}; last seen: {rec:#?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A gate handlers wait on until the test opens it.
#[derive(Clone, Default)]
pub struct Gate {
    open: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Gate {
    pub fn new() -> Self {
        Gate {
            open: Arc::new(tokio::sync::watch::channel(false).0),
        }
    }
    pub fn open(&self) {
        self.open.send_replace(true);
    }
    pub async fn wait(&self) {
        let mut rx = self.open.subscribe();
        let _ = rx.wait_for(|o| *o).await;
    }
}

/// Counts handlers running now and the most ever running at once.
#[derive(Default)]
pub struct Gauge {
    now: AtomicUsize,
    pub max: AtomicUsize,
    pub started: AtomicUsize,
}

impl Gauge {
    pub fn enter(&self) -> GaugeGuard<'_> {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
        self.started.fetch_add(1, Ordering::SeqCst);
        GaugeGuard(self)
    }
    pub fn now(&self) -> usize {
        self.now.load(Ordering::SeqCst)
    }
}

pub struct GaugeGuard<'a>(&'a Gauge);

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Sets a flag when dropped: proves a handler's future was dropped.
pub struct DropFlag(pub Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}
