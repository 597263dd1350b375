//! Retries: how long to wait before the next attempt, and whether there is one.
//!
//! The policy lives here, in one place: backends never decide retries themselves.

mod backoff;
mod decide;

pub use backoff::{Backoff, MAX_DELAY};
pub use decide::{decide, Decision};
