//! [`PostgresBackend`]: the [`Backend`] implementation.

use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::Either;
use kosh_jobs_core::admin::{
    ActionResult, AdminAction, LiveWorker, SearchPage, SearchQuery, ThroughputPoint,
    ThroughputQuery, WorkerInfo,
};
use kosh_jobs_core::limits::{GroupPage, GroupQuery, QueueFlow, QueueLimits};
use kosh_jobs_core::schedule::{
    FireOutcome, Resumed, ScheduleDef, ScheduleFire, ScheduleRecord, Upserted,
};
use kosh_jobs_core::{
    Backend, BackendError, CancelOutcome, Client, Clock, Enqueue, Enqueued, Finish, FinishResult,
    Job, JobContext, JobId, JobRecord, JobState, Lease, LeasedJob, ListQuery, NewJob, Page,
    QueueCounts, ReserveRequest, RetryOutcome, Timestamp,
};
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{PgConnection, PgPool};
use tokio::runtime::Handle;
use tokio::sync::Notify;

use crate::error::{PostgresError, Result};
use crate::io::{run_here, IoThread};
use crate::options::PostgresOptions;
use crate::schema;
use crate::store::{self, admin, flow, jobs, operate, read, schedules, Db};

/// A kosh-jobs backend that keeps jobs in Postgres, in a schema of their own (default
/// `kosh`), shared by any number of processes on any number of machines.
///
/// Cheap to clone: clones share the pool, the listener and the I/O thread, which stop when
/// the last clone is dropped.
///
/// - **Claims** are one statement: `UPDATE … FROM (SELECT … FOR UPDATE SKIP LOCKED LIMIT n)
///   RETURNING …`, taking ready jobs and due scheduled ones alike. **Finishing** a batch
///   (completions, retries, failures, with the throughput counters) is one statement, and so
///   are a batch's heartbeats and releases: arrays bound with `unnest`, never a round trip
///   per job.
/// - **Wake-ups** come by `LISTEN`/`NOTIFY` on a connection of their own that reconnects by
///   itself; a waiting worker also looks every [`PostgresOptions::DEFAULT_POLL_INTERVAL`]
///   (configurable), so a notification lost while the listener was down delays a job by at
///   most that.
/// - **Enqueue in the application's transaction**: [`PostgresBackend::push_in`] and
///   [`PostgresBackend::enqueue_in`] take the application's `&mut PgConnection` (a
///   `Transaction` derefs to one): the job exists if and only if that transaction commits,
///   and workers are woken at the commit (`NOTIFY` is transactional).
/// - All database work runs on the backend's own thread, so it keeps working when handlers
///   block the caller's runtime. A backend on the application's pool
///   ([`PostgresBackend::from_pool`]) runs its work on that pool on the caller's runtime
///   instead; its lease renewals still run on its own thread, on connections of its own.
/// - **Leases never wait for the pool**: heartbeats, finishes and releases have a pool of
///   their own (2 connections, besides [`PostgresOptionsBuilder::max_connections`]), so
///   pushes or admin calls holding every connection of the main pool (say, pushes waiting on
///   a unique key that an open application transaction holds) cannot starve lease renewal
///   and get running jobs recovered and run twice.
///
/// [`PostgresOptionsBuilder::max_connections`]: crate::PostgresOptionsBuilder::max_connections
///
/// ```no_run
/// use kosh_jobs_core::{Backend, NewJob};
/// use kosh_jobs_postgres::PostgresBackend;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let backend = PostgresBackend::connect("postgres://app:secret@localhost/app?schema=kosh").await?;
/// let now = backend.clock().now();
/// backend.push(vec![NewJob::new("import_csv", "csv-uploads", "{}", now)]).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresBackend {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    /// Whose main pool it is, and so where its operations run.
    main: Main,
    poll_interval: Duration,
    /// When `reserve` last recovered expired leases (ms of the clock).
    last_recovery: AtomicI64,
    /// How long completed jobs are kept, and when retention last ran (real time).
    retention: Option<Duration>,
    last_prune: std::sync::Mutex<std::time::Instant>,
    display: String,
    /// Lifecycle events, when carried.
    events: Option<Arc<crate::events::Events>>,
    // Dropped last: stops the listener and whatever still runs.
    io: IoThread,
}

