//! When a schedule's ticks are: a cron expression in a time zone (croner and chrono-tz), or
//! a fixed interval.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

use super::Every;
use crate::clock::Timestamp;

/// The shortest interval a schedule may have.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// A schedule's ticks, ready to compute.
#[derive(Clone, Debug)]
pub enum Timing {
    /// Cron ticks in a time zone.
    Cron(Box<Cron>, Tz),
    /// Ticks a fixed interval apart.
    Interval(Duration),
}

fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
}

/// Checks a cron expression: five fields, or six with seconds first, or an `@daily`-style
/// alias. The error says what is wrong.
///
/// ```
/// use kosh_jobs::schedule::validate_cron;
/// assert!(validate_cron("*/5 * * * *").is_ok());
/// assert!(validate_cron("0 0 L * *").is_ok());
/// assert!(validate_cron("@hourly").is_ok());
/// assert!(validate_cron("0 0 * * 1#2").is_ok());
/// assert!(validate_cron("0 25 * * *").is_err());
/// assert!(validate_cron("every day").is_err());
/// ```
pub fn validate_cron(expr: &str) -> Result<(), String> {
    parse_cron(expr).map(|_| ())
}

fn parse_cron(expr: &str) -> Result<Cron, String> {
    let trimmed = expr.trim();
    if trimmed.is_empty() {
        return Err("the cron expression is empty".into());
    }
    parser()
        .parse(trimmed)
        .map_err(|e| format!("invalid cron expression {trimmed:?}: {e}"))
}

/// Checks an IANA time zone name (e.g. `Europe/Berlin`, `UTC`).
///
/// ```
/// use kosh_jobs::schedule::validate_time_zone;
/// assert!(validate_time_zone("Asia/Kolkata").is_ok());
/// assert!(validate_time_zone("Mars/Olympus").is_err());
/// ```
pub fn validate_time_zone(tz: &str) -> Result<(), String> {
    parse_tz(tz).map(|_| ())
}

fn parse_tz(tz: &str) -> Result<Tz, String> {
    tz.parse::<Tz>()
        .map_err(|_| format!("unknown time zone {tz:?}: use an IANA name such as Europe/Berlin"))
}

impl Timing {
    /// Compiles a schedule's timing; the error says what is wrong.
    pub fn new(every: &Every) -> Result<Self, String> {
        match every {
            Every::Cron { expr, tz } => {
                Ok(Timing::Cron(Box::new(parse_cron(expr)?), parse_tz(tz)?))
            }
            Every::Interval { ms } => {
                let d = Duration::from_millis(*ms);
                if d < MIN_INTERVAL {
                    return Err(format!(
                        "an interval must be at least {} s, not {ms} ms",
                        MIN_INTERVAL.as_secs()
                    ));
                }
                Ok(Timing::Interval(d))
            }
        }
    }

    /// The first tick strictly after `t`, or `None` if there is none (an expression that
    /// never matches again).
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        match self {
            Timing::Interval(d) => Some(t + *d),
            Timing::Cron(cron, tz) => {
                let local = to_zone(t, tz)?;
                let next = cron.find_next_occurrence(&local, false).ok()?;
                Some(Timestamp::from_millis(next.timestamp_millis()))
            }
        }
    }

    /// The last tick at or before `t`, not before `from` (a tick itself, the cursor): for an
    /// interval, counted from `from`.
    pub fn last_at_or_before(&self, from: Timestamp, t: Timestamp) -> Option<Timestamp> {
        if t < from {
            return None;
        }
        match self {
            Timing::Interval(d) => {
                let step = i64::try_from(d.as_millis()).ok()?.max(1);
                let k = (t.as_millis() - from.as_millis()) / step;
                Some(Timestamp::from_millis(from.as_millis() + k * step))
            }
            Timing::Cron(cron, tz) => {
                let local = to_zone(t, tz)?;
                let prev = cron.find_previous_occurrence(&local, true).ok()?;
                let prev = Timestamp::from_millis(prev.timestamp_millis());
                Some(prev.max(from))
            }
        }
    }

    /// The tick before `tick`, if it is not before `from`.
    pub fn previous(&self, from: Timestamp, tick: Timestamp) -> Option<Timestamp> {
        let p = match self {
            Timing::Interval(d) => tick.saturating_sub(*d),
            Timing::Cron(cron, tz) => {
                let local = to_zone(tick, tz)?;
                let prev = cron.find_previous_occurrence(&local, false).ok()?;
                Timestamp::from_millis(prev.timestamp_millis())
            }
        };
        (p >= from && p < tick).then_some(p)
    }

    /// The length of the interval that starts at `tick`: to the next tick.
    pub fn interval_at(&self, tick: Timestamp) -> Duration {
        match self {
            Timing::Interval(d) => *d,
            Timing::Cron(..) => self.next_after(tick).map_or(Duration::from_secs(60), |n| {
                n.saturating_duration_since(tick)
            }),
        }
    }
}

