//! [`RedisBackend`]: the [`Backend`] contract over Redis.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kosh_jobs_core::admin::{
    ActionResult, AdminAction, LiveWorker, SearchPage, SearchQuery, ThroughputPoint,
    ThroughputQuery, WorkerInfo,
};
use kosh_jobs_core::schedule::{
    FireOutcome, Resumed, ScheduleDef, ScheduleFire, ScheduleRecord, Upserted,
};
use kosh_jobs_core::{
    Backend, BackendError, CancelOutcome, Clock, Enqueued, Finish, FinishResult, JobId, JobRecord,
    JobState, Lease, LeasedJob, ListQuery, NewJob, Page, QueueCounts, QueueFlow, QueueLimits,
    ReserveRequest, RetryOutcome, Timestamp,
};
use tokio_util::sync::CancellationToken;

use crate::coalesce;
use crate::error::RedisError;
use crate::io::IoThread;
use crate::ops::{check_job, Shared};
use crate::options::RedisOptions;

/// Jobs in Redis (standalone or Cluster, plain or TLS), for many workers on many machines.
///
/// Each state change is one Lua script, called by SHA. All keys of a queue share the hash
/// tag `{prefix:queue}`, so Redis Cluster works. The backend keeps one multiplexed
/// connection for all commands of the process (reconnected in the background with backoff
/// after Redis restarts) and a second connection for the blocking waits of idle workers,
/// and runs both on a thread of its own, so workers whose handlers block their threads still
/// renew leases. Cheap to clone; clones share the connection.
///
/// ```no_run
/// use kosh_jobs_core::Client;
/// use kosh_jobs_redis::RedisBackend;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let backend = RedisBackend::connect("redis://:password@localhost:6379/0?prefix=myapp").await?;
/// let jobs = Client::new(backend);
/// # let _ = jobs;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    clock: Clock,
    prefix: String,
    addrs: Vec<String>,
    /// Lifecycle events, when carried.
    events: Option<Arc<crate::events::Events>>,
    // Last field: stopping the thread cancels what still runs there.
    io: IoThread,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("addrs", &self.inner.addrs)
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// Connects to the Redis (or Redis Cluster) a URL names, with the options of its query
    /// string; everything else default. For options a URL cannot carry (a clock, a private
    /// CA's certificate from memory), use [`RedisBackend::connect_with`].
    ///
    /// ```text
    /// redis://[[user]:password@]host[:port][/db][?option=value&…]          plain TCP
    /// rediss://…                                                           TLS (web PKI roots)
    /// redis+cluster://[[user]:password@]host[:port][,host[:port]…][/0][?…] Redis Cluster
    /// rediss+cluster://…                                                   Redis Cluster over TLS
    /// ```
    ///
    /// - `port` defaults to 6379 and `db` to 0 (a cluster has only database 0). A cluster's
    ///   hosts are seeds: the backend finds the other nodes from them.
    /// - `user` and `password` are percent-encoded (`%40` for `@`); `:password@` alone is the
    ///   `requirepass` password (the `default` user).
    /// - Options (each at most once):
    ///
    /// | option | value | default |
    /// |---|---|---|
    /// | `prefix` | the key prefix: ASCII letters, digits, `-`, `_`, `.`, `:` | `kosh` |
    /// | `timeout` | connecting, a reply, waiting for a reconnection: `500ms`, `2s`, `1m` | `5s` |
    /// | `keep_completed_for` | age after which completed jobs are deleted: `30m`, `24h`, `7d`, or `none` | `24h` |
    /// | `keep_completed_max` | completed jobs kept per queue, or `none` | `10000` |
    /// | `ca_file` | `rediss://` only: a PEM file of the CA certificates to trust instead of the web PKI roots (a private CA), read when the options are built; percent-encoded | web PKI roots |
    /// | `coalesce_enqueues` | `true` or `false`: single enqueues made while another is in flight share one script call | `true` |
    ///
    /// An unknown option or a bad value fails with [`RedisError::Config`]
    /// ([`kosh_jobs_core::Error::InvalidInput`]) naming the option. A server that cannot be
    /// reached fails with [`RedisError::Unreachable`] (`Unavailable`); refused credentials
    /// with [`RedisError::PermissionDenied`] (`PermissionDenied`, not worth retrying), and a
    /// TLS certificate no trusted CA issued (expired, or for another host) at once with
    /// [`RedisError::UntrustedCertificate`] (`PermissionDenied` too). No error or log line
    /// contains the password.
    ///
    /// Once connected, the backend reconnects by itself. It warns (via `tracing`) if Redis's
    /// `maxmemory-policy` is not `noeviction`, because an evicted key is a lost job.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), kosh_jobs_core::Error> {
    /// use kosh_jobs_redis::RedisBackend;
    ///
    /// let backend = RedisBackend::connect("redis://localhost:6379?prefix=myapp&timeout=2s").await?;
    /// let cluster = RedisBackend::connect(
    ///     "rediss+cluster://:secret@node1.example.com:6379,node2.example.com:6379?prefix=myapp",
    /// )
    /// .await?;
    /// # let _ = (backend, cluster); Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<RedisBackend, RedisError> {
        RedisBackend::connect_with(RedisOptions::from_url(url)?).await
    }

    /// Connects with the given options (see [`RedisBackend::connect`] for the errors).
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), kosh_jobs_redis::RedisError> {
    /// use kosh_jobs_redis::{RedisBackend, RedisOptions};
    ///
    /// let options = RedisOptions::builder("rediss://default:secret@eu1-example.upstash.io:6379")
    ///     .prefix("myapp")
    ///     .build()?;
    /// let backend = RedisBackend::connect_with(options).await?;
    /// # let _ = backend; Ok(()) }
    /// ```
    pub async fn connect_with(options: RedisOptions) -> Result<RedisBackend, RedisError> {
        let io = IoThread::start()?;
        let opts = options.clone();
        let shared = io.run(Shared::connect(opts)).await?;
        let events = if options.events {
            let events = crate::events::Events::start(&options, shared.conn.clone(), io.handle())?;
            Some(Arc::new(events))
        } else {
            None
        };
        Ok(RedisBackend {
            inner: Arc::new(Inner {
                shared,
                clock: options.clock.clone(),
                prefix: options.prefix.clone(),
                addrs: options.addrs(),
                events,
                io,
            }),
        })
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    fn run<T, F>(&self, f: F) -> impl std::future::Future<Output = Result<T, BackendError>>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T, RedisError>> + Send + 'static,
    {
        let fut = self.inner.io.run(f);
        async move { fut.await.map_err(BackendError::from) }
    }

    fn shared(&self) -> Arc<Shared> {
        self.inner.shared.clone()
    }

    /// One job, sent at once if no enqueue is in flight, else with the others that waited
    /// for it (see `coalesce`). A bad job fails here, alone.
    async fn push_coalesced(&self, job: NewJob) -> Result<Enqueued, BackendError> {
        check_job(&job)?;
        let (start, result) = self.inner.shared.coalescer.add(job);
        if start {
            self.inner.io.spawn(coalesce::send_waiting(self.shared()));
        }
        match result.await {
            Ok(r) => r.map_err(BackendError::from),
            // The sending task ended without an answer: the backend is stopping.
            Err(_) => Err(RedisError::Stopped.into()),
        }
    }
}

#[async_trait]
impl Backend for RedisBackend {
    fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// Waits of up to ten minutes (see "Idle cost" in the crate's README): an idle worker
    /// sends under one request a minute. Nothing is noticed later for it:
    /// - a push, a resumed queue or a job made ready wakes a waiter at once (the wake-up
    ///   list);
    /// - a wait ends when the queue's next scheduled job or earliest lease is due, and a
    ///   lease that becomes the earliest wakes a waiter, which learns its deadline; the
    ///   reserve that follows recovers expired leases, so the recovery round of every
    ///   queue is needed only every ten minutes;
    /// - the registration lasts 12.5 minutes, refreshed every 5: a worker that died leaves
    ///   the list of workers within that (graceful shutdown removes it at once);
    /// - schedules are read every ten minutes: one created or changed by another process may
    ///   go unseen that long (`WorkerBuilder::schedule_refresh` shortens it).
    fn pacing(&self) -> kosh_jobs_core::backend::Pacing {
        const TEN_MINUTES: Duration = Duration::from_secs(600);
        kosh_jobs_core::backend::Pacing::default()
            .idle_wait(TEN_MINUTES)
            .recover_every(TEN_MINUTES)
            .register_every(Duration::from_secs(300))
            .schedule_refresh(TEN_MINUTES)
    }

    fn events_enabled(&self) -> bool {
        self.inner.events.is_some()
    }

    fn publish_events(&self, events: Vec<kosh_jobs_core::events::JobEvent>) {
        if let Some(e) = &self.inner.events {
            e.publish(events);
        }
    }

    async fn subscribe_events(&self) -> Result<kosh_jobs_core::events::EventFeed, BackendError> {
        let Some(events) = self.inner.events.clone() else {
            return Err(BackendError::InvalidInput(
                "lifecycle events are off for this Redis backend: add `events=true` to its url \
                 or call `RedisOptions::builder(url).events(true)`"
                    .into(),
            ));
        };
        self.run(async move { events.subscribe().await }).await
    }

    async fn push(&self, mut jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, BackendError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        if jobs.len() == 1 && self.inner.shared.coalesce_enqueues {
            if let Some(job) = jobs.pop() {
                return self.push_coalesced(job).await.map(|e| vec![e]);
            }
        }
        self.run(self.shared().push(jobs)).await
    }

    async fn reserve(&self, req: &ReserveRequest) -> Result<Vec<LeasedJob>, BackendError> {
        self.run(self.shared().reserve(req.clone())).await
    }

    async fn finish(&self, items: Vec<Finish>) -> Result<Vec<FinishResult>, BackendError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        self.run(self.shared().finish(items)).await
    }

    async fn heartbeat(
        &self,
        leases: &[Lease],
        extend: Duration,
    ) -> Result<Vec<Lease>, BackendError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        self.run(self.shared().heartbeat(leases.to_vec(), extend))
            .await
    }

    async fn progress(
        &self,
        lease: Lease,
        progress: serde_json::Value,
    ) -> Result<bool, BackendError> {
        self.run(self.shared().progress(lease, progress)).await
    }

    async fn release(&self, leases: &[Lease]) -> Result<(), BackendError> {
        if leases.is_empty() {
            return Ok(());
        }
        self.run(self.shared().release(leases.to_vec())).await
    }

    async fn recover_expired(&self) -> Result<u64, BackendError> {
        self.run(self.shared().recover_expired()).await
    }

    async fn wait_for_work(&self, queues: &[String], until: Timestamp) -> Result<(), BackendError> {
        let cancel = CancellationToken::new();
        // Dropping this future (e.g. the worker stops waiting) frees the blocked connection.
        let _guard = cancel.clone().drop_guard();
        self.run(self.shared().wait_for_work(queues.to_vec(), until, cancel))
            .await
    }

    async fn get(&self, id: JobId) -> Result<Option<JobRecord>, BackendError> {
        self.run(self.shared().get(id)).await
    }

    async fn counts(&self) -> Result<Vec<QueueCounts>, BackendError> {
        self.run(self.shared().counts()).await
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, BackendError> {
        self.run(self.shared().list(query.clone())).await
    }

    async fn retry(&self, id: JobId) -> Result<RetryOutcome, BackendError> {
        self.run(self.shared().retry(id)).await
    }

    async fn cancel(&self, id: JobId) -> Result<CancelOutcome, BackendError> {
        self.run(self.shared().cancel(id)).await
    }

    async fn purge(
        &self,
        states: &[JobState],
        finished_before: Timestamp,
    ) -> Result<u64, BackendError> {
        self.run(self.shared().purge(states.to_vec(), finished_before))
            .await
    }

    async fn pause(&self, queue: &str) -> Result<(), BackendError> {
        self.run(self.shared().set_paused(queue.to_owned(), true))
            .await
    }

    async fn resume(&self, queue: &str) -> Result<(), BackendError> {
        self.run(self.shared().set_paused(queue.to_owned(), false))
            .await
    }

    async fn set_queue_limits(&self, queue: &str, limits: QueueLimits) -> Result<(), BackendError> {
        self.run(self.shared().set_queue_limits(queue.to_owned(), limits))
            .await
    }

    async fn hold_queue(&self, queue: &str, until: Timestamp) -> Result<(), BackendError> {
        self.run(self.shared().hold_queue(queue.to_owned(), until))
            .await
    }

    async fn queue_flows(&self) -> Result<Vec<QueueFlow>, BackendError> {
        self.run(self.shared().queue_flows()).await
    }

    async fn queue_groups(
        &self,
        query: &kosh_jobs_core::GroupQuery,
    ) -> Result<kosh_jobs_core::GroupPage, BackendError> {
        self.run(self.shared().queue_groups(query.clone())).await
    }

    async fn search(&self, query: &SearchQuery) -> Result<SearchPage, BackendError> {
        self.run(self.shared().search(query.clone())).await
    }

    async fn search_ids(
        &self,
        query: &SearchQuery,
    ) -> Result<kosh_jobs_core::admin::IdPage, BackendError> {
        self.run(self.shared().search_ids(query.clone())).await
    }

    async fn apply(
        &self,
        action: AdminAction,
        ids: &[JobId],
        only: &[JobState],
    ) -> Result<Vec<ActionResult>, BackendError> {
        self.run(self.shared().apply(action, ids.to_vec(), only.to_vec()))
            .await
    }

    async fn throughput(
        &self,
        query: &ThroughputQuery,
    ) -> Result<Vec<ThroughputPoint>, BackendError> {
        self.run(self.shared().throughput(query.clone())).await
    }

    async fn register_worker(&self, info: &WorkerInfo, ttl: Duration) -> Result<(), BackendError> {
        self.run(self.shared().register_worker(info.clone(), ttl))
            .await
    }

    async fn deregister_worker(&self, id: &str) -> Result<(), BackendError> {
        self.run(self.shared().deregister_worker(id.to_owned()))
            .await
    }

    async fn workers(&self) -> Result<Vec<LiveWorker>, BackendError> {
        self.run(self.shared().workers()).await
    }

    async fn upsert_schedule(
        &self,
        def: &ScheduleDef,
        next_fire: Option<Timestamp>,
    ) -> Result<Upserted, BackendError> {
        self.run(self.shared().upsert_schedule(def.clone(), next_fire))
            .await
    }

    async fn remove_schedule(&self, id: &str) -> Result<bool, BackendError> {
        self.run(self.shared().remove_schedule(id.to_owned())).await
    }

    async fn pause_schedule(&self, id: &str) -> Result<bool, BackendError> {
        self.run(self.shared().pause_schedule(id.to_owned())).await
    }

    async fn resume_schedule(
        &self,
        id: &str,
        revision: u64,
        next_fire: Option<Timestamp>,
    ) -> Result<Resumed, BackendError> {
        self.run(
            self.shared()
                .resume_schedule(id.to_owned(), revision, next_fire),
        )
        .await
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRecord>, BackendError> {
        self.run(self.shared().schedules()).await
    }

    async fn schedule(&self, id: &str) -> Result<Option<ScheduleRecord>, BackendError> {
        self.run(self.shared().schedule(id.to_owned())).await
    }

    async fn due_schedules(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<ScheduleRecord>, BackendError> {
        self.run(self.shared().due_schedules(before, limit)).await
    }

    async fn fire_schedules(
        &self,
        fires: Vec<ScheduleFire>,
    ) -> Result<Vec<FireOutcome>, BackendError> {
        if fires.is_empty() {
            return Ok(Vec::new());
        }
        self.run(self.shared().fire_schedules(fires)).await
    }
}
