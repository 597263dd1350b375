//! The admin contract: what an operator's tools (the `kosh-jobs` CLI, a dashboard) ask a
//! backend, beyond running jobs.
//!
//! - [`Backend::search`](crate::Backend::search): jobs matching a [`JobFilter`] (states, queue,
//!   name, a text search, time ranges), oldest or newest first, a page at a time with a cursor
//!   that stays stable while jobs are added, and a bounded [`Total`].
//! - [`Backend::apply`](crate::Backend::apply): an [`AdminAction`] (retry, cancel, delete,
//!   promote) on up to [`MAX_ACTION_IDS`] jobs by id, each job atomically.
//! - [`Backend::throughput`](crate::Backend::throughput): completed and failed jobs per queue
//!   per minute ([`ThroughputPoint`]), written when jobs finish.
//! - [`Backend::register_worker`](crate::Backend::register_worker) and
//!   [`Backend::workers`](crate::Backend::workers): the live workers and the jobs they hold.
//! - Every [`JobRecord`] carries its attempt history ([`Attempt`]), and every
//!   [`QueueCounts`](crate::QueueCounts) the due time of its longest-waiting ready job.
//!
//! # Bounded work
//!
//! No call holds the store for long. A search examines at most [`SearchQuery::budget`] jobs
//! and returns a cursor to continue from ([`SearchPage::next`]) whether or not it filled its
//! page, with the number of jobs it examined; a bulk action over a filter is a loop of a
//! search page and an [`apply`](crate::Backend::apply) of its ids ([`crate::Admin`] does the
//! loop). A slow search (a rare text on millions of jobs) is many short calls, never one long
//! one.

pub mod json;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend::validate_queue_name;
use crate::clock::Timestamp;
use crate::error::BackendError;
use crate::record::{JobId, JobRecord, JobState};

/// How many jobs one [`apply`](crate::Backend::apply) call takes at most.
pub const MAX_ACTION_IDS: usize = 1000;

/// How many attempts a job's history keeps: the latest ones.
pub const MAX_HISTORY: usize = 25;

/// A [`Total`] is exact up to this many jobs when it has to be counted by a scan.
pub const TOTAL_BOUND: u64 = 10_000;

/// The longest text a [`JobFilter::search`] may have, in bytes.
pub const MAX_SEARCH_LEN: usize = 256;

/// How long throughput per minute is kept by default: 7 days.
pub const THROUGHPUT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// A time range: `from` inclusive, `until` exclusive; an unset end is open.
///
/// ```
/// use kosh_jobs::{Timestamp, admin::TimeRange};
/// let r = TimeRange { from: Some(Timestamp::from_millis(10)), until: Some(Timestamp::from_millis(20)) };
/// assert!(r.contains(Timestamp::from_millis(10)) && !r.contains(Timestamp::from_millis(20)));
/// assert!(TimeRange::default().is_open());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRange {
    /// From this time on, inclusive.
    pub from: Option<Timestamp>,
    /// Before this time, exclusive.
    pub until: Option<Timestamp>,
}

impl TimeRange {
    /// Whether neither end is set (every time matches).
    pub fn is_open(&self) -> bool {
        self.from.is_none() && self.until.is_none()
    }

    /// Whether `t` is in the range.
    pub fn contains(&self, t: Timestamp) -> bool {
        self.from.is_none_or(|f| t >= f) && self.until.is_none_or(|u| t < u)
    }

    /// Whether an optional time is in the range: a missing time matches only an open range.
    pub fn contains_opt(&self, t: Option<Timestamp>) -> bool {
        match t {
            Some(t) => self.contains(t),
            None => self.is_open(),
        }
    }
}

/// Which jobs a search or a bulk action is about. Every set field must match; an empty
/// filter matches every job.
///
/// ```
/// use kosh_jobs::{JobState, admin::JobFilter};
/// let f = JobFilter::new()
///     .state(JobState::Failed)
///     .queue("csv-uploads")
///     .search("database is locked");
/// assert!(f.validate().is_ok());
/// assert!(JobFilter::new().queue("bad queue").validate().is_err());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFilter {
    /// One of these states; empty means every state.
    pub states: Vec<JobState>,
    /// Only this queue.
    pub queue: Option<String>,
    /// Only jobs of this name (exact).
    pub name: Option<String>,
    /// A text that the payload, one of the attempt errors or the unique key contains,
    /// ignoring ASCII case (the same on every backend: `É` and `é` differ, `E` and `e` do
    /// not). 1 to [`MAX_SEARCH_LEN`] bytes.
    pub search: Option<String>,
    /// When the job was enqueued.
    pub created: TimeRange,
    /// When the job reached its final state; a job not final never matches a set range.
    pub finished: TimeRange,
}

