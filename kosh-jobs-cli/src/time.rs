//! Times on the command line (`2h`, `02:10`, RFC 3339) and in the output (absolute UTC and
//! relative, "3 min ago").

use std::time::Duration;

use chrono::{DateTime, Local, NaiveTime, TimeZone, Utc};
use kosh_jobs::Timestamp;

/// A point in time given on the command line, resolved when parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimeArg(pub(crate) Timestamp);

impl TimeArg {
    /// `2h` / `7d` / `90s` (that long ago), `02:10` or `02:10:30` (that local time today, or
    /// yesterday if it is still to come), or an RFC 3339 time (`2025-06-01T02:10:00Z`).
    pub(crate) fn parse(s: &str) -> Result<TimeArg, String> {
        Self::parse_at(s, Utc::now())
    }

    fn parse_at(s: &str, now: DateTime<Utc>) -> Result<TimeArg, String> {
        let s = s.trim();
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return Ok(TimeArg(Timestamp::from_millis(t.timestamp_millis())));
        }
        if let Ok(tod) = NaiveTime::parse_from_str(s, "%H:%M:%S")
            .or_else(|_| NaiveTime::parse_from_str(s, "%H:%M"))
        {
            let local_now = now.with_timezone(&Local);
            let mut day = local_now.date_naive();
            if day.and_time(tod) > local_now.naive_local() {
                day = day.pred_opt().unwrap_or(day);
            }
            let at = Local
                .from_local_datetime(&day.and_time(tod))
                .earliest()
                .ok_or_else(|| format!("`{s}` does not exist in the local time zone today"))?;
            return Ok(TimeArg(Timestamp::from_millis(at.timestamp_millis())));
        }
        match humantime::parse_duration(s) {
            Ok(ago) => {
                let now = Timestamp::from_millis(now.timestamp_millis());
                Ok(TimeArg(now - ago))
            }
            Err(_) => Err(format!(
                "`{s}` is not a time: write a duration ago (30m, 2h, 7d), a time today \
                 (02:10) or an RFC 3339 time (2025-06-01T02:10:00Z)"
            )),
        }
    }
}

/// `2025-06-01T02:10:00.123Z`: for JSON (the dashboard's serialiser's RFC 3339, so that
/// every time of a `--json` document reads the same).
pub(crate) fn iso(t: Timestamp) -> String {
    kosh_jobs::admin::json::rfc3339(t)
}

/// `2025-06-01 02:10:00Z`: for people.
pub(crate) fn abs(t: Timestamp) -> String {
    match Utc.timestamp_millis_opt(t.as_millis()).single() {
        Some(d) => d.format("%Y-%m-%d %H:%M:%SZ").to_string(),
        None => format!("{}ms", t.as_millis()),
    }
}

/// `3 min ago`, `in 2 h`, `just now`.
pub(crate) fn rel(t: Timestamp, now: Timestamp) -> String {
    if t <= now {
        let d = now.saturating_duration_since(t);
        if d < Duration::from_secs(1) {
            "just now".into()
        } else {
            format!("{} ago", span(d))
        }
    } else {
        format!("in {}", span(t.saturating_duration_since(now)))
    }
}

/// `2025-06-01 02:10:00Z (3 min ago)`.
pub(crate) fn both(t: Timestamp, now: Timestamp) -> String {
    format!("{} ({})", abs(t), rel(t, now))
}

/// A duration in its largest units: `850 ms`, `42 s`, `3 min 20 s`, `2 h 5 min`, `3 d 4 h`.
pub(crate) fn span(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{} ms", d.as_millis()),
        1..=59 => format!("{s} s"),
        60..=3599 => pair(s / 60, "min", s % 60, "s"),
        3600..=86_399 => pair(s / 3600, "h", s % 3600 / 60, "min"),
        _ => pair(s / 86_400, "d", s % 86_400 / 3600, "h"),
    }
}

fn pair(a: u64, ua: &str, b: u64, ub: &str) -> String {
    if b == 0 {
        format!("{a} {ua}")
    } else {
        format!("{a} {ua} {b} {ub}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-06-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn durations_are_ago() {
        let t = TimeArg::parse_at("2h", now()).unwrap();
        assert_eq!(iso(t.0), "2025-06-01T10:00:00.000Z");
    }

    #[test]
    fn rfc3339_times() {
        let t = TimeArg::parse_at("2025-05-31T23:00:00+02:00", now()).unwrap();
        assert_eq!(iso(t.0), "2025-05-31T21:00:00.000Z");
    }

    #[test]
    fn iso_is_what_chrono_writes() {
        // Across chrono's range (some ±262,000 years): both sides of the epoch, leap days,
        // the years 0 and 10,000.
        let max = 8_200_000_000_000_000i64;
        let mut at: Vec<i64> = (-2_000..=2_000)
            .map(|i: i64| i * (max / 2_000) + i * i * 7_919)
            .collect();
        at.extend([
            0,
            -1,
            1,
            951_782_400_000,
            -62_167_219_200_001,
            253_402_300_800_000,
        ]);
        for ms in at {
            let chrono = Utc
                .timestamp_millis_opt(ms)
                .single()
                .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
            assert_eq!(Some(iso(Timestamp::from_millis(ms))), chrono, "{ms} ms");
        }
    }

    #[test]
    fn times_of_day_are_in_the_past() {
        let t = TimeArg::parse_at("02:10", now()).unwrap();
        let n = Timestamp::from_millis(now().timestamp_millis());
        assert!(t.0 <= n && t.0 > n - Duration::from_secs(86_400), "{t:?}");
    }

    #[test]
    fn nonsense_is_refused() {
        let err = TimeArg::parse_at("yesterday-ish", now()).unwrap_err();
        assert!(err.contains("RFC 3339"), "{err}");
    }

    #[test]
    fn spans_and_relative_times() {
        assert_eq!(span(Duration::from_millis(850)), "850 ms");
        assert_eq!(span(Duration::from_secs(200)), "3 min 20 s");
        assert_eq!(span(Duration::from_secs(7200)), "2 h");
        assert_eq!(span(Duration::from_secs(3 * 86_400 + 4 * 3600)), "3 d 4 h");
        let n = Timestamp::from_millis(1_000_000);
        assert_eq!(rel(n - Duration::from_secs(180), n), "3 min ago");
        assert_eq!(rel(n + Duration::from_secs(120), n), "in 2 min");
        assert_eq!(rel(n, n), "just now");
        assert_eq!(abs(Timestamp::from_millis(0)), "1970-01-01 00:00:00Z");
    }
}
