//! Dates as banks write them.
//!
//! - `2024-03-05`, `2024/03/05`, `2024.03.05`, `20240305`: year first, always month then day.
//! - `05.03.2024`, `5.3.24`: with dots, always day first (the German/European style).
//! - `05/03/2024`, `05-03-2024`: with slashes or dashes and the year last, the order of day
//!   and month is decided **per file** ([`DateEvidence`]): day first, unless some date in
//!   the file has a second number above 12 and none has a first number above 12, which
//!   makes it a US-style (month first) file. A file showing both is read day first, and its
//!   month-first dates are then rejected as invalid.
//! - `05 Mar 2024`, `5-Mar-2024`, `05 March 2024`, `Mar 5, 2024`, `March 5, 2024`.
//! - A time after the date (`2024-03-05 14:22:01`, `2024-03-05T14:22:01Z`) is ignored.
//! - Two-digit years are 2000–2099.

use std::fmt;

use chrono::NaiveDate;

/// Whether `a/b/yyyy` means day/month or month/day.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DateOrder {
    /// `05/03/2024` is 5 March.
    #[default]
    DayFirst,
    /// `03/05/2024` is 5 March.
    MonthFirst,
}

/// What the dates of one file say about their order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DateEvidence {
    /// Dates only valid day first (first number above 12).
    pub day_first: u64,
    /// Dates only valid month first (second number above 12).
    pub month_first: u64,
}

impl DateEvidence {
    /// Takes one date of the file into account.
    pub fn observe(&mut self, raw: &str) {
        if let Some(Numeric::YearLast { a, b, sep, .. }) = numeric(strip_time(raw.trim())) {
            if sep == '.' {
                return;
            }
            if a > 12 && b <= 12 {
                self.day_first += 1;
            } else if b > 12 && a <= 12 {
                self.month_first += 1;
            }
        }
    }

    /// The order to read the file's ambiguous dates in.
    pub fn order(&self) -> DateOrder {
        if self.month_first > 0 && self.day_first == 0 {
            DateOrder::MonthFirst
        } else {
            DateOrder::DayFirst
        }
    }
}

/// Why a date was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DateError(pub String);

impl fmt::Display for DateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            write!(f, "empty date")
        } else {
            write!(f, "date `{}` is not a date in a known format", self.0)
        }
    }
}

impl std::error::Error for DateError {}

enum Numeric {
    YearFirst { y: i32, m: u32, d: u32 },
    YearLast { a: u32, b: u32, y: i32, sep: char },
}

fn strip_time(s: &str) -> &str {
    // `2024-03-05T10:00:00Z` or `05.03.2024 10:00`: cut at the first T or space that is
    // followed by something with a colon.
    for (i, c) in s.char_indices() {
        if (c == 'T' || c == ' ') && i >= 6 && s[i + 1..].contains(':') {
            return s[..i].trim_end();
        }
    }
    s
}

fn year(s: &str) -> Option<i32> {
    let v: i32 = s.parse().ok()?;
    match s.len() {
        4 => Some(v),
        2 => Some(2000 + v),
        _ => None,
    }
}

fn numeric(s: &str) -> Option<Numeric> {
    if s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Numeric::YearFirst {
            y: s[..4].parse().ok()?,
            m: s[4..6].parse().ok()?,
            d: s[6..].parse().ok()?,
        });
    }
    let sep = s.chars().find(|c| matches!(c, '-' | '.' | '/'))?;
    let parts: Vec<&str> = s.split(sep).collect();
    if parts.len() != 3
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    if parts[0].len() == 4 {
        if parts[1].len() > 2 || parts[2].len() > 2 {
            return None;
        }
        return Some(Numeric::YearFirst {
            y: parts[0].parse().ok()?,
            m: parts[1].parse().ok()?,
            d: parts[2].parse().ok()?,
        });
    }
    if parts[0].len() > 2 || parts[1].len() > 2 {
        return None;
    }
    Some(Numeric::YearLast {
        a: parts[0].parse().ok()?,
        b: parts[1].parse().ok()?,
        y: year(parts[2])?,
        sep,
    })
}

