//! Which of day and month comes first in a file's `a/b/yyyy` dates, decided from the whole
//! file, in this order of rules:
//!
//! 1. **A field above 12** decides: `25/03/2024` is day first, `03/25/2024` month first (in
//!    any date column of the file: booking, value or posting date). A file showing both is
//!    read the way most of its dates say, and the others are rejected as rows (never read
//!    the wrong way round).
//! 2. Otherwise every date reads both ways, and the reading under which the file is
//!    **consistent** wins:
//!    - a posting date is never before its transaction date (layouts with both);
//!    - the rows are in date order (ascending or descending) in the file;
//!    - the dates span a clearly shorter time (a statement covers days or weeks, not the
//!      same day of several months).
//! 3. Otherwise the layout's own order (US banks write month first), else the configured
//!    default (`DATE_ORDER`).
//!
//! Under rules 2 and 3 the order is a guess, and the import says so.

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::date::{numeric, readings, strip_time, Numeric};

/// Whether `a/b/yyyy` means day/month or month/day.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DateOrder {
    /// `05/03/2024` is 5 March.
    #[default]
    #[serde(rename = "dmy")]
    DayFirst,
    /// `03/05/2024` is 5 March.
    #[serde(rename = "mdy")]
    MonthFirst,
}

impl DateOrder {
    /// `dmy` or `mdy`, as stored and configured.
    pub fn code(self) -> &'static str {
        match self {
            DateOrder::DayFirst => "dmy",
            DateOrder::MonthFirst => "mdy",
        }
    }

    /// `day/month` or `month/day`, as shown to a user.
    pub fn words(self) -> &'static str {
        match self {
            DateOrder::DayFirst => "day/month",
            DateOrder::MonthFirst => "month/day",
        }
    }

    /// The other order.
    pub fn flip(self) -> DateOrder {
        match self {
            DateOrder::DayFirst => DateOrder::MonthFirst,
            DateOrder::MonthFirst => DateOrder::DayFirst,
        }
    }
}

impl fmt::Display for DateOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for DateOrder {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "dmy" | "day-first" | "day/month" => Ok(DateOrder::DayFirst),
            "mdy" | "month-first" | "month/day" => Ok(DateOrder::MonthFirst),
            other => Err(format!("`{other}` is not a date order: use dmy or mdy")),
        }
    }
}

/// How the order was decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderBasis {
    /// The file has no `a/b/yyyy` dates: the order does not matter.
    NotNeeded,
    /// A day above 12 in some date, and none the other way.
    Unambiguous,
    /// Days above 12 both ways: the majority decided (the others are rejected).
    Conflicting,
    /// A posting date would be before its transaction date the other way.
    PostingDates,
    /// The rows are in date order only this way.
    FileOrder,
    /// The dates span a much shorter time this way.
    Span,
    /// No evidence in the file: the bank's own order.
    Layout,
    /// No evidence in the file: the configured default.
    Default,
    /// The user chose it (re-importing a file whose order was a guess).
    Chosen,
}

impl OrderBasis {
    /// Stored name: `unambiguous`, `span`, …
    pub fn code(self) -> &'static str {
        match self {
            OrderBasis::NotNeeded => "not_needed",
            OrderBasis::Unambiguous => "unambiguous",
            OrderBasis::Conflicting => "conflicting",
            OrderBasis::PostingDates => "posting_dates",
            OrderBasis::FileOrder => "file_order",
            OrderBasis::Span => "span",
            OrderBasis::Layout => "layout",
            OrderBasis::Default => "default",
            OrderBasis::Chosen => "chosen",
        }
    }
}

/// The order a file's dates are read in, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DateReading {
    /// The order.
    pub order: DateOrder,
    /// Why.
    pub basis: OrderBasis,
}

impl DateReading {
    /// Whether the order is a guess: no date in the file settles it, and nobody chose it.
    pub fn guessed(&self) -> bool {
        !matches!(
            self.basis,
            OrderBasis::NotNeeded | OrderBasis::Unambiguous | OrderBasis::Chosen
        )
    }

    /// What to tell the user when the order is a guess: `dates read as month/day`.
    pub fn note(&self) -> Option<String> {
        self.guessed()
            .then(|| format!("dates read as {}", self.order.words()))
    }
}

/// One reading's view of the file so far, row after row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Sequence {
    prev: Option<NaiveDate>,
    rises: u64,
    falls: u64,
    min: Option<NaiveDate>,
    max: Option<NaiveDate>,
    posted_before: u64,
}

impl Sequence {
    fn push(&mut self, d: NaiveDate) {
        match self.prev {
            Some(p) if d > p => self.rises += 1,
            Some(p) if d < p => self.falls += 1,
            _ => {}
        }
        self.prev = Some(d);
        self.min = Some(self.min.map_or(d, |m| m.min(d)));
        self.max = Some(self.max.map_or(d, |m| m.max(d)));
    }

    /// Steps against the file's main direction.
    fn disorder(&self) -> u64 {
        self.rises.min(self.falls)
    }

    fn span(&self) -> i64 {
        match (self.min, self.max) {
            (Some(a), Some(b)) => (b - a).num_days(),
            _ => 0,
        }
    }
}

