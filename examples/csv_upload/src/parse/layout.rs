//! The bank exports this app knows, each recognised by column names only it has, with the
//! rules that differ from bank to bank: whether charges are positive, which order its
//! `a/b/yyyy` dates are in when the file itself does not tell, columns to leave out of the
//! description, and the exports that have no header row at all.
//!
//! Column roles (date, amount, payee, …) are found for every file by the names in
//! [`super::header`]; a layout only adds its rules. A file matching none is read by the
//! generic rules.

use super::amount::parse_amount;
use super::date::{is_date_like, numeric, strip_time, Numeric};
use super::header::{AmountColumns, Columns};
use super::order::DateOrder;

/// How a layout signs its amounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sign {
    /// Negative is money out (or separate debit and credit columns).
    Normal,
    /// Charges are positive and payments negative (American Express): flipped on import.
    ChargesPositive,
}

/// One bank's export.
#[derive(Debug, PartialEq, Eq)]
pub struct Layout {
    /// The bank (or banks), as shown to a user.
    pub name: &'static str,
    /// Where (`IN`, `US`, `UK`, `DE`, `FR`, `NL`; empty for the generic rules).
    pub country: &'static str,
    /// Normalized column names that identify it: one of each group.
    signature: &'static [&'static [&'static str]],
    /// Its sign convention.
    pub sign: Sign,
    /// The order its `a/b/yyyy` dates are in, when the file itself does not settle it.
    pub date_order: Option<DateOrder>,
    /// Normalized column names never used (a reference number where others have text).
    pub(crate) ignore: &'static [&'static str],
    /// Payer and recipient columns: the counterparty depends on the sign.
    pub(crate) payee_by_sign: Option<(&'static str, &'static str)>,
}

const fn layout(
    name: &'static str,
    country: &'static str,
    signature: &'static [&'static [&'static str]],
    date_order: Option<DateOrder>,
) -> Layout {
    Layout {
        name,
        country,
        signature,
        sign: Sign::Normal,
        date_order,
        ignore: &[],
        payee_by_sign: None,
    }
}

const DMY: Option<DateOrder> = Some(DateOrder::DayFirst);
const MDY: Option<DateOrder> = Some(DateOrder::MonthFirst);

/// Files that match no known layout.
pub(crate) static GENERIC: Layout = layout("generic", "", &[], None);

/// Wells Fargo: no header; date, amount, `*`, blank, description.
pub(crate) static WELLS_FARGO: Layout = layout("Wells Fargo", "US", &[], MDY);

/// HSBC UK: no header; date (day first), description, amount.
pub(crate) static HSBC: Layout = layout("HSBC", "UK", &[], DMY);

/// The layouts with a header, most specific first.
pub(crate) static LAYOUTS: &[Layout] = &[
    // India.
    layout(
        "HDFC Bank",
        "IN",
        &[
            &["narration"],
            &["withdrawal amt", "debit amount"],
            &["deposit amt", "credit amount"],
        ],
        DMY,
    ),
    layout(
        "State Bank of India",
        "IN",
        &[&["txn date"], &["debit"], &["credit"]],
        DMY,
    ),
    layout("ICICI Bank", "IN", &[&["transaction remarks"]], DMY),
    layout("Axis Bank", "IN", &[&["tran date"], &["particulars"]], DMY),
    layout(
        "Kotak Mahindra Bank",
        "IN",
        &[&["sl no"], &["chq ref no"]],
        DMY,
    ),
    // United States.
    layout(
        "Chase (card)",
        "US",
        &[
            &["transaction date"],
            &["post date"],
            &["category"],
            &["type"],
        ],
        MDY,
    ),
    layout(
        "Chase (checking)",
        "US",
        &[&["details"], &["posting date"], &["check or slip"]],
        MDY,
    ),
    layout("Bank of America", "US", &[&["running bal"]], MDY),
    Layout {
        sign: Sign::ChargesPositive,
        ignore: &["reference"],
        ..layout(
            "American Express",
            "US",
            &[&[
                "card member",
                "appears on your statement as",
                "extended details",
            ]],
            MDY,
        )
    },
    layout("Capital One", "US", &[&["card no"], &["posted date"]], MDY),
    // United Kingdom.
    layout(
        "Barclays",
        "UK",
        &[&["number"], &["account"], &["subcategory"], &["memo"]],
        DMY,
    ),
    layout(
        "Monzo",
        "UK",
        &[&["transaction id"], &["local amount"]],
        DMY,
    ),
    layout(
        "Starling",
        "UK",
        &[&["counter party"], &["spending category"]],
        DMY,
    ),
    // Europe.
    Layout {
        payee_by_sign: Some(("zahlungspflichtige r", "zahlungsempfanger in")),
        ..layout(
            "DKB",
            "DE",
            &[&["zahlungspflichtige r"], &["zahlungsempfanger in"]],
            DMY,
        )
    },
    layout(
        "German banks (Sparkasse, Deutsche Bank, ING, comdirect, Volksbank)",
        "DE",
        &[&["buchungstag", "buchungsdatum", "buchung"]],
        DMY,
    ),
    layout(
        "French banks (BNP Paribas, Société Générale, Crédit Agricole, LCL)",
        "FR",
        &[&[
            "libelle",
            "libelle operation",
            "libelle de l operation",
            "libelle simplifie",
        ]],
        DMY,
    ),
    layout(
        "ING (Netherlands)",
        "NL",
        &[&["af bij"], &["naam omschrijving"]],
        DMY,
    ),
    layout(
        "Rabobank",
        "NL",
        &[&["naam tegenpartij"], &["rentedatum"]],
        DMY,
    ),
];

/// The layout whose signature the normalized header names show, else [`GENERIC`].
pub(crate) fn detect_layout(names: &[String]) -> &'static Layout {
    LAYOUTS
        .iter()
        .find(|l| {
            l.signature
                .iter()
                .all(|group| group.iter().any(|g| names.iter().any(|n| n == g)))
        })
        .unwrap_or(&GENERIC)
}

