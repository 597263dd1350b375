//! Amounts as banks write them, into integer cents.
//!
//! Accepted: `1234.56`, `1,234.56`, `1.234,56`, `1 234,56`, `1'234.56`, `12,5` (a decimal
//! comma), `-12.00`, `+12`, `12.00-` (trailing minus), `(12.00)` (accounting negative),
//! currency signs or codes around the number (`€ 12,00`, `-$5`, `-€12.00`, `£3.50`,
//! `12.00 EUR`), a `CR` / `DR` suffix (`DR` is negative: `1,234.50 Dr`), and Indian
//! grouping (`1,50,000.00`: lakhs and crores).
//!
//! Which mark is the decimal separator:
//! - both `.` and `,` present: the last one is the decimal separator, the other groups
//!   thousands (`1.234,56` and `1,234.56`);
//! - one of them, several times: it groups thousands (`1,234,567`);
//! - one of them, once: it groups thousands when exactly three digits follow and the part
//!   before it is not `0` (`1,234` and `1.234` are 1234.00), otherwise it is the decimal
//!   separator (`12,5`, `0.125` is refused for having three decimals).
//!
//! Thousands groups must be well formed, in threes or the Indian way (`1,23,4` is refused) and at most two decimals are
//! kept: a third one is refused rather than rounded, since money that does not add up is
//! worse than a rejected row.

use std::fmt;

/// Why an amount was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AmountError {
    /// Nothing there.
    Empty,
    /// Characters that are not part of a number.
    NotANumber(String),
    /// More than two decimals.
    TooManyDecimals(String),
    /// Thousands separators in the wrong places.
    BadGrouping(String),
    /// Does not fit in 64-bit cents.
    TooLarge(String),
}

impl fmt::Display for AmountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AmountError::Empty => write!(f, "empty amount"),
            AmountError::NotANumber(s) => write!(f, "amount `{s}` is not a number"),
            AmountError::TooManyDecimals(s) => {
                write!(f, "amount `{s}` has more than two decimals")
            }
            AmountError::BadGrouping(s) => {
                write!(f, "amount `{s}` has misplaced thousands separators")
            }
            AmountError::TooLarge(s) => write!(f, "amount `{s}` is too large"),
        }
    }
}

impl std::error::Error for AmountError {}

fn is_currency(c: char) -> bool {
    matches!(c, '€' | '$' | '£' | '¥' | '₹' | '₽' | '₩' | '¢' | '₺' | '₪')
}

/// Strips one three-letter currency code (`EUR`, `usd`) from the start or the end.
fn strip_code(s: &str) -> &str {
    let b = s.as_bytes();
    let code = |w: &[u8]| w.len() == 3 && w.iter().all(u8::is_ascii_alphabetic);
    if b.len() > 3 && code(&b[..3]) && !b[3].is_ascii_alphabetic() {
        return &s[3..];
    }
    if b.len() > 3 && code(&b[b.len() - 3..]) && !b[b.len() - 4].is_ascii_alphabetic() {
        return &s[..s.len() - 3];
    }
    s
}

fn is_space(c: char) -> bool {
    c.is_whitespace() || c == '\u{a0}' || c == '\u{202f}'
}

/// Thousands groups: `1,234,567` (threes) or, with commas, `12,34,567` (Indian: the last
/// group three digits, the ones before it two).
fn well_grouped(groups: &[&str], sep: char) -> bool {
    let Some((first, rest)) = groups.split_first() else {
        return false;
    };
    if !(1..=3).contains(&first.len()) {
        return false;
    }
    if rest.iter().all(|g| g.len() == 3) {
        return true;
    }
    let Some((last, middle)) = rest.split_last() else {
        return false;
    };
    sep == ','
        && first.len() <= 2
        && last.len() == 3
        && !middle.is_empty()
        && middle.iter().all(|g| g.len() == 2)
}

