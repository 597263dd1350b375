//! [`SqliteBackend`]: the [`Backend`] implementation.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kosh_jobs_core::admin::{
    ActionResult, AdminAction, IdPage, LiveWorker, SearchPage, SearchQuery, ThroughputPoint,
    ThroughputQuery, WorkerInfo, MAX_ACTION_IDS,
};
use kosh_jobs_core::schedule::{
    FireOutcome, Resumed, ScheduleDef, ScheduleFire, ScheduleRecord, Upserted,
};
use kosh_jobs_core::{
    Backend, BackendError, CancelOutcome, Clock, Enqueued, Finish, FinishResult, JobId, JobRecord,
    JobState, Lease, LeasedJob, ListQuery, NewJob, Page, QueueCounts, ReserveRequest, RetryOutcome,
    Timestamp,
};
use tokio::sync::{oneshot, Notify};

use crate::engine::{self, Pending, Shared};
use crate::error::SqliteError;
use crate::options::SqliteOptions;
use crate::store::{Op, Response};

/// A kosh-jobs backend that keeps jobs in an SQLite file, shareable by several processes.
///
/// Cheap to clone: clones share the database threads. The threads stop, and the file is
/// closed, when the last clone is dropped.
///
/// - **Writes** go to one writer thread per backend that applies whatever has queued up in one
///   transaction (group commit), so throughput is not one commit per job. Other processes on
///   the same file have their own writers; SQLite's lock and the busy timeout
///   ([`crate::SqliteOptionsBuilder::busy_timeout`]) take turns between them.
/// - **Reads** go to a second, query-only connection on its own thread.
/// - **Waiting for work**: a push, retry, release, recovery or resume in this process wakes its
///   waiting workers at once; changes made by other processes are noticed by a cheap
///   `PRAGMA data_version` check every [`SqliteOptions::DEFAULT_POLL_INTERVAL`] (200 ms,
///   configurable), made only while a worker of this process waits.
/// - **Retention**: completed jobs are deleted after a while ([`crate::Retention`]); failed jobs
///   stay until purged.
/// - **Operating** ([`kosh_jobs_core::admin`]): each job keeps its latest 25 attempts. A
///   lease records its attempt in plain columns (worker, start); an attempt that ends other
///   than by completing the job is appended to a JSON column by the statement that ends it,
///   so leasing and completing a job write no JSON. Completed and failed jobs are counted
///   per queue and minute in the transaction that ends them (kept 7 days);
///   workers register in a table of their own. A search walks jobs by id from its cursor,
///   at most its budget per call, testing the filter in SQL; a filter of only states and a
///   queue reads the page from a `(queue, state)` index instead.
///
/// The database never runs on the caller's async threads, so a backend keeps working when a
/// handler blocks its runtime, and it can be used from any tokio runtime.
///
/// ```
/// use kosh_jobs_core::{Backend, NewJob, ReserveRequest, JobState};
/// use kosh_jobs_sqlite::SqliteBackend;
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let backend = SqliteBackend::connect("sqlite::memory:").await?;
/// let now = backend.clock().now();
/// let ids = backend.push(vec![NewJob::new("send_email", "mail", "{}", now)]).await?;
///
/// let req = ReserveRequest {
///     queues: vec!["mail".into()],
///     worker: "doc".into(),
///     max: 10,
///     lease: Duration::from_secs(30),
/// };
/// let leased = backend.reserve(&req).await?;
/// assert_eq!(leased[0].id(), ids[0].id);
/// assert_eq!(backend.get(ids[0].id).await?.unwrap().state, JobState::Running);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqliteBackend {
    inner: Arc<Inner>,
}

