//! Errors: of backends, of the client, and of handlers.

use std::fmt;
use std::time::Duration;

use crate::record::JobId;

/// A boxed error, the common currency of handler and backend errors.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Shows an error followed by its sources, `error: source: source`, on one line.
///
/// Most errors' `Display` shows only the top of the chain ("storage error"), and the cause
/// ("READONLY You can't write against a read only replica") is in a source: log and report
/// errors with this so the cause is never dropped.
///
/// ```
/// use kosh_jobs::{BackendError, ErrorChain};
/// let e = kosh_jobs::Error::from(BackendError::unavailable(std::io::Error::other("connection refused")));
/// assert!(ErrorChain(&e).to_string().ends_with(": connection refused"));
/// ```
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'a));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cur = self.0.source();
        while let Some(s) = cur {
            write!(f, ": {s}")?;
            cur = s.source();
        }
        Ok(())
    }
}

impl fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// An error of a storage backend, as the [`Backend`](crate::Backend) trait returns it.
///
/// Backends map their own errors (`kosh-jobs-sqlite`, `kosh-jobs-redis`) into these kinds so
/// that the client and the worker can react without knowing the backend. Applications see
/// them as the matching variants of [`Error`], which this converts into one to one.
///
/// ```
/// use kosh_jobs::BackendError;
/// let e = BackendError::unavailable(std::io::Error::other("connection refused"));
/// assert!(e.is_unavailable());
/// assert_eq!(e.to_string(), "backend unavailable");
/// let denied = BackendError::permission_denied(std::io::Error::other("WRONGPASS"));
/// assert!(!denied.is_unavailable());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The store cannot be reached now (connection lost, server restarting, database locked
    /// past the busy timeout). Retrying later may succeed.
    #[error("backend unavailable")]
    Unavailable(#[source] BoxError),
    /// The caller passed something the backend cannot store or accept.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The store refused who we are or what we asked: a wrong password, an ACL that forbids a
    /// command, a read-only file. Retrying does not help until the configuration changes.
    #[error("permission denied")]
    PermissionDenied(#[source] BoxError),
    /// The stored data is not what this version understands (corrupt, foreign, or newer).
    #[error("incompatible storage: {0}")]
    Incompatible(String),
    /// Any other storage error.
    #[error("storage error")]
    Storage(#[source] BoxError),
}

impl BackendError {
    /// An `Unavailable` error from any error.
    pub fn unavailable(e: impl Into<BoxError>) -> Self {
        BackendError::Unavailable(e.into())
    }
    /// A `Storage` error from any error.
    pub fn storage(e: impl Into<BoxError>) -> Self {
        BackendError::Storage(e.into())
    }
    /// A `PermissionDenied` error from any error.
    pub fn permission_denied(e: impl Into<BoxError>) -> Self {
        BackendError::PermissionDenied(e.into())
    }
    /// Whether retrying later may succeed: only for outages, never for refused credentials
    /// or invalid input.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, BackendError::Unavailable(_))
    }
}

/// The one error type of kosh-jobs: every API (client, worker, `connect`, the backends'
/// constructors) returns it or converts into it with `?`, and the same mistake gives the same
/// variant whichever API or backend it came through.
///
/// - caller mistakes (queue and job names, attempts, payloads, options, URLs):
///   [`Error::InvalidInput`];
/// - outages worth retrying: [`Error::Unavailable`] (the only kind where
///   [`Error::is_unavailable`] is true);
/// - refused credentials or permissions: [`Error::PermissionDenied`];
/// - a job's own ending, from [`Client::wait`](crate::Client::wait): [`Error::JobFailed`],
///   [`Error::JobCancelled`], [`Error::WaitTimeout`].
///
/// ```
/// use kosh_jobs::{memory::MemoryBackend, Client, Error, JobId};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let client = Client::new(MemoryBackend::new());
/// match client.status(JobId::new(404)).await {
///     Err(Error::NotFound(id)) => assert_eq!(id, JobId::new(404)),
///     other => panic!("{other:?}"),
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Something the caller passed does not make sense: a queue or job name, a number of
    /// attempts, a payload that does not serialize, a worker's configuration, a URL.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The store cannot be reached now. Retrying later may succeed.
    #[error("backend unavailable")]
    Unavailable(#[source] BoxError),
    /// The store refused the credentials or the operation (wrong password, ACL, read-only
    /// file). Not an outage: retrying does not help until the configuration changes.
    #[error("permission denied")]
    PermissionDenied(#[source] BoxError),
    /// The stored data is not what this version understands (corrupt, foreign, or newer).
    #[error("incompatible storage: {0}")]
    Incompatible(String),
    /// Any other storage error.
    #[error("storage error")]
    Storage(#[source] BoxError),
    /// No job with this id.
    #[error("job {0} not found")]
    NotFound(JobId),
    /// This attempt's lease is gone: the job was recovered by another worker or cancelled.
    #[error("lease of job {0} lost")]
    LeaseLost(JobId),
    /// The attempt was cancelled (timeout, lost lease, or shutdown past the grace period).
    #[error("attempt cancelled")]
    Cancelled,
    /// A spawned worker's task ended without returning (it panicked or was aborted).
    #[error("worker task ended abnormally: {0}")]
    WorkerAborted(String),
    /// The awaited job failed for good; `error` is its last attempt's error.
    #[error("job {id} failed: {error}")]
    JobFailed {
        /// The job.
        id: JobId,
        /// The last attempt's error message.
        error: String,
    },
    /// The awaited job was cancelled.
    #[error("job {0} was cancelled")]
    JobCancelled(JobId),
    /// The job did not finish within the wait's timeout (it goes on; wait again later).
    #[error("job {id} did not finish within {waited:?}")]
    WaitTimeout {
        /// The job.
        id: JobId,
        /// How long was waited.
        waited: std::time::Duration,
    },
    /// A stored value (a job's result or progress) does not deserialize into the type asked
    /// for: the job type's `Output` or `Progress` changed since the job ran.
    #[error("cannot read the {what} of job {id} as the declared type")]
    Decode {
        /// The job.
        id: JobId,
        /// `"result"` or `"progress"`.
        what: &'static str,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// Whether retrying later may succeed (the store is unreachable now).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }

    /// An `InvalidInput` error.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidInput(msg.into())
    }
}

impl From<BackendError> for Error {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::Unavailable(s) => Error::Unavailable(s),
            BackendError::InvalidInput(m) => Error::InvalidInput(m),
            BackendError::PermissionDenied(s) => Error::PermissionDenied(s),
            BackendError::Incompatible(m) => Error::Incompatible(m),
            BackendError::Storage(s) => Error::Storage(s),
        }
    }
}

/// Why a handler's attempt failed: a cause, and whether retrying can help.
///
/// Any error converts into a retryable `JobError` with `?`; wrap it with
/// [`JobError::permanent`] when retrying cannot help (a malformed file), so the remaining
/// attempts are skipped and the job goes straight to `failed`.
///
/// ```
/// use kosh_jobs::JobError;
///
/// fn parse(input: &str) -> Result<u32, JobError> {
///     let n: u32 = input.parse().map_err(JobError::permanent)?; // bad input: don't retry
///     if n == 0 {
///         return Err("the bank API is down".into()); // retryable
///     }
///     Ok(n)
/// }
/// assert!(parse("x").unwrap_err().is_permanent());
/// assert!(!parse("0").unwrap_err().is_permanent());
/// ```
///
/// A handler that cannot run *now* (an API answered 429 with `Retry-After`, a resource is
/// busy) returns [`JobError::snooze`]: the job runs again after the delay, the attempt does
/// not count, no error is stored and the retry backoff does not grow.
///
/// ```
/// use kosh_jobs::JobError;
/// use std::time::Duration;
///
/// fn call_bank(status: u16, retry_after: Option<&str>) -> Result<(), JobError> {
///     if status == 429 {
///         // "not now": try again when the API says, or in 30 s if it does not say.
///         return Err(JobError::snooze_retry_after(retry_after, Duration::from_secs(30)));
///     }
///     Ok(())
/// }
/// let e = call_bank(429, Some("12")).unwrap_err();
/// assert_eq!(e.snoozed_for(), Some(Duration::from_secs(12)));
/// assert!(!e.is_permanent());
/// ```
pub struct JobError {
    source: BoxError,
    permanent: bool,
    snooze: Option<Duration>,
    hold_queue: bool,
}

/// The message of a snooze (it is logged, never stored as an error).
#[derive(Debug, thiserror::Error)]
#[error("snoozed for {0:?}")]
struct Snoozed(Duration);

impl JobError {
    /// A failure worth retrying (per the job's retry policy).
    pub fn retryable(e: impl Into<BoxError>) -> Self {
        JobError {
            source: e.into(),
            permanent: false,
            snooze: None,
            hold_queue: false,
        }
    }

    /// A failure that retrying cannot fix: the job fails now, whatever attempts are left.
    pub fn permanent(e: impl Into<BoxError>) -> Self {
        JobError {
            source: e.into(),
            permanent: true,
            snooze: None,
            hold_queue: false,
        }
    }

    /// "Not now, try again in `delay`": the job goes back to wait and runs again once `delay`
    /// has passed (`Duration::ZERO`: at once). The attempt is not counted (the next one has
    /// the same number), no error is stored, the retry backoff does not grow, progress is
    /// kept; a job never fails because it snoozed, however often it does. Meant for a
    /// handler that finds it cannot do its work yet, e.g. an API that answered 429.
    pub fn snooze(delay: Duration) -> Self {
        JobError {
            source: Box::new(Snoozed(delay)),
            permanent: false,
            snooze: Some(delay),
            hold_queue: false,
        }
    }

    /// "Not now, and no job of this queue for `delay`": a snooze ([`JobError::snooze`]) that
    /// also holds the job's whole queue back for `delay`, for every worker of every process
    /// ([`Backend::hold_queue`](crate::Backend::hold_queue)), as BullMQ's `rateLimit` does.
    /// Meant for an API that answered 429 to the whole account, not only to this job.
    ///
    /// ```
    /// use kosh_jobs::JobError;
    /// use std::time::Duration;
    /// let e = JobError::rate_limited(Duration::from_secs(30));
    /// assert_eq!(e.snoozed_for(), Some(Duration::from_secs(30)));
    /// assert!(e.holds_queue());
    /// ```
    pub fn rate_limited(delay: Duration) -> Self {
        JobError {
            hold_queue: true,
            ..JobError::snooze(delay)
        }
    }

    /// Whether this is a [`JobError::rate_limited`]: the worker holds the queue back too.
    pub fn holds_queue(&self) -> bool {
        self.hold_queue
    }

    /// A snooze for as long as an HTTP `Retry-After` header says, when it gives a number of
    /// seconds (`"120"`); `fallback` when the header is missing or not a number of seconds
    /// (an HTTP date is not parsed here: convert it to a delay and call [`JobError::snooze`]).
    pub fn snooze_retry_after(header: Option<&str>, fallback: Duration) -> Self {
        let delay = header
            .and_then(|h| h.trim().parse::<u64>().ok())
            .map_or(fallback, Duration::from_secs);
        JobError::snooze(delay)
    }

    /// Whether the remaining attempts are skipped.
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }

    /// The delay of a [`JobError::snooze`], `None` for a failure.
    pub fn snoozed_for(&self) -> Option<Duration> {
        self.snooze
    }

    /// The underlying error.
    pub fn source_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.source
    }

    /// The message stored in the job's history: the error and its chain of sources.
    pub fn message(&self) -> String {
        ErrorChain(&*self.source).to_string()
    }
}

