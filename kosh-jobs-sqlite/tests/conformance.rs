//! The backend conformance suite on [`SqliteBackend`], every case, each on a fresh database
//! file in its own temporary directory.

use kosh_jobs_core::schedule::{
    FireOutcome, Resumed, ScheduleDef, ScheduleFire, ScheduleRecord, Upserted,
};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kosh_jobs_core::admin::{
    ActionResult, AdminAction, LiveWorker, SearchPage, SearchQuery, ThroughputPoint,
    ThroughputQuery, WorkerInfo,
};
use kosh_jobs_core::{
    Backend, BackendError, CancelOutcome, Clock, Enqueued, Finish, FinishResult, JobId, JobRecord,
    JobState, Lease, LeasedJob, ListQuery, NewJob, Page, QueueCounts, ReserveRequest, RetryOutcome,
    Timestamp,
};
use kosh_jobs_sqlite::{SqliteBackend, SqliteOptions};
use tempfile::TempDir;

/// A backend on a file in a temporary directory that is removed with it.
struct TempSqlite {
    backend: SqliteBackend,
    path: std::path::PathBuf,
    _dir: Arc<TempDir>,
}

/// At the end of every case, the stored counts (`kosh_counts`) must equal the jobs they
/// count, whatever the case did to them. Read in one transaction: a snapshot is consistent
/// because the counts change in the transaction that changes the jobs.
impl Drop for TempSqlite {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let mut conn = rusqlite::Connection::open(&self.path).expect("open the case's file");
        let tx = conn.transaction().expect("read transaction");
        let tally = |sql: &str| -> Vec<(String, String, i64)> {
            let mut stmt = tx.prepare(sql).expect("prepare");
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .expect("query")
                .map(Result::unwrap)
                .collect()
        };
        let stored = tally("SELECT queue, state, n FROM kosh_counts WHERE n <> 0 ORDER BY 1, 2");
        // Running jobs are stored in the `ready` row.
        let actual = tally(
            "SELECT queue, CASE state WHEN 'running' THEN 'ready' ELSE state END AS s, \
             count(*) FROM kosh_jobs GROUP BY 1, 2 ORDER BY 1, 2",
        );
        assert_eq!(stored, actual, "the stored counts differ from the jobs");
    }
}

async fn sqlite(clock: Clock) -> TempSqlite {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("jobs.db");
    let opts = SqliteOptions::builder(&path)
        .clock(clock)
        .build()
        .expect("options");
    let backend = SqliteBackend::connect_with(opts).await.expect("open");
    TempSqlite {
        backend,
        path,
        _dir: Arc::new(dir),
    }
}

kosh_jobs_core::conformance_tests!(sqlite);

/// The suite again on a private in-memory database (`sqlite::memory:`), where reads go
/// through the writer thread.
mod in_memory {
    use kosh_jobs_core::Clock;
    use kosh_jobs_sqlite::{SqliteBackend, SqliteOptions};

    async fn sqlite_memory(clock: Clock) -> SqliteBackend {
        let opts = SqliteOptions::from_url("sqlite::memory:")
            .expect("url")
            .clock(clock)
            .build()
            .expect("options");
        SqliteBackend::connect_with(opts).await.expect("open")
    }

    kosh_jobs_core::conformance_tests!(sqlite_memory);
}