fn to_zone(t: Timestamp, tz: &Tz) -> Option<DateTime<Tz>> {
    let utc = Utc.timestamp_millis_opt(t.as_millis()).single()?;
    Some(utc.with_timezone(tz))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        Timestamp::from_millis(
            DateTime::parse_from_rfc3339(s)
                .expect("a valid RFC 3339 time")
                .timestamp_millis(),
        )
    }

    fn cron(expr: &str, tz: &str) -> Timing {
        Timing::new(&Every::Cron {
            expr: expr.into(),
            tz: tz.into(),
        })
        .expect("a valid schedule")
    }

    #[test]
    fn daily_in_a_zone_without_dst() {
        let t = cron("0 3 * * *", "Asia/Kolkata");
        // 03:00 IST is 21:30 UTC the day before.
        assert_eq!(
            t.next_after(at("2026-03-01T00:00:00Z")),
            Some(at("2026-03-01T21:30:00Z"))
        );
        assert_eq!(
            t.interval_at(at("2026-03-01T21:30:00Z")),
            Duration::from_secs(86_400)
        );
    }

    #[test]
    fn a_fixed_time_in_the_spring_gap_runs_after_it() {
        // Europe/Berlin skips 02:00-03:00 on 2026-03-29: 02:30 does not exist that day.
        let t = cron("30 2 * * *", "Europe/Berlin");
        let day_before = at("2026-03-28T01:30:00Z"); // 02:30 CET
        let gap_day = t.next_after(day_before).expect("a next tick");
        assert_eq!(gap_day, at("2026-03-29T01:00:00Z")); // 03:00 CEST, first valid time
        let after = t.next_after(gap_day).expect("a next tick");
        assert_eq!(after, at("2026-03-30T00:30:00Z")); // 02:30 CEST
    }

    #[test]
    fn a_fixed_time_in_the_autumn_overlap_runs_once() {
        // Europe/Berlin repeats 02:00-03:00 on 2026-10-25.
        let t = cron("30 2 * * *", "Europe/Berlin");
        let first = t
            .next_after(at("2026-10-24T12:00:00Z"))
            .expect("a next tick");
        assert_eq!(first, at("2026-10-25T00:30:00Z")); // 02:30 CEST, the earlier one
        let next = t.next_after(first).expect("a next tick");
        assert_eq!(next, at("2026-10-26T01:30:00Z")); // 02:30 CET the next day
    }

    #[test]
    fn an_interval_job_keeps_its_interval_through_the_overlap() {
        let t = cron("0 * * * *", "Europe/Berlin");
        let mut tick = at("2026-10-25T00:00:00Z"); // 02:00 CEST
        let mut gaps = Vec::new();
        for _ in 0..3 {
            let next = t.next_after(tick).expect("a next tick");
            gaps.push(next.saturating_duration_since(tick));
            tick = next;
        }
        assert_eq!(gaps, vec![Duration::from_secs(3600); 3]);
    }

    #[test]
    fn last_tick_before_a_time() {
        let t = cron("*/10 * * * *", "UTC");
        let from = at("2026-01-01T00:00:00Z");
        assert_eq!(
            t.last_at_or_before(from, at("2026-01-01T00:35:00Z")),
            Some(at("2026-01-01T00:30:00Z"))
        );
        assert_eq!(
            t.previous(from, at("2026-01-01T00:30:00Z")),
            Some(at("2026-01-01T00:20:00Z"))
        );
        assert_eq!(t.previous(from, from), None);
        let i = Timing::Interval(Duration::from_secs(5));
        assert_eq!(
            i.last_at_or_before(from, from + Duration::from_millis(12_300)),
            Some(from + Duration::from_secs(10))
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = validate_cron("0 0 32 * *").expect_err("day 32 does not exist");
        assert!(e.contains("0 0 32 * *"), "{e}");
        let e = validate_time_zone("Europe/Berln").expect_err("misspelt");
        assert!(e.contains("IANA"), "{e}");
        let e = Timing::new(&Every::Interval { ms: 500 }).expect_err("too short");
        assert!(e.contains("at least 1 s"), "{e}");
        assert!(validate_cron("").is_err());
        // Seconds are optional; years are not cron.
        assert!(validate_cron("*/5 * * * * *").is_ok());
        assert!(validate_cron("0 0 1 1 * 2030").is_err());
    }
}
