//! Plain data exchanged between the client, the worker and a backend.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;

/// A job's id: unique within one backend, never reused.
///
/// ```
/// use kosh_jobs::JobId;
/// let id: JobId = "42".parse().unwrap();
/// assert_eq!(id, JobId::new(42));
/// assert_eq!(id.to_string(), "42");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(u64);

impl JobId {
    /// An id from its number.
    pub const fn new(n: u64) -> Self {
        JobId(n)
    }
    /// The id's number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for JobId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(JobId)
    }
}

/// Where a job is in its life. See `docs/job-lifecycle.md`.
///
/// ```
/// use kosh_jobs::JobState;
/// assert!(JobState::Completed.is_final());
/// assert_eq!("failed".parse::<JobState>().unwrap(), JobState::Failed);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its `run_at` (a delayed job, or a retry after backoff).
    Scheduled,
    /// Due, waiting for a worker.
    Ready,
    /// Leased by a worker.
    Running,
    /// Finished successfully.
    Completed,
    /// Out of attempts, or failed permanently: the dead set. Kept until purged; can be retried.
    Failed,
    /// Cancelled before it finished.
    Cancelled,
}

impl JobState {
    /// Every state, in lifecycle order.
    pub const ALL: [JobState; 6] = [
        JobState::Scheduled,
        JobState::Ready,
        JobState::Running,
        JobState::Completed,
        JobState::Failed,
        JobState::Cancelled,
    ];

    /// Completed, failed or cancelled: nothing more happens unless someone retries it.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed | JobState::Cancelled
        )
    }

    /// The lowercase name used in storage and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Scheduled => "scheduled",
            JobState::Ready => "ready",
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an unknown state name.
///
/// ```
/// use kosh_jobs::{JobState, UnknownState};
/// assert_eq!("done".parse::<JobState>(), Err(UnknownState("done".into())));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job state `{0}`")]
pub struct UnknownState(pub String);

impl FromStr for JobState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// A job to store: what [`crate::Backend::push`] receives.
///
/// Built by [`crate::Client`] from a typed job; backends and tests may build it directly.
///
/// ```
/// use kosh_jobs::{NewJob, Timestamp};
/// let job = NewJob::new("send_email", "mail", r#"{"to":"a@b.c"}"#, Timestamp::from_millis(0));
/// assert_eq!(job.max_attempts, 3);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewJob {
    /// Stable job name, the key to its handler.
    pub name: String,
    /// Queue it goes to.
    pub queue: String,
    /// Payload as JSON text.
    pub payload: String,
    /// Higher runs first; equal priorities run in enqueue order.
    pub priority: i32,
    /// Not run before this time. At or before "now" means ready at once.
    pub run_at: Timestamp,
    /// How many attempts at most, at least 1.
    pub max_attempts: u32,
    /// While a job with this key is scheduled, ready or running, pushing another returns it.
    pub unique_key: Option<String>,
    /// The group it belongs to, for the per-group limits and round-robin fairness of its
    /// queue (see [`crate::limits`]); `None`: no group.
    pub group: Option<String>,
    /// The trace context of the code that enqueued it, as a W3C `traceparent`
    /// (`00-<trace id>-<span id>-<flags>`), so that its attempts join that trace. Filled in by
    /// [`crate::Client`] with the `opentelemetry` feature; stored and handed back by every
    /// backend as opaque text (see [`crate::backend::validate_trace`]); `None`: no trace.
    pub trace: Option<String>,
}

impl NewJob {
    /// A job with default options: priority 0, three attempts, no unique key.
    pub fn new(
        name: impl Into<String>,
        queue: impl Into<String>,
        payload: impl Into<String>,
        run_at: Timestamp,
    ) -> Self {
        NewJob {
            name: name.into(),
            queue: queue.into(),
            payload: payload.into(),
            priority: 0,
            run_at,
            max_attempts: 3,
            unique_key: None,
            group: None,
            trace: None,
        }
    }
}

