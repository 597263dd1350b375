//! The backend conformance suite: every backend must pass it, so programs behave the same
//! on memory, SQLite and Redis.
//!
//! Enabled by the `testkit` feature. A backend crate turns it on for its tests only:
//!
//! ```toml
//! [dev-dependencies]
//! kosh-jobs = { workspace = true, features = ["testkit"] }
//! ```
//!
//! and runs the whole suite from one test file with [`conformance_tests!`](crate::conformance_tests):
//!
//! ```
//! // tests/conformance.rs of a backend crate (here with the memory backend)
//! use kosh_jobs::{Clock, memory::MemoryBackend};
//!
//! async fn backend(clock: Clock) -> MemoryBackend {
//!     // Each call must give a new, empty, isolated store (a fresh SQLite file, a unique
//!     // Redis key prefix) that reads time from `clock`.
//!     MemoryBackend::with_clock(clock)
//! }
//!
//! kosh_jobs::conformance_tests!(backend);
//! # fn main() {}
//! ```
//!
//! This expands to one `#[test]` per case, named after it (`cargo test priority_then_fifo`
//! runs one), each on its own multi-threaded tokio runtime with two worker threads. The
//! factory is anything implementing [`BackendFactory`]; an `async fn(Clock) -> B` or a
//! closure returning a future works as is.
//!
//! # Rules the cases rely on
//!
//! - Each case asks the factory for a new backend and gives it a fresh manual clock
//!   ([`Clock::manual`]); time moves only when the case calls [`ManualClock::advance`], so
//!   no case sleeps and delays, retries and lease expiry are tested exactly. The backend must
//!   read every time from that clock (the suite checks it does).
//! - The store must start empty and must not be shared with another case: cases run in
//!   parallel and count jobs.
//! - Anything the backend needs to keep alive (a temporary directory, a server) must live as
//!   long as the backend: keep it inside your backend value or a wrapper, or in a static.
//! - Real time is only used as a guard: a case fails rather than hangs if an expected wake-up
//!   never comes.
//!
//! # Skipping cases
//!
//! A backend that cannot honour a case yet can skip it by name, which prints a notice in the
//! test's output (misspelt names are a compile error):
//!
//! ```
//! # use kosh_jobs::{Clock, memory::MemoryBackend};
//! # async fn backend(clock: Clock) -> MemoryBackend { MemoryBackend::with_clock(clock) }
//! kosh_jobs::conformance_tests!(backend, skip: [wait_woken_by_resume]);
//! # fn main() {}
//! ```
//!
//! # Custom runners
//!
//! [`CASES`] lists every case with a function to run it, for runners that need their own set
//! up (a Redis Cluster, a shared server) or only a subset:
//!
//! ```
//! use std::sync::Arc;
//! use kosh_jobs::{Clock, memory::MemoryBackend};
//! use kosh_jobs::testkit::{BackendFactory, CASES};
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)] async fn main() {
//! let factory: Arc<dyn BackendFactory> =
//!     Arc::new(|clock: Clock| async move { MemoryBackend::with_clock(clock) });
//! for case in CASES.iter().filter(|c| c.area == "finish") {
//!     case.run(factory.clone()).await; // panics with the failed check's message
//! }
//! # }
//! ```
//!
//! # The cases
//!
//! One module per area: [`push`], [`reserve`], [`leases`], [`finish`], [`admin`] (unique keys,
//! cancel, retry), [`queues`] (counts, list, pause, purge), [`wait`], [`operate`] (search, actions,
//! attempt history, throughput, workers, latency), [`schedules`] (upsert, the atomic fire, overlap,
//! pause and resume). Each case is a `pub async
//! fn` taking the factory, documented with what it checks.

pub mod admin;
pub mod finish;
pub mod groups;
pub mod leases;
pub mod limits;
mod macros;
pub mod operate;
pub mod push;
pub mod queues;
pub mod reserve;
pub mod schedules;
pub mod snooze;
mod support;
pub mod trace;
pub mod wait;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::backend::Backend;
use crate::clock::Clock;
#[cfg(doc)]
use crate::clock::ManualClock;

/// Makes a new, empty, isolated backend reading time from the given clock.
///
/// Implemented for every `Fn(Clock) -> impl Future<Output = B>` where `B` is a [`Backend`]
/// (including `Arc<dyn Backend>`), so an `async fn` or a closure is a factory.
///
/// ```
/// use std::sync::Arc;
/// use kosh_jobs::{Backend, Clock, memory::MemoryBackend};
/// use kosh_jobs::testkit::BackendFactory;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let factory = |clock: Clock| async move { MemoryBackend::with_clock(clock) };
/// let (clock, _time) = Clock::manual();
/// let backend: Arc<dyn Backend> = factory.make(clock).await;
/// assert!(backend.clock().is_manual());
/// # }
/// ```
pub trait BackendFactory: Send + Sync + 'static {
    /// A new backend on `clock`, sharing no jobs with any other.
    fn make(&self, clock: Clock) -> BoxFuture<'static, Arc<dyn Backend>>;
}

