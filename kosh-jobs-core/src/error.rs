//! Errors: of backends, of the client, and of handlers.

use std::fmt;

use crate::record::JobId;

/// A boxed error, the common currency of handler and backend errors.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error of a storage backend.
///
/// Backends map their own errors (`kosh-jobs-sqlite`, `kosh-jobs-redis`) into these kinds so
/// that the client and the worker can react without knowing the backend: `Unavailable` is
/// worth retrying later, the others are not.
///
/// ```
/// use kosh_jobs::BackendError;
/// let e = BackendError::unavailable(std::io::Error::other("connection refused"));
/// assert!(e.is_unavailable());
/// assert_eq!(e.to_string(), "backend unavailable");
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
    /// Whether retrying later may succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, BackendError::Unavailable(_))
    }
}

/// An error of [`crate::Client`] and [`crate::Worker`].
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
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A payload could not be serialized to JSON.
    #[error("cannot serialize the payload of job `{job}`")]
    Serialize {
        /// The job's name.
        job: &'static str,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// Options or configuration that do not make sense, caught when built.
    #[error("invalid configuration: {0}")]
    Config(String),
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
pub struct JobError {
    source: BoxError,
    permanent: bool,
}

impl JobError {
    /// A failure worth retrying (per the job's retry policy).
    pub fn retryable(e: impl Into<BoxError>) -> Self {
        JobError {
            source: e.into(),
            permanent: false,
        }
    }

    /// A failure that retrying cannot fix: the job fails now, whatever attempts are left.
    pub fn permanent(e: impl Into<BoxError>) -> Self {
        JobError {
            source: e.into(),
            permanent: true,
        }
    }

    /// Whether the remaining attempts are skipped.
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }

    /// The underlying error.
    pub fn source_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.source
    }

    /// The message stored in the job's history: the error and its chain of sources.
    pub fn message(&self) -> String {
        let mut msg = self.source.to_string();
        let mut cur = self.source.source();
        while let Some(s) = cur {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            cur = s.source();
        }
        msg
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
    }
}
