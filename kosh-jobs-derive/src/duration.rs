//! Duration literals: `500ms`, `30s`, `15m`, `2h`, `1d`, checked at compile time.

use proc_macro2::{Span, TokenStream};
use syn::Lit;

use crate::errors::Errors;

/// The units a duration literal may carry, with their length in milliseconds.
const UNITS: &[(&str, u64)] = &[
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

/// Units people write, and the unit that means the same here.
const ALIASES: &[(&str, &str)] = &[
    ("msec", "ms"),
    ("millis", "ms"),
    ("sec", "s"),
    ("secs", "s"),
    ("second", "s"),
    ("seconds", "s"),
    ("min", "m"),
    ("mins", "m"),
    ("minute", "m"),
    ("minutes", "m"),
    ("hr", "h"),
    ("hrs", "h"),
    ("hour", "h"),
    ("hours", "h"),
    ("day", "d"),
    ("days", "d"),
];

/// What the error messages show as the list of units.
pub(crate) const UNITS_HELP: &str = "`ms`, `s`, `m` (minutes), `h` or `d`";

/// A duration as written in the attribute.
#[derive(Clone)]
pub(crate) struct Dur {
    /// Its length in milliseconds.
    pub(crate) millis: u64,
    /// The literal as written, e.g. `15m`, for messages.
    pub(crate) text: String,
    /// Where it was written.
    pub(crate) span: Span,
}

/// Parses one duration literal from `tokens`; `what` names it in messages, e.g. "`timeout`".
pub(crate) fn parse(tokens: &TokenStream, what: &str, errors: &mut Errors) -> Option<Dur> {
    let example = "e.g. `500ms`, `30s`, `15m` or `2h`";
    let lit = match syn::parse2::<Lit>(tokens.clone()) {
        Ok(lit) => lit,
        Err(_) => {
            errors.spanned(tokens, format!("expected a duration for {what}, {example}"));
            return None;
        }
    };
    match &lit {
        Lit::Int(int) => {
            if int.base10_digits().starts_with('-') {
                errors.spanned(int, "a duration cannot be negative");
                return None;
            }
            let unit = int.suffix();
            if unit.is_empty() {
                errors.spanned(
                    int,
                    format!(
                        "the duration `{int}` needs a unit: write `{int}s` for seconds \
                         (units: {UNITS_HELP})"
                    ),
                );
                return None;
            }
            let Some(&(_, factor)) = UNITS.iter().find(|(u, _)| *u == unit) else {
                let digits = int.base10_digits();
                let msg = match ALIASES.iter().find(|(alias, _)| *alias == unit) {
                    Some((_, to)) => format!("unknown unit `{unit}`: write `{digits}{to}`"),
                    None => {
                        format!("unknown unit `{unit}` in `{int}`; use {UNITS_HELP}, {example}")
                    }
                };
                errors.spanned(int, msg);
                return None;
            };
            let millis = int
                .base10_digits()
                .parse::<u64>()
                .ok()
                .and_then(|n| n.checked_mul(factor));
            match millis {
                Some(millis) => Some(Dur {
                    millis,
                    text: int.to_string(),
                    span: int.span(),
                }),
                None => {
                    errors.spanned(int, format!("the duration `{int}` is too large"));
                    None
                }
            }
        }
        Lit::Float(float) => {
            errors.spanned(
                float,
                "write the duration as a whole number with a unit, e.g. `1500ms` rather than `1.5s`",
            );
            None
        }
        Lit::Str(s) => {
            let text = s.value();
            let msg = match syn::parse_str::<syn::LitInt>(&text) {
                Ok(i) if UNITS.iter().any(|(u, _)| *u == i.suffix()) => {
                    format!("write the duration without quotes: `{text}`")
                }
                _ => "write the duration without quotes, e.g. `30s`".to_owned(),
            };
            errors.spanned(s, msg);
            None
        }
        other => {
            errors.spanned(other, format!("expected a duration for {what}, {example}"));
            None
        }
    }
}