#[async_trait]
impl Backend for TempSqlite {
    fn clock(&self) -> &Clock {
        self.backend.clock()
    }
    async fn push(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, BackendError> {
        self.backend.push(jobs).await
    }
    async fn reserve(&self, req: &ReserveRequest) -> Result<Vec<LeasedJob>, BackendError> {
        self.backend.reserve(req).await
    }
    async fn finish(&self, items: Vec<Finish>) -> Result<Vec<FinishResult>, BackendError> {
        self.backend.finish(items).await
    }
    async fn heartbeat(
        &self,
        leases: &[Lease],
        extend: Duration,
    ) -> Result<Vec<Lease>, BackendError> {
        self.backend.heartbeat(leases, extend).await
    }
    async fn progress(
        &self,
        lease: Lease,
        progress: serde_json::Value,
    ) -> Result<bool, BackendError> {
        self.backend.progress(lease, progress).await
    }
    async fn release(&self, leases: &[Lease]) -> Result<(), BackendError> {
        self.backend.release(leases).await
    }
    async fn recover_expired(&self) -> Result<u64, BackendError> {
        self.backend.recover_expired().await
    }
    async fn wait_for_work(&self, queues: &[String], until: Timestamp) -> Result<(), BackendError> {
        self.backend.wait_for_work(queues, until).await
    }
    async fn get(&self, id: JobId) -> Result<Option<JobRecord>, BackendError> {
        self.backend.get(id).await
    }
    async fn counts(&self) -> Result<Vec<QueueCounts>, BackendError> {
        self.backend.counts().await
    }
    async fn list(&self, query: &ListQuery) -> Result<Page, BackendError> {
        self.backend.list(query).await
    }
    async fn retry(&self, id: JobId) -> Result<RetryOutcome, BackendError> {
        self.backend.retry(id).await
    }
    async fn cancel(&self, id: JobId) -> Result<CancelOutcome, BackendError> {
        self.backend.cancel(id).await
    }
    async fn purge(
        &self,
        states: &[JobState],
        finished_before: Timestamp,
    ) -> Result<u64, BackendError> {
        self.backend.purge(states, finished_before).await
    }
    async fn pause(&self, queue: &str) -> Result<(), BackendError> {
        self.backend.pause(queue).await
    }
    async fn resume(&self, queue: &str) -> Result<(), BackendError> {
        self.backend.resume(queue).await
    }
    async fn set_queue_limits(
        &self,
        queue: &str,
        limits: kosh_jobs_core::QueueLimits,
    ) -> Result<(), BackendError> {
        self.backend.set_queue_limits(queue, limits).await
    }
    async fn hold_queue(
        &self,
        queue: &str,
        until: kosh_jobs_core::Timestamp,
    ) -> Result<(), BackendError> {
        self.backend.hold_queue(queue, until).await
    }
    async fn queue_flows(&self) -> Result<Vec<kosh_jobs_core::QueueFlow>, BackendError> {
        self.backend.queue_flows().await
    }
    async fn queue_groups(
        &self,
        query: &kosh_jobs_core::GroupQuery,
    ) -> Result<kosh_jobs_core::GroupPage, BackendError> {
        self.backend.queue_groups(query).await
    }
    async fn search(&self, query: &SearchQuery) -> Result<SearchPage, BackendError> {
        self.backend.search(query).await
    }
    async fn search_ids(
        &self,
        query: &SearchQuery,
    ) -> Result<kosh_jobs_core::admin::IdPage, BackendError> {
        self.backend.search_ids(query).await
    }
    async fn apply(
        &self,
        action: AdminAction,
        ids: &[JobId],
        only: &[JobState],
    ) -> Result<Vec<ActionResult>, BackendError> {
        self.backend.apply(action, ids, only).await
    }
    async fn throughput(
        &self,
        query: &ThroughputQuery,
    ) -> Result<Vec<ThroughputPoint>, BackendError> {
        self.backend.throughput(query).await
    }
    async fn register_worker(&self, info: &WorkerInfo, ttl: Duration) -> Result<(), BackendError> {
        self.backend.register_worker(info, ttl).await
    }
    async fn deregister_worker(&self, id: &str) -> Result<(), BackendError> {
        self.backend.deregister_worker(id).await
    }
    async fn workers(&self) -> Result<Vec<LiveWorker>, BackendError> {
        self.backend.workers().await
    }

    async fn upsert_schedule(
        &self,
        def: &ScheduleDef,
        next_fire: Option<Timestamp>,
    ) -> Result<Upserted, BackendError> {
        self.backend.upsert_schedule(def, next_fire).await
    }
    async fn remove_schedule(&self, id: &str) -> Result<bool, BackendError> {
        self.backend.remove_schedule(id).await
    }
    async fn pause_schedule(&self, id: &str) -> Result<bool, BackendError> {
        self.backend.pause_schedule(id).await
    }
    async fn resume_schedule(
        &self,
        id: &str,
        revision: u64,
        next_fire: Option<Timestamp>,
    ) -> Result<Resumed, BackendError> {
        self.backend.resume_schedule(id, revision, next_fire).await
    }
    async fn schedules(&self) -> Result<Vec<ScheduleRecord>, BackendError> {
        self.backend.schedules().await
    }
    async fn schedule(&self, id: &str) -> Result<Option<ScheduleRecord>, BackendError> {
        self.backend.schedule(id).await
    }
    async fn due_schedules(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<ScheduleRecord>, BackendError> {
        self.backend.due_schedules(before, limit).await
    }
    async fn fire_schedules(
        &self,
        fires: Vec<ScheduleFire>,
    ) -> Result<Vec<FireOutcome>, BackendError> {
        self.backend.fire_schedules(fires).await
    }
}
