//! The storage contract every backend implements.

use std::time::Duration;

use async_trait::async_trait;

use crate::admin::{
    ActionResult, AdminAction, IdPage, LiveWorker, SearchPage, SearchQuery, ThroughputPoint,
    ThroughputQuery, WorkerInfo,
};
use crate::any::AnyBackend;
use crate::clock::{Clock, Timestamp};
use crate::error::BackendError;
use crate::limits::{GroupPage, GroupQuery, QueueFlow, QueueLimits};
use crate::record::{
    CancelOutcome, Enqueued, Finish, FinishResult, JobId, JobRecord, JobState, Lease, LeasedJob,
    ListQuery, NewJob, Page, QueueCounts, ReserveRequest, RetryOutcome,
};
use crate::schedule::{FireOutcome, Resumed, ScheduleDef, ScheduleFire, ScheduleRecord, Upserted};

/// How many times a job's attempt is given back because its lease expired before the store
/// saw the attempt start (see the lifecycle on [`Backend`]). Past this, an unstarted expiry
/// counts: a job whose handler kills its worker process at once must still end `failed`.
pub const MAX_UNSTARTED_EXPIRIES: u32 = 3;

/// How soon after a handler starts the worker tells the store (by a first lease renewal) that
/// the attempt started, at the latest. A handler that finishes sooner needs no renewal: its
/// outcome tells. A worker that dies within this time has its attempt given back, and the job
/// runs again, as if the attempt had never started.
pub const START_ACK_DELAY: Duration = Duration::from_millis(250);

/// How a worker paces the work it does in the background on a backend, from
/// [`Backend::pacing`]: how long it waits for work at most, and how often it recovers expired
/// leases, refreshes its registration and reads the schedules.
///
/// What suits a store differs: a local SQLite file costs nothing to look at, while a hosted
/// Redis may bill every request (kosh-jobs-redis waits ten minutes at a time, since its
/// wake-up signal and its reserve cover what the shorter timers are for). The settings of
/// [`WorkerBuilder`](crate::WorkerBuilder) (`idle_wait`, `recover_interval`,
/// `schedule_refresh`) override these.
///
/// ```
/// use kosh_jobs::backend::Pacing;
/// use std::time::Duration;
///
/// let p = Pacing::default()
///     .idle_wait(Duration::from_secs(600))
///     .register_every(Duration::from_secs(300));
/// assert_eq!(p.registration_ttl(), Duration::from_secs(750));
/// assert_eq!(p.recover_every, None); // once a lease period
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Pacing {
    /// The longest single wait for work (default 30 s).
    pub idle_wait: Duration,
    /// How often a worker runs [`Backend::recover_expired`]; `None` (the default): once per
    /// lease period.
    pub recover_every: Option<Duration>,
    /// How often a worker refreshes its registration (default
    /// [`WORKER_REFRESH`](crate::admin::WORKER_REFRESH)); a registration lasts 2.5 times
    /// this ([`Pacing::registration_ttl`]).
    pub register_every: Duration,
    /// How often a worker reads the schedules due soon (default one minute): the longest a
    /// schedule created or changed by another process goes unseen.
    pub schedule_refresh: Duration,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing {
            idle_wait: Duration::from_secs(30),
            recover_every: None,
            register_every: crate::admin::WORKER_REFRESH,
            schedule_refresh: crate::schedule::runner::REFRESH,
        }
    }
}

impl Pacing {
    /// With this longest wait for work.
    pub fn idle_wait(mut self, d: Duration) -> Self {
        self.idle_wait = d;
        self
    }

    /// Recovering expired leases this often.
    pub fn recover_every(mut self, d: Duration) -> Self {
        self.recover_every = Some(d);
        self
    }

    /// Refreshing the worker's registration this often.
    pub fn register_every(mut self, d: Duration) -> Self {
        self.register_every = d;
        self
    }

    /// Reading the schedules this often.
    pub fn schedule_refresh(mut self, d: Duration) -> Self {
        self.schedule_refresh = d;
        self
    }