/// What [`crate::Backend::push`] did with one job.
///
/// ```
/// use kosh_jobs::{memory::MemoryBackend, Backend, NewJob};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let b = MemoryBackend::new();
/// let mut job = NewJob::new("mail", "default", "{}", b.clock().now());
/// job.unique_key = Some("welcome-7".into());
/// let out = b.push(vec![job.clone(), job]).await.unwrap();
/// assert!(!out[0].existing && out[1].existing && out[0].id == out[1].id);
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enqueued {
    /// The job's id: the new one, or the live job with the same unique key.
    pub id: JobId,
    /// `true` when a live job already held the unique key and no job was added.
    pub existing: bool,
}

/// Proof of a lease: the job and the token it was leased with.
///
/// Every transition out of `running` presents it; a backend refuses a token that is no longer
/// the job's current one (the lease expired and the job was recovered, or it was cancelled).
///
/// ```
/// use kosh_jobs::{JobId, Lease};
/// let lease = Lease { id: JobId::new(7), token: 42 };
/// assert_ne!(lease, Lease { token: 43, ..lease });
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Lease {
    /// The leased job.
    pub id: JobId,
    /// Unique per lease: no two leases of the backend (of this job or another) share a token.
    pub token: u64,
}

/// A job handed to a worker by [`crate::Backend::reserve`].
///
/// ```
/// use kosh_jobs::{memory::MemoryBackend, Backend, Finish, FinishResult, NewJob, Outcome, ReserveRequest};
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let b = MemoryBackend::new();
/// b.push(vec![NewJob::new("mail", "default", "{}", b.clock().now())]).await.unwrap();
/// let req = ReserveRequest {
///     queues: vec!["default".into()],
///     worker: "doc".into(),
///     max: 10,
///     lease: Duration::from_secs(30),
/// };
/// let leased = b.reserve(&req).await.unwrap();
/// assert_eq!((leased.len(), leased[0].attempt), (1, 1));
/// let done = Finish { lease: leased[0].lease, outcome: Outcome::Completed { result: None } };
/// assert_eq!(b.finish(vec![done.clone()]).await.unwrap(), vec![FinishResult::Applied]);
/// // The lease is spent: a second finish is refused.
/// assert_eq!(b.finish(vec![done]).await.unwrap(), vec![FinishResult::LeaseLost]);
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct LeasedJob {
    /// The lease to present when finishing the job.
    pub lease: Lease,
    /// Stable job name.
    pub name: String,
    /// Its queue.
    pub queue: String,
    /// Payload as JSON text.
    pub payload: String,
    /// Its priority.
    pub priority: i32,
    /// This attempt's number, starting at 1.
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// When it was enqueued.
    pub created_at: Timestamp,
    /// When the lease ends unless renewed.
    pub lease_expires_at: Timestamp,
    /// The last progress reported, e.g. a checkpoint from an earlier attempt.
    pub progress: Option<serde_json::Value>,
    /// The trace context it was enqueued with ([`NewJob::trace`]): the worker makes each
    /// attempt's span a child of it.
    pub trace: Option<String>,
}

impl LeasedJob {
    /// The job's id.
    pub fn id(&self) -> JobId {
        self.lease.id
    }
}

/// How one leased job ends its attempt.
///
/// ```
/// use kosh_jobs::{memory::MemoryBackend, Backend, Finish, FinishResult, NewJob, Outcome, ReserveRequest};
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let b = MemoryBackend::new();
/// b.push(vec![NewJob::new("mail", "default", "{}", b.clock().now())]).await.unwrap();
/// let req = ReserveRequest {
///     queues: vec!["default".into()],
///     worker: "doc".into(),
///     max: 10,
///     lease: Duration::from_secs(30),
/// };
/// let leased = b.reserve(&req).await.unwrap();
/// assert_eq!((leased.len(), leased[0].attempt), (1, 1));
/// let done = Finish { lease: leased[0].lease, outcome: Outcome::Completed { result: None } };
/// assert_eq!(b.finish(vec![done.clone()]).await.unwrap(), vec![FinishResult::Applied]);
/// // The lease is spent: a second finish is refused.
/// assert_eq!(b.finish(vec![done]).await.unwrap(), vec![FinishResult::LeaseLost]);
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Success, with an optional result to store.
    Completed {
        /// Stored as the job's result.
        result: Option<serde_json::Value>,
    },
    /// The attempt failed; run again at `retry_at` (state `scheduled`, or `ready` if due).
    Retry {
        /// This attempt's error.
        error: String,
        /// When the next attempt may run.
        retry_at: Timestamp,
        /// How it failed, for the attempt history.
        kind: FailureKind,
    },
    /// The attempt failed and the job goes to `failed`.
    Failed {
        /// This attempt's error.
        error: String,
        /// How it failed, for the attempt history.
        kind: FailureKind,
    },
    /// The handler asked to run later ("not now, try again at `until`", e.g. an API that
    /// answered 429): the job goes back to `scheduled` (or `ready` if `until` is not after
    /// now) without counting the attempt. No error is stored, no backoff applies, progress is
    /// kept, and the attempt history records it as
    /// [`Snoozed`](crate::admin::AttemptOutcome::Snoozed). However often a job snoozes, it
    /// never fails for it.
    Snooze {
        /// When the job may run again.
        until: Timestamp,
    },
}

