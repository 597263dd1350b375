//! The errors of the Postgres backend, and how they map to [`BackendError`].

use kosh_jobs_core::BackendError;

/// An error of the Postgres backend.
///
/// No variant holds the connection URL or its password: errors can be logged as they are.
///
/// ```
/// use kosh_jobs_postgres::PostgresError;
/// let e = PostgresError::InvalidInput("schema name `a b` is not valid".into());
/// assert_eq!(e.to_string(), "invalid input: schema name `a b` is not valid");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresError {
    /// The caller passed something the backend cannot accept (a URL, a schema name, a job).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// An error of the database or of the connection to it.
    #[error("postgres: {0}")]
    Database(#[source] sqlx::Error),
    /// A stored row is not what this version understands.
    #[error("job {id} is malformed: {reason}")]
    Malformed {
        /// The job (0 when not about one job).
        id: i64,
        /// What is wrong.
        reason: String,
    },
    /// The schema was written by a newer version of this crate.
    #[error("incompatible schema: {0}")]
    Incompatible(String),
    /// The backend's I/O thread could not be started.
    #[error("cannot start the backend's thread")]
    Thread(#[source] std::io::Error),
    /// An operation's task panicked.
    #[error("postgres backend task panicked: {0}")]
    Panicked(String),
    /// The backend was shut down.
    #[error("the postgres backend has stopped")]
    Stopped,
    /// A backend on the application's pool was used outside of a tokio runtime: its
    /// operations on that pool run on the caller's runtime.
    #[error("a postgres backend on the application's pool must be used inside a tokio runtime")]
    NoRuntime,
}

impl From<sqlx::Error> for PostgresError {
    fn from(e: sqlx::Error) -> Self {
        PostgresError::Database(e)
    }
}

/// Whether a database error is an outage (retrying later may succeed).
fn is_outage(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            // 08: connection exceptions; 57P01-57P03: shutdown, crash, starting up;
            // 53: insufficient resources (too many connections).
            c.starts_with("08") || c.starts_with("57P") || c.starts_with("53")
        }),
        _ => false,
    }
}

/// Whether a database error refuses who we are (password, role, privileges), or the TLS the
/// URL asks for: a server certificate that is not trusted (or not for this host), or a
/// server without TLS when the URL requires it. Retrying cannot help with any of these, so
/// they are never outages.
fn is_denied(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("28") || c == "42501"),
        sqlx::Error::Tls(why) => why.to_string().contains("does not support TLS"),
        // rustls refuses a certificate with an I/O error of kind `InvalidData` around its
        // own error ("invalid peer certificate: UnknownIssuer", "...: NotValidForName").
        sqlx::Error::Io(io) => {
            io.kind() == std::io::ErrorKind::InvalidData
                && io
                    .get_ref()
                    .is_some_and(|inner| inner.to_string().contains("certificate"))
        }
        _ => false,
    }
}

impl From<PostgresError> for BackendError {
    fn from(e: PostgresError) -> Self {
        match e {
            PostgresError::InvalidInput(m) => BackendError::InvalidInput(m),
            PostgresError::Incompatible(m) => BackendError::Incompatible(m),
            PostgresError::Database(ref db) if is_denied(db) => BackendError::permission_denied(e),
            PostgresError::Database(ref db) if is_outage(db) => BackendError::unavailable(e),
            PostgresError::Stopped => BackendError::unavailable(e),
            other => BackendError::storage(other),
        }
    }
}

pub(crate) type Result<T, E = PostgresError> = std::result::Result<T, E>;