/// The main pool of a backend, and where the operations on it run.
enum Main {
    /// The backend's own, on its I/O thread.
    Own,
    /// The application's ([`PostgresBackend::from_pool`]), on the caller's runtime. The
    /// handle is of the runtime that built the backend: its events are published there.
    Application(Handle),
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("url", &self.inner.display)
            .field("schema", &self.schema())
            .finish_non_exhaustive()
    }
}

/// Connections of the pool kept for heartbeats, finishes and releases, besides the main pool:
/// a worker renews its leases on one while it stores results on the other.
pub(crate) const LEASE_CONNECTIONS: u32 = 2;

/// How often `reserve` also recovers expired leases (by the backend's clock).
const RECOVERY_EVERY: Duration = Duration::from_secs(1);

/// How often a reserving backend deletes completed jobs past their retention (real time).
const PRUNE_EVERY: Duration = Duration::from_secs(60);

impl PostgresBackend {
    /// Connects to the database of `url` (see [`PostgresOptions::from_url`]), creating or
    /// migrating the schema.
    pub async fn connect(url: &str) -> Result<PostgresBackend> {
        Self::connect_with(PostgresOptions::from_url(url)?.build()?).await
    }

    /// A backend on the application's `pool`, in the default schema (`kosh`): the same as
    /// [`PostgresBackend::connect_with`] with [`PostgresOptions::from_pool`], whose builder
    /// sets the schema, events and the rest.
    ///
    /// Pushes, reserves, waits, admin calls and events use the application's pool; the
    /// schema is created or migrated on it (under the advisory lock, as always). The backend
    /// still opens, from the pool's connection options, its lease pool (heartbeats,
    /// finishes, releases: 2 connections) and its listener, on its own thread as
    /// [`PostgresBackend::connect_with`] does: the application holding every connection of
    /// its pool, or blocking every thread of its runtime, never delays a lease renewal.
    ///
    /// **Where the work on the application's pool runs: on the caller's runtime**, as a task
    /// spawned there (it finishes if the caller stops waiting, as on the backend's thread),
    /// never on the backend's own thread. A tokio socket is driven by the runtime it was
    /// opened on, wherever it is polled, and the pool opens connections in whichever task
    /// needs one. Run on the backend's thread, the application's pool would get connections
    /// of the backend's runtime, which break when the backend is dropped (a query of the
    /// application failing later on one of them); and its own connections would still wait
    /// on the application's runtime, so that thread would buy no independence from it. So
    /// the backend uses the pool as the application's own code does, and needs a tokio
    /// runtime: called outside of one it fails with [`PostgresError::NoRuntime`]. Events are
    /// published from a task of the runtime that calls this.
    ///
    /// ```no_run
    /// use kosh_jobs_core::Client;
    /// use kosh_jobs_postgres::PostgresBackend;
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = sqlx::PgPool::connect("postgres://app:secret@localhost/app").await?;
    /// let backend = PostgresBackend::from_pool(pool.clone()).await?;
    /// let jobs = Client::new(backend.clone());
    /// # Ok(()) }
    /// ```
    pub async fn from_pool(pool: PgPool) -> Result<PostgresBackend> {
        Self::connect_with(PostgresOptions::from_pool(pool).build()?).await
    }