impl JobFilter {
    /// The filter matching every job.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a state to the states matched.
    pub fn state(mut self, state: JobState) -> Self {
        if !self.states.contains(&state) {
            self.states.push(state);
        }
        self
    }

    /// Only jobs of this queue.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Only jobs of this name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Only jobs whose payload, errors or unique key contain `text` (ASCII case ignored).
    pub fn search(mut self, text: impl Into<String>) -> Self {
        self.search = Some(text.into());
        self
    }

    /// Only jobs enqueued in this range.
    pub fn created(mut self, range: TimeRange) -> Self {
        self.created = range;
        self
    }

    /// Only jobs that reached a final state in this range.
    pub fn finished(mut self, range: TimeRange) -> Self {
        self.finished = range;
        self
    }

    /// Checks the filter: a valid queue name, a search text of 1 to [`MAX_SEARCH_LEN`]
    /// bytes, no range ending before it starts. Backends call it first and return its error.
    pub fn validate(&self) -> Result<(), BackendError> {
        if let Some(q) = &self.queue {
            validate_queue_name(q).map_err(BackendError::InvalidInput)?;
        }
        if let Some(s) = &self.search {
            if s.is_empty() || s.len() > MAX_SEARCH_LEN {
                return Err(BackendError::InvalidInput(format!(
                    "a search text must be 1 to {MAX_SEARCH_LEN} bytes long, not {}",
                    s.len()
                )));
            }
        }
        for (what, r) in [("created", &self.created), ("finished", &self.finished)] {
            if let (Some(f), Some(u)) = (r.from, r.until) {
                if u < f {
                    return Err(BackendError::InvalidInput(format!(
                        "the {what} range ends ({u}) before it starts ({f})"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Whether the filter is only states and a queue: backends answer those from their
    /// indexes and counters, without looking at each job.
    pub fn is_indexed(&self) -> bool {
        self.name.is_none()
            && self.search.is_none()
            && self.created.is_open()
            && self.finished.is_open()
    }

    /// Whether the state is one the filter takes.
    pub fn takes_state(&self, state: JobState) -> bool {
        self.states.is_empty() || self.states.contains(&state)
    }

    /// The states the filter takes, in lifecycle order (all six when none is set).
    pub fn state_list(&self) -> Vec<JobState> {
        JobState::ALL
            .into_iter()
            .filter(|s| self.takes_state(*s))
            .collect()
    }

    /// Whether a job matches: the reference semantics every backend implements.
    pub fn matches(&self, job: &JobRecord) -> bool {
        self.takes_state(job.state)
            && self.queue.as_ref().is_none_or(|q| *q == job.queue)
            && self.name.as_ref().is_none_or(|n| *n == job.name)
            && self.created.contains(job.created_at)
            && self.finished.contains_opt(job.finished_at)
            && self.search.as_ref().is_none_or(|s| {
                contains_ignore_ascii_case(&job.payload, s)
                    || job
                        .errors
                        .iter()
                        .any(|e| contains_ignore_ascii_case(&e.error, s))
                    || job
                        .unique_key
                        .as_ref()
                        .is_some_and(|k| contains_ignore_ascii_case(k, s))
            })
    }
}

/// Whether `haystack` contains `needle`, ignoring ASCII case.
///
/// ```
/// use kosh_jobs::admin::contains_ignore_ascii_case;
/// assert!(contains_ignore_ascii_case("Database is LOCKED", "is locked"));
/// assert!(!contains_ignore_ascii_case("Émile", "émile"));
/// ```
pub fn contains_ignore_ascii_case(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    if n.is_empty() {
        return true;
    }
    h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

/// Which end a search starts from. Jobs are ordered by id, which is enqueue order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// Lowest id (oldest) first.
    #[default]
    OldestFirst,
    /// Highest id (newest) first.
    NewestFirst,
}

/// One call of [`Backend::search`](crate::Backend::search).
///
/// ```
/// use kosh_jobs::{JobState, admin::{JobFilter, Order, SearchQuery}};
/// let q = SearchQuery::new(JobFilter::new().state(JobState::Failed))
///     .order(Order::NewestFirst)
///     .limit(20);
/// assert_eq!((q.limit, q.with_total), (20, true));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchQuery {
    /// Which jobs.
    pub filter: JobFilter,
    /// Oldest or newest first.
    pub order: Order,
    /// Continue strictly past this id, in `order` (the [`SearchPage::next`] of the previous
    /// call). Jobs enqueued later have higher ids, so newest-first pages never shift.
    pub after: Option<JobId>,
    /// At most this many jobs in the page, 1..=1000 (clamped).
    pub limit: usize,
    /// At most this many jobs examined by the call (clamped to 100..=100,000); an indexed
    /// filter ([`JobFilter::is_indexed`]) examines only the jobs it returns.
    pub budget: usize,
    /// Whether to count the matching jobs ([`SearchPage::total`]); ask on the first page.
    pub with_total: bool,
}

impl SearchQuery {
    /// The default examine budget of one call.
    pub const DEFAULT_BUDGET: usize = 10_000;

    /// The first page (50 jobs, oldest first, with a total) of the jobs matching `filter`.
    pub fn new(filter: JobFilter) -> Self {
        SearchQuery {
            filter,
            order: Order::OldestFirst,
            after: None,
            limit: 50,
            budget: Self::DEFAULT_BUDGET,
            with_total: true,
        }
    }

    /// Oldest or newest first.
    pub fn order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }

    /// Continue past this id.
    pub fn after(mut self, id: JobId) -> Self {
        self.after = Some(id);
        self
    }

    /// Page size.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Examine budget of one call.
    pub fn budget(mut self, budget: usize) -> Self {
        self.budget = budget;
        self
    }

    /// Whether to count the matching jobs.
    pub fn with_total(mut self, with_total: bool) -> Self {
        self.with_total = with_total;
        self
    }

    /// The page size clamped to 1..=1000.
    pub fn effective_limit(&self) -> usize {
        self.limit.clamp(1, 1000)
    }

    /// The examine budget clamped to 100..=100,000.
    pub fn effective_budget(&self) -> usize {
        self.budget.clamp(100, 100_000)
    }

    /// Whether `id` comes after the cursor in this query's order.
    pub fn is_past_cursor(&self, id: JobId) -> bool {
        match (self.after, self.order) {
            (None, _) => true,
            (Some(a), Order::OldestFirst) => id > a,
            (Some(a), Order::NewestFirst) => id < a,
        }
    }
}

/// How many jobs match a filter: at least `count`, exactly `count` when `exact`.
///
/// ```
/// use kosh_jobs::admin::Total;
/// assert_eq!(Total { count: 1234, exact: true }.to_string(), "1,234");
/// assert_eq!(Total { count: 10_000, exact: false }.to_string(), "10,000+");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Total {
    /// Jobs counted.
    pub count: u64,
    /// `false` when counting stopped at a bound: more jobs may match.
    pub exact: bool,
}

impl fmt::Display for Total {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.count.to_string();
        let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        if !self.exact {
            out.push('+');
        }
        f.write_str(&out)
    }
}

/// One page of [`Backend::search`](crate::Backend::search), in the query's order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchPage {
    /// The matching jobs of this page.
    pub jobs: Vec<JobRecord>,
    /// Pass as [`SearchQuery::after`] to continue: the last id this call covered. `None`
    /// when the search reached the end. A page may be short, even empty, and still have a
    /// `next`: the call ran out of its examine budget.
    pub next: Option<JobId>,
    /// How many jobs the call looked at.
    pub examined: u64,
    /// The number of jobs matching the filter (the whole filter, not only past the cursor),
    /// when asked for.
    pub total: Option<Total>,
}

/// One page of [`Backend::search_ids`](crate::Backend::search_ids): a search page with the
/// ids of its jobs instead of their records, for bulk actions that need nothing more.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdPage {
    /// The ids of the matching jobs of this page, in the query's order.
    pub ids: Vec<JobId>,
    /// As [`SearchPage::next`].
    pub next: Option<JobId>,
    /// As [`SearchPage::examined`].
    pub examined: u64,
    /// As [`SearchPage::total`].
    pub total: Option<Total>,
}

impl From<SearchPage> for IdPage {
    fn from(page: SearchPage) -> Self {
        IdPage {
            ids: page.jobs.iter().map(|j| j.id).collect(),
            next: page.next,
            examined: page.examined,
            total: page.total,
        }
    }
}

/// An operator's action on a job, for [`Backend::apply`](crate::Backend::apply).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminAction {
    /// A failed or cancelled job back to `ready`, as [`Backend::retry`](crate::Backend::retry).
    Retry,
    /// A scheduled, ready or running job to `cancelled`, as
    /// [`Backend::cancel`](crate::Backend::cancel).
    Cancel,
    /// Removes a completed, failed or cancelled job for good.
    Delete,
    /// A scheduled job to `ready` now (`run_at` = now).
    Promote,
}

