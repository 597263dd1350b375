//! Benchmarks of kosh-jobs: the criterion benches in `benches/` and the throughput runner in
//! `src/bin/throughput`, sharing the code here.
//!
//! - [`store`]: which backend to measure (`memory`, `sqlite`, `redis`, or a URL) and a fresh,
//!   isolated store for each run, which a second process can open too;
//! - [`redis_server`]: a private `redis-server` on a free port, killed when dropped;
//! - [`resp`]: a tiny Redis client for `PING`, `INFO` and `FLUSHALL` (the backend under test
//!   is never used to measure itself);
//! - [`commandstats`]: commands per job from `INFO commandstats`;
//! - [`tally`]: the bench jobs and the record of which job ran how often, so every run checks
//!   that each job ran exactly once;
//! - [`rss`]: peak resident memory of this process.

pub mod commandstats;
pub mod jobs;
pub use kosh_jobs_testsupport::{redis_server, resp};
pub mod rss;
pub mod store;
pub mod tally;
