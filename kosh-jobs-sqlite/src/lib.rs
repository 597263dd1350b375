//! # kosh-jobs-sqlite
//!
//! The SQLite backend of [kosh-jobs](https://docs.rs/kosh-jobs): jobs in one file, no server to install,
//! several processes (a web server and its workers) sharing that file.
//!
//! ```
//! use kosh_jobs_core::{Backend, NewJob};
//! use kosh_jobs_sqlite::SqliteBackend;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let url = format!("sqlite://{}", dir.path().join("jobs.db").display());
//! // e.g. "sqlite://data/jobs.db"; "sqlite::memory:" in tests
//! let backend = SqliteBackend::connect(&url).await?;
//! let now = backend.clock().now();
//! backend.push(vec![NewJob::new("import_csv", "csv-uploads", r#"{"upload_id":7}"#, now)]).await?;
//! assert_eq!(backend.counts().await?[0].ready, 1);
//! # Ok(()) }
//! ```
//!
//! ## How it works
//!
//! - rusqlite with SQLite compiled in (`bundled`); the file is in WAL mode with
//!   `synchronous = NORMAL` (a commit does not wait for the disk; a power cut may lose the last
//!   commits, never corrupt the file) and a busy timeout (default 5 s).
//! - All database work runs on the backend's own threads, never on the caller's async
//!   threads. Writes are **group-committed**: one writer thread applies whatever operations
//!   have queued up in one transaction. Reads use a second connection; a third copies the WAL
//!   into the file in the background (checkpoints), so commits do not wait for the disk: the
//!   writer's automatic checkpoint is off, and the checkpointer copies from 1,000 WAL pages
//!   and restarts the WAL from 4,096, holding this process's reads back and having the writer
//!   wait between transactions meanwhile; from 16,384 pages, if a reader refuses the
//!   restart, it truncates the WAL, waiting for that reader at most a quarter of the busy
//!   timeout. A bulk action waits between its steps while the WAL is past 8,192 pages.
//! - Several processes on one file take turns at SQLite's write lock; a process waiting for
//!   it retries in steps of 100 µs to 1.6 ms until the busy timeout, then the operation
//!   fails as [`kosh_jobs_core::BackendError::Unavailable`].
//! - Reserving is one `UPDATE … WHERE id IN (SELECT … LIMIT n) RETURNING …`; every transition
//!   out of `running` checks the lease token, so a stale worker's result is refused.
//! - The schema is created and migrated by the backend inside `BEGIN IMMEDIATE` (the SQL is in
//!   `migrations/`); a file written by a newer version, or not a kosh-jobs database, is
//!   refused with a message that says so.
//! - The number of jobs per queue and state is stored (table `kosh_counts`, schema version
//!   4): every transaction that changes jobs adds its changes before it commits, one upsert
//!   per queue and state it touched. [`Backend::counts`](kosh_jobs_core::Backend::counts)
//!   and the totals of searches by state and queue read those rows, not the jobs, so they
//!   cost the same with a million jobs stored as with ten. Running jobs are stored with the
//!   ready ones (a reserve then changes no count) and counted in the lease index, one per
//!   lease; scheduled jobs that are due (ready to readers, not yet promoted by a reserve) are
//!   counted in their index.
//! - Flow control ([`kosh_jobs_core::limits`]) lives in the file, so every process obeys it:
//!   a queue's limits and hold in `kosh_limits`, checked by each reserve inside its
//!   `BEGIN IMMEDIATE` transaction. Jobs with a group key wait in an index of their own by
//!   group; a small table of turns (schema version 7) says which lane (a group, or the jobs
//!   without one) gives the next job, round-robin, so a reserve reads one turn row per job it
//!   leases plus the groups it passes at their `group_concurrency` limit (counted in an index
//!   of running grouped jobs, one entry per lease, so a recovered lease frees its slot). A
//!   queue that never had a grouped job has no turn rows and reserves as before. Under a
//!   `group_rate` (schema version 8) each group's starts are logged in the file, and a
//!   reserve reads a candidate group's window in one seek.
//! - A worker of this process is woken at once by this process's changes; other processes'
//!   changes are noticed by a `PRAGMA data_version` check every 200 ms while a worker waits.
//! - Completed jobs are kept 24 hours, and at most 10,000 of them ([`Retention`]); failed jobs
//!   stay until purged.

mod backend;
mod engine;
mod error;
mod file;
mod options;
mod schema;
mod store;

pub use backend::SqliteBackend;
pub use error::SqliteError;
pub use options::{Retention, SqliteOptions, SqliteOptionsBuilder};
pub use schema::SCHEMA_VERSION;
