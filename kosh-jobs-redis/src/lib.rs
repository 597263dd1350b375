//! # kosh-jobs-redis
//!
//! The Redis backend of [kosh-jobs](https://docs.rs/kosh-jobs): production storage for many workers on many machines,
//! on self-hosted Redis, Redis Cluster, or hosted Redis (Upstash, Redis Cloud, ElastiCache)
//! over TLS.
//!
//! ```no_run
//! use kosh_jobs_core::{Backend, Client};
//! use kosh_jobs_redis::{RedisBackend, RedisOptions};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let options = RedisOptions::builder("rediss://default:secret@eu1-example.upstash.io:6379")
//!     .prefix("myapp")
//!     .build()?;
//! let backend = RedisBackend::connect_with(options).await?;
//! let jobs = Client::new(backend.clone());
//! println!("{:?}", backend.counts().await?);
//! # let _ = jobs;
//! # Ok(()) }
//! ```
//!
//! ## How it stores jobs
//!
//! - Every state change is one Lua script (loaded once, called by `EVALSHA`, sent again after
//!   `NOSCRIPT`), so a crash can never leave a job half-moved.
//! - All keys of a queue share the hash tag `{prefix:queue}`: the backend works on Redis
//!   Cluster, each script touching one slot. A job id carries its queue's index in its low 16
//!   bits, so `get`/`cancel`/`retry` by id need no cross-slot lookup.
//! - Ready jobs sit in a sorted set ordered by priority, then enqueue order; running jobs in a
//!   sorted set by lease deadline, so recovering expired leases is one range query; scheduled
//!   jobs by `run_at`.
//! - Reserve and completion handle batches in one script; concurrent calls share one
//!   multiplexed connection and so are pipelined.
//! - Single enqueues made while another is in flight (many tasks enqueuing at once) are sent
//!   together, one script call per queue, each caller keeping its own id or error; a lone
//!   enqueue is sent at once. [`RedisOptionsBuilder::coalesce_enqueues`] turns it off.
//! - Idle workers block in `BLPOP` on a per-queue wake-up list with a long timeout (until the
//!   next scheduled job is due), so an idle worker sends only a few commands a minute.
//! - Completed jobs are deleted after 24 hours, and beyond 10,000 per queue (configurable, see
//!   [`RedisOptions`]); failed jobs are kept until purged.
//! - Connect from a URL with [`RedisBackend::connect`] (options in its query string:
//!   `redis://host:6379?prefix=myapp&timeout=2s`, and `redis+cluster://host1:port1,host2:port2`
//!   for a cluster) or from [`RedisOptions`] with [`RedisBackend::connect_with`]. A wrong
//!   password or an ACL refusal is [`RedisError::PermissionDenied`], never an outage.
//! - The admin contract is bounded work too: a search walks the state indexes when it filters
//!   by state and queue only (the first page of failed jobs costs the page, however many jobs
//!   there are), and otherwise examines at most 1,000 jobs per script call and its budget per
//!   call, one queue per script, merged by id. Each job keeps its latest 25 attempts (worker
//!   ids stored as small per-queue numbers), throughput per queue and minute is counted when
//!   jobs finish (kept 7 days), and live workers register under the prefix with one command a
//!   minute.
//! - Warns at start-up if `maxmemory-policy` is not `noeviction`. Above `maxmemory`, Redis
//!   refuses enqueues whole ([`RedisError::OutOfMemory`]) while workers go on draining.

mod admin;
mod backend;
mod coalesce;
mod conn;
mod decode;
mod error;
mod events;
mod io;
mod keys;
mod open;
mod ops;
mod options;
mod redis_url;
mod registry;
mod scripts;
mod spec;
mod wait;

pub use backend::RedisBackend;
pub use error::RedisError;
pub use keys::LAYOUT;
pub use options::{
    RedisOptions, RedisOptionsBuilder, DEFAULT_KEEP_COMPLETED_FOR, DEFAULT_KEEP_COMPLETED_MAX,
    DEFAULT_PREFIX, DEFAULT_TIMEOUT, MAX_TIMEOUT,
};