impl AdminAction {
    /// Every action.
    pub const ALL: [AdminAction; 4] = [
        AdminAction::Retry,
        AdminAction::Cancel,
        AdminAction::Delete,
        AdminAction::Promote,
    ];

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminAction::Retry => "retry",
            AdminAction::Cancel => "cancel",
            AdminAction::Delete => "delete",
            AdminAction::Promote => "promote",
        }
    }

    /// Whether the action applies to a job in `state`.
    pub fn applies_to(self, state: JobState) -> bool {
        match self {
            AdminAction::Retry => matches!(state, JobState::Failed | JobState::Cancelled),
            AdminAction::Cancel => !state.is_final(),
            AdminAction::Delete => state.is_final(),
            AdminAction::Promote => state == JobState::Scheduled,
        }
    }
}

impl fmt::Display for AdminAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`Backend::apply`](crate::Backend::apply) did to one job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionResult {
    /// Done.
    Applied,
    /// No such job.
    NotFound,
    /// The action does not apply to a job in this state, or the state is not one of the
    /// states the call was limited to; nothing changed.
    Skipped(JobState),
    /// Retry only: another live job holds the job's unique key.
    UniqueConflict(JobId),
}

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The handler succeeded.
    Completed,
    /// The handler failed; the job was scheduled to run again.
    RetryScheduled,
    /// The handler failed and the job went to `failed`.
    Failed,
    /// The attempt ran past the job's timeout (retried or failed, as its attempts allowed).
    TimedOut,
    /// The handler panicked (retried or failed, as its attempts allowed).
    Panicked,
    /// The worker stopped renewing the lease (it died or lost the store); the job was
    /// recovered.
    LeaseExpired,
    /// The worker gave the job back at shutdown; the attempt does not count.
    Released,
    /// An operator cancelled the job while it ran.
    Cancelled,
    /// The handler asked to run later ([`JobError::snooze`](crate::JobError::snooze)); the
    /// attempt does not count.
    Snoozed,
}