    /// Connects with `opts`, creating or migrating the schema under an advisory lock, and
    /// starts listening for notifications. With options
    /// [`from_pool`](PostgresOptions::from_pool), uses the application's pool as
    /// [`PostgresBackend::from_pool`] says.
    pub async fn connect_with(opts: PostgresOptions) -> Result<PostgresBackend> {
        let io = IoThread::start()?;
        let (pool, main) = match opts.pool.clone() {
            // On the caller's runtime, like every later operation on the application's pool.
            Some(pool) => {
                let caller = Handle::try_current().map_err(|_| PostgresError::NoRuntime)?;
                let mut conn = pool.acquire().await?;
                schema::migrate(&mut conn, &opts.schema).await?;
                (pool, Main::Application(caller))
            }
            None => {
                let (schema_name, connect) = (opts.schema.clone(), opts.connect.clone());
                let (max, acquire) = (opts.max_connections(), opts.acquire_timeout);
                let pool = io
                    .run(async move {
                        let pool = PgPoolOptions::new()
                            .max_connections(max)
                            .acquire_timeout(acquire)
                            .connect_with(connect)
                            .await?;
                        schema::migrate(&mut *pool.acquire().await?, &schema_name).await?;
                        Ok(pool)
                    })
                    .await?;
                (pool, Main::Own)
            }
        };
        let channel: Arc<str> = Arc::from(store::channel_of(&opts.schema));
        let wake = Arc::new(Notify::new());
        let (listen_channel, listen_wake) = (Arc::clone(&channel), Arc::clone(&wake));
        let (connect, acquire) = (opts.connect.clone(), opts.acquire_timeout);
        let handle = io.handle().clone();
        let leases = io
            .run(async move {
                // Opened now, not on the first heartbeat: a lease is then renewed on a
                // connection that exists already, even when the server is at its limit.
                let leases = PgPoolOptions::new()
                    .max_connections(LEASE_CONNECTIONS)
                    .min_connections(1)
                    .acquire_timeout(acquire)
                    .connect_with(connect.clone())
                    .await?;
                // The listener holds its connection for good (and takes a new one when it
                // reconnects): from a pool of its own, not one of `max` the operations need.
                let listen_pool = PgPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(acquire)
                    .connect_lazy_with(connect);
                let mut listener = PgListener::connect_with(&listen_pool).await?;
                listener.listen(&listen_channel).await?;
                handle.spawn(listen(listener, listen_wake));
                Ok(leases)
            })
            .await?;
        // Published on the main pool, on the runtime of its other operations: an event waits
        // for a connection there rather than take one that a heartbeat needs.
        let events = opts.events.then(|| {
            let runtime = match &main {
                Main::Own => io.handle(),
                Main::Application(caller) => caller,
            };
            Arc::new(crate::events::Events::start(
                &opts.schema,
                pool.clone(),
                opts.connect.clone(),
                opts.acquire_timeout,
                runtime,
            ))
        });
        Ok(PostgresBackend {
            inner: Arc::new(Inner {
                db: Db {
                    pool,
                    leases,
                    schema: Arc::from(schema::quoted(&opts.schema)),
                    channel,
                    clock: opts.clock.clone(),
                    wake,
                    limited: Arc::default(),
                },
                main,
                poll_interval: opts.poll_interval,
                last_recovery: AtomicI64::new(i64::MIN),
                retention: opts.retention,
                last_prune: std::sync::Mutex::new(std::time::Instant::now()),
                display: opts.display.clone(),
                events,
                io,
            }),
        })
    }

    /// The schema the backend's tables live in, unquoted.
    pub fn schema(&self) -> &str {
        self.inner.db.schema.trim_matches('"')
    }

