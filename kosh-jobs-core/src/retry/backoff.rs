//! Backoff: the delay before attempt n + 1 after attempt n failed.

use std::time::Duration;

use crate::error::Error;

/// The longest delay any backoff produces (30 days), so a retry is never scheduled years ahead.
pub const MAX_DELAY: Duration = Duration::from_secs(30 * 24 * 3600);

/// How long to wait before retrying, by attempt number, with optional jitter.
///
/// Built validated: a cap below the base, a zero base for a growing backoff, a delay above
/// [`MAX_DELAY`] or a jitter outside `0.0..=1.0` is an error, not a surprise at run time.
///
/// ```
/// use kosh_jobs::Backoff;
/// use std::time::Duration;
///
/// let b = Backoff::exponential(Duration::from_secs(2), Duration::from_secs(600)).unwrap();
/// assert_eq!(b.delay(1, 0.5), Duration::from_secs(2));   // after the first failure
/// assert_eq!(b.delay(2, 0.5), Duration::from_secs(4));
/// assert_eq!(b.delay(20, 0.5), Duration::from_secs(600)); // capped
///
/// assert!(Backoff::exponential(Duration::from_secs(60), Duration::from_secs(10)).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    kind: Kind,
    jitter: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    None,
    Fixed(Duration),
    Linear { step: Duration, max: Duration },
    Exponential { base: Duration, max: Duration },
}

impl Backoff {
    /// Retry at once.
    pub const fn none() -> Self {
        Backoff {
            kind: Kind::None,
            jitter: 0.0,
        }
    }

    /// The same delay before every retry.
    pub fn fixed(delay: Duration) -> Result<Self, Error> {
        check_max("fixed delay", delay)?;
        Ok(Backoff {
            kind: Kind::Fixed(delay),
            jitter: 0.0,
        })
    }

    /// `step × attempt`, capped at `max`.
    pub fn linear(step: Duration, max: Duration) -> Result<Self, Error> {
        check_growing("linear", step, max)?;
        Ok(Backoff {
            kind: Kind::Linear { step, max },
            jitter: 0.0,
        })
    }

    /// `base × 2^(attempt - 1)`, capped at `max`.
    pub fn exponential(base: Duration, max: Duration) -> Result<Self, Error> {
        check_growing("exponential", base, max)?;
        Ok(Backoff {
            kind: Kind::Exponential { base, max },
            jitter: 0.0,
        })
    }

    /// Randomizes each delay by up to ± `fraction` of it (0.0 to 1.0), so retries of many jobs
    /// that failed together do not all come back at the same moment. The result never exceeds
    /// the cap.
    pub fn with_jitter(mut self, fraction: f64) -> Result<Self, Error> {
        if !(0.0..=1.0).contains(&fraction) || fraction.is_nan() {
            return Err(Error::InvalidInput(format!(
                "backoff jitter must be between 0.0 and 1.0, got {fraction}"
            )));
        }
        self.jitter = fraction;
        Ok(self)
    }

    /// The jitter fraction.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// The largest delay this backoff can produce.
    pub fn cap(&self) -> Duration {
        match self.kind {
            Kind::None => Duration::ZERO,
            Kind::Fixed(d) => scale(d, 1.0 + self.jitter).min(MAX_DELAY),
            Kind::Linear { max, .. } | Kind::Exponential { max, .. } => max,
        }
    }

    /// The delay after failed attempt `attempt` (1-based). `random` is a number in `0.0..1.0`
    /// that picks the jitter (ignored without jitter); passing it in keeps this a pure function.
    pub fn delay(&self, attempt: u32, random: f64) -> Duration {
        let attempt = attempt.max(1);
        let plain = match self.kind {
            Kind::None => return Duration::ZERO,
            Kind::Fixed(d) => d,
            Kind::Linear { step, max } => step.saturating_mul(attempt).min(max),
            Kind::Exponential { base, max } => 1u32
                .checked_shl(attempt - 1)
                .and_then(|m| base.checked_mul(m))
                .unwrap_or(max)
                .min(max),
        };
        if self.jitter == 0.0 {
            return plain;
        }
        let r = if random.is_finite() {
            random.clamp(0.0, 1.0)
        } else {
            0.5
        };
        let factor = 1.0 + self.jitter * (2.0 * r - 1.0);
        scale(plain, factor).min(self.cap())
    }
}

