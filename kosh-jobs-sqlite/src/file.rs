//! The database file on disk: its absolute path, the folders it goes in, and what is wrong
//! with it when it cannot be opened.
//!
//! SQLite says only "unable to open database file"; the functions here ask the file system
//! why, so the error names the file by its absolute path and says what to fix.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use rusqlite::ErrorCode;

use crate::error::SqliteError;

/// `path` made absolute against the current folder, without resolving symbolic links: every
/// connection of a backend opens the same file even if the current folder changes, and
/// every message names the file unambiguously.
pub(crate) fn absolute(path: &Path) -> Result<PathBuf, SqliteError> {
    std::path::absolute(path).map_err(|e| SqliteError::Open {
        path: path.to_owned(),
        reason: "cannot resolve the relative path against the current folder".into(),
        source: Some(Box::new(e)),
    })
}

/// Creates the folders `path` goes in, if missing.
pub(crate) fn create_folders(path: &Path) -> Result<(), SqliteError> {
    let Some(folder) = path.parent().filter(|f| !f.as_os_str().is_empty()) else {
        return Ok(());
    };
    fs::create_dir_all(folder).map_err(|e| {
        if let Some(blocked) = blocked_folder(path) {
            return blocked;
        }
        if e.kind() == io::ErrorKind::PermissionDenied {
            return SqliteError::PermissionDenied {
                path: path.to_owned(),
                reason: format!(
                    "permission denied creating the folder `{}`",
                    folder.display()
                ),
            };
        }
        if is_read_only_file_system(&e) {
            return SqliteError::ReadOnly {
                path: path.to_owned(),
            };
        }
        SqliteError::Open {
            path: path.to_owned(),
            reason: format!("creating the folder `{}` failed", folder.display()),
            source: Some(Box::new(e)),
        }
    })
}

/// Why SQLite could not open `path`; `e` is what SQLite said.
pub(crate) fn open_failed(path: &Path, e: rusqlite::Error) -> SqliteError {
    if e.sqlite_error_code() == Some(ErrorCode::ReadOnly) {
        return SqliteError::ReadOnly {
            path: path.to_owned(),
        };
    }
    if let Some(blocked) = blocked_folder(path) {
        return blocked;
    }
    if fs::metadata(path).is_ok_and(|m| m.is_dir()) {
        return SqliteError::Open {
            path: path.to_owned(),
            reason: "it is a folder, not a file".into(),
            source: None,
        };
    }
    // Open the file as SQLite does (creating it if missing, never truncating it) to hear
    // what the operating system says.
    match open_read_write(path) {
        Err(io) => refused(path, io),
        Ok(_) => SqliteError::Open {
            path: path.to_owned(),
            reason: "sqlite cannot open it".into(),
            source: Some(Box::new(e)),
        },
    }
}

/// The error for a file the operating system would not open for reading and writing.
fn refused(path: &Path, e: io::Error) -> SqliteError {
    if is_read_only_file_system(&e) {
        return SqliteError::ReadOnly {
            path: path.to_owned(),
        };
    }
    if e.kind() == io::ErrorKind::PermissionDenied {
        let reason = match fs::metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => match path.parent() {
                Some(folder) => format!(
                    "permission denied creating the file in the folder `{}`",
                    folder.display()
                ),
                None => "permission denied creating the file".into(),
            },
            // Readable but not writable: read-only.
            _ if OpenOptions::new().read(true).open(path).is_ok() => {
                return SqliteError::ReadOnly {
                    path: path.to_owned(),
                }
            }
            _ => "permission denied opening the file for reading and writing".into(),
        };
        return SqliteError::PermissionDenied {
            path: path.to_owned(),
            reason,
        };
    }
    SqliteError::Open {
        path: path.to_owned(),
        reason: "opening it for reading and writing failed".into(),
        source: Some(Box::new(e)),
    }
}

/// The error for a folder on the way to `path` that exists but is not a folder, if any.
fn blocked_folder(path: &Path) -> Option<SqliteError> {
    for folder in path.ancestors().skip(1) {
        if folder.as_os_str().is_empty() {
            break;
        }
        match fs::metadata(folder) {
            Ok(m) if m.is_dir() => return None,
            Ok(_) => {
                return Some(SqliteError::Open {
                    path: path.to_owned(),
                    reason: format!("the folder `{}` is a file", folder.display()),
                    source: None,
                })
            }
            // Nothing further up can be seen.
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return None,
            // Missing, or a file further up: look there.
            Err(_) => {}
        }
    }
    None
}

fn open_read_write(path: &Path) -> io::Result<fs::File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true);
    #[cfg(unix)]
    {
        // The permissions SQLite gives a file it creates.
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o644);
    }
    options.open(path)
}

fn is_read_only_file_system(e: &io::Error) -> bool {
    // EROFS on Linux, macOS and the BSDs (`io::ErrorKind::ReadOnlyFilesystem` needs Rust 1.83).
    cfg!(unix) && e.raw_os_error() == Some(30)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_become_absolute_against_the_current_folder() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            absolute(Path::new("data/jobs.db")).unwrap(),
            cwd.join("data/jobs.db")
        );
        assert_eq!(
            absolute(Path::new("/srv/jobs.db")).unwrap(),
            Path::new("/srv/jobs.db")
        );
    }

    #[test]
    fn a_file_in_the_way_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("notes.txt");
        fs::write(&file, "notes").unwrap();
        for path in [file.join("jobs.db"), file.join("a/b/jobs.db")] {
            let err = create_folders(&path).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, SqliteError::Open { .. }), "{err:?}");
            assert!(
                msg.contains(&format!("the folder `{}` is a file", file.display())),
                "{msg}"
            );
            assert!(msg.contains(&path.display().to_string()), "{msg}");
        }
        assert!(blocked_folder(&dir.path().join("x/y/jobs.db")).is_none());
    }

    #[test]
    fn a_folder_where_the_file_should_be_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.db");
        fs::create_dir(&path).unwrap();
        let sqlite_said = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            None,
        );
        let msg = open_failed(&path, sqlite_said).to_string();
        assert!(msg.contains("is a folder, not a file"), "{msg}");
    }
}
