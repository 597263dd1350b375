//! The backend conformance suite on [`MemoryBackend`].
//!
//! Needs the `testkit` feature: `cargo test -p kosh-jobs --features testkit`, or
//! `cargo test --workspace --all-features`.
#![cfg(feature = "testkit")]

use kosh_jobs::memory::MemoryBackend;
use kosh_jobs::Clock;

async fn memory(clock: Clock) -> MemoryBackend {
    MemoryBackend::with_clock(clock)
}

kosh_jobs::conformance_tests!(memory);