impl Outcome {
    /// A failed attempt to run again at `retry_at`, failed by an error.
    pub fn retry(error: impl Into<String>, retry_at: Timestamp) -> Self {
        Outcome::Retry {
            error: error.into(),
            retry_at,
            kind: FailureKind::Error,
        }
    }

    /// A failed attempt that fails the job, failed by an error.
    pub fn failed(error: impl Into<String>) -> Self {
        Outcome::Failed {
            error: error.into(),
            kind: FailureKind::Error,
        }
    }

    /// How the attempt ends in the job's history.
    pub fn attempt_outcome(&self) -> crate::admin::AttemptOutcome {
        use crate::admin::AttemptOutcome as A;
        match self {
            Outcome::Completed { .. } => A::Completed,
            Outcome::Snooze { .. } => A::Snoozed,
            Outcome::Retry { kind, .. } | Outcome::Failed { kind, .. } => match kind {
                FailureKind::TimedOut => A::TimedOut,
                FailureKind::Panicked => A::Panicked,
                FailureKind::Error if matches!(self, Outcome::Retry { .. }) => A::RetryScheduled,
                FailureKind::Error => A::Failed,
            },
        }
    }
}

/// How a failed attempt failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The handler returned an error (or the payload did not decode).
    #[default]
    Error,
    /// The attempt ran past the job's timeout.
    TimedOut,
    /// The handler panicked.
    Panicked,
}

/// A finished attempt, as sent to [`crate::Backend::finish`].
///
/// ```
/// use kosh_jobs::{memory::MemoryBackend, Backend, Finish, FinishResult, NewJob, Outcome, ReserveRequest};
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let b = MemoryBackend::new();
/// b.push(vec![NewJob::new("mail", "default", "{}", b.clock().now())]).await.unwrap();
/// let req = ReserveRequest {
///     queues: vec!["default".into()],
///     worker: "doc".into(),
///     max: 10,
///     lease: Duration::from_secs(30),
/// };
/// let leased = b.reserve(&req).await.unwrap();
/// assert_eq!((leased.len(), leased[0].attempt), (1, 1));
/// let done = Finish { lease: leased[0].lease, outcome: Outcome::Completed { result: None } };
/// assert_eq!(b.finish(vec![done.clone()]).await.unwrap(), vec![FinishResult::Applied]);
/// // The lease is spent: a second finish is refused.
/// assert_eq!(b.finish(vec![done]).await.unwrap(), vec![FinishResult::LeaseLost]);
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Finish {
    /// The lease the job was run under.
    pub lease: Lease,
    /// What happened.
    pub outcome: Outcome,
}

/// What [`crate::Backend::finish`] did with one [`Finish`].
///
/// ```
/// use kosh_jobs::{memory::MemoryBackend, Backend, Finish, FinishResult, NewJob, Outcome, ReserveRequest};
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let b = MemoryBackend::new();
/// b.push(vec![NewJob::new("mail", "default", "{}", b.clock().now())]).await.unwrap();
/// let req = ReserveRequest {
///     queues: vec!["default".into()],
///     worker: "doc".into(),
///     max: 10,
///     lease: Duration::from_secs(30),
/// };
/// let leased = b.reserve(&req).await.unwrap();
/// assert_eq!((leased.len(), leased[0].attempt), (1, 1));
/// let done = Finish { lease: leased[0].lease, outcome: Outcome::Completed { result: None } };
/// assert_eq!(b.finish(vec![done.clone()]).await.unwrap(), vec![FinishResult::Applied]);
/// // The lease is spent: a second finish is refused.
/// assert_eq!(b.finish(vec![done]).await.unwrap(), vec![FinishResult::LeaseLost]);
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishResult {
    /// The transition was applied.
    Applied,
    /// The lease token was no longer current (expired and recovered, cancelled, or unknown):
    /// nothing was changed.
    LeaseLost,
}