    /// Stores jobs on the application's connection, inside whatever transaction it is in:
    /// the jobs exist if and only if that transaction commits, and workers are woken when it
    /// does (`NOTIFY` is delivered at commit). With [events](kosh_jobs_core::events) on, their
    /// `Enqueued` events are sent on that connection too, so subscribers get them at the
    /// commit, and never for a transaction rolled back. Otherwise as [`Backend::push`].
    ///
    /// ```no_run
    /// # use kosh_jobs_core::{Backend, NewJob};
    /// # use kosh_jobs_postgres::PostgresBackend;
    /// # async fn demo(backend: PostgresBackend, pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = pool.begin().await?;
    /// sqlx::query("INSERT INTO imports (id) VALUES (7)").execute(&mut *tx).await?;
    /// let now = backend.clock().now();
    /// backend.push_in(&mut tx, vec![NewJob::new("import_csv", "csv", r#"{"id":7}"#, now)]).await?;
    /// tx.commit().await?; // the row and its job, or neither
    /// # Ok(()) }
    /// ```
    pub async fn push_in(
        &self,
        conn: &mut PgConnection,
        jobs: Vec<NewJob>,
    ) -> Result<Vec<Enqueued>> {
        let db = &self.inner.db;
        let now = db.clock.now();
        let out = jobs::push(conn, &db.schema, &db.channel, &jobs, now).await?;
        if let Some(events) = &self.inner.events {
            events.notify_enqueued(conn, &jobs, &out, now).await?;
        }
        Ok(out)
    }

    /// Enqueues one typed job on the application's connection (see
    /// [`PostgresBackend::push_in`]), with the job type's queue and options.
    pub async fn enqueue_in<J: Job>(
        &self,
        conn: &mut PgConnection,
        job: impl Into<Enqueue<J>>,
    ) -> std::result::Result<Enqueued, kosh_jobs_core::Error> {
        let new = Client::new(self.clone()).prepare(job)?;
        let mut out = self
            .push_in(conn, vec![new])
            .await
            .map_err(|e| kosh_jobs_core::Error::from(BackendError::from(e)))?;
        out.pop().ok_or_else(|| {
            kosh_jobs_core::Error::from(BackendError::storage(PostgresError::Stopped))
        })
    }

    /// Completes the job of a running attempt on the application's connection, inside
    /// whatever transaction it is in: the job is completed if and only if that transaction
    /// commits, with the handler's other writes, so an effect in the database happens
    /// exactly once. Returns `false` when the attempt's lease is no longer current (the job
    /// was recovered by another worker or cancelled): roll the transaction back then.
    ///
    /// `output` is stored as the job's result: the job type's `Output`, the value the handler
    /// then returns (`()` stores none). Call it last, just before
    /// the commit: it locks the job's row until the transaction ends, and the worker's lease
    /// renewals wait for that lock. The handler then returns as usual; the worker sees that
    /// the job was completed by this attempt and counts it as completed
    /// ([`JobContext::completed_in_store`]). If the transaction rolls back, the handler's
    /// outcome is stored as if this was never called.
    ///
    /// ```no_run
    /// # use kosh_jobs_core::{JobContext, JobError};
    /// # use kosh_jobs_postgres::PostgresBackend;
    /// # #[derive(Clone)] struct App { pool: sqlx::PgPool, jobs: PostgresBackend }
    /// async fn credit(ctx: JobContext<App>, account: i64, cents: i64) -> Result<(), JobError> {
    ///     let app = ctx.state();
    ///     let mut tx = app.pool.begin().await?;
    ///     sqlx::query("UPDATE accounts SET cents = cents + $1 WHERE id = $2")
    ///         .bind(cents)
    ///         .bind(account)
    ///         .execute(&mut *tx)
    ///         .await?;
    ///     if !app.jobs.complete_in(&mut tx, &ctx, &()).await? {
    ///         return Err(JobError::retryable("the lease was lost; nothing was credited"));
    ///     }
    ///     tx.commit().await?; // the credit and the completion, or neither
    ///     Ok(())
    /// }
    /// ```
    pub async fn complete_in<S>(
        &self,
        conn: &mut PgConnection,
        ctx: &JobContext<S>,
        output: &impl serde::Serialize,
    ) -> std::result::Result<bool, kosh_jobs_core::Error> {
        let result = match serde_json::to_value(output) {
            Ok(serde_json::Value::Null) => None,
            Ok(v) => Some(v),
            Err(e) => {
                return Err(kosh_jobs_core::Error::InvalidInput(format!(
                    "the result of job {} does not serialize: {e}",
                    ctx.id()
                )))
            }
        };
        let finish = Finish {
            lease: ctx.lease(),
            outcome: kosh_jobs_core::Outcome::Completed { result },
        };
        let out = jobs::finish_on(&self.inner.db, &mut *conn, std::slice::from_ref(&finish))
            .await
            .map_err(|e| kosh_jobs_core::Error::from(BackendError::from(e)))?;
        let applied = out.first() == Some(&FinishResult::Applied);
        if applied {
            ctx.completed_in_store();
        }
        Ok(applied)
    }