const TEXT_FORMATS: &[&str] = &[
    "%d %b %Y",
    "%d-%b-%Y",
    "%d %B %Y",
    "%d-%B-%Y",
    "%b %d, %Y",
    "%B %d, %Y",
    "%b %d %Y",
    "%d %b %y",
    "%d-%b-%y",
];

/// Parses a date; `order` says how to read `a/b/yyyy` (see the module docs).
///
/// ```
/// use csv_upload::parse::{parse_date, DateOrder};
/// let d = parse_date("03/25/2024", DateOrder::MonthFirst).unwrap();
/// assert_eq!(d.to_string(), "2024-03-25");
/// ```
pub fn parse_date(raw: &str, order: DateOrder) -> Result<NaiveDate, DateError> {
    let s = strip_time(raw.trim());
    let err = || DateError(raw.trim().to_owned());
    if s.is_empty() {
        return Err(err());
    }
    if let Some(n) = numeric(s) {
        let (y, m, d) = match n {
            Numeric::YearFirst { y, m, d } => (y, m, d),
            Numeric::YearLast { a, b, y, sep } => {
                if sep == '.' || order == DateOrder::DayFirst {
                    (y, b, a)
                } else {
                    (y, a, b)
                }
            }
        };
        return NaiveDate::from_ymd_opt(y, m, d).ok_or_else(err);
    }
    TEXT_FORMATS
        .iter()
        .find_map(|f| NaiveDate::parse_from_str(s, f).ok())
        .ok_or_else(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> String {
        parse_date(s, DateOrder::DayFirst).unwrap().to_string()
    }

    #[test]
    fn formats() {
        assert_eq!(d("2024-03-05"), "2024-03-05");
        assert_eq!(d("2024/03/05"), "2024-03-05");
        assert_eq!(d("20240305"), "2024-03-05");
        assert_eq!(d("05.03.2024"), "2024-03-05");
        assert_eq!(d("5.3.24"), "2024-03-05");
        assert_eq!(d("05/03/2024"), "2024-03-05");
        assert_eq!(d("05-03-2024"), "2024-03-05");
        assert_eq!(d("05 Mar 2024"), "2024-03-05");
        assert_eq!(d("5-Mar-2024"), "2024-03-05");
        assert_eq!(d("05 March 2024"), "2024-03-05");
        assert_eq!(d("Mar 5, 2024"), "2024-03-05");
        assert_eq!(d("2024-03-05 14:22:01"), "2024-03-05");
        assert_eq!(d("2024-03-05T14:22:01Z"), "2024-03-05");
        assert_eq!(d(" 05.03.2024 10:00 "), "2024-03-05");
    }

    #[test]
    fn month_first_when_the_file_says_so() {
        let m = |s| parse_date(s, DateOrder::MonthFirst).unwrap().to_string();
        assert_eq!(m("03/25/2024"), "2024-03-25");
        assert_eq!(m("03/05/2024"), "2024-03-05");
        // Dots stay day first whatever the file's slash order.
        assert_eq!(m("05.03.2024"), "2024-03-05");
        assert!(parse_date("03/25/2024", DateOrder::DayFirst).is_err());
    }

    #[test]
    fn evidence_decides_the_order() {
        let mut e = DateEvidence::default();
        e.observe("03/05/2024");
        assert_eq!(e.order(), DateOrder::DayFirst, "ambiguous alone: day first");
        e.observe("03/25/2024");
        assert_eq!(e.order(), DateOrder::MonthFirst);
        e.observe("25/03/2024");
        assert_eq!(e.order(), DateOrder::DayFirst, "conflicting: day first");
        let mut dots = DateEvidence::default();
        dots.observe("05.25.2024");
        assert_eq!(dots, DateEvidence::default(), "dots are never month first");
    }

    #[test]
    fn refusals() {
        for bad in [
            "",
            "yesterday",
            "2024-13-01",
            "31.02.2024",
            "1/2",
            "2024-3-5-1",
            "123/1/2024",
        ] {
            assert!(parse_date(bad, DateOrder::DayFirst).is_err(), "{bad}");
        }
        assert_eq!(
            parse_date("x", DateOrder::DayFirst)
                .unwrap_err()
                .to_string(),
            "date `x` is not a date in a known format"
        );
    }
}