/// What the dates of one file say about their order. Feed it every data row with
/// [`DateEvidence::observe_row`], then ask [`DateEvidence::decide`]. Constant memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DateEvidence {
    /// Dates only valid day first (first number above 12).
    pub day_first: u64,
    /// Dates only valid month first (second number above 12).
    pub month_first: u64,
    /// `a/b/yyyy` dates valid both ways.
    pub ambiguous: u64,
    dmy: Sequence,
    mdy: Sequence,
}

fn kind(raw: &str) -> Option<(u32, u32)> {
    match numeric(strip_time(raw.trim())) {
        Some(Numeric::YearLast { a, b, sep, .. }) if sep != '.' => Some((a, b)),
        _ => None,
    }
}

impl DateEvidence {
    /// Takes one date of the file into account for rule 1 (a value date, say).
    pub fn observe(&mut self, raw: &str) {
        let Some((a, b)) = kind(raw) else { return };
        let (dmy, mdy) = readings(raw);
        match (dmy.is_some(), mdy.is_some()) {
            (true, false) if a > 12 => self.day_first += 1,
            (false, true) if b > 12 => self.month_first += 1,
            (true, true) => self.ambiguous += 1,
            _ => {}
        }
    }

    /// Takes one data row into account: its transaction date and, when the layout has
    /// one, its posting date (never before the transaction date).
    pub fn observe_row(&mut self, date: &str, posted: Option<&str>) {
        self.observe(date);
        let (dmy, mdy) = readings(date);
        if let Some(d) = dmy {
            self.dmy.push(d);
        }
        if let Some(d) = mdy {
            self.mdy.push(d);
        }
        if let Some(p) = posted {
            self.observe(p);
            let (pd, pm) = readings(p);
            if matches!((dmy, pd), (Some(t), Some(p)) if p < t) {
                self.dmy.posted_before += 1;
            }
            if matches!((mdy, pm), (Some(t), Some(p)) if p < t) {
                self.mdy.posted_before += 1;
            }
        }
    }

    /// The order to read the file in (see the module docs); `fallback` is the layout's
    /// order, if it has one, else the configured default (`from_layout` says which).
    pub fn decide(&self, fallback: DateOrder, from_layout: bool) -> DateReading {
        let pick = |order, basis| DateReading { order, basis };
        match (self.day_first, self.month_first) {
            (0, 0) => {}
            (_, 0) => return pick(DateOrder::DayFirst, OrderBasis::Unambiguous),
            (0, _) => return pick(DateOrder::MonthFirst, OrderBasis::Unambiguous),
            (d, m) => {
                let order = if m > d {
                    DateOrder::MonthFirst
                } else {
                    DateOrder::DayFirst
                };
                return pick(order, OrderBasis::Conflicting);
            }
        }
        if self.ambiguous == 0 {
            return pick(fallback, OrderBasis::NotNeeded);
        }
        let (d, m) = (&self.dmy, &self.mdy);
        let only = |dmy_ok: bool, mdy_ok: bool| match (dmy_ok, mdy_ok) {
            (true, false) => Some(DateOrder::DayFirst),
            (false, true) => Some(DateOrder::MonthFirst),
            _ => None,
        };
        if let Some(o) = only(d.posted_before == 0, m.posted_before == 0) {
            return pick(o, OrderBasis::PostingDates);
        }
        if let Some(o) = only(d.disorder() == 0, m.disorder() == 0) {
            return pick(o, OrderBasis::FileOrder);
        }
        // Clearly shorter: at most half, and a week or more less.
        let clearly = |short: i64, long: i64| short * 2 <= long && long - short >= 7;
        if clearly(d.span(), m.span()) {
            return pick(DateOrder::DayFirst, OrderBasis::Span);
        }
        if clearly(m.span(), d.span()) {
            return pick(DateOrder::MonthFirst, OrderBasis::Span);
        }
        pick(
            fallback,
            if from_layout {
                OrderBasis::Layout
            } else {
                OrderBasis::Default
            },
        )
    }

