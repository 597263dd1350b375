//! The backend conformance suite on [`MemoryBackend`].
//!
//! The `testkit` feature is turned on for this crate's tests by its self dev-dependency, so
//! plain `cargo test --workspace` (or `cargo test -p kosh-jobs`) runs it; without the feature
//! this file fails to compile rather than being silently skipped.

use kosh_jobs::memory::MemoryBackend;
use kosh_jobs::Clock;

async fn memory(clock: Clock) -> MemoryBackend {
    MemoryBackend::with_clock(clock)
}

kosh_jobs::conformance_tests!(memory);
