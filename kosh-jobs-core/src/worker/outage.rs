//! Backend outages: log once, back off, log the recovery.

use std::time::Duration;

use crate::error::BackendError;

/// Tracks one loop's failures against the backend so an outage is logged once (not once per
/// retry) and retries back off from 100 ms to 5 s (or [`Outage::max_wait`]).
pub(crate) struct Outage {
    what: &'static str,
    failures: u32,
    max_wait: Duration,
}

impl Outage {
    pub(crate) fn new(what: &'static str) -> Self {
        Outage {
            what,
            failures: 0,
            max_wait: Duration::from_secs(5),
        }
    }

    /// Caps the backoff at `max` instead of 5 s: a loop whose retries are what finds the store
    /// back (fetching) retries more often, and still logs the outage once.
    pub(crate) fn max_wait(mut self, max: Duration) -> Self {
        self.max_wait = max;
        self
    }

    /// Records a failure; returns how long to wait before retrying.
    pub(crate) fn failed(&mut self, e: &BackendError) -> Duration {
        self.failures = self.failures.saturating_add(1);
        if self.failures == 1 {
            tracing::warn!(error = %crate::ErrorChain(e), "{}: backend error; retrying with backoff", self.what);
        } else {
            tracing::debug!(error = %e, failures = self.failures, "{}: still failing", self.what);
        }
        let exp = self.failures.saturating_sub(1).min(6);
        Duration::from_millis(100u64 << exp).min(self.max_wait)
    }

    /// Records a success, logging the end of an outage.
    pub(crate) fn ok(&mut self) {
        if self.failures > 0 {
            tracing::info!(
                failures = self.failures,
                "{}: backend reachable again",
                self.what
            );
            self.failures = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_a_cap_and_resets() {
        let mut o = Outage::new("test");
        let e = BackendError::unavailable(std::io::Error::other("down"));
        let waits: Vec<_> = (0..10).map(|_| o.failed(&e)).collect();
        assert_eq!(waits[0], Duration::from_millis(100));
        assert_eq!(waits[1], Duration::from_millis(200));
        assert_eq!(*waits.last().unwrap(), Duration::from_secs(5));
        o.ok();
        assert_eq!(o.failed(&e), Duration::from_millis(100));
    }

    #[test]
    fn backoff_keeps_to_a_lower_cap() {
        let mut o = Outage::new("test").max_wait(Duration::from_secs(1));
        let e = BackendError::unavailable(std::io::Error::other("down"));
        let waits: Vec<_> = (0..10).map(|_| o.failed(&e)).collect();
        assert_eq!(waits[3], Duration::from_millis(800));
        assert_eq!(waits[4], Duration::from_secs(1));
        assert_eq!(*waits.last().unwrap(), Duration::from_secs(1));
    }
}
