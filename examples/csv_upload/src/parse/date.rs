//! Dates as banks write them.
//!
//! - `2024-03-05`, `2024/03/05`, `2024.03.05`, `20240305`: year first, always month then day.
//! - `05.03.2024`, `5.3.24`: with dots, always day first (the German/European style).
//! - `05/03/2024`, `05-03-2024`, `05/03/24`: with slashes or dashes and the year last, the
//!   order of day and month is decided **per file** (see [`super::order`]), and given here.
//! - `05 Mar 2024`, `5-Mar-2024`, `01-APR-26`, `05 March 2024`, `Mar 5, 2024`, `March 5 2024`.
//! - Without a year (`02 Nov`, `Nov 2`): the latest such day on or before the file's
//!   *year anchor* (its latest full date, else the day of the upload), so a statement that
//!   crosses a new year reads `28 Dec` as last year.
//! - A time after the date (`2024-03-05 14:22:01`, `2024-03-05T14:22:01Z`) is ignored.
//! - Two-digit years are 2000–2099.

use std::fmt;

use chrono::{Datelike, NaiveDate};

use super::order::DateOrder;

/// Why a date was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DateError {
    /// The date as found.
    pub raw: String,
    /// The order it was read in, when that is why it is not a date.
    pub order: Option<DateOrder>,
}

impl DateError {
    fn new(raw: &str) -> Self {
        DateError {
            raw: raw.trim().to_owned(),
            order: None,
        }
    }
}

impl fmt::Display for DateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.order, self.raw.is_empty()) {
            (_, true) => write!(f, "empty date"),
            (Some(o), false) => write!(
                f,
                "date `{}` is not a date when read as {} (as the rest of the file is)",
                self.raw,
                o.words()
            ),
            (None, false) => write!(f, "date `{}` is not a date in a known format", self.raw),
        }
    }
}

impl std::error::Error for DateError {}

/// The shape of a numeric date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Numeric {
    /// Year first: always year, month, day.
    YearFirst { y: i32, m: u32, d: u32 },
    /// Year last: `a` and `b` are day and month in some order; `sep` is `/`, `-` or `.`.
    YearLast { a: u32, b: u32, y: i32, sep: char },
}