/// An attempt's error, kept in the job's history.
///
/// ```
/// use kosh_jobs::{memory::MemoryBackend, Backend, JobState, ListQuery, NewJob};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let b = MemoryBackend::new();
/// let id = b.push(vec![NewJob::new("mail", "default", "{}", b.clock().now())]).await.unwrap()[0].id;
/// let rec = b.get(id).await.unwrap().expect("stored");
/// assert_eq!((rec.state, rec.attempts, rec.errors.len()), (JobState::Ready, 0, 0));
/// let counts = b.counts().await.unwrap();
/// assert_eq!((counts[0].queue.as_str(), counts[0].ready), ("default", 1));
/// let page = b.list(&ListQuery::new(JobState::Ready).limit(10)).await.unwrap();
/// assert_eq!((page.jobs.len(), page.next), (1, None));
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptError {
    /// Attempt number, from 1.
    pub attempt: u32,
    /// The error message.
    pub error: String,
    /// When it was recorded.
    pub at: Timestamp,
}

/// Everything a backend knows about a job: what [`crate::Backend::get`] returns.
///
/// ```
/// use kosh_jobs::{memory::MemoryBackend, Backend, JobState, ListQuery, NewJob};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let b = MemoryBackend::new();
/// let id = b.push(vec![NewJob::new("mail", "default", "{}", b.clock().now())]).await.unwrap()[0].id;
/// let rec = b.get(id).await.unwrap().expect("stored");
/// assert_eq!((rec.state, rec.attempts, rec.errors.len()), (JobState::Ready, 0, 0));
/// let counts = b.counts().await.unwrap();
/// assert_eq!((counts[0].queue.as_str(), counts[0].ready), ("default", 1));
/// let page = b.list(&ListQuery::new(JobState::Ready).limit(10)).await.unwrap();
/// assert_eq!((page.jobs.len(), page.next), (1, None));
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Its id.
    pub id: JobId,
    /// Stable job name.
    pub name: String,
    /// Its queue.
    pub queue: String,
    /// Payload as JSON text.
    pub payload: String,
    /// Where it is in its life.
    pub state: JobState,
    /// Its priority.
    pub priority: i32,
    /// Not run before this time.
    pub run_at: Timestamp,
    /// Attempts started so far (a released attempt is not counted).
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// When it was enqueued.
    pub created_at: Timestamp,
    /// When its latest attempt started.
    pub started_at: Option<Timestamp>,
    /// When it reached a final state.
    pub finished_at: Option<Timestamp>,
    /// Each failed attempt's error, oldest first.
    pub errors: Vec<AttemptError>,
    /// The last progress reported.
    pub progress: Option<serde_json::Value>,
    /// The handler's result, once completed.
    pub result: Option<serde_json::Value>,
    /// Its unique key, if any.
    pub unique_key: Option<String>,
    /// Its group, if any (see [`crate::limits`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The trace context it was enqueued with, if any ([`NewJob::trace`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// While running: when the lease ends unless renewed.
    pub lease_expires_at: Option<Timestamp>,
    /// The latest attempts (at most [`crate::admin::MAX_HISTORY`]), oldest first: who ran
    /// each, when, and how it ended. A running job's last entry has no end yet.
    pub history: Vec<crate::admin::Attempt>,
}

impl JobRecord {
    /// The latest attempt's error, if any.
    pub fn last_error(&self) -> Option<&str> {
        self.errors.last().map(|e| e.error.as_str())
    }
}