impl AttemptOutcome {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Completed => "completed",
            AttemptOutcome::RetryScheduled => "retry_scheduled",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::TimedOut => "timed_out",
            AttemptOutcome::Panicked => "panicked",
            AttemptOutcome::LeaseExpired => "lease_expired",
            AttemptOutcome::Released => "released",
            AttemptOutcome::Cancelled => "cancelled",
            AttemptOutcome::Snoozed => "snoozed",
        }
    }

    /// Every outcome.
    pub const ALL: [AttemptOutcome; 9] = [
        AttemptOutcome::Completed,
        AttemptOutcome::RetryScheduled,
        AttemptOutcome::Failed,
        AttemptOutcome::TimedOut,
        AttemptOutcome::Panicked,
        AttemptOutcome::LeaseExpired,
        AttemptOutcome::Released,
        AttemptOutcome::Cancelled,
        AttemptOutcome::Snoozed,
    ];
}

impl fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AttemptOutcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AttemptOutcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| format!("unknown attempt outcome `{s}`"))
    }
}

/// One attempt in a job's history ([`JobRecord::history`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// The attempt's number (a released attempt shares its number with the next one, since
    /// it did not count).
    pub attempt: u32,
    /// When a worker leased the job.
    pub started_at: Timestamp,
    /// The worker that ran it ([`crate::ReserveRequest::worker`]).
    pub worker: String,
    /// When it ended; `None` while it runs.
    pub ended_at: Option<Timestamp>,
    /// How it ended; `None` while it runs.
    pub outcome: Option<AttemptOutcome>,
    /// Its error, for the failed outcomes.
    pub error: Option<String>,
}