impl<F, Fut, B> BackendFactory for F
where
    F: Fn(Clock) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = B> + Send + 'static,
    B: Backend,
{
    fn make(&self, clock: Clock) -> BoxFuture<'static, Arc<dyn Backend>> {
        let fut = self(clock);
        Box::pin(async move { Arc::new(fut.await) as Arc<dyn Backend> })
    }
}

/// How a [`Case`] is run: with a factory, to a future that panics if the case fails.
pub type CaseFn = fn(Arc<dyn BackendFactory>) -> BoxFuture<'static, ()>;

/// One conformance case.
///
/// ```
/// use kosh_jobs::testkit::case;
/// let c = case("priority_then_fifo").unwrap();
/// assert_eq!(c.area, "reserve");
/// ```
#[derive(Clone, Copy)]
pub struct Case {
    /// Its name, also the name of its function and of the test the macro generates.
    pub name: &'static str,
    /// Its module: `push`, `reserve`, `leases`, `finish`, `admin`, `queues` or `wait`.
    pub area: &'static str,
    run: CaseFn,
}

impl Case {
    /// Runs the case against a new backend from `factory`; the future panics if it fails.
    pub fn run(&self, factory: Arc<dyn BackendFactory>) -> BoxFuture<'static, ()> {
        (self.run)(factory)
    }
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case")
            .field("name", &self.name)
            .field("area", &self.area)
            .finish_non_exhaustive()
    }
}

/// Builds [`CASES`] from the case list.
macro_rules! __kosh_jobs_case_table {
    (() $($area:ident :: $case:ident),* $(,)?) => {
        mod runners {
            use super::*;
            $(
                pub(super) fn $case(f: Arc<dyn BackendFactory>) -> BoxFuture<'static, ()> {
                    Box::pin(async move { super::$area::$case(&*f).await })
                }
            )*
        }

        /// Every case of the suite, in the order of the documentation.
        ///
        /// ```
        /// assert!(kosh_jobs::testkit::CASES.len() >= 30);
        /// ```
        pub static CASES: &[Case] = &[
            $(Case { name: stringify!($case), area: stringify!($area), run: runners::$case },)*
        ];
    };
}

crate::__kosh_jobs_cases!([__kosh_jobs_case_table]());

/// The case called `name`, if there is one.
///
/// ```
/// assert!(kosh_jobs::testkit::case("wait_woken_by_push").is_some());
/// assert!(kosh_jobs::testkit::case("no_such_case").is_none());
/// ```
pub fn case(name: &str) -> Option<&'static Case> {
    CASES.iter().find(|c| c.name == name)
}

/// How long one case may take in real time before it counts as hung.
const CASE_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs one case by name on a new two-thread tokio runtime, as the tests generated by
/// [`conformance_tests!`](crate::conformance_tests) do; does nothing but print a notice if the
/// name is in `skip`. Panics if the case fails, or if there is no case of that name.
///
/// Call it from a plain `#[test]` (it starts its own runtime, which tokio refuses inside
/// another); from async code use [`Case::run`].
///
/// ```
/// use kosh_jobs::{Clock, memory::MemoryBackend};
///
/// kosh_jobs::testkit::run_case_blocking(
///     "reserve_zero_is_empty",
///     |clock: Clock| async move { MemoryBackend::with_clock(clock) },
///     &[],
/// );
/// ```
pub fn run_case_blocking<F: BackendFactory>(name: &str, factory: F, skip: &[&str]) {
    if skip.contains(&name) {
        eprintln!("conformance case `{name}` skipped: it is in this backend's `skip` list");
        return;
    }
    let Some(case) = case(name) else {
        panic!("no conformance case named `{name}`");
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("conformance case `{name}`: cannot start a tokio runtime: {e}"),
    };
    let factory: Arc<dyn BackendFactory> = Arc::new(factory);
    rt.block_on(async move {
        if tokio::time::timeout(CASE_TIMEOUT, case.run(factory))
            .await
            .is_err()
        {
            panic!("conformance case `{name}` did not finish within {CASE_TIMEOUT:?}");
        }
    });
}