    /// The latest date of the file under `order` (the year of dates written without one).
    pub fn latest(&self, order: DateOrder) -> Option<NaiveDate> {
        match order {
            DateOrder::DayFirst => self.dmy.max,
            DateOrder::MonthFirst => self.mdy.max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(rows: &[(&str, Option<&str>)], fallback: DateOrder) -> DateReading {
        let mut e = DateEvidence::default();
        for (d, p) in rows {
            e.observe_row(d, *p);
        }
        e.decide(fallback, false)
    }

    fn plain(dates: &[&str]) -> DateReading {
        let rows: Vec<_> = dates.iter().map(|d| (*d, None)).collect();
        decide(&rows, DateOrder::DayFirst)
    }

    #[test]
    fn a_field_above_12_decides() {
        let r = plain(&["03/05/2024", "03/25/2024"]);
        assert_eq!(
            (r.order, r.basis),
            (DateOrder::MonthFirst, OrderBasis::Unambiguous)
        );
        assert!(!r.guessed() && r.note().is_none());
        let r = plain(&["03/05/2024", "25/03/2024"]);
        assert_eq!(
            (r.order, r.basis),
            (DateOrder::DayFirst, OrderBasis::Unambiguous)
        );
        // In a value or posting date too.
        let r = decide(&[("03/05/2024", Some("03/14/2024"))], DateOrder::DayFirst);
        assert_eq!(r.order, DateOrder::MonthFirst);
    }

    #[test]
    fn both_ways_above_12_is_a_conflict_the_majority_decides() {
        let r = plain(&["25/03/2024", "03/26/2024", "03/27/2024"]);
        assert_eq!(
            (r.order, r.basis),
            (DateOrder::MonthFirst, OrderBasis::Conflicting)
        );
        assert!(r.guessed());
    }

    #[test]
    fn no_ambiguous_dates_no_guess() {
        let r = plain(&["2024-03-05", "05.03.2024", "5 Mar 2024"]);
        assert_eq!(r.basis, OrderBasis::NotNeeded);
        assert!(!r.guessed());
    }

    #[test]
    fn a_posting_date_is_never_before_its_transaction_date() {
        // Day first: 12 Oct posted 10 Dec. Month first: 10 Dec posted 12 Oct (before).
        let r = decide(
            &[
                ("12/10/2026", Some("10/12/2026")),
                ("12/10/2026", Some("10/12/2026")),
            ],
            DateOrder::MonthFirst,
        );
        assert_eq!(
            (r.order, r.basis),
            (DateOrder::DayFirst, OrderBasis::PostingDates)
        );
        let r = decide(&[("10/12/2026", Some("12/10/2026"))], DateOrder::DayFirst);
        // Day first: 10 Dec posted 12 Oct (before): month first wins.
        assert_eq!(
            (r.order, r.basis),
            (DateOrder::MonthFirst, OrderBasis::PostingDates)
        );
    }

    #[test]
    fn rows_in_date_order_decide() {
        // Month first: 5 Jan, 9 Jan, 3 Feb, 10 Feb (ascending). Day first: 1 May, 1 Sep,
        // 2 Mar, 2 Oct (up, down, up).
        let r = plain(&["01/05/2026", "01/09/2026", "02/03/2026", "02/10/2026"]);
        assert_eq!(
            (r.order, r.basis),
            (DateOrder::MonthFirst, OrderBasis::FileOrder)
        );
        assert_eq!(r.note().as_deref(), Some("dates read as month/day"));
        // Descending works too, and day first is found the same way.
        let r = plain(&["10/02/2026", "03/02/2026", "09/01/2026", "05/01/2026"]);
        assert_eq!(
            (r.order, r.basis),
            (DateOrder::DayFirst, OrderBasis::FileOrder)
        );
    }

    #[test]
    fn the_shorter_span_decides_when_order_cannot() {
        // Both readings descend; month first spans 3 days, day first 3 months.
        let r = plain(&["11/05/2026", "11/04/2026", "11/03/2026", "11/02/2026"]);
        assert_eq!(
            (r.order, r.basis),
            (DateOrder::MonthFirst, OrderBasis::Span)
        );
        let r = plain(&["05/11/2026", "04/11/2026", "03/11/2026", "02/11/2026"]);
        assert_eq!((r.order, r.basis), (DateOrder::DayFirst, OrderBasis::Span));
    }

    #[test]
    fn no_evidence_falls_back_to_the_layout_or_the_default() {
        // 3 April / 4 March: the same span both ways, one step each way.
        let dates = ["03/04/2026", "04/03/2026"];
        let r = plain(&dates);
        assert_eq!(
            (r.order, r.basis),
            (DateOrder::DayFirst, OrderBasis::Default)
        );
        let rows: Vec<_> = dates.iter().map(|d| (*d, None)).collect();
        let r = decide(&rows, DateOrder::MonthFirst);
        assert_eq!(
            (r.order, r.basis),
            (DateOrder::MonthFirst, OrderBasis::Default)
        );
        let mut e = DateEvidence::default();
        e.observe_row("03/04/2026", None);
        let r = e.decide(DateOrder::MonthFirst, true);
        assert_eq!(
            (r.order, r.basis),
            (DateOrder::MonthFirst, OrderBasis::Layout)
        );
        assert_eq!(r.note().as_deref(), Some("dates read as month/day"));
    }

    #[test]
    fn a_chosen_order_is_no_guess() {
        let r = DateReading {
            order: DateOrder::DayFirst,
            basis: OrderBasis::Chosen,
        };
        assert!(!r.guessed());
        assert_eq!(r.note(), None);
        assert_eq!(OrderBasis::Chosen.code(), "chosen");
    }

    #[test]
    fn orders_parse_and_print() {
        assert_eq!("mdy".parse::<DateOrder>(), Ok(DateOrder::MonthFirst));
        assert_eq!(" DMY ".parse::<DateOrder>(), Ok(DateOrder::DayFirst));
        assert!("ymd".parse::<DateOrder>().is_err());
        assert_eq!(DateOrder::MonthFirst.to_string(), "mdy");
        assert_eq!(DateOrder::DayFirst.flip(), DateOrder::MonthFirst);
    }
}