struct Inner {
    clock: Clock,
    path: Option<PathBuf>,
    writer: Sender<Pending>,
    reader: Option<Sender<Pending>>,
    shared: Arc<Shared>,
    done: Vec<oneshot::Receiver<()>>,
    /// Lifecycle events, when carried: the publisher starts on the runtime of the first
    /// publish.
    events: Option<std::sync::OnceLock<kosh_jobs_core::events::Publisher>>,
    /// Shares one reader of the events table among all subscribers.
    event_hub: kosh_jobs_core::events::FeedHub,
}

impl SqliteBackend {
    /// Opens the database named by a URL, with default options for whatever the URL does
    /// not set (see [`SqliteOptions::from_url`]):
    ///
    /// - `sqlite://data/jobs.db` or `sqlite:data/jobs.db`: a file relative to the current
    ///   folder, `sqlite:///var/lib/app/jobs.db`: an absolute one. A missing file is created
    ///   with its schema, and so are the folders it goes in.
    /// - `sqlite::memory:`: a new, private in-memory database (for tests), gone when the
    ///   backend is dropped.
    /// - `?busy_timeout_ms=10000&poll_interval_ms=100`: options; `?create=false`: fail with
    ///   [`SqliteError::Missing`] rather than create a missing file (for tools that only read
    ///   an existing database); any other key is refused.
    ///
    /// An invalid URL fails as [`SqliteError::InvalidOptions`]; a file that cannot be opened
    /// fails with a message that names it by its absolute path and says what is wrong (see
    /// [`SqliteBackend::connect_with`]). With `?`, the error converts into
    /// [`kosh_jobs_core::Error`] too.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), kosh_jobs_core::Error> {
    /// let backend = kosh_jobs_sqlite::SqliteBackend::connect("sqlite::memory:").await?;
    /// assert!(backend.path().is_none());
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Self, SqliteError> {
        Self::connect_with(SqliteOptions::from_url(url)?.build()?).await
    }

    /// Opens a database with the given options.
    ///
    /// A relative path is taken against the current folder, once, here. A missing file is
    /// created, and so are the folders it goes in; the schema is created in a new file and
    /// migrated in an older one. Fails with a message that names the file by its absolute
    /// path and says what is wrong: a folder on the way that is a file, no permission
    /// ([`SqliteError::PermissionDenied`]), a read-only file or folder
    /// ([`SqliteError::ReadOnly`]), not an SQLite database, another application's database,
    /// written by a newer kosh-jobs-sqlite, or corrupt.
    ///
    /// ```
    /// use kosh_jobs_core::{Backend, Clock};
    /// use kosh_jobs_sqlite::{SqliteBackend, SqliteOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (clock, _time) = Clock::manual();
    /// let opts = SqliteOptions::in_memory().clock(clock).build()?;
    /// let backend = SqliteBackend::connect_with(opts).await?;
    /// assert!(backend.clock().is_manual());
    ///
    /// # let dir = tempfile::tempdir()?;
    /// # let path = dir.path().join("data/jobs.db");
    /// // A file, in a folder that does not exist yet.
    /// let opts = SqliteOptions::builder(&path).build()?;
    /// let backend = SqliteBackend::connect_with(opts).await?;
    /// assert_eq!(backend.path(), Some(path.as_path()));
    /// # Ok(()) }
    /// ```
    pub async fn connect_with(options: SqliteOptions) -> Result<Self, SqliteError> {
        let opts = options.resolve()?;
        let shared = Arc::new(Shared::default());
        let threads = engine::start(&opts, shared.clone()).await?;
        Ok(SqliteBackend {
            inner: Arc::new(Inner {
                clock: opts.clock.clone(),
                path: opts.path().map(Path::to_path_buf),
                writer: threads.writer,
                reader: threads.reader,
                shared,
                done: threads.done,
                events: opts.events.then(std::sync::OnceLock::new),
                event_hub: Default::default(),
            }),
        })
    }

