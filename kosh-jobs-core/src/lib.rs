//! # kosh-jobs-core
//!
//! The core of [kosh-jobs](https://docs.rs/kosh-jobs): applications depend on `kosh-jobs`,
//! which re-exports everything here, adds the `#[job]` attribute, the backends behind
//! features and `kosh_jobs::connect(url)`. Backend crates depend on this crate.
//!
//! Background jobs for Rust applications: the web process enqueues typed jobs, one or many
//! worker processes run them with retries and backoff, delays, priorities, timeouts, and
//! recovery of jobs whose worker died. Storage is pluggable: [`memory`] here, SQLite in
//! `kosh-jobs-sqlite`, Redis in `kosh-jobs-redis`, all passing the same conformance suite.
//!
//! Delivery is **at least once**: a job whose worker dies mid-run runs again elsewhere once
//! its lease expires, so handlers should be idempotent (or checkpoint with
//! [`JobContext::progress`] and resume from [`JobContext::checkpoint`]).
//!
//! Define a job by putting `#[kosh_jobs::job]` on its async handler: the payload type becomes the job
//! type, with its stable name (the function's name by default), queue and default options,
//! e.g. `#[job(queue = "csv-uploads", max_attempts = 5, backoff = exponential(2s, max = 10m),
//! timeout = 15m)]`. See `kosh_jobs::job` for every key. The [`Job`] and [`Handler`] traits it
//! implements can also be written by hand.
//!
//! Enqueue with a [`Client`], run with a [`Worker`]; both take any [`Backend`].
//!
//! See `docs/job-lifecycle.md` for the state machine and `README.md` for a quickstart.

pub mod admin;
mod any;
pub mod backend;
mod client;
mod clock;
mod context;
mod error;
pub mod events;
mod handle;
mod job;
pub mod limits;
pub mod memory;
pub mod metrics;
mod operator;
mod record;
pub mod retry;
pub mod schedule;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod trace;
pub mod worker;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use admin::{AdminAction, JobFilter, Order, SearchQuery};
pub use any::AnyBackend;
pub use backend::Backend;
pub use client::Client;
pub use clock::{Clock, ManualClock, Timestamp};
pub use context::JobContext;
pub use error::{BackendError, BoxError, Error, ErrorChain, JobError};
pub use handle::JobHandle;
pub use job::{Enqueue, Handler, Job, JobOptions, JobProgress};
pub use limits::{GroupFlow, GroupPage, GroupQuery, QueueFlow, QueueLimits, RateLimit};
pub use operator::{ActionTotals, Admin, Finished, QueueStats, Stats};
pub use record::{
    AttemptError, CancelOutcome, Enqueued, FailureKind, Finish, FinishResult, JobId, JobRecord,
    JobState, Lease, LeasedJob, ListQuery, NewJob, Outcome, Page, QueueCounts, ReserveRequest,
    RetryOutcome, UnknownState,
};
pub use retry::Backoff;
pub use worker::{Worker, WorkerBuilder};

pub use tokio_util::sync::CancellationToken;