impl Default for Backoff {
    /// Exponential from 1 s, capped at 1 hour.
    fn default() -> Self {
        Backoff {
            kind: Kind::Exponential {
                base: Duration::from_secs(1),
                max: Duration::from_secs(3600),
            },
            jitter: 0.0,
        }
    }
}

fn scale(d: Duration, factor: f64) -> Duration {
    let secs = d.as_secs_f64() * factor.max(0.0);
    if secs >= MAX_DELAY.as_secs_f64() {
        MAX_DELAY
    } else {
        Duration::from_secs_f64(secs)
    }
}

fn check_max(what: &str, d: Duration) -> Result<(), Error> {
    if d > MAX_DELAY {
        return Err(Error::InvalidInput(format!(
            "backoff {what} of {d:?} exceeds the maximum of 30 days"
        )));
    }
    Ok(())
}

fn check_growing(what: &str, base: Duration, max: Duration) -> Result<(), Error> {
    if base.is_zero() {
        return Err(Error::InvalidInput(format!(
            "{what} backoff needs a base above zero (use Backoff::none() for no delay)"
        )));
    }
    if max < base {
        return Err(Error::InvalidInput(format!(
            "{what} backoff cap {max:?} is below its base {base:?}"
        )));
    }
    check_max(&format!("{what} cap"), max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn shapes() {
        let lin = Backoff::linear(5 * S, 12 * S).unwrap();
        assert_eq!(
            [1, 2, 3].map(|a| lin.delay(a, 0.0)),
            [5 * S, 10 * S, 12 * S]
        );
        assert_eq!(Backoff::fixed(7 * S).unwrap().delay(9, 0.3), 7 * S);
        assert_eq!(Backoff::none().delay(3, 0.3), Duration::ZERO);
        let exp = Backoff::exponential(S, 3600 * S).unwrap();
        assert_eq!(exp.delay(u32::MAX, 0.0), 3600 * S);
    }

    #[test]
    fn invalid_configurations_are_refused() {
        assert!(Backoff::linear(Duration::ZERO, S).is_err());
        assert!(Backoff::exponential(10 * S, S).is_err());
        assert!(Backoff::fixed(MAX_DELAY + S).is_err());
        assert!(Backoff::exponential(S, MAX_DELAY + S).is_err());
        assert!(Backoff::none().with_jitter(1.5).is_err());
        assert!(Backoff::none().with_jitter(f64::NAN).is_err());
        let msg = Backoff::exponential(10 * S, S).unwrap_err().to_string();
        assert!(msg.contains("below its base"), "{msg}");
    }

    fn any_backoff() -> impl Strategy<Value = Backoff> {
        let d = (1u64..100_000).prop_map(Duration::from_millis);
        prop_oneof![
            Just(Backoff::none()),
            d.clone().prop_map(|x| Backoff::fixed(x).unwrap()),
            (d.clone(), 1u64..1000).prop_map(|(b, m)| Backoff::linear(b, b * m as u32).unwrap()),
            (d, 1u64..1000).prop_map(|(b, m)| Backoff::exponential(b, b * m as u32).unwrap()),
        ]
        .prop_flat_map(|b| (0.0f64..=1.0).prop_map(move |j| b.with_jitter(j).unwrap()))
    }

    proptest! {
        #[test]
        fn delay_never_exceeds_the_cap(b in any_backoff(), attempt in 1u32..200, r in 0.0f64..1.0) {
            let d = b.delay(attempt, r);
            prop_assert!(d <= b.cap(), "{d:?} > {:?}", b.cap());
            prop_assert!(d <= MAX_DELAY);
        }

        #[test]
        fn without_jitter_delay_grows_with_attempts(b in any_backoff(), attempt in 1u32..200) {
            let b = b.with_jitter(0.0).unwrap();
            prop_assert!(b.delay(attempt, 0.0) <= b.delay(attempt + 1, 0.0));
        }

        #[test]
        fn jitter_stays_within_its_fraction(b in any_backoff(), attempt in 1u32..60, r in 0.0f64..1.0) {
            let plain = b.with_jitter(0.0).unwrap().delay(attempt, 0.0).as_secs_f64();
            let d = b.delay(attempt, r).as_secs_f64();
            let j = b.jitter();
            prop_assert!(d >= plain * (1.0 - j) - 1e-6);
            prop_assert!(d <= plain * (1.0 + j) + 1e-6);
        }
    }
}
