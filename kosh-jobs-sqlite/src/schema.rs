//! Opening connections, and creating and migrating the schema.
//!
//! A kosh-jobs database carries `PRAGMA application_id = 0x4B4F5348` ("KOSH") and its schema
//! version in `PRAGMA user_version`. Migrations are the embedded files of `migrations/`, applied
//! in order inside one `BEGIN IMMEDIATE` transaction, so several processes opening a new file
//! at once do not race: the first creates the schema, the others wait for its lock and then
//! find it done.

use std::cell::Cell;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::error::{Result, SqliteError};
use crate::file;
use crate::options::{Location, SqliteOptions};

/// `PRAGMA application_id` of a kosh-jobs database: "KOSH" in ASCII.
pub(crate) const APPLICATION_ID: i32 = 0x4B4F_5348;

/// The migrations, in order: (schema version reached, SQL).
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_initial.sql")),
    (2, include_str!("../migrations/0002_admin.sql")),
    (3, include_str!("../migrations/0003_schedules.sql")),
    (4, include_str!("../migrations/0004_counts.sql")),
    (5, include_str!("../migrations/0005_start_ack.sql")),
    (6, include_str!("../migrations/0006_flow.sql")),
    (7, include_str!("../migrations/0007_groups.sql")),
    (8, include_str!("../migrations/0008_group_rate.sql")),
    (9, include_str!("../migrations/0009_trace.sql")),
];

/// The schema version this build migrates a store to (the file's `PRAGMA user_version`); a store with a newer
/// one, written by a newer version, is refused rather than misread.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// What a connection is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Applies all writes (group commit) and creates/migrates the schema.
    Writer,
    /// Serves reads; never writes.
    Reader,
    /// Copies the WAL into the database file in the background.
    Checkpointer,
}

impl Role {
    /// The role's name, for thread names and messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Role::Writer => "writer",
            Role::Reader => "reader",
            Role::Checkpointer => "checkpointer",
        }
    }
}

/// Opens a connection with the pragmas of its role. The writer also creates the folders of a
/// new file and creates or migrates the schema; open the writer before any reader. The path
/// of `opts` is absolute ([`SqliteOptions::resolve`]), so errors name the file unambiguously.
pub(crate) fn open(opts: &SqliteOptions, role: Role) -> Result<Connection> {
    let path = opts.display_path();
    let classify = |e: rusqlite::Error| SqliteError::classify(e, &path, opts.busy_timeout);
    let conn = match &opts.location {
        Location::Memory => Connection::open_in_memory().map_err(classify)?,
        Location::File(p) if !opts.create_if_missing => {
            // Never create the file, nor its folders.
            let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            Connection::open_with_flags(p, flags).map_err(|e| {
                if std::fs::metadata(p).is_err_and(|m| m.kind() == std::io::ErrorKind::NotFound) {
                    SqliteError::Missing { path: p.clone() }
                } else {
                    file::open_failed(p, e)
                }
            })?
        }
        Location::File(p) => {
            if role == Role::Writer {
                file::create_folders(p)?;
            }
            let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            Connection::open_with_flags(p, flags).map_err(|e| file::open_failed(p, e))?
        }
    };
    BUSY_LIMIT.with(|l| l.set(opts.busy_timeout));
    conn.busy_handler(Some(busy_wait)).map_err(classify)?;
    conn.set_prepared_statement_cache_capacity(64);
    if matches!(opts.location, Location::File(_))
        && conn.is_readonly(rusqlite::MAIN_DB).map_err(classify)?
    {
        // SQLite silently falls back to read-only when the file is write-protected.
        return Err(SqliteError::ReadOnly { path });
    }
    // SQLite answers some lock conflicts of these set-up statements with an immediate
    // `SQLITE_BUSY` that never reaches the busy handler (see `retry_busy`).
    retry_busy(opts.busy_timeout, || {
        set_up(&conn, opts, role, &path, &classify)
    })?;
    Ok(conn)
}

