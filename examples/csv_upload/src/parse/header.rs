//! Finding the columns of a bank export by their names, in any order.
//!
//! Column names are compared as lowercase words without accents or punctuation
//! (`"Withdrawal Amount (INR )"` → `withdrawal amount inr`, `"Libellé"` → `libelle`), and a
//! currency after a name is allowed (`Amount (GBP)`, `Umsatz in EUR`). The names each role
//! answers to are the ones the common exports use (see [`super::layout`] for the banks).

use std::fmt;

use super::layout::{detect_layout, Layout};

/// Where the fields of a transaction are in each record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Columns {
    /// The booking (transaction) date.
    pub date: usize,
    /// A posting date, never before the transaction date (Chase, Capital One).
    pub posted: Option<usize>,
    /// Other dates (value dates): read only to learn the file's date order.
    pub other_dates: Vec<usize>,
    /// The payee or counterparty, when the export has one.
    pub payee: Vec<usize>,
    /// Description-like columns (description, narration, …) in header order, then
    /// memo-like ones (memo, notes, reference); their non-empty values are joined.
    pub description: Vec<usize>,
    /// The payer and the recipient, when the export has both (DKB): the counterparty is
    /// the recipient of money out and the payer of money in.
    pub payee_by_sign: Option<(usize, usize)>,
    /// The amount: one signed column, separate debit and credit columns, or an amount and
    /// a debit/credit marker.
    pub amount: AmountColumns,
    /// How many columns the header has.
    pub width: usize,
    /// The bank layout recognised (its sign convention and date order).
    pub layout: &'static Layout,
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
    /// An amount and a column saying which way it goes (`Dr`/`Cr`, `Af`/`Bij`, `S`/`H`).
    Indicated {
        /// The amount.
        amount: usize,
        /// The marker.
        indicator: usize,
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
            "no usable header row: {} (a line among the first {} must name the columns, e.g. \
             `Date,Description,Amount` or `Booking date;Payee;Debit;Credit`); found: {}",
            self.missing,
            super::reader::HEADER_SEARCH_RECORDS,
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
    "txn date",
    "tran date",
    "trans date",
    "date",
    "buchungstag",
    "buchungsdatum",
    "buchung",
    "datum",
    "date operation",
    "date de l operation",
    "date de operation",
    "date comptable",
    "posting date",
    "posted date",
    "post date",
    "value date",
    "valuta",
    "valutadatum",
    "wertstellung",
    "date valeur",
];
/// A posting date, after the transaction date.
const POSTED: &[&str] = &["post date", "posted date", "posting date"];
/// Other dates, read for their order only.
const OTHER_DATE: &[&str] = &[
    "value date",
    "value dt",
    "value dat",
    "valuta",
    "valutadatum",
    "wertstellung",
    "wertstellung valuta",
    "wert",
    "date valeur",
    "date de valeur",
    "rentedatum",
];
const PAYEE: &[&str] = &[
    "payee",
    "name",
    "counter party",
    "counterparty",
    "merchant",
    "merchant name",
    "beneficiary",
    "recipient",
    "auftraggeber",
    "empfanger",
    "auftraggeber empfanger",
    "auftraggeber begunstigter",
    "auftraggeber zahlungsempfanger",
    "empfanger zahlungspflichtiger",
    "beguenstigter zahlungspflichtiger",
    "begunstigter zahlungspflichtiger",
    "begunstigter auftraggeber",
    "zahlungsempfanger in",
    "zahlungspflichtige r",
    "naam omschrijving",
    "naam tegenpartij",
    "tegenpartij",
    "beneficiaire",
];
const TEXT: &[&str] = &[
    "description",
    "transaction description",
    "narration",
    "narrative",
    "particulars",
    "transaction remarks",
    "remarks",
    "transaction details",
    "text",
    "verwendungszweck",
    "vorgang verwendungszweck",
    "libelle",
    "libelle operation",
    "libelle de l operation",
    "libelle simplifie",
    "detail",
    "detail de l ecriture",
    "mededelingen",
    "omschrijving",
    "omschrijving 1",
    "omschrijving 2",
    "omschrijving 3",
];
/// Memo-like text, after the description.
const MEMO: &[&str] = &["memo", "notes", "notes and tags", "reference"];
/// Text used only when the file has nothing in [`TEXT`]: elsewhere these hold a type
/// (`DEBIT`, `Lastschrift`).
const WEAK_TEXT: &[&str] = &["details", "buchungstext"];
const AMOUNT: &[&str] = &[
    "amount",
    "transaction amount",
    "betrag",
    "umsatz",
    "bedrag",
    "montant",
    "montant de l operation",
];
const DEBIT: &[&str] = &[
    "debit",
    "debits",
    "debit amount",
    "debit amt",
    "dr",
    "withdrawal",
    "withdrawals",
    "withdrawal amt",
    "withdrawal amount",
    "withdrawal dr",
    "money out",
    "paid out",
    "outflow",
    "soll",
];
const CREDIT: &[&str] = &[
    "credit",
    "credits",
    "credit amount",
    "credit amt",
    "cr",
    "deposit",
    "deposits",
    "deposit amt",
    "deposit amount",
    "deposit cr",
    "money in",
    "paid in",
    "inflow",
    "haben",
];
/// A column saying whether the amount is money out or in.
const INDICATOR: &[&str] = &[
    "dr cr",
    "cr dr",
    "debit credit",
    "credit debit",
    "af bij",
    "soll haben",
    "s h",
    "d c",
];

