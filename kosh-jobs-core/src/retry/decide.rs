//! The retry decision: a pure function of the attempt, the error and the policy.

use std::time::Duration;

use super::Backoff;

/// What happens after a failed attempt; see [`decide`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Run again after this delay.
    Retry(Duration),
    /// No more attempts: the job fails.
    Fail,
}

/// Decides whether failed attempt `attempt` (1-based) of `max_attempts` is retried, and when.
///
/// A permanent error never retries; otherwise the job retries while attempts remain, after
/// the backoff's delay. `random` (in `0.0..1.0`) picks the jitter.
///
/// ```
/// use kosh_jobs::retry::{decide, Decision};
/// use kosh_jobs::Backoff;
/// use std::time::Duration;
///
/// let b = Backoff::fixed(Duration::from_secs(5)).unwrap();
/// assert_eq!(decide(1, 3, false, &b, 0.0), Decision::Retry(Duration::from_secs(5)));
/// assert_eq!(decide(3, 3, false, &b, 0.0), Decision::Fail);
/// assert_eq!(decide(1, 3, true, &b, 0.0), Decision::Fail);
/// ```
pub fn decide(
    attempt: u32,
    max_attempts: u32,
    permanent: bool,
    backoff: &Backoff,
    random: f64,
) -> Decision {
    if permanent || attempt >= max_attempts {
        Decision::Fail
    } else {
        Decision::Retry(backoff.delay(attempt, random))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn retries_exactly_while_attempts_remain(
            attempt in 1u32..50, max in 1u32..50, permanent: bool, r in 0.0f64..1.0
        ) {
            let b = Backoff::exponential(Duration::from_millis(10), Duration::from_secs(5)).unwrap();
            let d = decide(attempt, max, permanent, &b, r);
            let should_retry = !permanent && attempt < max;
            prop_assert_eq!(matches!(d, Decision::Retry(_)), should_retry);
            if let Decision::Retry(delay) = d {
                prop_assert_eq!(delay, b.delay(attempt, r));
            }
        }

        #[test]
        fn a_job_runs_at_most_max_attempts(max in 1u32..30) {
            let b = Backoff::none();
            let mut attempt = 1;
            while let Decision::Retry(_) = decide(attempt, max, false, &b, 0.0) {
                attempt += 1;
            }
            prop_assert_eq!(attempt, max);
        }
    }
}