/// Job counts of one queue by state.
///
/// ```
/// use kosh_jobs::{memory::MemoryBackend, Backend, JobState, ListQuery, NewJob};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let b = MemoryBackend::new();
/// let id = b.push(vec![NewJob::new("mail", "default", "{}", b.clock().now())]).await.unwrap()[0].id;
/// let rec = b.get(id).await.unwrap().expect("stored");
/// assert_eq!((rec.state, rec.attempts, rec.errors.len()), (JobState::Ready, 0, 0));
/// let counts = b.counts().await.unwrap();
/// assert_eq!((counts[0].queue.as_str(), counts[0].ready), ("default", 1));
/// let page = b.list(&ListQuery::new(JobState::Ready).limit(10)).await.unwrap();
/// assert_eq!((page.jobs.len(), page.next), (1, None));
/// # }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCounts {
    /// The queue.
    pub queue: String,
    /// Waiting for `run_at`.
    pub scheduled: u64,
    /// Due, waiting for a worker.
    pub ready: u64,
    /// Leased.
    pub running: u64,
    /// Completed (and not yet purged).
    pub completed: u64,
    /// Failed (the dead set).
    pub failed: u64,
    /// Cancelled.
    pub cancelled: u64,
    /// Whether the queue is paused.
    pub paused: bool,
    /// When the ready job that has waited longest became due (its `run_at`); `None` when no
    /// job is ready. The queue's latency is now minus this. Backends read it from the head
    /// of each priority level of the ready index, so a retried job behind newer ones of its
    /// priority is not seen.
    pub oldest_ready_at: Option<Timestamp>,
}

impl QueueCounts {
    /// An all-zero count for `queue`.
    pub fn empty(queue: impl Into<String>) -> Self {
        QueueCounts {
            queue: queue.into(),
            ..Default::default()
        }
    }

    /// The count of one state.
    pub fn get(&self, state: JobState) -> u64 {
        match state {
            JobState::Scheduled => self.scheduled,
            JobState::Ready => self.ready,
            JobState::Running => self.running,
            JobState::Completed => self.completed,
            JobState::Failed => self.failed,
            JobState::Cancelled => self.cancelled,
        }
    }

    /// A mutable reference to the count of one state.
    pub fn get_mut(&mut self, state: JobState) -> &mut u64 {
        match state {
            JobState::Scheduled => &mut self.scheduled,
            JobState::Ready => &mut self.ready,
            JobState::Running => &mut self.running,
            JobState::Completed => &mut self.completed,
            JobState::Failed => &mut self.failed,
            JobState::Cancelled => &mut self.cancelled,
        }
    }

    /// Jobs not yet final: scheduled + ready + running.
    pub fn live(&self) -> u64 {
        self.scheduled + self.ready + self.running
    }
}

/// Which jobs [`crate::Backend::list`] returns: one state, optionally one queue, by id.
///
/// ```
/// use kosh_jobs::{JobState, ListQuery};
/// let q = ListQuery::new(JobState::Failed).queue("csv-uploads").limit(50);
/// assert_eq!(q.limit, 50);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListQuery {
    /// The state to list.
    pub state: JobState,
    /// Only this queue, if set.
    pub queue: Option<String>,
    /// Only ids greater than this (the `next` of the previous page).
    pub after: Option<JobId>,
    /// Page size, 1..=1000.
    pub limit: usize,
}

impl ListQuery {
    /// The first page (100 jobs) of one state, all queues.
    pub fn new(state: JobState) -> Self {
        ListQuery {
            state,
            queue: None,
            after: None,
            limit: 100,
        }
    }
    /// Only this queue.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }
    /// Continue after this id.
    pub fn after(mut self, id: JobId) -> Self {
        self.after = Some(id);
        self
    }
    /// Page size (clamped to 1..=1000 by backends).
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }
    /// The limit clamped to what backends accept.
    pub fn effective_limit(&self) -> usize {
        self.limit.clamp(1, 1000)
    }
}

/// One page of [`crate::Backend::list`], ordered by id ascending.
///
/// ```
/// use kosh_jobs::{memory::MemoryBackend, Backend, JobState, ListQuery, NewJob};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let b = MemoryBackend::new();
/// let id = b.push(vec![NewJob::new("mail", "default", "{}", b.clock().now())]).await.unwrap()[0].id;
/// let rec = b.get(id).await.unwrap().expect("stored");
/// assert_eq!((rec.state, rec.attempts, rec.errors.len()), (JobState::Ready, 0, 0));
/// let counts = b.counts().await.unwrap();
/// assert_eq!((counts[0].queue.as_str(), counts[0].ready), ("default", 1));
/// let page = b.list(&ListQuery::new(JobState::Ready).limit(10)).await.unwrap();
/// assert_eq!((page.jobs.len(), page.next), (1, None));
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Page {
    /// The jobs of this page.
    pub jobs: Vec<JobRecord>,
    /// Pass as [`ListQuery::after`] for the next page; `None` on the last page.
    pub next: Option<JobId>,
}