    /// The events publisher, started on the current runtime the first time (`None` outside
    /// a runtime, or with events off).
    fn publisher(&self) -> Option<&kosh_jobs_core::events::Publisher> {
        let cell = self.inner.events.as_ref()?;
        if let Some(p) = cell.get() {
            return Some(p);
        }
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let weak = Arc::downgrade(&self.inner);
        Some(cell.get_or_init(|| {
            kosh_jobs_core::events::Publisher::start(&runtime, move |batch| {
                let weak = weak.clone();
                async move {
                    // The backend is gone: nobody is left to publish to through it.
                    let Some(inner) = weak.upgrade() else {
                        return Ok(());
                    };
                    let body = serde_json::to_string(&batch)
                        .map_err(|e| BackendError::storage(format!("encoding events: {e}")))?;
                    SqliteBackend { inner }
                        .write(Op::PublishEvents(body))
                        .await
                        .map(drop)
                }
            })
        }))
    }

    /// Closes the database and waits until it is closed, if this is the last clone of the
    /// backend (otherwise only drops this clone). Operations already sent are completed
    /// first.
    ///
    /// Dropping the last clone closes the database too, but in the background; `close` is for
    /// when the file must be closed before going on (to copy or delete it).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), kosh_jobs_sqlite::SqliteError> {
    /// let backend = kosh_jobs_sqlite::SqliteBackend::connect("sqlite::memory:").await?;
    /// backend.close().await;
    /// # Ok(()) }
    /// ```
    pub async fn close(self) {
        if let Ok(inner) = Arc::try_unwrap(self.inner) {
            let Inner {
                writer,
                reader,
                done,
                ..
            } = inner;
            drop(writer);
            drop(reader);
            for d in done {
                // Resolves when the thread drops its end, after closing its connection.
                let _ = d.await;
            }
        }
    }

    /// The database file, absolute, or `None` for an in-memory database.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    async fn call(&self, to: &Sender<Pending>, op: Op) -> Result<Response, BackendError> {
        let (reply, answer) = oneshot::channel();
        let name = if std::ptr::eq(to, &self.inner.writer) {
            "writer"
        } else {
            "reader"
        };
        to.send(Pending { op, reply })
            .map_err(|_| SqliteError::Closed(name))?;
        Ok(answer.await.map_err(|_| SqliteError::Closed(name))??)
    }

    async fn write(&self, op: Op) -> Result<Response, BackendError> {
        self.call(&self.inner.writer, op).await
    }

    async fn read(&self, op: Op) -> Result<Response, BackendError> {
        match &self.inner.reader {
            Some(reader) => self.call(reader, op).await,
            None => self.call(&self.inner.writer, op).await,
        }
    }
}

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBackend")
            .field("path", &self.inner.path)
            .field("clock", &self.inner.clock)
            .finish_non_exhaustive()
    }
}

fn unexpected(r: Response) -> BackendError {
    BackendError::storage(format!("internal error: unexpected answer {r:?}"))
}

macro_rules! expect {
    ($resp:expr, $variant:ident) => {
        match $resp {
            Response::$variant(v) => Ok(v),
            other => Err(unexpected(other)),
        }
    };
}

/// The most jobs one write transaction of [`Backend::apply`] acts on: a retry took about
/// 50 µs of writer time on a loaded 2-core machine, so a step holds other writes up for a
/// few milliseconds, where a page of 1,000 held them for about 50 ms.
const APPLY_STEP: usize = 100;

/// A WAL this long (pages; half its bound) makes [`Backend::apply`] wait before its next step
/// until the checkpointer has started it over: a bulk action that writes faster than the
/// disk takes the copies would otherwise run the WAL into its bound, where the writer (and
/// every reserve behind it) waits for the copy of what is left.
const APPLY_WAL_PAGES: i64 = engine::checkpoint::WalPolicy::DEFAULT.bound_pages / 2;

/// The longest a step of [`Backend::apply`] waits for that.
const APPLY_WAL_WAIT: Duration = Duration::from_millis(250);

/// How often a subscriber reads the events table.
const EVENTS_POLL: Duration = Duration::from_millis(100);

