//! Finding the columns of a bank export by their names, in any order.

use std::fmt;

/// Where the fields of a transaction are in each record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Columns {
    /// The booking date.
    pub date: usize,
    /// Description-like columns (description, payee, memo, …), in header order; their
    /// non-empty values are joined.
    pub description: Vec<usize>,
    /// The amount: one signed column, or separate debit and credit columns.
    pub amount: AmountColumns,
    /// How many columns the header has.
    pub width: usize,
}

/// Where the amount is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AmountColumns {
    /// One signed amount.
    Signed(usize),
    /// Money out and money in, each positive (either may be missing from the file).
    DebitCredit {
        /// Money out.
        debit: Option<usize>,
        /// Money in.
        credit: Option<usize>,
    },
}

/// The header is not one we can import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderError {
    /// The header's column names as found.
    pub found: Vec<String>,
    /// What is missing.
    pub missing: &'static str,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no usable header row: {} (the first line must name the columns, e.g. \
             `Date,Description,Amount` or `Booking date;Payee;Debit;Credit`); found: {}",
            self.missing,
            if self.found.iter().all(|s| s.trim().is_empty()) {
                "an empty line".to_owned()
            } else {
                self.found
                    .iter()
                    .map(|s| format!("`{}`", truncate(s.trim(), 40)))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )
    }
}

impl std::error::Error for HeaderError {}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n).collect();
        t.push('…');
        t
    }
}

/// Names of the date column, best first: when a file has several (booking date and value
/// date), the first in this list wins.
const DATE: &[&str] = &[
    "booking date",
    "transaction date",
    "date",
    "posting date",
    "posted date",
    "trans date",
    "buchungstag",
    "buchungsdatum",
    "datum",
    "value date",
    "valuta",
];
const DESCRIPTION: &[&str] = &[
    "description",
    "transaction description",
    "payee",
    "memo",
    "details",
    "narrative",
    "name",
    "merchant",
    "reference",
    "text",
    "verwendungszweck",
    "beguenstigter",
    "auftraggeber",
];
const AMOUNT: &[&str] = &["amount", "transaction amount", "value", "betrag", "umsatz"];
const DEBIT: &[&str] = &[
    "debit",
    "debits",
    "debit amount",
    "withdrawal",
    "withdrawals",
    "money out",
    "paid out",
    "outflow",
    "soll",
];
const CREDIT: &[&str] = &[
    "credit",
    "credits",
    "credit amount",
    "deposit",
    "deposits",
    "money in",
    "paid in",
    "inflow",
    "haben",
];

/// Lowercase words: `"Amount (EUR)"` → `"amount eur"`.
fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.trim_start_matches('\u{feff}').chars() {
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else if !out.is_empty() && !out.ends_with(' ') {
            out.push(' ');
        }
    }
    out.trim_end().to_owned()
}

/// A currency code or symbol after a column name: `amount eur`, `debit usd`.
fn with_currency<'a>(name: &'a str, alias: &str) -> Option<&'a str> {
    let rest = name.strip_prefix(alias)?.strip_prefix(' ')?;
    (rest.len() == 3 && rest.chars().all(|c| c.is_ascii_alphabetic())).then_some(rest)
}

fn find(names: &[String], aliases: &[&str], taken: &[usize]) -> Option<usize> {
    for alias in aliases {
        for (i, n) in names.iter().enumerate() {
            if !taken.contains(&i) && (n == alias || with_currency(n, alias).is_some()) {
                return Some(i);
            }
        }
    }
    None
}

/// Finds the columns from the header row.
///
/// ```
/// use csv_upload::parse::{find_columns, AmountColumns};
/// let header = ["Payee", "Amount (EUR)", "Booking Date"].map(String::from);
/// let c = find_columns(&header).unwrap();
/// assert_eq!((c.date, c.amount.clone()), (2, AmountColumns::Signed(1)));
/// ```
pub fn find_columns(header: &[String]) -> Result<Columns, HeaderError> {
    let names: Vec<String> = header.iter().map(|h| normalize(h)).collect();
    let error = |missing| HeaderError {
        found: header.to_vec(),
        missing,
    };
    let date = find(&names, DATE, &[]).ok_or_else(|| error("no date column"))?;
    let amount = match find(&names, AMOUNT, &[date]) {
        Some(a) => AmountColumns::Signed(a),
        None => {
            let debit = find(&names, DEBIT, &[date]);
            let credit = find(&names, CREDIT, &[date]);
            if debit.is_none() && credit.is_none() {
                return Err(error("no amount column (amount, or debit and credit)"));
            }
            AmountColumns::DebitCredit { debit, credit }
        }
    };
    let used: Vec<usize> = match amount {
        AmountColumns::Signed(a) => vec![date, a],
        AmountColumns::DebitCredit { debit, credit } => {
            [Some(date), debit, credit].into_iter().flatten().collect()
        }
    };
    let description = names
        .iter()
        .enumerate()
        .filter(|(i, n)| !used.contains(i) && DESCRIPTION.contains(&n.as_str()))
        .map(|(i, _)| i)
        .collect();
    Ok(Columns {
        date,
        description,
        amount,
        width: header.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(h: &[&str]) -> Result<Columns, HeaderError> {
        find_columns(&h.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn any_order_and_aliases() {
        let c = cols(&["Amount", "Description", "Date"]).unwrap();
        assert_eq!(c.date, 2);
        assert_eq!(c.amount, AmountColumns::Signed(0));
        assert_eq!(c.description, vec![1]);

        let c = cols(&[
            "Value Date",
            "Booking date",
            "Payee",
            "Memo",
            "Amount (EUR)",
        ])
        .unwrap();
        assert_eq!(c.date, 1, "booking date wins over value date");
        assert_eq!(c.description, vec![2, 3]);
        assert_eq!(c.amount, AmountColumns::Signed(4));

        let c = cols(&["\u{feff}Date", "Details", "Paid out", "Paid in", "Balance"]).unwrap();
        assert_eq!(c.date, 0);
        assert_eq!(
            c.amount,
            AmountColumns::DebitCredit {
                debit: Some(2),
                credit: Some(3)
            }
        );
        assert_eq!(c.width, 5);

        let c = cols(&["DATE", "DEBIT USD"]).unwrap();
        assert_eq!(
            c.amount,
            AmountColumns::DebitCredit {
                debit: Some(1),
                credit: None
            }
        );
        assert!(c.description.is_empty());
    }

    #[test]
    fn unusable_headers_say_why() {
        let e = cols(&["2024-01-01", "Coffee", "-3.50"]).unwrap_err();
        assert_eq!(e.missing, "no date column");
        assert!(
            e.to_string().contains("`2024-01-01`, `Coffee`, `-3.50`"),
            "{e}"
        );
        let e = cols(&["Date", "Description", "Balance"]).unwrap_err();
        assert!(e.missing.starts_with("no amount column"));
        let e = cols(&[""]).unwrap_err();
        assert!(e.to_string().ends_with("found: an empty line"), "{e}");
    }
}