/// The pragmas, schema and checks of a connection's role, on a connection just opened.
fn set_up(
    conn: &Connection,
    opts: &SqliteOptions,
    role: Role,
    path: &Path,
    classify: &dyn Fn(rusqlite::Error) -> SqliteError,
) -> Result<()> {
    match role {
        Role::Writer => {
            if matches!(opts.location, Location::File(_)) {
                set_wal(conn, path).map_err(classify)?;
                // The checkpointer thread copies the WAL, never the writer's commits (see
                // `engine::checkpoint`): no automatic checkpoint, and a hook that records the
                // WAL's size after each commit for the checkpointer. The pragma replaces the
                // WAL hook, so it goes first.
                conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")
                    .map_err(classify)?;
                conn.wal_hook(Some(record_wal_frames));
            }
            conn.execute_batch(
                "PRAGMA synchronous = NORMAL;
                 PRAGMA temp_store = MEMORY;
                 PRAGMA cache_size = -16000;
                 PRAGMA journal_size_limit = 67108864;",
            )
            .map_err(classify)?;
            migrate(conn, path).map_err(|e| match e {
                SqliteError::Sqlite(e) => classify(e),
                other => other,
            })?;
            if opts.events {
                // Outside the versioned schema: only files with events on get the table.
                crate::store::events::enable(conn).map_err(|e| match e {
                    SqliteError::Sqlite(e) => classify(e),
                    other => other,
                })?;
            }
        }
        Role::Checkpointer => {}
        Role::Reader => {
            conn.execute_batch("PRAGMA query_only = ON; PRAGMA cache_size = -8000;")
                .map_err(classify)?;
            check_version(conn, path).map_err(|e| match e {
                SqliteError::Sqlite(e) => classify(e),
                other => other,
            })?;
        }
    }
    Ok(())
}

/// Runs `f` again while it fails with `Busy`, until `limit` has passed since the first try.
///
/// SQLite calls the busy handler only where waiting cannot deadlock. A statement that already
/// holds a read lock and then needs the write lock (switching a new file to WAL does: it reads
/// the header, then rewrites it) gets `SQLITE_BUSY` at once when another connection holds the
/// write lock, as when several processes create the same file together. The statement has
/// released its locks by then, so trying it again after a short wait is safe; every set-up
/// step is idempotent (migrations re-check the version under the write lock).
fn retry_busy<T>(limit: Duration, mut f: impl FnMut() -> Result<T>) -> Result<T> {
    let started = std::time::Instant::now();
    let mut count = 0;
    loop {
        match f() {
            Err(e) if e.is_busy() && started.elapsed() < limit => {
                std::thread::sleep(busy_step(count));
                count += 1;
            }
            other => return other,
        }
    }
}

thread_local! {
    /// The busy timeout of the connection on this thread (each connection of a backend lives
    /// on a thread of its own).
    static BUSY_LIMIT: Cell<Duration> = const { Cell::new(SqliteOptions::DEFAULT_BUSY_TIMEOUT) };
}

thread_local! {
    /// The frames in the WAL after the last commit of the writer on this thread.
    static WAL_FRAMES: Cell<i64> = const { Cell::new(0) };
}

/// The writer's WAL hook: SQLite calls it after each commit with the frames now in the WAL.
fn record_wal_frames(_wal: &rusqlite::hooks::Wal, frames: std::ffi::c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.with(|f| f.set(i64::from(frames)));
    Ok(())
}

/// The frames in the WAL after the last commit of this thread's writer connection.
pub(crate) fn wal_frames() -> i64 {
    WAL_FRAMES.with(Cell::get)
}

/// Runs `f` with the busy timeout of this thread's connection set to `limit`.
pub(crate) fn with_busy_limit<T>(limit: Duration, f: impl FnOnce() -> T) -> T {
    let before = BUSY_LIMIT.with(|l| l.replace(limit));
    let out = f();
    BUSY_LIMIT.with(|l| l.set(before));
    out
}