/// Counts the workers waiting in [`Backend::wait_for_work`], so the writer polls for other
/// processes only while someone waits.
struct WaitGuard<'a>(&'a Shared);

impl<'a> WaitGuard<'a> {
    fn new(shared: &'a Shared, writer: &Sender<Pending>) -> Self {
        if shared.waiters.fetch_add(1, Ordering::SeqCst) == 0 {
            // Wake the writer so it starts polling (it may be blocked on an empty channel).
            let _ = writer.send(Pending {
                op: Op::Nop,
                reply: oneshot::channel().0,
            });
        }
        WaitGuard(shared)
    }
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.0.waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Backend for SqliteBackend {
    fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    fn events_enabled(&self) -> bool {
        self.inner.events.is_some()
    }

    fn publish_events(&self, events: Vec<kosh_jobs_core::events::JobEvent>) {
        match self.publisher() {
            Some(p) => p.publish(events),
            None => tracing::debug!("lifecycle events dropped: published outside a tokio runtime"),
        }
    }

    async fn subscribe_events(&self) -> Result<kosh_jobs_core::events::EventFeed, BackendError> {
        if self.inner.events.is_none() {
            return Err(BackendError::InvalidInput(
                "lifecycle events are off for this SQLite backend: add `events=true` to its \
                 url or call `SqliteOptions::builder(path).events(true)`"
                    .into(),
            ));
        }
        // All subscribers of this backend share one reader of the table.
        self.inner
            .event_hub
            .subscribe(|| self.open_event_feed())
            .await
    }

    async fn push(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, BackendError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        expect!(self.write(Op::Push(jobs)).await?, Enqueued)
    }

    async fn reserve(&self, req: &ReserveRequest) -> Result<Vec<LeasedJob>, BackendError> {
        if req.max == 0 || req.queues.is_empty() {
            return Ok(Vec::new());
        }
        expect!(self.write(Op::Reserve(req.clone())).await?, Leased)
    }

    async fn finish(&self, items: Vec<Finish>) -> Result<Vec<FinishResult>, BackendError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        expect!(self.write(Op::Finish(items)).await?, Finished)
    }

