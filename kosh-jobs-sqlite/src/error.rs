//! Errors of the SQLite backend, and how they map into [`BackendError`] and
//! [`kosh_jobs_core::Error`].

use std::path::PathBuf;
use std::time::Duration;

use kosh_jobs_core::{BackendError, BoxError};
use rusqlite::ErrorCode;

/// An error of the SQLite backend.
///
/// Opening a file reports what is wrong with it in the message, naming the file by its
/// absolute path: a folder on the way that is a file, no permission, not a database, not a
/// kosh-jobs database, written by a newer version, corrupt, read-only.
///
/// Operations through the [`kosh_jobs_core::Backend`] trait return these mapped into
/// [`BackendError`], and `?` maps them on into [`kosh_jobs_core::Error`] (through
/// [`BackendError`], kind for kind):
///
/// | `SqliteError` | [`BackendError`] |
/// | --- | --- |
/// | `Busy` (locked past the busy timeout) | `Unavailable`: the only outage |
/// | `ReadOnly`, `PermissionDenied` | `PermissionDenied` |
/// | `InvalidOptions`, `InvalidInput`, `Missing` | `InvalidInput` |
/// | `NewerSchema`, `NotKoshDatabase`, `NotADatabase`, `Corrupt`, `Malformed` | `Incompatible` |
/// | the rest (`Open`, `Full`, `Closed`, `Thread`, `Sqlite`) | `Storage`, with this error as the source |
///
/// ```
/// use kosh_jobs_core::BackendError;
/// use kosh_jobs_sqlite::{SqliteBackend, SqliteError};
///
/// let e = SqliteError::NewerSchema { path: "/srv/jobs.db".into(), found: 9, supported: 1 };
/// assert!(e.to_string().contains("newer version"));
/// assert!(matches!(BackendError::from(e), BackendError::Incompatible(_)));
///
/// // `?` turns it into the application-facing error.
/// async fn open(url: &str) -> Result<SqliteBackend, kosh_jobs_core::Error> {
///     Ok(SqliteBackend::connect(url).await?)
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let err = open("sqlite://jobs.db?busy_timeout=5").await.unwrap_err();
/// assert!(matches!(err, kosh_jobs_core::Error::InvalidInput(_)), "{err:?}");
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqliteError {
    /// The options or URL do not make sense.
    #[error("invalid sqlite options: {0}")]
    InvalidOptions(String),
    /// The file, or a folder on its way, cannot be opened or created.
    #[error("cannot open sqlite database `{path}`: {reason}")]
    Open {
        /// The database file, absolute.
        path: PathBuf,
        /// What is wrong, e.g. "the folder `/srv/data` is a file".
        reason: String,
        /// What the operating system or SQLite said, when it says more than `reason`.
        #[source]
        source: Option<BoxError>,
    },
    /// The database file does not exist, and the options say not to create it
    /// ([`crate::SqliteOptionsBuilder::create_if_missing`], URL `?create=false`).
    #[error(
        "sqlite database `{path}` does not exist (and the options say not to create it: \
         `create=false`)"
    )]
    Missing {
        /// The database file, absolute.
        path: PathBuf,
    },
    /// The operating system denies this process the file or a folder on its way (or SQLite
    /// denies the access).
    #[error("cannot open sqlite database `{path}`: {reason}")]
    PermissionDenied {
        /// The database file, absolute.
        path: PathBuf,
        /// What was denied, e.g. "permission denied creating the folder `/srv/data`".
        reason: String,
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
    /// The file, or the directory that holds its `-wal` and `-shm` files, cannot be written
    /// (write-protected, on a read-only file system, or opened read-only).
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
            Some(ErrorCode::PermissionDenied | ErrorCode::AuthorizationForStatementDenied) => {
                SqliteError::PermissionDenied {
                    path: path.to_owned(),
                    reason: format!("sqlite denied the access ({e})"),
                }
            }
            Some(ErrorCode::CannotOpen) => SqliteError::Open {
                path: path.to_owned(),
                reason: "sqlite cannot open the file or its -wal and -shm files".into(),
                source: Some(Box::new(e)),
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
            // Only an outage is `Unavailable`: another connection holds the lock, and waiting
            // longer may succeed.
            SqliteError::Busy { .. } => BackendError::unavailable(e),
            SqliteError::ReadOnly { .. } | SqliteError::PermissionDenied { .. } => {
                BackendError::permission_denied(e)
            }
            SqliteError::InvalidInput(msg) => BackendError::InvalidInput(msg),
            SqliteError::InvalidOptions(_) | SqliteError::Missing { .. } => {
                BackendError::InvalidInput(e.to_string())
            }
            SqliteError::NewerSchema { .. }
            | SqliteError::NotKoshDatabase { .. }
            | SqliteError::NotADatabase { .. }
            | SqliteError::Corrupt { .. }
            | SqliteError::Malformed { .. } => BackendError::Incompatible(e.to_string()),
            other => BackendError::storage(other),
        }
    }
}

impl From<SqliteError> for kosh_jobs_core::Error {
    fn from(e: SqliteError) -> Self {
        BackendError::from(e).into()
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
        let e = SqliteError::classify(source, "/srv/x.db".as_ref(), Duration::from_secs(5));
        assert!(e.to_string().contains("read-only"), "{e}");
        assert!(e.to_string().contains("/srv/x.db"), "{e}");
    }

    fn sqlite_failure(code: std::ffi::c_int) -> SqliteError {
        let source = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
        SqliteError::classify(source, "/srv/x.db".as_ref(), Duration::from_secs(5))
    }

    #[test]
    fn denied_access_is_permission_denied_not_unavailable() {
        for code in [
            rusqlite::ffi::SQLITE_READONLY,
            rusqlite::ffi::SQLITE_PERM,
            rusqlite::ffi::SQLITE_AUTH,
        ] {
            let e = sqlite_failure(code);
            assert!(!e.is_busy(), "{code}: {e:?}");
            let b = BackendError::from(e);
            assert!(
                matches!(b, BackendError::PermissionDenied(_)),
                "{code}: {b:?}"
            );
        }
        let e = SqliteError::PermissionDenied {
            path: "/srv/x.db".into(),
            reason: "permission denied creating the folder `/srv`".into(),
        };
        assert!(matches!(
            kosh_jobs_core::Error::from(e),
            kosh_jobs_core::Error::PermissionDenied(_)
        ));
    }

    #[test]
    fn only_busy_is_unavailable() {
        let others = [
            SqliteError::Closed("writer"),
            SqliteError::InvalidOptions("x".into()),
            SqliteError::Open {
                path: "/srv/x.db".into(),
                reason: "the folder `/srv` is a file".into(),
                source: None,
            },
            SqliteError::Full {
                path: "/srv/x.db".into(),
            },
            sqlite_failure(rusqlite::ffi::SQLITE_CANTOPEN),
            sqlite_failure(rusqlite::ffi::SQLITE_IOERR),
        ];
        for e in others {
            let shown = format!("{e:?}");
            assert!(!kosh_jobs_core::Error::from(e).is_unavailable(), "{shown}");
        }
        assert!(
            kosh_jobs_core::Error::from(sqlite_failure(rusqlite::ffi::SQLITE_BUSY))
                .is_unavailable()
        );
    }

    #[test]
    fn invalid_options_are_invalid_input_and_keep_their_message() {
        let e = SqliteError::InvalidOptions("unknown query parameter `foo`".into());
        match kosh_jobs_core::Error::from(e) {
            kosh_jobs_core::Error::InvalidInput(m) => assert!(m.contains("`foo`"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