const CURRENCIES: &[&str] = &[
    "eur", "usd", "gbp", "inr", "chf", "jpy", "cad", "aud", "nzd", "sek", "nok", "dkk", "pln",
    "czk", "huf", "ron", "bgn", "try", "zar", "sgd", "hkd", "cny", "mxn", "brl", "aed", "euro",
    "euros", "rs",
];

fn fold(c: char, out: &mut String) {
    match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' => out.push('a'),
        'è' | 'é' | 'ê' | 'ë' => out.push('e'),
        'ì' | 'í' | 'î' | 'ï' => out.push('i'),
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' => out.push('o'),
        'ù' | 'ú' | 'û' | 'ü' => out.push('u'),
        'ç' => out.push('c'),
        'ñ' => out.push('n'),
        'ß' => out.push_str("ss"),
        c => out.push(c),
    }
}

/// Lowercase words without accents: `"Amount (EUR)"` → `"amount eur"`, `"Libellé"` →
/// `"libelle"`.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.trim_start_matches('\u{feff}').chars() {
        if c.is_alphanumeric() {
            for l in c.to_lowercase() {
                fold(l, &mut out);
            }
        } else if !out.is_empty() && !out.ends_with(' ') {
            out.push(' ');
        }
    }
    out.trim_end().to_owned()
}

/// `name` is `alias`, or `alias` and a currency: `amount eur`, `umsatz in eur`.
fn matches(name: &str, alias: &str) -> bool {
    if name == alias {
        return true;
    }
    let Some(rest) = name.strip_prefix(alias).and_then(|r| r.strip_prefix(' ')) else {
        return false;
    };
    let rest = rest
        .strip_prefix("in ")
        .or_else(|| rest.strip_prefix("en "))
        .unwrap_or(rest);
    CURRENCIES.contains(&rest)
}

struct Names<'a> {
    names: &'a [String],
    ignored: Vec<usize>,
}