/// The `count`-th wait for another connection's lock: 100 µs, doubling up to 1.6 ms.
fn busy_step(count: i32) -> Duration {
    Duration::from_micros(100 << count.clamp(0, 4))
}

/// The total of the waits before the `count`-th.
fn busy_waited(count: i32) -> Duration {
    let count = count.max(0) as u32;
    let doubling = count.min(5);
    let micros = 100 * ((1u64 << doubling) - 1) + 1_600 * u64::from(count - doubling);
    Duration::from_micros(micros)
}

/// Waits for a lock held by another connection (another process), in short steps, until the
/// busy timeout. SQLite's own handler sleeps 1, 2, 5, 10 ms and more; this backend's
/// transactions last well under a millisecond, so short steps keep processes that share a
/// file from idling while they take turns.
fn busy_wait(count: i32) -> bool {
    let limit = BUSY_LIMIT.with(Cell::get);
    let waited = busy_waited(count);
    if waited >= limit {
        return false;
    }
    std::thread::sleep(busy_step(count).min(limit - waited));
    true
}

fn set_wal(conn: &Connection, path: &Path) -> rusqlite::Result<()> {
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(
            path = %path.display(),
            mode,
            "sqlite refused WAL mode; readers and writers will block each other"
        );
    }
    Ok(())
}

fn pragma_i64(conn: &Connection, name: &str) -> rusqlite::Result<i64> {
    conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
}

/// Checks that the file is a kosh-jobs database this build understands; returns its version
/// (0 for a new, empty file).
fn inspect(conn: &Connection, path: &Path, supported: i64) -> Result<i64> {
    let app_id = pragma_i64(conn, "application_id").map_err(SqliteError::Sqlite)?;
    let version = pragma_i64(conn, "user_version").map_err(SqliteError::Sqlite)?;
    if app_id != i64::from(APPLICATION_ID) {
        if app_id != 0 {
            return Err(SqliteError::NotKoshDatabase {
                path: path.to_owned(),
                reason: format!(
                    "its application id is {app_id:#x}, not kosh-jobs' {APPLICATION_ID:#x}"
                ),
            });
        }
        let objects: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'",
                [],
                |r| r.get(0),
            )
            .map_err(SqliteError::Sqlite)?;
        if objects > 0 || version != 0 {
            return Err(SqliteError::NotKoshDatabase {
                path: path.to_owned(),
                reason: format!(
                    "it holds {objects} tables or indexes of another application \
                     (and no kosh-jobs application id)"
                ),
            });
        }
        return Ok(0);
    }
    if version > supported {
        return Err(SqliteError::NewerSchema {
            path: path.to_owned(),
            found: version,
            supported,
        });
    }
    Ok(version)
}

/// [`inspect`] inside a read transaction: its three reads see one state of the file, not a
/// migration that another process commits between them (tables, but no application id yet).
fn inspect_snapshot(conn: &Connection, path: &Path, supported: i64) -> Result<i64> {
    conn.execute_batch("BEGIN").map_err(SqliteError::Sqlite)?;
    let result = inspect(conn, path, supported);
    // A read transaction has nothing to keep: ending it cannot lose anything.
    let _ = conn.execute_batch("ROLLBACK");
    result
}

/// The reader's check: the writer has already migrated.
fn check_version(conn: &Connection, path: &Path) -> Result<()> {
    let version = inspect_snapshot(conn, path, SCHEMA_VERSION)?;
    if version != SCHEMA_VERSION {
        return Err(SqliteError::NotKoshDatabase {
            path: path.to_owned(),
            reason: format!("schema version {version} after migration, expected {SCHEMA_VERSION}"),
        });
    }
    Ok(())
}

/// Creates or migrates the schema inside `BEGIN IMMEDIATE`.
fn migrate(conn: &Connection, path: &Path) -> Result<()> {
    migrate_with(conn, path, MIGRATIONS)
}