    /// How long a registration lasts without a refresh: 2.5 refresh periods, so one missed
    /// refresh does not drop a live worker from the list.
    pub fn registration_ttl(&self) -> Duration {
        self.register_every * 5 / 2
    }
}

/// Where jobs live: memory, SQLite, Redis, or your own.
///
/// The trait is object-safe: a program can hold an [`AnyBackend`] (an `Arc<dyn Backend>`
/// inside) and choose the backend from configuration at run time. Every operation is atomic; operations on several jobs
/// (push, finish, heartbeat, release) take batches so a backend can do them in one round trip
/// or one transaction.
///
/// # Time
///
/// A backend reads time from its [`Clock`] only (returned by [`Backend::clock`]), never from
/// the system directly, so the conformance suite can move time forward by hand.
///
/// # Lifecycle
///
/// ```text
/// push ──► scheduled ──(run_at reached)──► ready ──reserve──► running ──finish(Completed)──► completed
///            ▲                               ▲                 │  │
///            └──────finish(Retry, later)─────┼─────────────────┘  ├─finish(Failed)──► failed
///                                            ├──release───────────┤
///                                            └──lease expired─────┘ (past max attempts: failed)
/// cancel: scheduled | ready | running ──► cancelled        retry: failed | cancelled ──► ready
/// ```
///
/// - `reserve` counts the attempt (`attempts += 1`) and hands out a fresh lease token.
/// - Every transition out of `running` (`finish`, `heartbeat`, `progress`, `release`) presents
///   the lease; a token that is not the job's current one changes nothing.
/// - A `heartbeat` also marks the attempt *started*. The worker renews only leases whose
///   handler runs, and sends a first renewal shortly after each start
///   ([`START_ACK_DELAY`]), so a started attempt is known to the store.
/// - An expired lease is recovered by [`Backend::recover_expired`] (and may be recovered by
///   `reserve` too): the attempt stays counted, the error `lease expired` is recorded for that
///   attempt, and the job goes to `ready`, or to `failed` if it has no attempts left.
/// - Except an expired lease whose attempt was never marked started (its worker died or
///   stopped between the lease and the handler's start, or within moments of the start): that
///   attempt is given back. The job goes to `ready` with `attempts` one lower, nothing is
///   recorded in its errors or history, and its count of unstarted expiries goes up by one. A
///   job is given back at most [`MAX_UNSTARTED_EXPIRIES`] times; later unstarted expiries
///   count like any other, so a job that kills its worker at once still ends `failed`.
/// - `release` gives a job back without counting the attempt (graceful shutdown).
/// - A lease has expired when the clock reads `lease_expires_at` or later. Expiry alone does
///   not void it: a lease stays current (accepted by `finish`, `heartbeat`, `progress`,
///   `release`) until the job is recovered, finished, released or cancelled.
///
/// # Blocking handlers
///
/// Operations must make progress when called from a tokio runtime other than the one the
/// backend was created on, and must not need the caller's runtime to have free worker threads:
/// the worker renews leases from its own thread so that handlers blocking their threads do not
/// starve renewal. Backends doing I/O keep their connections on their own threads or tasks.
///
/// ```
/// use kosh_jobs::{memory::MemoryBackend, AnyBackend, Backend};
///
/// let backend: AnyBackend = AnyBackend::new(MemoryBackend::new()); // chosen at run time
/// let dynamic: &dyn Backend = &*backend;
/// # let _ = dynamic;
/// ```
#[async_trait]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a kosh-jobs backend",
    note = "pass a backend itself (they are cheap to clone) or an `AnyBackend`; an \
            `Arc<dyn Backend>` converts with `AnyBackend::from(arc)`"
)]
pub trait Backend: Send + Sync + 'static {
    /// The clock every time-based decision of this backend reads.
    fn clock(&self) -> &Clock;

    /// This backend as an [`AnyBackend`]. Keep the default: [`AnyBackend`] overrides it so
    /// that it is never wrapped twice.
    fn into_any_backend(self) -> AnyBackend
    where
        Self: Sized,
    {
        crate::any::wrap(self)
    }

    /// Stores jobs, in order; returns one [`Enqueued`] per job, in the same order.
    ///
    /// A job whose `run_at` is after now is `scheduled`, otherwise `ready`. A job with a unique
    /// key held by a live job (scheduled, ready or running), including one earlier in the same
    /// batch, is not stored: its entry is the live job's id with `existing: true`. The batch is
    /// atomic: on error, nothing was stored. A job with an invalid queue name (see
    /// [`validate_queue_name`]), an invalid job name (see [`validate_job_name`]), an invalid
    /// group key (see [`validate_group_key`]) or `max_attempts` of 0 makes the whole batch an
    /// `InvalidInput` error.
    async fn push(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, BackendError>;

    /// Leases up to `req.max` jobs from `req.queues`, skipping paused queues.
    ///
    /// First promotes scheduled jobs that are due. Within a queue, the groups that have ready
    /// jobs take turns, one job each, round-robin (the jobs without a group take their turn
    /// together; see [`crate::limits`]); within a group, and among the jobs without one, jobs
    /// come by priority (higher first), then by enqueue order (lower id first). A queue whose
    /// ready jobs carry no group is simply in priority order. Each leased job is `running`,
    /// its attempt counted, with a new token and a lease ending at now + `req.lease`. No job is
    /// ever leased twice at once, however many reservers race.
    async fn reserve(&self, req: &ReserveRequest) -> Result<Vec<LeasedJob>, BackendError>;

    /// Ends attempts: completes, schedules a retry, or fails each job, if its lease is current.
    ///
    /// Returns one [`FinishResult`] per item, in order. A `Retry` or `Failed` outcome appends
    /// its error to the job's error history for the leased attempt. A `Retry` whose `retry_at`
    /// is not after now makes the job `ready` at once. Backends apply the outcome they are
    /// given, even a `Retry` of a job with no attempt left: the retry decision is the
    /// worker's ([`crate::retry::decide`]), in one place.
    async fn finish(&self, items: Vec<Finish>) -> Result<Vec<FinishResult>, BackendError>;

    /// Extends the given leases to now + `extend` and marks their attempts started; returns
    /// the leases that are no longer current (recovered elsewhere, cancelled, finished or
    /// unknown), which were not extended.
    async fn heartbeat(
        &self,
        leases: &[Lease],
        extend: Duration,
    ) -> Result<Vec<Lease>, BackendError>;

    /// Stores a running job's progress (a small JSON value, also a checkpoint for a later
    /// attempt). Returns `false`, changing nothing, if the lease is not current.
    async fn progress(
        &self,
        lease: Lease,
        progress: serde_json::Value,
    ) -> Result<bool, BackendError>;

    /// Gives leased jobs back: `ready` again at once, attempt not counted. Stale leases are
    /// ignored.
    async fn release(&self, leases: &[Lease]) -> Result<(), BackendError>;

    /// Recovers every job whose lease has expired (see the lifecycle above); returns how many.
    /// Safe to run from many processes at once: each expired lease is recovered once.
    async fn recover_expired(&self) -> Result<u64, BackendError>;

    /// Waits until a job in one of `queues` may be ready, or until the clock reads `until`,
    /// whichever comes first. Returns at once if such a job is ready now.
    ///
    /// A push to one of the queues, a due scheduled job, a resumed queue or a recovered job
    /// should end the wait promptly. Returning early is allowed (the caller reserves and waits
    /// again); a hot poll loop is not.
    async fn wait_for_work(&self, queues: &[String], until: Timestamp) -> Result<(), BackendError>;

    /// One job, in full.
    async fn get(&self, id: JobId) -> Result<Option<JobRecord>, BackendError>;

    /// Counts per queue and state, for every queue that has jobs or is paused, sorted by name.
    async fn counts(&self) -> Result<Vec<QueueCounts>, BackendError>;

    /// One page of the jobs in a state, by id ascending; `next` is `None` when no job follows
    /// the page (also when the last page is exactly full).
    async fn list(&self, query: &ListQuery) -> Result<Page, BackendError>;

    /// Puts a failed or cancelled job back to `ready` (`run_at` = now) with its attempts reset
    /// to zero; its error history and progress are kept.
    async fn retry(&self, id: JobId) -> Result<RetryOutcome, BackendError>;

    /// Cancels a scheduled, ready or running job.
    async fn cancel(&self, id: JobId) -> Result<CancelOutcome, BackendError>;

    /// Deletes jobs in the given final states that finished before `finished_before`; returns
    /// how many. Non-final states in `states` are an `InvalidInput` error.
    async fn purge(
        &self,
        states: &[JobState],
        finished_before: Timestamp,
    ) -> Result<u64, BackendError>;

    /// Stops `reserve` from leasing jobs of `queue` (running jobs go on; pushes still land).
    async fn pause(&self, queue: &str) -> Result<(), BackendError>;

    /// Undoes [`Backend::pause`] and wakes waiting workers.
    async fn resume(&self, queue: &str) -> Result<(), BackendError>;

    // ---- Flow control (see [`crate::limits`]) ----

    /// Sets the limits of `queue`, replacing its previous ones ([`QueueLimits::NONE`] removes
    /// them), effective for the next `reserve` of any worker; wakes waiting workers, since a
    /// raised limit may let jobs start. Refuses invalid limits
    /// ([`QueueLimits::validate`]) with [`BackendError::InvalidInput`].
    ///
    /// `reserve` then leases no more jobs of the queue than the limits allow: at most
    /// `concurrency` running at once, at most `rate.max` starts in any window of `rate.per`
    /// (the times of the last `rate.max` starts are kept in the store), and for each group at
    /// most `group_concurrency` running and `group_rate.max` starts in any window of
    /// `group_rate.per` (a group at either limit is skipped, the others go on). Jobs held
    /// back stay ready, with no attempt counted. `wait_for_work` treats them as not ready:
    /// it waits until the queue's or a group's rate window has room, or until a running job
    /// of the queue leaves `running` (finish, release, cancel, recovery), which wakes it.
    /// Setting limits without `group_rate` forgets the groups' start logs.
    async fn set_queue_limits(&self, queue: &str, limits: QueueLimits) -> Result<(), BackendError>;

    /// Holds `queue` back until `until`: `reserve` leases none of its jobs before then, and
    /// `wait_for_work` sleeps until then (jobs stay ready, no attempt counted). A hold only
    /// ever lengthens: a hold ending before the current one changes nothing. An invalid
    /// queue name is `InvalidInput`. Kept with the queue's limits, so every worker of every
    /// process obeys it.
    async fn hold_queue(&self, queue: &str, until: Timestamp) -> Result<(), BackendError>;

    /// Every queue with limits or a hold in force, sorted by name: its limits, its running
    /// jobs, its starts in the current rate window, when the rate limit lets the next job
    /// start if it holds jobs back now, the end of its hold, and its groups running and at
    /// their limit.
    async fn queue_flows(&self) -> Result<Vec<QueueFlow>, BackendError>;

    /// One page of `query.queue`'s groups, sorted by key (bytes), past `query.after`: every
    /// group with a ready or running job, or with a start still inside the group rate
    /// window, with its ready jobs (exact up to [`crate::admin::TOTAL_BOUND`]), its running
    /// jobs, its starts in the window, whether it is at its limit, and when its window opens
    /// if that holds it back. At most [`GroupQuery::effective_limit`] groups; `next` is the
    /// last group returned, `None` once none is left after it. A queue without groups (or
    /// unknown) has an empty page; an invalid queue name is `InvalidInput`.
    async fn queue_groups(&self, query: &GroupQuery) -> Result<GroupPage, BackendError>;

    // ---- The admin contract (see [`crate::admin`]) ----

    /// One page of the jobs matching `query.filter`, in `query.order` (by id), past
    /// `query.after`.
    ///
    /// Examines at most [`SearchQuery::effective_budget`] jobs and returns at most
    /// [`SearchQuery::effective_limit`]; `next` is the last id covered, `None` once nothing
    /// past it can match. Continuing from `next` never skips a job that matched throughout
    /// and never returns a job twice. An indexed filter ([`crate::admin::JobFilter::is_indexed`])
    /// walks the state indexes: its cost is the page, not the jobs in other states.
    ///
    /// With `with_total`, `total` counts every job matching the filter (not only past the
    /// cursor): exactly for an indexed filter, otherwise by a scan of at most the budget that
    /// stops at [`crate::admin::TOTAL_BOUND`] matches (then `exact` is `false`). An invalid
    /// filter ([`crate::admin::JobFilter::validate`]) is `InvalidInput`.
    async fn search(&self, query: &SearchQuery) -> Result<SearchPage, BackendError>;

    /// [`Backend::search`] returning the ids of the page's jobs, not their records: the
    /// same jobs, cursor, examined count and total as `search` with the same query would
    /// give in the same state of the store. Bulk actions by filter use it, as they need
    /// only the ids. The default calls `search`; a backend that can skip reading the
    /// records overrides it.
    async fn search_ids(&self, query: &SearchQuery) -> Result<IdPage, BackendError> {
        Ok(self.search(query).await?.into())
    }

    /// Applies `action` to each job of `ids` (at most [`crate::admin::MAX_ACTION_IDS`], else
    /// `InvalidInput`), each atomically; returns one [`ActionResult`] per id, in order.
    ///
    /// A job whose state the action does not apply to
    /// ([`AdminAction::applies_to`]), or, when `only` is not empty, whose state is not in
    /// `only`, is `Skipped` with its state and left as it was. Retry and cancel behave as
    /// [`Backend::retry`] and [`Backend::cancel`]; delete removes a final job and everything
    /// stored about it; promote makes a scheduled job ready now (`run_at` = now) and wakes
    /// waiting workers.
    ///
    /// A call is not one transaction: a backend may act on the ids in several steps so that
    /// other operations run between them (SQLite and Redis take 100 at a time). If a step
    /// fails (the connection is lost), the call returns the error and the ids of earlier
    /// steps stay acted on; calling again with the same ids is safe, as those are then
    /// `Skipped` in their new state.
    async fn apply(
        &self,
        action: AdminAction,
        ids: &[JobId],
        only: &[JobState],
    ) -> Result<Vec<ActionResult>, BackendError>;

    /// Completed and failed jobs per queue per minute, from `query.since`, ordered by queue
    /// then minute; minutes with neither are left out.
    ///
    /// Written by `finish` and by lease recovery when a job reaches `completed` or `failed`,
    /// not derived from the jobs kept, so purging jobs does not change it. Kept for
    /// [`crate::admin::THROUGHPUT_RETENTION`] (7 days) by default; older minutes are dropped
    /// as new ones are written, so it stays bounded.
    async fn throughput(
        &self,
        query: &ThroughputQuery,
    ) -> Result<Vec<ThroughputPoint>, BackendError>;

    /// Registers a running worker, or refreshes its registration: it is live until the
    /// clock reads now + `ttl`, unless refreshed. The worker runtime calls it at start and
    /// every [`Pacing::register_every`] ([`crate::admin::WORKER_REFRESH`] by default).
    async fn register_worker(&self, info: &WorkerInfo, ttl: Duration) -> Result<(), BackendError>;

    /// Removes a worker's registration (at graceful shutdown). Unknown ids are ignored.
    async fn deregister_worker(&self, id: &str) -> Result<(), BackendError>;

    /// The live workers (registered, not expired), by id, each with the running jobs whose
    /// current attempt it holds. Expired registrations are never returned.
    async fn workers(&self) -> Result<Vec<LiveWorker>, BackendError>;

    // Schedules (see [`crate::schedule`]): the definition and cursor of each periodic job.

    /// Creates or replaces the schedule `def.id`, atomically. The same definition as stored
    /// (compared as [`ScheduleDef::to_json`] text) changes nothing and keeps the cursor; a
    /// different one replaces it, sets the cursor to `next_fire` and bumps the revision, so a
    /// fire planned from the old definition is refused. Paused state, runs, last fire and
    /// last job are kept. An invalid definition is an `InvalidInput` error.
    async fn upsert_schedule(
        &self,
        def: &ScheduleDef,
        next_fire: Option<Timestamp>,
    ) -> Result<Upserted, BackendError>;

    /// Removes a schedule and its pending tick; `false` if there was none. Jobs it already
    /// enqueued stay.
    async fn remove_schedule(&self, id: &str) -> Result<bool, BackendError>;

    /// Pauses a schedule: it fires nothing until resumed; `false` if there is none.
    async fn pause_schedule(&self, id: &str) -> Result<bool, BackendError>;

    /// Resumes a paused schedule from the cursor `next_fire` (computed by the caller from
    /// now, so ticks due while it was paused do not fire), if its revision is still
    /// `revision`. A schedule that is not paused is left as it is.
    async fn resume_schedule(
        &self,
        id: &str,
        revision: u64,
        next_fire: Option<Timestamp>,
    ) -> Result<Resumed, BackendError>;

    /// Every schedule, by id.
    async fn schedules(&self) -> Result<Vec<ScheduleRecord>, BackendError>;

    /// One schedule.
    async fn schedule(&self, id: &str) -> Result<Option<ScheduleRecord>, BackendError>;

    /// Up to `limit` unpaused schedules whose cursor is at or before `before`, earliest first
    /// (ties by id).
    async fn due_schedules(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<ScheduleRecord>, BackendError>;

    /// Fires schedules: for each, atomically, if the schedule exists, is not paused, is at
    /// `revision` and its cursor is still `cursor`: moves the cursor to `next_fire`, and
    /// pushes the ticks' jobs (as [`push`](Self::push) does, unique keys included) unless
    /// `skip_if_live` is set and its last job is scheduled, ready or running. Runs grow by
    /// the ticks pushed; last fire and last job become the last tick's. Otherwise nothing
    /// changes and the outcome is [`FireOutcome::Stale`]. One outcome per fire, in order;
    /// invalid jobs make the whole call an `InvalidInput` error.
    async fn fire_schedules(
        &self,
        fires: Vec<ScheduleFire>,
    ) -> Result<Vec<FireOutcome>, BackendError>;

    /// How a worker paces its background work on this backend: see [`Pacing`]. The default
    /// suits a store that costs little to ask (memory, a local file, a database on the
    /// network); a backend that bills requests waits longer.
    fn pacing(&self) -> Pacing {
        Pacing::default()
    }

    /// Whether this backend carries lifecycle [events](crate::events) now. When `false`
    /// (the default), clients build no events and [`Backend::publish_events`] is not called.
    fn events_enabled(&self) -> bool {
        false
    }

    /// Sends lifecycle events to the subscribers of every process, in order, without waiting
    /// for them to arrive: best effort, never failing the caller (a backend logs what it
    /// could not send). The default drops them.
    fn publish_events(&self, events: Vec<crate::events::JobEvent>) {
        drop(events);
    }

    /// A feed of every event published from now on (the [`crate::Client`] filters it). The
    /// default refuses: this backend carries no events.
    async fn subscribe_events(&self) -> Result<crate::events::EventFeed, BackendError> {
        Err(BackendError::InvalidInput(
            "this backend does not carry lifecycle events".into(),
        ))
    }
}

/// Checks a queue name: 1 to 128 characters of ASCII letters, digits, `-`, `_`, `.` and `:`,
/// not starting with `:`, so it is safe in keys, file names and URLs.
///
/// ```
/// use kosh_jobs::backend::validate_queue_name;
/// assert!(validate_queue_name("csv-uploads").is_ok());
/// assert!(validate_queue_name("csv uploads").is_err());
/// ```
pub fn validate_queue_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err(format!(
            "queue name `{name}` must be 1 to 128 characters long"
        ));
    }
    if name.starts_with(':') {
        return Err(format!("queue name `{name}` must not start with `:`"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        return Err(format!(
            "queue name `{name}` contains `{c}`; use ASCII letters, digits, `-`, `_`, `.` or `:`"
        ));
    }
    Ok(())
}

/// Checks a group key: 1 to 128 bytes of UTF-8 with no control characters. Every backend
/// refuses a job with an invalid group key.
///
/// ```
/// use kosh_jobs::backend::validate_group_key;
/// assert!(validate_group_key("user-42").is_ok());
/// assert!(validate_group_key("").is_err());
/// ```
pub fn validate_group_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > 128 {
        return Err(format!(
            "group key {key:?} must be 1 to 128 bytes long, not {}",
            key.len()
        ));
    }
    if let Some(c) = key.chars().find(|c| c.is_control()) {
        return Err(format!(
            "group key {key:?} contains the control character {c:?}"
        ));
    }
    Ok(())
}