pub(crate) fn strip_time(s: &str) -> &str {
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

/// A numeric date's parts, when `s` (trimmed, without a time) is one.
pub(crate) fn numeric(s: &str) -> Option<Numeric> {
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

/// The two readings of a date: day first and month first. Equal for a date whose format
/// leaves no choice; `None` where a reading is not a date.
pub(crate) fn readings(raw: &str) -> (Option<NaiveDate>, Option<NaiveDate>) {
    let s = strip_time(raw.trim());
    match numeric(s) {
        Some(Numeric::YearLast { a, b, y, sep }) if sep != '.' => (
            NaiveDate::from_ymd_opt(y, b, a),
            NaiveDate::from_ymd_opt(y, a, b),
        ),
        _ => {
            let d = parse_date(raw, DateOrder::DayFirst).ok();
            (d, d)
        }
    }
}

const TEXT_FORMATS: &[&str] = &[
    "%d %b %Y",
    "%d-%b-%Y",
    "%d/%b/%Y",
    "%d %b, %Y",
    "%b %d, %Y",
    "%b %d %Y",
    "%b-%d-%Y",
    "%d %b %y",
    "%d-%b-%y",
    "%d/%b/%y",
    "%d %B %Y",
    "%d-%B-%Y",
    "%B %d, %Y",
    "%B %d %Y",
    "%d %B %y",
    "%A, %d %B %Y",
    "%a %d %b %Y",
];

/// `02 Nov`, `2-Nov`, `Nov 2`, `November 02`: day and month without a year.
fn day_month(s: &str) -> Option<(u32, u32)> {
    let parts: Vec<&str> = s
        .split([' ', '-', '/', ','])
        .filter(|p| !p.is_empty())
        .collect();
    let [x, y] = parts.as_slice() else {
        return None;
    };
    let (day, month) = if x.bytes().all(|b| b.is_ascii_digit()) {
        (x, y)
    } else {
        (y, x)
    };
    let day: u32 = day.parse().ok().filter(|_| day.len() <= 2)?;
    let probe = format!("1 {month} 2000");
    let m = NaiveDate::parse_from_str(&probe, "%d %b %Y")
        .or_else(|_| NaiveDate::parse_from_str(&probe, "%d %B %Y"))
        .ok()?
        .month();
    Some((day, m))
}

/// The latest `day`/`month` on or before `anchor`.
fn before(anchor: NaiveDate, month: u32, day: u32) -> Option<NaiveDate> {
    (0..8).find_map(|back| {
        NaiveDate::from_ymd_opt(anchor.year() - back, month, day).filter(|d| *d <= anchor)
    })
}

/// Parses a date; `order` says how to read `a/b/yyyy` (see the module docs). A date
/// without a year is refused: see [`parse_date_near`].
///
/// ```
/// use csv_upload::parse::{parse_date, DateOrder};
/// let d = parse_date("03/25/2024", DateOrder::MonthFirst).unwrap();
/// assert_eq!(d.to_string(), "2024-03-25");
/// assert_eq!(parse_date("01-APR-26", DateOrder::DayFirst).unwrap().to_string(), "2026-04-01");
/// ```
pub fn parse_date(raw: &str, order: DateOrder) -> Result<NaiveDate, DateError> {
    parse_date_near(raw, order, None)
}

/// Parses a date like [`parse_date`]; a date without a year (`02 Nov`) is the latest such
/// day on or before `anchor`.
///
/// ```
/// use chrono::NaiveDate;
/// use csv_upload::parse::{parse_date_near, DateOrder};
/// let anchor = NaiveDate::from_ymd_opt(2026, 1, 4);
/// let d = |s| parse_date_near(s, DateOrder::DayFirst, anchor).unwrap().to_string();
/// assert_eq!(d("28 Dec"), "2025-12-28");
/// assert_eq!(d("02 Jan"), "2026-01-02");
/// ```
pub fn parse_date_near(
    raw: &str,
    order: DateOrder,
    anchor: Option<NaiveDate>,
) -> Result<NaiveDate, DateError> {
    let s = strip_time(raw.trim());
    if s.is_empty() {
        return Err(DateError::new(raw));
    }
    if let Some(n) = numeric(s) {
        let (y, m, d, ordered) = match n {
            Numeric::YearFirst { y, m, d } => (y, m, d, false),
            Numeric::YearLast { a, b, y, sep } => {
                if sep == '.' {
                    (y, b, a, false)
                } else if order == DateOrder::DayFirst {
                    (y, b, a, true)
                } else {
                    (y, a, b, true)
                }
            }
        };
        return NaiveDate::from_ymd_opt(y, m, d).ok_or_else(|| {
            let mut e = DateError::new(raw);
            // `13/25/2024` is no date either way; `03/25/2024` is one, just not this way.
            if ordered && NaiveDate::from_ymd_opt(y, d, m).is_some() {
                e.order = Some(order);
            }
            e
        });
    }
    if let Some(d) = TEXT_FORMATS.iter().find_map(|f| {
        // `%Y` takes `26` as the year 26: leave two-digit years to `%y`.
        NaiveDate::parse_from_str(s, f)
            .ok()
            .filter(|d| d.year() >= 1900)
    }) {
        return Ok(d);
    }
    match (day_month(s), anchor) {
        (Some((day, month)), Some(anchor)) => {
            before(anchor, month, day).ok_or_else(|| DateError::new(raw))
        }
        _ => Err(DateError::new(raw)),
    }
}

/// Whether `raw` is a date under some order (used to tell data rows from others).
pub(crate) fn is_date_like(raw: &str) -> bool {
    let (a, b) = readings(raw);
    a.is_some() || b.is_some() || day_month(strip_time(raw.trim())).is_some()
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
        assert_eq!(d("05/03/24"), "2024-03-05");
        assert_eq!(d("05-03-2024"), "2024-03-05");
        assert_eq!(d("05 Mar 2024"), "2024-03-05");
        assert_eq!(d("1 Apr 2026"), "2026-04-01");
        assert_eq!(d("5-Mar-2024"), "2024-03-05");
        assert_eq!(d("01-APR-26"), "2026-04-01");
        assert_eq!(d("01-Apr-2026"), "2026-04-01");
        assert_eq!(d("05 March 2024"), "2024-03-05");
        assert_eq!(d("Mar 5, 2024"), "2024-03-05");
        assert_eq!(d("March 5 2024"), "2024-03-05");
        assert_eq!(d("2024-03-05 14:22:01"), "2024-03-05");
        assert_eq!(d("2024-03-05T14:22:01Z"), "2024-03-05");
        assert_eq!(d(" 05.03.2024 10:00 "), "2024-03-05");
        assert_eq!(d("01/04/2026 00:00:00"), "2026-04-01");
    }

    #[test]
    fn month_first_when_the_file_says_so() {
        let m = |s| parse_date(s, DateOrder::MonthFirst).unwrap().to_string();
        assert_eq!(m("03/25/2024"), "2024-03-25");
        assert_eq!(m("03/05/2024"), "2024-03-05");
        assert_eq!(m("11/02/26"), "2026-11-02");
        // Dots stay day first whatever the file's slash order; text and ISO have no order.
        assert_eq!(m("05.03.2024"), "2024-03-05");
        assert_eq!(m("2024-03-05"), "2024-03-05");
        assert_eq!(m("5 Mar 2024"), "2024-03-05");
        let e = parse_date("03/25/2024", DateOrder::DayFirst).unwrap_err();
        assert_eq!(
            e.to_string(),
            "date `03/25/2024` is not a date when read as day/month (as the rest of the file is)"
        );
    }

    #[test]
    fn dates_without_a_year_take_it_from_the_anchor() {
        let anchor = NaiveDate::from_ymd_opt(2026, 1, 4);
        let p = |s| {
            parse_date_near(s, DateOrder::DayFirst, anchor)
                .map(|d| d.to_string())
                .map_err(|e| e.to_string())
        };
        assert_eq!(p("02 Nov"), Ok("2025-11-02".into()));
        assert_eq!(p("2-Nov"), Ok("2025-11-02".into()));
        assert_eq!(p("Nov 2"), Ok("2025-11-02".into()));
        assert_eq!(p("04 Jan"), Ok("2026-01-04".into()));
        assert_eq!(p("05 Jan"), Ok("2025-01-05".into()));
        assert_eq!(p("29 Feb"), Ok("2024-02-29".into()));
        assert!(p("32 Jan").is_err());
        assert!(
            parse_date("02 Nov", DateOrder::DayFirst).is_err(),
            "no anchor"
        );
    }

    #[test]
    fn two_readings() {
        let ymd = |y, m, d| NaiveDate::from_ymd_opt(y, m, d);
        assert_eq!(readings("11/02/2026"), (ymd(2026, 2, 11), ymd(2026, 11, 2)));
        assert_eq!(readings("13/02/2026"), (ymd(2026, 2, 13), None));
        assert_eq!(readings("02/13/2026"), (None, ymd(2026, 2, 13)));
        assert_eq!(readings("11.02.2026"), (ymd(2026, 2, 11), ymd(2026, 2, 11)));
        assert_eq!(readings("2026-02-11"), (ymd(2026, 2, 11), ymd(2026, 2, 11)));
        assert_eq!(readings("Total"), (None, None));
        assert!(is_date_like("02 Nov") && is_date_like("02/13/2026"));
        assert!(!is_date_like("1,234.56") && !is_date_like("Opening Balance"));
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
            "13/25/2024",
        ] {
            assert!(parse_date(bad, DateOrder::DayFirst).is_err(), "{bad}");
        }
        assert_eq!(
            parse_date("x", DateOrder::DayFirst)
                .unwrap_err()
                .to_string(),
            "date `x` is not a date in a known format"
        );
        assert_eq!(
            parse_date("13/25/2024", DateOrder::MonthFirst)
                .unwrap_err()
                .to_string(),
            "date `13/25/2024` is not a date in a known format"
        );
    }
}