/// The known banks' layouts (those with a header, then the header-less ones), for the
/// page: each with its name and country.
pub fn all_layouts() -> Vec<&'static Layout> {
    LAYOUTS.iter().chain([&WELLS_FARGO, &HSBC]).collect()
}

/// The names of the known banks and layouts, for the page.
pub fn known_layouts() -> Vec<&'static str> {
    all_layouts().into_iter().map(|l| l.name).collect()
}

fn is_amount(s: &str) -> bool {
    parse_amount(s).is_ok()
}

/// A slash date with the year last, as HSBC writes it.
fn slash_year_last(s: &str) -> bool {
    matches!(
        numeric(strip_time(s.trim())),
        Some(Numeric::YearLast { sep: '/', .. })
    )
}

fn columns(layout: &'static Layout, width: usize, amount: usize, text: usize) -> Columns {
    Columns {
        date: 0,
        posted: None,
        other_dates: Vec::new(),
        payee: Vec::new(),
        description: vec![text],
        payee_by_sign: None,
        amount: AmountColumns::Signed(amount),
        width,
        layout,
    }
}

/// The columns of a header-less export, when its first records (at most five, all of
/// them) have the shape of one: Wells Fargo's `date,amount,*,,description` or HSBC's
/// `dd/mm/yyyy,description,amount`.
pub(crate) fn headerless(first: &[Vec<String>]) -> Option<Columns> {
    if first.is_empty() {
        return None;
    }
    let all = |f: &dyn Fn(&[String]) -> bool| first.iter().all(|r| f(r));
    let wells_fargo = |r: &[String]| {
        r.len() == 5
            && is_date_like(&r[0])
            && is_amount(&r[1])
            && r[2].trim() == "*"
            && !r[4].trim().is_empty()
    };
    if all(&wells_fargo) {
        return Some(columns(&WELLS_FARGO, 5, 1, 4));
    }
    let hsbc = |r: &[String]| {
        // A trailing empty field (a comma at the end of the line) is allowed.
        let n = if r.len() == 4 && r[3].trim().is_empty() {
            3
        } else {
            r.len()
        };
        n == 3
            && slash_year_last(&r[0])
            && !r[1].trim().is_empty()
            && !is_amount(&r[1])
            && is_amount(&r[2])
    };
    if all(&hsbc) {
        return Some(columns(&HSBC, 3, 2, 1));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(lines: &[&[&str]]) -> Vec<Vec<String>> {
        lines
            .iter()
            .map(|l| l.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    #[test]
    fn layouts_by_their_columns() {
        let names = |h: &[&str]| h.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            detect_layout(&names(&[
                "date",
                "description",
                "card member",
                "account",
                "amount"
            ]))
            .name,
            "American Express"
        );
        assert_eq!(
            detect_layout(&names(&["date", "description", "amount"])).name,
            "generic"
        );
        assert_eq!(
            detect_layout(&names(&[
                "transaction date",
                "post date",
                "description",
                "category",
                "type",
                "amount",
                "memo"
            ]))
            .name,
            "Chase (card)"
        );
        assert!(known_layouts().contains(&"Wells Fargo"));
    }

    #[test]
    fn header_less_shapes() {
        let wf = rows(&[
            &[
                "01/05/2026",
                "-45.00",
                "*",
                "",
                "PURCHASE AUTHORIZED ON 01/03",
            ],
            &["01/06/2026", "1200.00", "*", "", "PAYROLL"],
        ]);
        assert_eq!(headerless(&wf).map(|c| c.layout.name), Some("Wells Fargo"));
        let hsbc = rows(&[&["03/04/2026", "TESCO STORES", "-12.50"]]);
        assert_eq!(headerless(&hsbc).map(|c| c.layout.name), Some("HSBC"));
        // ISO dates and no header: not a shape we know.
        let other = rows(&[&["2024-03-01", "Salary", "2500.00"]]);
        assert_eq!(headerless(&other), None);
        // One record of another shape is enough to refuse.
        let mixed = rows(&[
            &["03/04/2026", "TESCO STORES", "-12.50"],
            &["Date", "Description", "Amount"],
        ]);
        assert_eq!(headerless(&mixed), None);
    }
}