/// Checks a job name: 1 to 128 bytes of UTF-8, with no control characters (so it prints
/// safely in logs and error messages). Every backend refuses a job with an invalid name.
///
/// The `#[job]` attribute is stricter: a name it accepts (the queue name's characters) is
/// always valid here.
///
/// ```
/// use kosh_jobs::backend::validate_job_name;
/// assert!(validate_job_name("import_csv").is_ok());
/// assert!(validate_job_name("Import CSV · v2").is_ok());
/// assert!(validate_job_name("").is_err());
/// assert!(validate_job_name("import\ncsv").is_err());
/// ```
pub fn validate_job_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err(format!(
            "job name {name:?} must be 1 to 128 bytes long, not {}",
            name.len()
        ));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(format!(
            "job name {name:?} contains the control character {c:?}"
        ));
    }
    Ok(())
}

/// The longest trace context a job may carry, in bytes: a `traceparent` takes 55.
pub const MAX_TRACE_LEN: usize = 512;

/// Checks a job's trace context ([`crate::NewJob::trace`]): 1 to [`MAX_TRACE_LEN`] bytes of
/// printable ASCII (a W3C `traceparent` is 55 of them). Backends store it without reading it
/// and refuse a job whose trace context fails this; the worker ignores one it cannot parse.
///
/// ```
/// use kosh_jobs::backend::validate_trace;
/// assert!(validate_trace("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_ok());
/// assert!(validate_trace("").is_err());
/// assert!(validate_trace("00-\n").is_err());
/// ```
pub fn validate_trace(trace: &str) -> Result<(), String> {
    if trace.is_empty() || trace.len() > MAX_TRACE_LEN {
        return Err(format!(
            "trace context must be 1 to {MAX_TRACE_LEN} bytes long, not {}",
            trace.len()
        ));
    }
    if let Some(c) = trace.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(format!(
            "trace context {trace:?} contains {c:?}; only printable ASCII is allowed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_name_rules() {
        let longest = "é".repeat(64);
        for ok in [
            "a",
            "import_csv",
            "Import CSV · v2",
            "日本語",
            longest.as_str(),
        ] {
            assert_eq!(validate_job_name(ok), Ok(()), "{ok:?}");
        }
        let too_long = format!("{longest}x");
        for bad in [
            "",
            too_long.as_str(),
            "a\nb",
            "tab\t",
            "nul\0",
            "del\u{7f}",
            "c1\u{85}",
        ] {
            assert!(validate_job_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            validate_job_name(""),
            Err("job name \"\" must be 1 to 128 bytes long, not 0".to_owned())
        );
        assert_eq!(
            validate_job_name("a\nb"),
            Err("job name \"a\\nb\" contains the control character '\\n'".to_owned())
        );
    }
}