/// What [`crate::Backend::retry`] did.
///
/// ```
/// use kosh_jobs::{memory::MemoryBackend, Backend, CancelOutcome, JobId, JobState, NewJob, RetryOutcome};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let b = MemoryBackend::new();
/// let id = b.push(vec![NewJob::new("mail", "default", "{}", b.clock().now())]).await.unwrap()[0].id;
/// assert_eq!(b.retry(id).await.unwrap(), RetryOutcome::NotRetryable(JobState::Ready));
/// assert_eq!(b.cancel(id).await.unwrap(), CancelOutcome::Cancelled);
/// assert_eq!(b.cancel(id).await.unwrap(), CancelOutcome::AlreadyFinal(JobState::Cancelled));
/// assert_eq!(b.retry(id).await.unwrap(), RetryOutcome::Retried);
/// assert_eq!(b.cancel(JobId::new(999)).await.unwrap(), CancelOutcome::NotFound);
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RetryOutcome {
    /// Back to `ready` with a fresh count of attempts; its error history is kept.
    Retried,
    /// No such job.
    NotFound,
    /// Only failed or cancelled jobs can be retried; the job is in this state.
    NotRetryable(JobState),
    /// Another live job holds its unique key; retrying would duplicate it.
    UniqueConflict(JobId),
}

/// What [`crate::Backend::cancel`] did.
///
/// ```
/// use kosh_jobs::{memory::MemoryBackend, Backend, CancelOutcome, JobId, JobState, NewJob, RetryOutcome};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let b = MemoryBackend::new();
/// let id = b.push(vec![NewJob::new("mail", "default", "{}", b.clock().now())]).await.unwrap()[0].id;
/// assert_eq!(b.retry(id).await.unwrap(), RetryOutcome::NotRetryable(JobState::Ready));
/// assert_eq!(b.cancel(id).await.unwrap(), CancelOutcome::Cancelled);
/// assert_eq!(b.cancel(id).await.unwrap(), CancelOutcome::AlreadyFinal(JobState::Cancelled));
/// assert_eq!(b.retry(id).await.unwrap(), RetryOutcome::Retried);
/// assert_eq!(b.cancel(JobId::new(999)).await.unwrap(), CancelOutcome::NotFound);
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CancelOutcome {
    /// Cancelled. If it was running, its lease is void and its worker's result is refused.
    Cancelled,
    /// No such job.
    NotFound,
    /// Already completed, failed or cancelled.
    AlreadyFinal(JobState),
}

/// How [`crate::Backend::reserve`] leases jobs.
///
/// ```
/// use kosh_jobs::{memory::MemoryBackend, Backend, Finish, FinishResult, NewJob, Outcome, ReserveRequest};
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let b = MemoryBackend::new();
/// b.push(vec![NewJob::new("mail", "default", "{}", b.clock().now())]).await.unwrap();
/// let req = ReserveRequest {
///     queues: vec!["default".into()],
///     worker: "doc".into(),
///     max: 10,
///     lease: Duration::from_secs(30),
/// };
/// let leased = b.reserve(&req).await.unwrap();
/// assert_eq!((leased.len(), leased[0].attempt), (1, 1));
/// let done = Finish { lease: leased[0].lease, outcome: Outcome::Completed { result: None } };
/// assert_eq!(b.finish(vec![done.clone()]).await.unwrap(), vec![FinishResult::Applied]);
/// // The lease is spent: a second finish is refused.
/// assert_eq!(b.finish(vec![done]).await.unwrap(), vec![FinishResult::LeaseLost]);
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReserveRequest {
    /// Queues to take from. Order across queues is not guaranteed; within a queue, higher
    /// priority first, then enqueue order.
    pub queues: Vec<String>,
    /// Who is leasing (for diagnostics).
    pub worker: String,
    /// At most this many jobs.
    pub max: usize,
    /// Lease length.
    pub lease: Duration,
}
