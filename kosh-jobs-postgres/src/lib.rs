//! # kosh-jobs-postgres
//!
//! The Postgres backend of [kosh-jobs](https://docs.rs/kosh-jobs), on sqlx's Postgres
//! driver: many workers on many machines sharing one database, and jobs enqueued inside the
//! application's own transactions.
//!
//! ```no_run
//! use kosh_jobs_core::{Backend, NewJob};
//! use kosh_jobs_postgres::PostgresBackend;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let backend = PostgresBackend::connect("postgres://app:secret@localhost/app").await?;
//! let now = backend.clock().now();
//! backend.push(vec![NewJob::new("import_csv", "csv-uploads", r#"{"upload_id":7}"#, now)]).await?;
//! # Ok(()) }
//! ```
//!
//! ## How it works
//!
//! - The tables live in their own schema (default `kosh`, `?schema=` in the URL), created and
//!   migrated by the backend in one transaction under `pg_advisory_xact_lock`, so any number
//!   of processes starting at once migrate once.
//! - Reserving is one `UPDATE … FROM (SELECT … FOR UPDATE SKIP LOCKED LIMIT n) RETURNING …`
//!   that takes ready and due scheduled jobs alike; a batch of completions, retries and
//!   failures is one statement, and so are heartbeats and releases (arrays and `unnest`).
//! - Workers wake by `LISTEN`/`NOTIFY`, with a listener that reconnects by itself and a slow
//!   fallback poll (2 s by default).
//! - The jobs table has `fillfactor = 70` and no index on the columns that change on every
//!   attempt or heartbeat, so heartbeats and progress updates stay HOT; purge and retention
//!   delete in chunks of 1,000 rows.
//! - [`PostgresBackend::push_in`] and [`PostgresBackend::enqueue_in`] enqueue on the
//!   application's connection or transaction.
//! - [`PostgresBackend::from_pool`] (or [`PostgresOptions::from_pool`]) shares the
//!   application's pool for ordinary operations, run on the caller's runtime; lease renewal
//!   and the listener keep connections of their own.
//! - Queue limits and holds (flow control) live in the `queue_limits` table; a reserve on a
//!   limited queue locks the queue's row, so the limits hold across processes.
//! - Groups take turns through the `turns` table, read by a server-side function that locks
//!   each group it serves (`FOR UPDATE SKIP LOCKED`), so group concurrency limits hold
//!   across processes too; a queue without groups is claimed by the one plain statement.
//! - Heartbeats, finishes and releases have connections of their own (and so does the
//!   listener): operations holding the whole main pool cannot starve lease renewal.
//! - Lifecycle [events](kosh_jobs_core::events), with `events=true` in the URL (off by
//!   default): one `pg_notify` per event, a statement per batch, on a channel of the
//!   schema's; the subscribers of a process share one listening connection and get `Missed`
//!   after it was lost. An event too big for a notification (8000 bytes) loses its progress,
//!   then has its error cut.
//! - Passwords never appear in errors or `Debug` output.

mod backend;
mod error;
mod events;
mod io;
mod options;
mod schema;
mod store;

pub use backend::PostgresBackend;
pub use error::PostgresError;
pub use options::{PostgresOptions, PostgresOptionsBuilder};
pub use schema::SCHEMA_VERSION;

/// The README's code blocks, compiled as doctests so the README cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