/// Which throughput to read, for [`Backend::throughput`](crate::Backend::throughput).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThroughputQuery {
    /// Only this queue; every queue when `None`.
    pub queue: Option<String>,
    /// Minutes starting at or after this time (rounded down to its minute).
    pub since: Timestamp,
}

/// Jobs of one queue that ended in one minute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThroughputPoint {
    /// The queue.
    pub queue: String,
    /// The start of the minute (a multiple of 60,000 ms since the epoch).
    pub minute: Timestamp,
    /// Jobs that completed in that minute.
    pub completed: u64,
    /// Jobs that went to `failed` in that minute (retried attempts are not counted).
    pub failed: u64,
}

/// The start of the minute holding `t`.
///
/// ```
/// use kosh_jobs::{Timestamp, admin::minute_of};
/// assert_eq!(minute_of(Timestamp::from_millis(125_000)), Timestamp::from_millis(120_000));
/// ```
pub fn minute_of(t: Timestamp) -> Timestamp {
    Timestamp::from_millis(t.as_millis().div_euclid(60_000) * 60_000)
}

/// What a running worker tells the store about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Unique per worker ([`crate::ReserveRequest::worker`] of its reserves).
    pub id: String,
    /// The host name.
    pub host: String,
    /// The process id.
    pub pid: u32,
    /// The kosh-jobs version it runs.
    pub version: String,
    /// The queues it takes jobs from.
    pub queues: Vec<String>,
    /// How many jobs it runs at once.
    pub concurrency: u32,
    /// When it started.
    pub started_at: Timestamp,
}

/// A worker that registered and has not expired, from
/// [`Backend::workers`](crate::Backend::workers).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveWorker {
    /// What it registered.
    pub info: WorkerInfo,
    /// When it last registered or refreshed.
    pub last_seen: Timestamp,
    /// The running jobs whose current attempt it holds, by id.
    pub jobs: Vec<JobId>,
}

/// How often a worker refreshes its registration, unless its backend paces it otherwise
/// ([`Pacing::register_every`](crate::backend::Pacing::register_every)).
pub const WORKER_REFRESH: Duration = Duration::from_secs(60);

/// How long a registration lasts without a refresh, with the default pacing: a worker that
/// died drops out of [`Backend::workers`](crate::Backend::workers) at most this long after its
/// last refresh ([`Pacing::registration_ttl`](crate::backend::Pacing::registration_ttl)).
pub const WORKER_TTL: Duration = Duration::from_secs(150);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_print_with_separators() {
        for (n, exact, text) in [
            (0, true, "0"),
            (999, true, "999"),
            (1000, true, "1,000"),
            (1_234_567, true, "1,234,567"),
            (10_000, false, "10,000+"),
        ] {
            assert_eq!(Total { count: n, exact }.to_string(), text);
        }
    }

    #[test]
    fn search_ignores_ascii_case_only() {
        assert!(contains_ignore_ascii_case("abc", ""));
        assert!(contains_ignore_ascii_case("xxDataBASExx", "database"));
        assert!(!contains_ignore_ascii_case("ÉCOLE", "école"));
        assert!(!contains_ignore_ascii_case("ab", "abc"));
    }

    #[test]
    fn actions_apply_to_their_states() {
        use JobState::*;
        let table = [
            (AdminAction::Retry, vec![Failed, Cancelled]),
            (AdminAction::Cancel, vec![Scheduled, Ready, Running]),
            (AdminAction::Delete, vec![Completed, Failed, Cancelled]),
            (AdminAction::Promote, vec![Scheduled]),
        ];
        for (action, states) in table {
            for s in JobState::ALL {
                assert_eq!(action.applies_to(s), states.contains(&s), "{action} {s}");
            }
        }
    }

    #[test]
    fn filter_validation() {
        assert!(JobFilter::new().search("").validate().is_err());
        assert!(JobFilter::new().search("x".repeat(257)).validate().is_err());
        let backwards = TimeRange {
            from: Some(Timestamp::from_millis(5)),
            until: Some(Timestamp::from_millis(4)),
        };
        assert!(JobFilter::new().created(backwards).validate().is_err());
        assert!(JobFilter::new().validate().is_ok());
    }
}