impl<E: Into<BoxError>> From<E> for JobError {
    fn from(e: E) -> Self {
        JobError::retryable(e)
    }
}

impl fmt::Debug for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobError")
            .field("permanent", &self.permanent)
            .field("snooze", &self.snooze)
            .field("hold_queue", &self.hold_queue)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("row 3 is bad")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error("import failed")]
    struct Outer(#[source] Inner);

    #[test]
    fn message_includes_the_source_chain() {
        let e = JobError::from(Outer(Inner));
        assert_eq!(e.message(), "import failed: row 3 is bad");
        assert!(!e.is_permanent());
        assert!(JobError::permanent(Outer(Inner)).is_permanent());
        assert_eq!(e.snoozed_for(), None);
    }

    #[test]
    fn snooze_reads_retry_after_seconds_or_falls_back() {
        let fallback = Duration::from_secs(30);
        let of = |h| JobError::snooze_retry_after(h, fallback).snoozed_for();
        assert_eq!(of(Some(" 120 ")), Some(Duration::from_secs(120)));
        assert_eq!(of(Some("0")), Some(Duration::ZERO));
        assert_eq!(of(Some("Wed, 21 Oct 2015 07:28:00 GMT")), Some(fallback));
        assert_eq!(of(Some("-5")), Some(fallback));
        assert_eq!(of(None), Some(fallback));
        let e = JobError::snooze(Duration::from_millis(1500));
        assert!(!e.is_permanent());
        assert_eq!(e.message(), "snoozed for 1.5s");
    }
}