    async fn heartbeat(
        &self,
        leases: &[Lease],
        extend: Duration,
    ) -> Result<Vec<Lease>, BackendError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        expect!(
            self.write(Op::Heartbeat(leases.to_vec(), extend)).await?,
            Leases
        )
    }

    async fn progress(
        &self,
        lease: Lease,
        progress: serde_json::Value,
    ) -> Result<bool, BackendError> {
        expect!(
            self.write(Op::Progress(lease, progress.to_string()))
                .await?,
            Bool
        )
    }

    async fn release(&self, leases: &[Lease]) -> Result<(), BackendError> {
        if leases.is_empty() {
            return Ok(());
        }
        self.write(Op::Release(leases.to_vec())).await.map(drop)
    }

    async fn recover_expired(&self) -> Result<u64, BackendError> {
        expect!(self.write(Op::Recover).await?, Count)
    }

    async fn wait_for_work(&self, queues: &[String], until: Timestamp) -> Result<(), BackendError> {
        let clock = &self.inner.clock;
        if clock.now() >= until {
            return Ok(());
        }
        let shared = &*self.inner.shared;
        // Register for wake-ups before looking, so nothing between the look and the wait is
        // missed.
        let notifiers: Vec<Arc<Notify>> = queues.iter().map(|q| shared.notifier(q)).collect();
        let mut wakes: Vec<Pin<Box<tokio::sync::futures::Notified<'_>>>> =
            notifiers.iter().map(|n| Box::pin(n.notified())).collect();
        wakes.push(Box::pin(shared.any.notified()));
        for w in &mut wakes {
            w.as_mut().enable();
        }
        let _guard = WaitGuard::new(shared, &self.inner.writer);

        let info = expect!(self.read(Op::WaitInfo(queues.to_vec())).await?, WaitInfo)?;
        if info.ready {
            return Ok(());
        }
        let now = clock.now();
        if info.next_expiry.is_some_and(|t| t <= now) {
            // A lease ran out and nobody recovered it yet: recover it, then let the caller look.
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
            _ = futures_util::future::select_all(wakes) => {}
            _ = clock.sleep_until(deadline) => {}
        }
        Ok(())
    }

    async fn get(&self, id: JobId) -> Result<Option<JobRecord>, BackendError> {
        expect!(self.read(Op::Get(id)).await?, Record).map(|r| r.map(|b| *b))
    }

    async fn counts(&self) -> Result<Vec<QueueCounts>, BackendError> {
        expect!(self.read(Op::Counts).await?, Counts)
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, BackendError> {
        expect!(self.read(Op::List(query.clone())).await?, Page)
    }

    async fn retry(&self, id: JobId) -> Result<RetryOutcome, BackendError> {
        expect!(self.write(Op::Retry(id)).await?, Retry)
    }

    async fn cancel(&self, id: JobId) -> Result<CancelOutcome, BackendError> {
        expect!(self.write(Op::Cancel(id)).await?, Cancel)
    }

    async fn purge(
        &self,
        states: &[JobState],
        finished_before: Timestamp,
    ) -> Result<u64, BackendError> {
        if let Some(s) = states.iter().find(|s| !s.is_final()) {
            return Err(BackendError::InvalidInput(format!(
                "purge deletes only completed, failed or cancelled jobs, not {s} ones"
            )));
        }
        if states.is_empty() {
            return Ok(0);
        }
        expect!(
            self.write(Op::Purge(states.to_vec(), finished_before))
                .await?,
            Count
        )
    }

    async fn pause(&self, queue: &str) -> Result<(), BackendError> {
        self.write(Op::Pause(queue.to_owned())).await.map(drop)
    }

    async fn resume(&self, queue: &str) -> Result<(), BackendError> {
        self.write(Op::Resume(queue.to_owned())).await.map(drop)
    }

    async fn set_queue_limits(
        &self,
        queue: &str,
        limits: kosh_jobs_core::QueueLimits,
    ) -> Result<(), BackendError> {
        self.write(Op::SetLimits(queue.to_owned(), limits))
            .await
            .map(drop)
    }

    async fn hold_queue(&self, queue: &str, until: Timestamp) -> Result<(), BackendError> {
        self.write(Op::HoldQueue(queue.to_owned(), until))
            .await
            .map(drop)
    }

    async fn queue_flows(&self) -> Result<Vec<kosh_jobs_core::QueueFlow>, BackendError> {
        expect!(self.read(Op::Flows).await?, Flows)
    }

    async fn queue_groups(
        &self,
        query: &kosh_jobs_core::GroupQuery,
    ) -> Result<kosh_jobs_core::GroupPage, BackendError> {
        expect!(self.read(Op::Groups(query.clone())).await?, Groups)
    }

    async fn search(&self, query: &SearchQuery) -> Result<SearchPage, BackendError> {
        query.filter.validate()?;
        expect!(
            self.read(Op::Search(Box::new(query.clone()))).await?,
            Search
        )
        .map(|p| *p)
    }

    async fn search_ids(&self, query: &SearchQuery) -> Result<IdPage, BackendError> {
        query.filter.validate()?;
        expect!(
            self.read(Op::SearchIds(Box::new(query.clone()))).await?,
            Ids
        )
    }

    async fn apply(
        &self,
        action: AdminAction,
        ids: &[JobId],
        only: &[JobState],
    ) -> Result<Vec<ActionResult>, BackendError> {
        if ids.len() > MAX_ACTION_IDS {
            return Err(BackendError::InvalidInput(format!(
                "{action}: at most {MAX_ACTION_IDS} jobs per call, not {}",
                ids.len()
            )));
        }
        // One write transaction per step, each awaited before the next is sent: operations
        // that arrive meanwhile (a worker's reserve) run between two steps, not after all.
        let mut out = Vec::with_capacity(ids.len());
        for (i, step) in ids.chunks(APPLY_STEP).enumerate() {
            if i > 0 {
                self.yield_to_checkpoints().await;
            }
            out.extend(expect!(
                self.write(Op::Apply(action, step.to_vec(), only.to_vec()))
                    .await?,
                Actions
            )?);
        }
        Ok(out)
    }

    async fn throughput(
        &self,
        query: &ThroughputQuery,
    ) -> Result<Vec<ThroughputPoint>, BackendError> {
        expect!(self.read(Op::Throughput(query.clone())).await?, Throughput)
    }

    async fn register_worker(&self, info: &WorkerInfo, ttl: Duration) -> Result<(), BackendError> {
        self.write(Op::RegisterWorker(Box::new(info.clone()), ttl))
            .await
            .map(drop)
    }

    async fn deregister_worker(&self, id: &str) -> Result<(), BackendError> {
        self.write(Op::DeregisterWorker(id.to_owned()))
            .await
            .map(drop)
    }

    async fn workers(&self) -> Result<Vec<LiveWorker>, BackendError> {
        expect!(self.read(Op::Workers).await?, Workers)
    }

    async fn upsert_schedule(
        &self,
        def: &ScheduleDef,
        next_fire: Option<Timestamp>,
    ) -> Result<Upserted, BackendError> {
        expect!(
            self.write(Op::UpsertSchedule(Box::new(def.clone()), next_fire))
                .await?,
            Upserted
        )
    }

    async fn remove_schedule(&self, id: &str) -> Result<bool, BackendError> {
        expect!(self.write(Op::RemoveSchedule(id.to_owned())).await?, Bool)
    }

    async fn pause_schedule(&self, id: &str) -> Result<bool, BackendError> {
        expect!(self.write(Op::PauseSchedule(id.to_owned())).await?, Bool)
    }

    async fn resume_schedule(
        &self,
        id: &str,
        revision: u64,
        next_fire: Option<Timestamp>,
    ) -> Result<Resumed, BackendError> {
        expect!(
            self.write(Op::ResumeSchedule(id.to_owned(), revision, next_fire))
                .await?,
            Resumed
        )
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRecord>, BackendError> {
        expect!(self.read(Op::Schedules).await?, Schedules)
    }

    async fn schedule(&self, id: &str) -> Result<Option<ScheduleRecord>, BackendError> {
        expect!(self.read(Op::Schedule(id.to_owned())).await?, Schedule).map(|s| s.map(|b| *b))
    }

    async fn due_schedules(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<ScheduleRecord>, BackendError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        expect!(self.read(Op::DueSchedules(before, limit)).await?, Schedules)
    }

    async fn fire_schedules(
        &self,
        fires: Vec<ScheduleFire>,
    ) -> Result<Vec<FireOutcome>, BackendError> {
        if fires.is_empty() {
            return Ok(Vec::new());
        }
        expect!(self.write(Op::FireSchedules(fires)).await?, Fired)
    }
}

impl SqliteBackend {
    /// Waits, at most [`APPLY_WAL_WAIT`], while the WAL is past [`APPLY_WAL_PAGES`] and
    /// until the checkpointer starts it over (see [`APPLY_WAL_PAGES`]).
    async fn yield_to_checkpoints(&self) {
        let shared = &self.inner.shared;
        let deadline = tokio::time::Instant::now() + APPLY_WAL_WAIT;
        loop {
            let restarted = shared.wal_restarted.notified();
            // Also seen when the writer starts the WAL over by itself (all of it copied).
            if shared.wal_frames.load(Ordering::SeqCst) < APPLY_WAL_PAGES {
                return;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                tracing::debug!("bulk action: the WAL was not restarted in time; going on");
                return;
            }
            let look = left.min(Duration::from_millis(5));
            if tokio::time::timeout(look, restarted).await.is_ok() {
                return;
            }
        }
    }

    /// A feed of the events table from its newest row on, read every [`EVENTS_POLL`] while the
    /// feed is kept.
    async fn open_event_feed(&self) -> Result<kosh_jobs_core::events::EventFeed, BackendError> {
        use kosh_jobs_core::events::{EventFeed, FeedItem, JobEvent};
        let start = expect!(self.read(Op::ReadEvents(i64::MAX, 0)).await?, Events)?.newest;
        let weak = Arc::downgrade(&self.inner);
        let (tx, feed) = EventFeed::channel();
        tokio::spawn(async move {
            let mut cursor = start;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(EVENTS_POLL) => {}
                    _ = tx.closed() => return,
                }
                let Some(inner) = weak.upgrade() else { return };
                let read = SqliteBackend { inner }
                    .read(Op::ReadEvents(cursor, 256))
                    .await;
                let rows = match read {
                    Ok(Response::Events(rows)) => rows,
                    Ok(other) => {
                        tracing::warn!(answer = ?other, "events: unexpected answer");
                        continue;
                    }
                    Err(e) => {
                        // The rows stay in the table: the next poll reads them.
                        tracing::debug!(error = %e, "events: reading the table failed");
                        continue;
                    }
                };
                let mut items = Vec::new();
                if rows.oldest.is_some_and(|oldest| oldest > cursor + 1) {
                    // Pruned before this subscriber read them.
                    items.push(FeedItem::Missed);
                }
                for (seq, body) in rows.rows {
                    cursor = seq;
                    items.push(match serde_json::from_str::<Vec<JobEvent>>(&body) {
                        Ok(batch) => FeedItem::Events(batch),
                        Err(_) => FeedItem::Missed,
                    });
                }
                for item in items {
                    if tx.send(item).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(feed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn file_backend(dir: &tempfile::TempDir) -> SqliteBackend {
        let opts = SqliteOptions::builder(dir.path().join("jobs.db"))
            .build()
            .unwrap();
        SqliteBackend::connect_with(opts).await.unwrap()
    }

    /// A bulk action's next step waits while the WAL is long, until the checkpointer has
    /// started it over, and at most `APPLY_WAL_WAIT`; with a short WAL it does not wait.
    #[tokio::test(start_paused = true)]
    async fn a_bulk_action_waits_for_a_long_wal_to_be_restarted() {
        let dir = tempfile::tempdir().unwrap();
        let b = file_backend(&dir).await;
        let shared = b.inner.shared.clone();

        let t = tokio::time::Instant::now();
        b.yield_to_checkpoints().await;
        assert_eq!(t.elapsed(), Duration::ZERO, "a short WAL held the step up");

        // Long, and never restarted: the step goes on after the longest wait.
        shared.wal_frames.store(APPLY_WAL_PAGES, Ordering::SeqCst);
        let t = tokio::time::Instant::now();
        b.yield_to_checkpoints().await;
        assert_eq!(t.elapsed(), APPLY_WAL_WAIT);

        // Restarted 20 ms into the wait: the step goes on then.
        let restart = tokio::spawn({
            let shared = shared.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                shared.wal_restarted.notify_waiters();
            }
        });
        let t = tokio::time::Instant::now();
        b.yield_to_checkpoints().await;
        assert_eq!(t.elapsed(), Duration::from_millis(20));
        restart.await.unwrap();

        // Started over by the writer (its next commit reports a short WAL): likewise.
        let commit = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            shared.wal_frames.store(10, Ordering::SeqCst);
        });
        let t = tokio::time::Instant::now();
        b.yield_to_checkpoints().await;
        let waited = t.elapsed();
        assert!(
            (Duration::from_millis(30)..=Duration::from_millis(35)).contains(&waited),
            "waited {waited:?} for a WAL restarted after 30 ms"
        );
        commit.await.unwrap();
    }
}
