//! # kosh-jobs
//!
//! Background jobs for Rust applications: the web process enqueues typed jobs, one or many
//! worker processes run them with retries and backoff, delays, priorities, timeouts, and
//! recovery of jobs whose worker died.
//!
//! This is the one crate an application depends on. Backends are features:
//!
//! | feature | URL | backend |
//! |---|---|---|
//! | (always) | `memory:` | [`memory::MemoryBackend`], one process, for tests |
//! | `sqlite` | `sqlite://path/jobs.db`, `sqlite::memory:` | `kosh_jobs::sqlite::SqliteBackend` |
//! | `redis` | `redis://…`, `rediss://…`, `redis+cluster://…` | `kosh_jobs::redis::RedisBackend` |
//! | `postgres` | `postgres://…?schema=kosh`, `postgresql://…` | `kosh_jobs::postgres::PostgresBackend` |
//! | `macros` (default) | | the [`job`] attribute |
//!
//! See the crate's README for a quickstart.

mod connect;
pub mod prelude;

#[doc(inline)]
pub use kosh_jobs_core::*;

pub use connect::connect;

#[cfg(feature = "macros")]
pub use kosh_jobs_derive::job;

/// The SQLite backend (feature `sqlite`): [`sqlite::SqliteBackend`].
#[cfg(feature = "sqlite")]
pub mod sqlite {
    #[doc(inline)]
    pub use kosh_jobs_sqlite::*;
}

/// The Postgres backend (feature `postgres`): [`postgres::PostgresBackend`].
#[cfg(feature = "postgres")]
pub mod postgres {
    #[doc(inline)]
    pub use kosh_jobs_postgres::*;
}

/// The Redis backend (feature `redis`): [`redis::RedisBackend`].
#[cfg(feature = "redis")]
pub mod redis {
    #[doc(inline)]
    pub use kosh_jobs_redis::*;
}

/// The README's code blocks, compiled as doctests so the README cannot drift from the API.
/// (`tests/readme.rs` also builds and runs its quickstart as a new project would.)
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
