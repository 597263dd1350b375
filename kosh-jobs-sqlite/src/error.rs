//! Errors of the SQLite backend, and how they map into [`BackendError`].

use std::path::PathBuf;
use std::time::Duration;

use kosh_jobs_core::BackendError;
use rusqlite::ErrorCode;

/// An error of the SQLite backend.
///
/// Opening a file reports what is wrong with it (not a database, not a kosh-jobs database,
/// written by a newer version, corrupt, read-only) in the message. Operations through the
/// [`kosh_jobs_core::Backend`] trait return these mapped into [`BackendError`]: `Busy` becomes
/// `Unavailable`; `NewerSchema`, `NotKoshDatabase`, `NotADatabase` and `Corrupt` become
/// `Incompatible`; the rest become `Storage` with this error as the source.
///
/// ```
/// use kosh_jobs_core::BackendError;
/// use kosh_jobs_sqlite::SqliteError;
///
/// let e = SqliteError::NewerSchema { path: "jobs.db".into(), found: 9, supported: 1 };
/// assert!(e.to_string().contains("newer version"));
/// assert!(matches!(BackendError::from(e), BackendError::Incompatible(_)));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqliteError {
    /// The options or URL do not make sense.
    #[error("invalid sqlite options: {0}")]
    InvalidOptions(String),
    /// The file (or its directory) could not be opened or created.
    #[error("cannot open sqlite database `{path}`")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The file exists but is not an SQLite database at all.
    #[error("`{path}` is not an sqlite database (or it is encrypted)")]
    NotADatabase {
        /// The file.
        path: PathBuf,
    },
    /// The file is an SQLite database, but not one created by kosh-jobs.
    #[error("`{path}` is not a kosh-jobs database: {reason}")]
    NotKoshDatabase {
        /// The file.
        path: PathBuf,
        /// What gave it away.
        reason: String,
    },
    /// The file was written by a newer version of kosh-jobs-sqlite, with a schema this
    /// version does not know.
    #[error(
        "`{path}` was written by a newer version of kosh-jobs-sqlite (schema version {found}, \
         this version supports up to {supported}); upgrade kosh-jobs-sqlite to open it"
    )]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// The schema version found in the file.
        found: i64,
        /// The newest schema version this build knows.
        supported: i64,
    },
    /// SQLite found the file damaged.
    #[error("sqlite database `{path}` is corrupt")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The file, or the directory that holds its `-wal` and `-shm` files, cannot be written.
    #[error(
        "sqlite database `{path}` is read-only: kosh-jobs needs write access to the file and \
         to its directory (for the -wal and -shm files)"
    )]
    ReadOnly {
        /// The file.
        path: PathBuf,
    },
    /// The disk holding the database (or the database's size limit) ran out of space; the
    /// operation that needed it was rolled back.
    #[error(
        "sqlite database `{path}` is full: its disk is out of space (or the database reached \
         its size limit); the operation was rolled back and nothing of it was stored"
    )]
    Full {
        /// The file.
        path: PathBuf,
    },
    /// Another connection held the database lock longer than the busy timeout.
    #[error(
        "sqlite database is locked by another connection past the busy timeout of {timeout:?}"
    )]
    Busy {
        /// The busy timeout that ran out.
        timeout: Duration,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The caller passed something that cannot be stored.
    #[error("{0}")]
    InvalidInput(String),
    /// A stored row does not hold what this version wrote (edited by hand?).
    #[error("job {id} is malformed in the database: {reason}")]
    Malformed {
        /// The job's id.
        id: i64,
        /// What is wrong.
        reason: String,
    },
    /// The backend's database thread has stopped (the backend was shut down or a thread died).
    #[error("the sqlite backend's {0} thread has stopped")]
    Closed(&'static str),
    /// The backend's database thread could not be started.
    #[error("cannot start the sqlite backend's database thread")]
    Thread {
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// Any other SQLite error.
    #[error("sqlite error")]
    Sqlite(#[source] rusqlite::Error),
}

impl SqliteError {
    /// Classifies an SQLite error met while working on `path`.
    pub(crate) fn classify(e: rusqlite::Error, path: &std::path::Path, timeout: Duration) -> Self {
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                SqliteError::Busy { timeout, source: e }
            }
            Some(ErrorCode::ReadOnly) => SqliteError::ReadOnly {
                path: path.to_owned(),
            },
            Some(ErrorCode::DiskFull) => SqliteError::Full {
                path: path.to_owned(),
            },
            Some(ErrorCode::NotADatabase) => SqliteError::NotADatabase {
                path: path.to_owned(),
            },
            Some(ErrorCode::DatabaseCorrupt) => SqliteError::Corrupt {
                path: path.to_owned(),
                source: e,
            },
            Some(ErrorCode::CannotOpen) => SqliteError::Open {
                path: path.to_owned(),
                source: e,
            },
            _ => SqliteError::Sqlite(e),
        }
    }

    /// Whether retrying later may succeed.
    pub fn is_busy(&self) -> bool {
        matches!(self, SqliteError::Busy { .. })
    }
}

impl From<SqliteError> for BackendError {
    fn from(e: SqliteError) -> Self {
        match e {
            SqliteError::Busy { .. } | SqliteError::Closed(_) => BackendError::unavailable(e),
            SqliteError::InvalidInput(msg) => BackendError::InvalidInput(msg),
            SqliteError::NewerSchema { .. }
            | SqliteError::NotKoshDatabase { .. }
            | SqliteError::NotADatabase { .. }
            | SqliteError::Corrupt { .. }
            | SqliteError::Malformed { .. } => BackendError::Incompatible(e.to_string()),
            other => BackendError::storage(other),
        }
    }
}

/// Results inside the crate.
pub(crate) type Result<T, E = SqliteError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_maps_to_unavailable() {
        let source = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        let e = SqliteError::classify(source, "x.db".as_ref(), Duration::from_secs(5));
        assert!(e.is_busy());
        assert!(BackendError::from(e).is_unavailable());
    }

    #[test]
    fn read_only_message_says_so() {
        let source = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY),
            None,
        );
        let e = SqliteError::classify(source, "x.db".as_ref(), Duration::from_secs(5));
        assert!(e.to_string().contains("read-only"), "{e}");
    }
}
