//! One data row into a transaction: its date, its signed amount (by the layout's sign
//! convention and amount columns) and its description (payee first).

use chrono::NaiveDate;

use super::amount::parse_amount;
use super::date::parse_date_near;
use super::header::{marker_is_debit, AmountColumns, Columns};
use super::layout::Sign;
use super::reader::Dates;

/// One imported transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    /// Booking date.
    pub date: NaiveDate,
    /// The payee or counterparty, then ` — ` and the description and memo joined with
    /// ` · `; line breaks become spaces.
    pub description: String,
    /// Signed amount in cents (negative: money out).
    pub amount_cents: i64,
}

fn clean(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Turns one record (its fields, decoded) into a transaction, or says why it cannot.
pub fn parse_fields(
    fields: &[&str],
    columns: &Columns,
    dates: Dates,
) -> Result<Transaction, String> {
    let field = |i: usize| -> Result<&str, String> {
        fields.get(i).copied().ok_or_else(|| {
            format!(
                "row has {} fields, the header has {}",
                fields.len(),
                columns.width
            )
        })
    };
    let date = parse_date_near(field(columns.date)?, dates.order, dates.year_anchor)
        .map_err(|e| e.to_string())?;
    let mut amount_cents = match columns.amount {
        AmountColumns::Signed(i) => parse_amount(field(i)?).map_err(|e| e.to_string())?,
        AmountColumns::DebitCredit { debit, credit } => {
            let side = |col: Option<usize>| -> Result<Option<i64>, String> {
                let Some(i) = col else { return Ok(None) };
                let raw = fields.get(i).copied().unwrap_or_default();
                if raw.trim().is_empty() {
                    return Ok(None);
                }
                parse_amount(raw)
                    .map(|v| Some(v.abs()))
                    .map_err(|e| e.to_string())
            };
            match (side(debit)?, side(credit)?) {
                (None, None) => return Err("no amount: debit and credit are both empty".into()),
                (d, c) => c
                    .unwrap_or(0)
                    .checked_sub(d.unwrap_or(0))
                    .ok_or("amount is too large")?,
            }
        }
        AmountColumns::Indicated { amount, indicator } => {
            let v = parse_amount(field(amount)?).map_err(|e| e.to_string())?;
            let marker = fields.get(indicator).copied().unwrap_or_default();
            if marker.trim().is_empty() {
                v
            } else {
                match marker_is_debit(marker) {
                    Some(true) => -v.abs(),
                    Some(false) => v.abs(),
                    None => {
                        return Err(format!(
                            "`{}` does not say whether the amount is a debit or a credit",
                            marker.trim()
                        ))
                    }
                }
            }
        }
    };
    if columns.layout.sign == Sign::ChargesPositive {
        amount_cents = amount_cents.checked_neg().ok_or("amount is too large")?;
    }
    Ok(Transaction {
        date,
        description: describe(fields, columns, amount_cents),
        amount_cents,
    })
}

/// The payee, ` — `, then the description-like fields joined with ` · `; a field equal to
/// one already taken is left out.
fn describe(fields: &[&str], columns: &Columns, amount_cents: i64) -> String {
    let get = |i: usize| clean(fields.get(i).copied().unwrap_or_default());
    let mut payees: Vec<String> = Vec::new();
    if let Some((payer, recipient)) = columns.payee_by_sign {
        payees.push(get(if amount_cents < 0 { recipient } else { payer }));
    }
    payees.extend(columns.payee.iter().map(|&i| get(i)));
    payees.retain(|p| !p.is_empty());
    let mut texts: Vec<String> = Vec::new();
    for &i in &columns.description {
        let t = get(i);
        let seen = payees
            .iter()
            .chain(&texts)
            .any(|s| s.eq_ignore_ascii_case(&t));
        if !t.is_empty() && !seen {
            texts.push(t);
        }
    }
    match (payees.is_empty(), texts.is_empty()) {
        (false, false) => format!("{} — {}", payees.join(" / "), texts.join(" · ")),
        (false, true) => payees.join(" / "),
        _ => texts.join(" · "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{find_columns, DateOrder};

    fn parse(header: &[&str], row: &[&str]) -> Result<Transaction, String> {
        let h: Vec<String> = header.iter().map(|s| s.to_string()).collect();
        let c = find_columns(&h).map_err(|e| e.to_string())?;
        parse_fields(row, &c, DateOrder::DayFirst.into())
    }

    #[test]
    fn withdrawal_and_deposit_marked_dr_and_cr() {
        let h = [
            "Sl. No.",
            "Date",
            "Narration",
            "Chq/Ref No.",
            "Withdrawal (Dr)",
            "Deposit (Cr)",
            "Balance",
        ];
        let t = parse(
            &h,
            &["1", "02-04-2026", "UPI/X", "", "1,234.50", "", "100.00"],
        )
        .unwrap();
        assert_eq!(
            (t.amount_cents, t.description.as_str()),
            (-123_450, "UPI/X")
        );
        let t = parse(
            &h,
            &["2", "03-04-2026", "NEFT", "", "", "75,000.00", "100.00"],
        )
        .unwrap();
        assert_eq!(t.amount_cents, 7_500_000);
    }

    #[test]
    fn a_marker_that_says_neither_is_a_rejected_row() {
        let h = ["Date", "Description", "Amount", "Dr/Cr"];
        assert_eq!(
            parse(&h, &["02-04-2026", "X", "5.00", "DR"])
                .unwrap()
                .amount_cents,
            -500
        );
        assert_eq!(
            parse(&h, &["02-04-2026", "X", "5.00", ""])
                .unwrap()
                .amount_cents,
            500
        );
        assert_eq!(
            parse(&h, &["02-04-2026", "X", "5.00", "??"]).unwrap_err(),
            "`??` does not say whether the amount is a debit or a credit"
        );
    }

    #[test]
    fn the_payee_comes_first_and_repeats_are_dropped() {
        let h = ["Date", "Name", "Description", "Notes", "Amount"];
        let t = parse(&h, &["01/04/2026", "Jane", " jane ", "Rent\nshare", "5"]).unwrap();
        assert_eq!(t.description, "Jane — Rent share");
        let t = parse(&h, &["01/04/2026", "", "Shop", "", "5"]).unwrap();
        assert_eq!(t.description, "Shop");
    }
}