    /// Deletes completed jobs that finished before `cutoff`, in chunks of 1,000 rows (one
    /// short statement each); returns how many. A reserving backend already does this about
    /// once a minute for the retention of its options
    /// ([`crate::PostgresOptionsBuilder::retention`], 24 hours by default); call it to prune
    /// now. Failed jobs stay until purged.
    pub async fn prune_completed(&self, cutoff: Timestamp) -> Result<u64> {
        let db = self.inner.db.clone();
        self.inner
            .io
            .run(async move {
                let mut total = 0;
                loop {
                    let n = admin::prune_completed(&db, cutoff).await?;
                    total += n;
                    if n < admin::DELETE_CHUNK as u64 {
                        return Ok(total);
                    }
                }
            })
            .await
    }

    /// About once a minute, deletes completed jobs past the retention in the background, a
    /// chunk per statement.
    fn maybe_prune(&self) {
        let Some(keep) = self.inner.retention else {
            return;
        };
        {
            let Ok(mut last) = self.inner.last_prune.lock() else {
                return;
            };
            if last.elapsed() < PRUNE_EVERY {
                return;
            }
            *last = std::time::Instant::now();
        }
        let db = self.inner.db.clone();
        let runtime = match &self.inner.main {
            Main::Own => self.inner.io.handle().clone(),
            Main::Application(_) => match Handle::try_current() {
                Ok(caller) => caller,
                Err(_) => return,
            },
        };
        runtime.spawn(async move {
            let cutoff = db.now().saturating_sub(keep);
            loop {
                match admin::prune_completed(&db, cutoff).await {
                    Ok(n) if n < admin::DELETE_CHUNK as u64 => {
                        if n > 0 {
                            tracing::debug!(deleted = n, "pruned completed jobs past retention");
                        }
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot prune completed jobs");
                        return;
                    }
                }
            }
        });
    }

    /// Runs `op`, an operation on the main pool, with the backend's [`Db`]: on the I/O
    /// thread, or for the application's pool on the caller's runtime (see [`Main`]).
    fn run<T, Fut>(&self, op: impl FnOnce(Db) -> Fut) -> impl Future<Output = Result<T>>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        let op = op(self.inner.db.clone());
        match self.inner.main {
            Main::Own => Either::Left(self.inner.io.run(op)),
            Main::Application(_) => Either::Right(run_here(op)),
        }
    }

    /// Runs `op`, an operation on the lease pool only, on the I/O thread, where that pool's
    /// connections were opened: whatever the main pool is.
    fn run_leases<T, Fut>(&self, op: impl FnOnce(Db) -> Fut) -> impl Future<Output = Result<T>>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        self.inner.io.run(op(self.inner.db.clone()))
    }
}

