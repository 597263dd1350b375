//! Support for the workspace's tests and benches (not published):
//!
//! - [`browser`]: a private `chromedriver` and a WebDriver session in headless Chromium;
//! - [`postgres_server`]: a private Postgres cluster (`initdb`) on a free port, removed when
//!   dropped;
//! - [`redis_server`]: a private `redis-server` on a free port, killed when dropped;
//! - [`redis_cluster`]: a private Redis Cluster with replicas, whose masters can be failed
//!   over;
//! - [`resp`]: a minimal blocking RESP client, to look at a server without the backend;
//! - [`events`]: the lifecycle-events scenario every backend runs;
//! - [`jobs`]: jobs shared by tests and the `kosh-jobs-test-child` process they start;
//! - [`seed`]: a store with jobs in every state and a live worker, for the operator tools'
//!   tests.

pub mod browser;
pub mod certs;
pub mod events;
pub mod jobs;
pub mod postgres_server;
pub mod redis_cluster;
pub mod redis_server;
pub mod resp;
pub mod seed;
mod watched;
