//! Errors of the Redis backend.

use kosh_jobs_core::{BackendError, BoxError};

/// An error of the Redis backend.
///
/// Converts into [`kosh_jobs_core::BackendError`]: connection problems become
/// [`BackendError::Unavailable`] (worth retrying), bad input `InvalidInput`, data this version
/// does not understand `Incompatible`, everything else `Storage`. No variant ever carries the
/// password of the connection URL.
///
/// ```
/// use kosh_jobs_redis::RedisError;
/// use kosh_jobs_core::BackendError;
///
/// let e = RedisError::Unreachable { addr: "localhost:6379".into(), source: "refused".into() };
/// assert_eq!(e.to_string(), "cannot reach redis at localhost:6379");
/// assert!(BackendError::from(e).is_unavailable());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisError {
    /// The connection URL or another option is not valid.
    #[error("invalid redis options: {0}")]
    Config(String),
    /// The server could not be reached or refused the connection (also: wrong password).
    #[error("cannot reach redis at {addr}")]
    Unreachable {
        /// `host:port` of the server (never the password).
        addr: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// The connection broke or a reply did not come in time; the backend reconnects by itself.
    #[error("redis connection lost")]
    ConnectionLost(#[source] BoxError),
    /// Redis is out of memory: its used memory is above `maxmemory` and, with the policy
    /// `noeviction` (the only safe one for jobs), it refuses writes. The script that was
    /// refused stored nothing of its operation; it may succeed once memory is freed (purge
    /// old jobs, shorten retention) or `maxmemory` is raised.
    #[error(
        "redis is out of memory (used memory above `maxmemory`): the operation was refused \
         and nothing of it was stored; free memory or raise `maxmemory`"
    )]
    OutOfMemory(#[source] BoxError),
    /// Redis answered a command with an error.
    #[error("redis command failed")]
    Command(#[source] BoxError),
    /// A reply had a shape this version does not understand.
    #[error("unexpected reply from redis: {0}")]
    Protocol(String),
    /// The keys under the prefix were written in a storage layout this version cannot read.
    #[error("{0}")]
    Incompatible(String),
    /// A job or queue that cannot be stored (checked before anything is sent).
    #[error("{0}")]
    InvalidInput(String),
    /// The backend was dropped while an operation was running.
    #[error("redis backend stopped")]
    Stopped,
}

impl RedisError {
    /// Whether retrying later may succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            RedisError::Unreachable { .. } | RedisError::ConnectionLost(_) | RedisError::Stopped
        )
    }

    /// Classifies an error of the `redis` crate.
    pub(crate) fn from_redis(e: redis::RedisError) -> Self {
        if is_connection_error(&e) {
            RedisError::ConnectionLost(Box::new(e))
        } else if e.code() == Some("OOM") {
            RedisError::OutOfMemory(Box::new(e))
        } else {
            RedisError::Command(Box::new(e))
        }
    }
}

/// Errors after which the connection cannot be trusted any more (or the server is not ready).
pub(crate) fn is_connection_error(e: &redis::RedisError) -> bool {
    e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_io_error()
        || e.is_timeout()
        || matches!(
            e.kind(),
            redis::ErrorKind::BusyLoadingError
                | redis::ErrorKind::ClusterDown
                | redis::ErrorKind::TryAgain
                | redis::ErrorKind::MasterDown
                | redis::ErrorKind::ClusterConnectionNotFound
        )
}

impl From<RedisError> for BackendError {
    fn from(e: RedisError) -> Self {
        match e {
            RedisError::InvalidInput(msg) => BackendError::InvalidInput(msg),
            RedisError::Protocol(msg) | RedisError::Incompatible(msg) => {
                BackendError::Incompatible(msg)
            }
            e if e.is_unavailable() => BackendError::unavailable(e),
            e => BackendError::storage(e),
        }
    }
}