impl Names<'_> {
    /// The first column answering to the best alias, not among `taken`.
    fn find(&self, aliases: &[&str], taken: &[usize]) -> Option<usize> {
        aliases.iter().find_map(|alias| {
            self.names.iter().enumerate().position(|(i, n)| {
                !taken.contains(&i) && !self.ignored.contains(&i) && matches(n, alias)
            })
        })
    }

    /// Every column answering to some alias, not among `taken`, in header order.
    fn all(&self, aliases: &[&str], taken: &[usize]) -> Vec<usize> {
        (0..self.names.len())
            .filter(|i| {
                !taken.contains(i)
                    && !self.ignored.contains(i)
                    && aliases.iter().any(|a| matches(&self.names[*i], a))
            })
            .collect()
    }

    fn exact(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }
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
    let normalized: Vec<String> = header.iter().map(|h| normalize(h)).collect();
    let error = |missing| HeaderError {
        found: header.to_vec(),
        missing,
    };
    let layout = detect_layout(&normalized);
    let names = Names {
        ignored: (0..normalized.len())
            .filter(|i| layout.ignore.contains(&normalized[*i].as_str()))
            .collect(),
        names: &normalized,
    };
    let date = names
        .find(DATE, &[])
        .ok_or_else(|| error("no date column"))?;
    let posted = names.find(POSTED, &[date]);
    let mut used: Vec<usize> = [Some(date), posted].into_iter().flatten().collect();
    let amount = match names.find(AMOUNT, &used) {
        Some(a) => {
            // The marker next after the amount (Kotak has one for the balance too).
            let markers = names.all(INDICATOR, &used);
            match markers.iter().find(|m| **m > a).or(markers.first()) {
                Some(&indicator) => AmountColumns::Indicated {
                    amount: a,
                    indicator,
                },
                None => AmountColumns::Signed(a),
            }
        }
        None => {
            let debit = names.find(DEBIT, &used);
            let credit = names.find(CREDIT, &used);
            if debit.is_none() && credit.is_none() {
                return Err(error("no amount column (amount, or debit and credit)"));
            }
            AmountColumns::DebitCredit { debit, credit }
        }
    };
    match amount {
        AmountColumns::Signed(a) => used.push(a),
        AmountColumns::DebitCredit { debit, credit } => {
            used.extend(debit.into_iter().chain(credit))
        }
        AmountColumns::Indicated { amount, indicator } => used.extend([amount, indicator]),
    }
    let mut dates = [DATE, POSTED, OTHER_DATE].concat();
    dates.dedup();
    let other_dates = names.all(&dates, &used);
    used.extend(&other_dates);
    let payee_by_sign = layout
        .payee_by_sign
        .and_then(|(payer, recipient)| Some((names.exact(payer)?, names.exact(recipient)?)));
    if let Some((a, b)) = payee_by_sign {
        used.extend([a, b]);
    }
    let payee = names.all(PAYEE, &used);
    used.extend(&payee);
    let mut description = names.all(TEXT, &used);
    if description.is_empty() {
        description = names.all(WEAK_TEXT, &used);
    }
    description.extend(names.all(MEMO, &used));
    Ok(Columns {
        date,
        posted,
        other_dates,
        payee,
        description,
        payee_by_sign,
        amount,
        width: header.len(),
        layout,
    })
}

/// Reads a debit/credit marker: `Some(true)` for money out, `Some(false)` for money in,
/// `None` when it is not one.
pub(crate) fn marker_is_debit(raw: &str) -> Option<bool> {
    match normalize(raw).as_str() {
        "dr" | "d" | "db" | "debit" | "af" | "s" | "soll" | "withdrawal" => Some(true),
        "cr" | "c" | "credit" | "bij" | "h" | "haben" | "deposit" => Some(false),
        _ => None,
    }
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
        assert_eq!(c.other_dates, vec![0]);
        assert_eq!((c.payee.clone(), c.description.clone()), (vec![2], vec![3]));
        assert_eq!(c.amount, AmountColumns::Signed(4));

        let c = cols(&["\u{feff}Date", "Details", "Paid out", "Paid in", "Balance"]).unwrap();
        assert_eq!(c.date, 0);
        assert_eq!(c.description, vec![1], "details, for want of a description");
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
    fn names_are_compared_without_case_accents_or_punctuation() {
        assert_eq!(
            normalize("Withdrawal Amount (INR )"),
            "withdrawal amount inr"
        );
        assert_eq!(normalize("Libellé"), "libelle");
        assert_eq!(
            normalize("Auftraggeber / Empfänger"),
            "auftraggeber empfanger"
        );
        assert_eq!(normalize("Check or Slip #"), "check or slip");
        assert_eq!(normalize(" Date     "), "date");
        assert!(matches("umsatz in eur", "umsatz"));
        assert!(matches("amount gbp", "amount"));
        assert!(!matches("value dat", "value"), "a word, not a currency");
        assert!(!matches("local amount", "amount"));
    }

    #[test]
    fn an_amount_with_a_marker_column() {
        let c = cols(&[
            "Sl. No.",
            "Date",
            "Description",
            "Chq / Ref No.",
            "Amount",
            "Dr / Cr",
            "Balance",
            "Dr / Cr",
        ])
        .unwrap();
        assert_eq!(
            c.amount,
            AmountColumns::Indicated {
                amount: 4,
                indicator: 5
            }
        );
        assert_eq!(marker_is_debit(" Dr. "), Some(true));
        assert_eq!(marker_is_debit("Bij"), Some(false));
        assert_eq!(marker_is_debit("x"), None);
    }

    #[test]
    fn a_posting_date_and_value_dates() {
        let c = cols(&[
            "Transaction Date",
            "Post Date",
            "Description",
            "Category",
            "Type",
            "Amount",
            "Memo",
        ])
        .unwrap();
        assert_eq!((c.date, c.posted), (0, Some(1)));
        assert_eq!(c.description, vec![2, 6]);
        let c = cols(&["Txn Date", "Value Date", "Description", "Debit", "Credit"]).unwrap();
        assert_eq!((c.date, c.posted, c.other_dates), (0, None, vec![1]));
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