/// Applies `migrations` (ascending versions) that the file has not had yet.
fn migrate_with(conn: &Connection, path: &Path, migrations: &[(i64, &str)]) -> Result<()> {
    let latest = migrations.last().map_or(0, |m| m.0);
    // Fast path without the write lock: a current database needs nothing.
    if inspect_snapshot(conn, path, latest)? == latest {
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(SqliteError::Sqlite)?;
    let result = (|| {
        // Read again under the lock: another process may have migrated meanwhile.
        let version = inspect(conn, path, latest)?;
        for (target, sql) in migrations.iter().filter(|(v, _)| *v > version) {
            conn.execute_batch(sql).map_err(SqliteError::Sqlite)?;
            conn.execute_batch(&format!("PRAGMA user_version = {target}"))
                .map_err(SqliteError::Sqlite)?;
            tracing::info!(path = %path.display(), version = target, "migrated kosh-jobs schema");
        }
        if version == 0 {
            conn.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID}"))
                .map_err(SqliteError::Sqlite)?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT").map_err(SqliteError::Sqlite),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_waits_add_up_to_the_timeout() {
        let mut total = Duration::ZERO;
        for count in 0..100 {
            assert_eq!(busy_waited(count), total, "before wait {count}");
            total += busy_step(count);
        }
        assert_eq!(busy_step(0), Duration::from_micros(100));
        assert_eq!(busy_step(50), Duration::from_micros(1600));
        BUSY_LIMIT.with(|l| l.set(Duration::from_micros(250)));
        assert!(busy_wait(0) && busy_wait(1));
        assert!(!busy_wait(2), "100 + 200 us waited: past a 250 us timeout");
    }

    /// A file of an older schema is migrated by the next version of the backend, keeping its
    /// jobs; the version before refuses the migrated file.
    #[test]
    fn an_older_file_is_migrated_and_then_refused_by_the_old_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let opts = SqliteOptions::builder(&path).build().unwrap();
        {
            let conn = open(&opts, Role::Writer).unwrap();
            conn.execute_batch(
                "INSERT INTO kosh_jobs (name, queue, payload, state, priority, run_at, \
                 max_attempts, created_at) VALUES ('t', 'q', '{}', 'ready', 0, 0, 3, 0)",
            )
            .unwrap();
        }
        let next: Vec<(i64, &str)> = MIGRATIONS
            .iter()
            .copied()
            .chain([(
                SCHEMA_VERSION + 1,
                "ALTER TABLE kosh_jobs ADD COLUMN tags TEXT; \
                 UPDATE kosh_jobs SET tags = 'migrated';",
            )])
            .collect();
        let conn = Connection::open(&path).unwrap();
        migrate_with(&conn, &path, &next).unwrap();
        assert_eq!(
            pragma_i64(&conn, "user_version").unwrap(),
            SCHEMA_VERSION + 1
        );
        let tags: String = conn
            .query_row("SELECT tags FROM kosh_jobs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(tags, "migrated");
        // Migrating again is a no-op.
        migrate_with(&conn, &path, &next).unwrap();
        drop(conn);
        let err = open(&opts, Role::Writer).unwrap_err();
        assert!(
            matches!(err, SqliteError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1),
            "{err:?}"
        );
    }

    #[test]
    fn migrations_are_numbered_in_order() {
        for (i, (v, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*v, i as i64 + 1);
        }
    }

    #[test]
    fn memory_database_gets_the_schema() {
        let opts = SqliteOptions::in_memory().build().unwrap();
        let conn = open(&opts, Role::Writer).unwrap();
        assert_eq!(pragma_i64(&conn, "user_version").unwrap(), SCHEMA_VERSION);
        assert_eq!(
            pragma_i64(&conn, "application_id").unwrap(),
            i64::from(APPLICATION_ID)
        );
    }
}