/// Parses an amount into cents (see the module docs for what is accepted).
///
/// ```
/// use csv_upload::parse::parse_amount;
/// assert_eq!(parse_amount("1.234,56"), Ok(123_456));
/// assert_eq!(parse_amount("(12.00)"), Ok(-1_200));
/// ```
pub fn parse_amount(input: &str) -> Result<i64, AmountError> {
    let original = input.trim();
    if original.is_empty() {
        return Err(AmountError::Empty);
    }
    let not_a_number = || AmountError::NotANumber(original.to_owned());
    let mut s = original;
    let mut negative = false;
    let mut signs = 0;

    if let Some(inner) = s.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
        negative = true;
        signs += 1;
        s = inner.trim();
    }
    let lower = s.to_ascii_lowercase();
    if lower.ends_with("dr.") || lower.ends_with("cr.") {
        s = &s[..s.len() - 1];
    }
    let lower = s.to_ascii_lowercase();
    if lower.ends_with("dr") || lower.ends_with("cr") {
        let (head, tail) = s.split_at(s.len() - 2);
        if !head.ends_with(|c: char| c.is_ascii_alphabetic()) {
            if tail.eq_ignore_ascii_case("dr") {
                negative = true;
                signs += 1;
            }
            s = head;
        }
    }
    // Peel currency signs, spaces and one sign from both ends.
    loop {
        let before = s;
        s = s.trim_start_matches(|c: char| is_currency(c) || is_space(c));
        s = s.trim_end_matches(|c: char| is_currency(c) || is_space(c));
        s = strip_code(s);
        if let Some(r) = s
            .strip_prefix('-')
            .or_else(|| s.strip_prefix('\u{2212}'))
            .or_else(|| s.strip_suffix('-'))
        {
            negative = true;
            signs += 1;
            s = r;
        } else if let Some(r) = s.strip_prefix('+') {
            signs += 1;
            s = r;
        }
        if s == before {
            break;
        }
    }
    if signs > 1 || s.is_empty() {
        return Err(not_a_number());
    }
    // Digits and separators only; spaces and apostrophes inside group thousands.
    let mut core = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '0'..='9' | '.' | ',' => core.push(c),
            '\'' | '\u{2019}' => {}
            c if is_space(c) => {}
            _ => return Err(not_a_number()),
        }
    }
    if !core.chars().any(|c| c.is_ascii_digit()) {
        return Err(not_a_number());
    }
    let dots = core.matches('.').count();
    let commas = core.matches(',').count();
    let (thousands, decimal) = match (dots, commas) {
        (0, 0) => (None, None),
        (_, 0) | (0, _) => {
            let sep = if dots > 0 { '.' } else { ',' };
            let count = dots + commas;
            if count > 1 {
                (Some(sep), None)
            } else {
                let (int, frac) = core.split_once(sep).unwrap_or((&core, ""));
                if frac.len() == 3 && !int.is_empty() && int != "0" {
                    (Some(sep), None)
                } else {
                    (None, Some(sep))
                }
            }
        }
        _ => {
            let last_dot = core.rfind('.');
            let last_comma = core.rfind(',');
            if last_dot > last_comma {
                (Some(','), Some('.'))
            } else {
                (Some('.'), Some(','))
            }
        }
    };
    let (int_part, frac_part) = match decimal {
        Some(d) => {
            let (i, f) = core.rsplit_once(d).unwrap_or((&core, ""));
            if f.contains(d) || i.contains(d) {
                return Err(not_a_number());
            }
            (i, f)
        }
        None => (core.as_str(), ""),
    };
    if frac_part.contains(['.', ',']) {
        return Err(AmountError::BadGrouping(original.to_owned()));
    }
    if decimal.is_some() && frac_part.is_empty() {
        return Err(not_a_number());
    }
    if frac_part.len() > 2 {
        return Err(AmountError::TooManyDecimals(original.to_owned()));
    }
    let digits: String = match thousands {
        Some(t) => {
            let groups: Vec<&str> = int_part.split(t).collect();
            if !well_grouped(&groups, t) {
                return Err(AmountError::BadGrouping(original.to_owned()));
            }
            groups.concat()
        }
        None => int_part.to_owned(),
    };
    if digits.contains(['.', ',']) {
        return Err(AmountError::BadGrouping(original.to_owned()));
    }
    let too_large = || AmountError::TooLarge(original.to_owned());
    let units: i64 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| too_large())?
    };
    let frac: i64 = match frac_part.len() {
        0 => 0,
        1 => frac_part.parse::<i64>().map_err(|_| not_a_number())? * 10,
        _ => frac_part.parse().map_err(|_| not_a_number())?,
    };
    let cents = units
        .checked_mul(100)
        .and_then(|c| c.checked_add(frac))
        .ok_or_else(too_large)?;
    Ok(if negative { -cents } else { cents })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_signed() {
        assert_eq!(parse_amount("12"), Ok(1200));
        assert_eq!(parse_amount("-12.00"), Ok(-1200));
        assert_eq!(parse_amount("+3.5"), Ok(350));
        assert_eq!(parse_amount("12.00-"), Ok(-1200));
        assert_eq!(parse_amount("(12.00)"), Ok(-1200));
        assert_eq!(parse_amount(".50"), Ok(50));
        assert_eq!(parse_amount("-0.00"), Ok(0));
        assert_eq!(parse_amount("\u{2212}4,20"), Ok(-420));
    }

    #[test]
    fn separators() {
        assert_eq!(parse_amount("1,234.56"), Ok(123_456));
        assert_eq!(parse_amount("1.234,56"), Ok(123_456));
        assert_eq!(parse_amount("12,5"), Ok(1250));
        assert_eq!(parse_amount("12,50"), Ok(1250));
        assert_eq!(parse_amount("1,234"), Ok(123_400));
        assert_eq!(parse_amount("1.234"), Ok(123_400));
        assert_eq!(parse_amount("1,234,567.8"), Ok(123_456_780));
        assert_eq!(parse_amount("1.234.567"), Ok(123_456_700));
        assert_eq!(parse_amount("1 234,56"), Ok(123_456));
        assert_eq!(parse_amount("1\u{a0}234,56"), Ok(123_456));
        assert_eq!(parse_amount("1'234.56"), Ok(123_456));
        assert_eq!(parse_amount("1,50,000.00"), Ok(15_000_000));
        assert_eq!(parse_amount("12,34,56,789.50"), Ok(12_345_678_950));
        assert_eq!(parse_amount("1,50,000"), Ok(15_000_000));
        assert!(matches!(
            parse_amount("1.50.000,00"),
            Err(AmountError::BadGrouping(_))
        ));
        assert!(matches!(
            parse_amount("123,45,678.00"),
            Err(AmountError::BadGrouping(_))
        ));
    }

    #[test]
    fn currencies_and_markers() {
        assert_eq!(parse_amount("€ 12,00"), Ok(1200));
        assert_eq!(parse_amount("-$5"), Ok(-500));
        assert_eq!(parse_amount("$-5"), Ok(-500));
        assert_eq!(parse_amount("12.00 EUR"), Ok(1200));
        assert_eq!(parse_amount("100.00 DR"), Ok(-10_000));
        assert_eq!(parse_amount("100.00CR"), Ok(10_000));
        assert_eq!(parse_amount("EUR -3,20"), Ok(-320));
        assert_eq!(parse_amount("usd5"), Ok(500));
        assert_eq!(parse_amount("1,234.50 Dr"), Ok(-123_450));
        assert_eq!(parse_amount("1,234.50 Cr."), Ok(123_450));
        assert_eq!(parse_amount("-€12.00"), Ok(-1200));
        assert_eq!(parse_amount("£3.50"), Ok(350));
        assert_eq!(parse_amount("€-12,00"), Ok(-1200));
        assert_eq!(parse_amount("₹1,50,000.00"), Ok(15_000_000));
        assert!(matches!(
            parse_amount("-x,01"),
            Err(AmountError::NotANumber(_))
        ));
        assert!(matches!(
            parse_amount("abc5x"),
            Err(AmountError::NotANumber(_))
        ));
        assert!(matches!(
            parse_amount("12 euros"),
            Err(AmountError::NotANumber(_))
        ));
    }

    #[test]
    fn refusals() {
        assert_eq!(parse_amount(""), Err(AmountError::Empty));
        assert_eq!(parse_amount("  "), Err(AmountError::Empty));
        assert!(matches!(
            parse_amount("abc"),
            Err(AmountError::NotANumber(_))
        ));
        assert!(matches!(
            parse_amount("12x4"),
            Err(AmountError::NotANumber(_))
        ));
        assert!(matches!(
            parse_amount("--5"),
            Err(AmountError::NotANumber(_))
        ));
        assert!(matches!(
            parse_amount("(-5)"),
            Err(AmountError::NotANumber(_))
        ));
        assert!(matches!(
            parse_amount("0.125"),
            Err(AmountError::TooManyDecimals(_))
        ));
        assert!(matches!(
            parse_amount("1.2345"),
            Err(AmountError::TooManyDecimals(_))
        ));
        assert!(matches!(
            parse_amount("1,23,4.00"),
            Err(AmountError::BadGrouping(_))
        ));
        assert!(matches!(
            parse_amount("1234,567.00"),
            Err(AmountError::BadGrouping(_))
        ));
        assert!(parse_amount("1.234.56,7,8").is_err());
        assert!(matches!(
            parse_amount("12."),
            Err(AmountError::NotANumber(_))
        ));
        assert!(matches!(
            parse_amount("99999999999999999999"),
            Err(AmountError::TooLarge(_))
        ));
        assert_eq!(
            parse_amount("0.125").unwrap_err().to_string(),
            "amount `0.125` has more than two decimals"
        );
    }
}