/// Forwards notifications to the waiting workers; wakes them all when the connection was
/// lost (notifications may have been missed) and logs an outage once.
async fn listen(mut listener: PgListener, wake: Arc<Notify>) {
    let mut down = false;
    loop {
        match listener.try_recv().await {
            Ok(Some(_)) => {
                if down {
                    tracing::info!("postgres listener reconnected");
                    down = false;
                }
                wake.notify_waiters();
            }
            Ok(None) => {
                if !down {
                    tracing::warn!("postgres listener lost its connection; reconnecting");
                    down = true;
                }
                wake.notify_waiters();
            }
            Err(e) => {
                if !down {
                    tracing::warn!(error = %e, "postgres listener cannot reconnect; retrying every second");
                    down = true;
                }
                wake.notify_waiters();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

fn be<T>(r: Result<T>) -> std::result::Result<T, BackendError> {
    r.map_err(BackendError::from)
}

#[async_trait]
impl Backend for PostgresBackend {
    fn clock(&self) -> &Clock {
        &self.inner.db.clock
    }

    fn events_enabled(&self) -> bool {
        self.inner.events.is_some()
    }

    fn publish_events(&self, events: Vec<kosh_jobs_core::events::JobEvent>) {
        if let Some(e) = &self.inner.events {
            e.publish(events);
        }
    }

    async fn subscribe_events(
        &self,
    ) -> std::result::Result<kosh_jobs_core::events::EventFeed, BackendError> {
        let Some(events) = self.inner.events.clone() else {
            return Err(BackendError::InvalidInput(
                "lifecycle events are off for this Postgres backend: add `events=true` to its \
                 url or call `PostgresOptions::from_url(url)?.events(true)`"
                    .into(),
            ));
        };
        be(self
            .inner
            .io
            .run(async move { events.subscribe().await })
            .await)
    }

    async fn push(&self, jobs: Vec<NewJob>) -> std::result::Result<Vec<Enqueued>, BackendError> {
        let out = be(self
            .run(|db| async move {
                let mut conn = db.pool.acquire().await?;
                jobs::push(&mut conn, &db.schema, &db.channel, &jobs, db.now()).await
            })
            .await)?;
        self.inner.db.wake_local();
        Ok(out)
    }

    async fn reserve(
        &self,
        req: &ReserveRequest,
    ) -> std::result::Result<Vec<LeasedJob>, BackendError> {
        let req = req.clone();
        let now = self.inner.db.now().as_millis();
        let last = self.inner.last_recovery.load(Ordering::Relaxed);
        let every = i64::try_from(RECOVERY_EVERY.as_millis()).unwrap_or(i64::MAX);
        let recover = now < last || now.saturating_sub(last) >= every;
        if recover {
            self.inner.last_recovery.store(now, Ordering::Relaxed);
        }
        self.maybe_prune();
        be(self
            .run(|db| async move {
                if recover {
                    jobs::recover_expired(&db).await?;
                }
                jobs::reserve(&db, &req).await
            })
            .await)
    }

    async fn finish(
        &self,
        items: Vec<Finish>,
    ) -> std::result::Result<Vec<FinishResult>, BackendError> {
        be(self
            .run_leases(|db| async move { jobs::finish(&db, &items).await })
            .await)
    }

    async fn heartbeat(
        &self,
        leases: &[Lease],
        extend: Duration,
    ) -> std::result::Result<Vec<Lease>, BackendError> {
        let leases = leases.to_vec();
        be(self
            .run_leases(move |db| async move {
                let until = db.now().saturating_add(extend);
                jobs::heartbeat(&db, &leases, until).await
            })
            .await)
    }

    async fn progress(
        &self,
        lease: Lease,
        progress: serde_json::Value,
    ) -> std::result::Result<bool, BackendError> {
        let json = progress.to_string();
        be(self
            .run(|db| async move { jobs::progress(&db, &lease, &json).await })
            .await)
    }

    async fn release(&self, leases: &[Lease]) -> std::result::Result<(), BackendError> {
        let leases = leases.to_vec();
        be(self
            .run_leases(|db| async move { jobs::release(&db, &leases).await })
            .await)
    }

    async fn recover_expired(&self) -> std::result::Result<u64, BackendError> {
        be(self
            .run(|db| async move { jobs::recover_expired(&db).await })
            .await)
    }

    async fn wait_for_work(
        &self,
        queues: &[String],
        until: Timestamp,
    ) -> std::result::Result<(), BackendError> {
        let clock = &self.inner.db.clock;
        let wake = Arc::clone(&self.inner.db.wake);
        let queues = queues.to_vec();
        // A notification (or the fallback poll) only means "look again": the look decides.
        // A notification of a scheduled job, or of another queue, does not end the wait.
        loop {
            if clock.now() >= until {
                return Ok(());
            }
            // Register for wake-ups before looking, so nothing between the look and the wait
            // is missed.
            let notified = wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let q = queues.clone();
            let info = be(self
                .run(|db| async move { read::wait_info(&db, &q).await })
                .await)?;
            if info.ready {
                return Ok(());
            }
            let now = clock.now();
            if info.next_expiry.is_some_and(|t| t <= now) {
                // A lease ran out and nobody recovered it yet: recover it, then let the
                // caller look.
                self.recover_expired().await?;
                return Ok(());
            }
            let deadline = [Some(until), info.next_run_at, info.next_expiry]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(until);
            if deadline <= now {
                return Ok(());
            }
            tokio::select! {
                _ = notified => {}
                _ = clock.sleep_until(deadline) => return Ok(()),
                // The fallback poll, in real time: bounds the delay of a lost notification.
                _ = tokio::time::sleep(self.inner.poll_interval) => {}
            }
        }
    }

    async fn get(&self, id: JobId) -> std::result::Result<Option<JobRecord>, BackendError> {
        be(self.run(|db| async move { read::get(&db, id).await }).await)
    }

    async fn counts(&self) -> std::result::Result<Vec<QueueCounts>, BackendError> {
        be(self.run(|db| async move { read::counts(&db).await }).await)
    }

    async fn list(&self, query: &ListQuery) -> std::result::Result<Page, BackendError> {
        let q = query.clone();
        be(self
            .run(|db| async move { read::list(&db, &q).await })
            .await)
    }

    async fn retry(&self, id: JobId) -> std::result::Result<RetryOutcome, BackendError> {
        be(self
            .run(|db| async move { admin::retry(&db, id).await })
            .await)
    }

    async fn cancel(&self, id: JobId) -> std::result::Result<CancelOutcome, BackendError> {
        be(self
            .run(|db| async move { admin::cancel(&db, id).await })
            .await)
    }

    async fn purge(
        &self,
        states: &[JobState],
        finished_before: Timestamp,
    ) -> std::result::Result<u64, BackendError> {
        let states = states.to_vec();
        be(self
            .run(|db| async move { admin::purge(&db, &states, finished_before).await })
            .await)
    }

    async fn pause(&self, queue: &str) -> std::result::Result<(), BackendError> {
        let queue = queue.to_owned();
        be(self
            .run(|db| async move { admin::pause(&db, &queue).await })
            .await)
    }

    async fn resume(&self, queue: &str) -> std::result::Result<(), BackendError> {
        let queue = queue.to_owned();
        be(self
            .run(|db| async move { admin::resume(&db, &queue).await })
            .await)
    }

    async fn set_queue_limits(
        &self,
        queue: &str,
        limits: QueueLimits,
    ) -> std::result::Result<(), BackendError> {
        let queue = queue.to_owned();
        be(self
            .run(|db| async move { flow::set_limits(&db, &queue, limits).await })
            .await)
    }

    async fn hold_queue(
        &self,
        queue: &str,
        until: Timestamp,
    ) -> std::result::Result<(), BackendError> {
        let queue = queue.to_owned();
        be(self
            .run(|db| async move { flow::hold(&db, &queue, until).await })
            .await)
    }

    async fn queue_flows(&self) -> std::result::Result<Vec<QueueFlow>, BackendError> {
        be(self.run(|db| async move { flow::flows(&db).await }).await)
    }

    async fn queue_groups(
        &self,
        query: &GroupQuery,
    ) -> std::result::Result<GroupPage, BackendError> {
        let q = query.clone();
        be(self
            .run(|db| async move { flow::groups(&db, &q).await })
            .await)
    }

    async fn search(&self, query: &SearchQuery) -> std::result::Result<SearchPage, BackendError> {
        let q = query.clone();
        be(self
            .run(|db| async move { operate::search(&db, &q).await })
            .await)
    }

    async fn search_ids(
        &self,
        query: &SearchQuery,
    ) -> std::result::Result<kosh_jobs_core::admin::IdPage, BackendError> {
        let q = query.clone();
        be(self
            .run(|db| async move { operate::search_ids(&db, &q).await })
            .await)
    }

    async fn apply(
        &self,
        action: AdminAction,
        ids: &[JobId],
        only: &[JobState],
    ) -> std::result::Result<Vec<ActionResult>, BackendError> {
        let (ids, only) = (ids.to_vec(), only.to_vec());
        be(self
            .run(|db| async move { operate::apply(&db, action, &ids, &only).await })
            .await)
    }

    async fn throughput(
        &self,
        query: &ThroughputQuery,
    ) -> std::result::Result<Vec<ThroughputPoint>, BackendError> {
        let q = query.clone();
        be(self
            .run(|db| async move { operate::throughput(&db, &q).await })
            .await)
    }

    async fn register_worker(
        &self,
        info: &WorkerInfo,
        ttl: Duration,
    ) -> std::result::Result<(), BackendError> {
        let info = info.clone();
        be(self
            .run(|db| async move { operate::register_worker(&db, &info, ttl).await })
            .await)
    }

    async fn deregister_worker(&self, id: &str) -> std::result::Result<(), BackendError> {
        let id = id.to_owned();
        be(self
            .run(|db| async move { operate::deregister_worker(&db, &id).await })
            .await)
    }

    async fn workers(&self) -> std::result::Result<Vec<LiveWorker>, BackendError> {
        be(self
            .run(|db| async move { operate::workers(&db).await })
            .await)
    }

    async fn upsert_schedule(
        &self,
        def: &ScheduleDef,
        next_fire: Option<Timestamp>,
    ) -> std::result::Result<Upserted, BackendError> {
        let def = def.clone();
        be(self
            .run(|db| async move { schedules::upsert(&db, &def, next_fire).await })
            .await)
    }

    async fn remove_schedule(&self, id: &str) -> std::result::Result<bool, BackendError> {
        let id = id.to_owned();
        be(self
            .run(|db| async move { schedules::remove(&db, &id).await })
            .await)
    }

    async fn pause_schedule(&self, id: &str) -> std::result::Result<bool, BackendError> {
        let id = id.to_owned();
        be(self
            .run(|db| async move { schedules::pause(&db, &id).await })
            .await)
    }

    async fn resume_schedule(
        &self,
        id: &str,
        revision: u64,
        next_fire: Option<Timestamp>,
    ) -> std::result::Result<Resumed, BackendError> {
        let id = id.to_owned();
        be(self
            .run(|db| async move { schedules::resume(&db, &id, revision, next_fire).await })
            .await)
    }

    async fn schedules(&self) -> std::result::Result<Vec<ScheduleRecord>, BackendError> {
        be(self
            .run(|db| async move { schedules::list(&db).await })
            .await)
    }

    async fn schedule(
        &self,
        id: &str,
    ) -> std::result::Result<Option<ScheduleRecord>, BackendError> {
        let id = id.to_owned();
        be(self
            .run(|db| async move { schedules::get(&db, &id).await })
            .await)
    }

    async fn due_schedules(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> std::result::Result<Vec<ScheduleRecord>, BackendError> {
        be(self
            .run(|db| async move { schedules::due(&db, before, limit).await })
            .await)
    }

    async fn fire_schedules(
        &self,
        fires: Vec<ScheduleFire>,
    ) -> std::result::Result<Vec<FireOutcome>, BackendError> {
        be(self
            .run(|db| async move { schedules::fire(&db, &fires).await })
            .await)
    }
}
