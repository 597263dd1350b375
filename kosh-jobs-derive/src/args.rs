//! Parses the attribute's arguments, `key = value, ...`, into typed values with their spans.
//!
//! Parsing never stops at the first mistake: every entry is parsed on its own and each error
//! is recorded, so one compilation reports them all.

use proc_macro2::{Delimiter, Ident, Punct, Span, TokenStream, TokenTree};
use syn::{Lit, LitInt, LitStr};

use crate::backoff::{self, BackoffSpec};
use crate::duration::{self, Dur};
use crate::errors::Errors;
use crate::unique::{self, Unique};
use crate::validate;

/// Every key the attribute accepts, in the order the docs list them.
pub(crate) const KEYS: &[&str] = &[
    "queue",
    "name",
    "max_attempts",
    "backoff",
    "timeout",
    "priority",
    "unique",
    "group",
    "progress",
    "cron",
    "tz",
    "crate",
];

/// Keys people reach for from other job systems, and the key that means the same here.
const ALIASES: &[(&str, &str)] = &[
    ("attempts", "max_attempts"),
    ("retries", "max_attempts"),
    ("max_retries", "max_attempts"),
    ("queue_name", "queue"),
    ("job_name", "name"),
    ("unique_key", "unique"),
    ("group_key", "group"),
    ("group_id", "group"),
    ("retry", "backoff"),
    ("retry_backoff", "backoff"),
    ("schedule", "cron"),
    ("repeat", "cron"),
    ("timezone", "tz"),
    ("time_zone", "tz"),
];

/// The attribute's arguments, each `None` when not given or not valid.
#[derive(Default)]
pub(crate) struct Args {
    /// A valid queue name.
    pub(crate) queue: Option<LitStr>,
    /// A valid job name.
    pub(crate) name: Option<LitStr>,
    /// Whether `name` was given, valid or not (an invalid one is not replaced by the default).
    pub(crate) name_given: bool,
    pub(crate) max_attempts: Option<(u32, Span)>,
    pub(crate) backoff: Option<BackoffSpec>,
    pub(crate) timeout: Option<Dur>,
    pub(crate) priority: Option<(i32, Span)>,
    pub(crate) unique: Option<Unique>,
    /// How the group key is derived from the payload (`group = user_id`).
    pub(crate) group: Option<Unique>,
    /// The job's progress type (`progress = ImportProgress`).
    pub(crate) progress: Option<syn::Type>,
    /// A valid cron expression (`cron = "0 3 * * *"`).
    pub(crate) cron: Option<LitStr>,
    /// A valid IANA time zone (`tz = "Asia/Kolkata"`).
    pub(crate) tz: Option<LitStr>,
    pub(crate) krate: Option<syn::Path>,
}

/// One comma-separated entry: `key = value`, or something else (kept for the error).
pub(crate) enum Entry {
    /// `key = value`.
    KeyValue {
        key: Ident,
        eq: Punct,
        value: TokenStream,
    },
    /// Anything not of that shape, non-empty.
    Other(TokenStream),
}

/// Splits `tokens` at top-level commas (commas inside brackets stay in their entry); reports
/// empty entries such as `a = 1,, b = 2`. A trailing comma is fine.
pub(crate) fn entries(tokens: TokenStream, errors: &mut Errors) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut chunk: Vec<TokenTree> = Vec::new();
    for tt in tokens {
        match &tt {
            TokenTree::Punct(p) if p.as_char() == ',' => {
                if chunk.is_empty() {
                    errors.at(p.span(), "unexpected `,`");
                } else {
                    out.push(entry(std::mem::take(&mut chunk)));
                }
            }
            _ => chunk.push(tt),
        }
    }
    if !chunk.is_empty() {
        out.push(entry(chunk));
    }
    out
}

fn entry(chunk: Vec<TokenTree>) -> Entry {
    let mut it = chunk.iter();
    if let (Some(TokenTree::Ident(key)), Some(TokenTree::Punct(eq))) = (it.next(), it.next()) {
        if eq.as_char() == '=' {
            return Entry::KeyValue {
                key: key.clone(),
                eq: eq.clone(),
                value: it.cloned().collect(),
            };
        }
    }
    Entry::Other(chunk.into_iter().collect())
}

/// Parses the attribute's arguments.
pub(crate) fn parse(tokens: TokenStream, errors: &mut Errors) -> Args {
    let mut args = Args::default();
    let mut seen: Vec<String> = Vec::new();
    for e in entries(tokens, errors) {
        let (key, eq, value) = match e {
            Entry::KeyValue { key, eq, value } => (key, eq, value),
            Entry::Other(tokens) => {
                report_malformed(&tokens, errors);
                continue;
            }
        };
        let k = key.to_string();
        if !KEYS.contains(&k.as_str()) {
            errors.at(key.span(), unknown_key(&k, KEYS, ALIASES));
            continue;
        }
        if seen.contains(&k) {
            errors.at(
                key.span(),
                format!("duplicate key `{k}`: it is already set earlier in this attribute"),
            );
            continue;
        }
        seen.push(k.clone());
        if value.is_empty() {
            errors.at(eq.span(), format!("missing value after `{k} =`"));
            continue;
        }
        match k.as_str() {
            "queue" => {
                args.queue = string(&value, "queue", "\"emails\"", errors)
                    .filter(|q| validate::queue_name(&q.value(), q.span(), errors))
            }
            "name" => {
                args.name_given = true;
                args.name = string(&value, "name", "\"send_receipt\"", errors)
                    .filter(|n| validate::job_name(&n.value(), n.span(), errors))
            }
            "max_attempts" => args.max_attempts = max_attempts(&value, errors),
            "backoff" => args.backoff = backoff::parse(&value, errors),
            "timeout" => args.timeout = timeout(&value, errors),
            "priority" => args.priority = priority(&value, errors),
            "unique" => args.unique = unique::parse(&value, errors),
            "group" => args.group = unique::parse_group(&value, errors),
            "progress" => args.progress = progress_type(&value, errors),
            "cron" => {
                args.cron = string(&value, "cron", "\"0 3 * * *\"", errors)
                    .filter(|c| validate::cron(&c.value(), c.span(), errors))
            }
            "tz" => {
                args.tz = string(&value, "tz", "\"Europe/Berlin\"", errors)
                    .filter(|z| validate::time_zone(&z.value(), z.span(), errors))
            }
            "crate" => args.krate = crate_path(&value, errors),
            _ => {}
        }
    }
    if args.cron.is_none() && !seen.iter().any(|k| k == "cron") {
        if let Some(tz) = &args.tz {
            errors.at(
                tz.span(),
                "`tz` is the time zone of a `cron` schedule: add `cron = \"...\"` or remove it",
            );
        }
    }
    args
}

/// An entry that is not `key = value`: say what was expected.
fn report_malformed(tokens: &TokenStream, errors: &mut Errors) {
    let mut it = tokens.clone().into_iter();
    let first = it.next();
    match (first, it.next()) {
        (Some(TokenTree::Ident(key)), next) => {
            let k = key.to_string();
            if !KEYS.contains(&k.as_str()) {
                errors.at(key.span(), unknown_key(&k, KEYS, ALIASES));
                return;
            }
            let span = match &next {
                Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Parenthesis => g.span(),
                Some(tt) => tt.span(),
                None => key.span(),
            };
            errors.at(
                span,
                format!("expected `{k} = ...`, e.g. {}", example_for(&k)),
            );
        }
        _ => errors.spanned(
            tokens,
            format!("expected `key = value`; valid keys: {}", list(KEYS)),
        ),
    }
}

fn example_for(key: &str) -> &'static str {
    match key {
        "queue" => "`queue = \"emails\"`",
        "name" => "`name = \"send_receipt\"`",
        "max_attempts" => "`max_attempts = 5`",
        "backoff" => "`backoff = exponential(2s, max = 10m)`",
        "timeout" => "`timeout = 15m`",
        "priority" => "`priority = 10`",
        "unique" => "`unique = \"upload-{upload_id}\"`",
        "group" => "`group = user_id`",
        "progress" => "`progress = ImportProgress`",
        "cron" => "`cron = \"0 3 * * *\"`",
        "tz" => "`tz = \"Europe/Berlin\"`",
        _ => "`crate = \"my_app::kosh_jobs\"`",
    }
}

/// The message for a key that is not one of `valid`, with a suggestion when one is close.
pub(crate) fn unknown_key(key: &str, valid: &[&str], aliases: &[(&str, &str)]) -> String {
    let suggestion = aliases
        .iter()
        .find(|(alias, _)| *alias == key)
        .map(|(_, to)| *to)
        .or_else(|| {
            valid
                .iter()
                .map(|v| (edit_distance(key, v), *v))
                .filter(|(d, v)| *d <= 2.max(v.len() / 3))
                .min_by_key(|(d, _)| *d)
                .map(|(_, v)| v)
        });
    let hint = match suggestion {
        Some(s) => format!(" (did you mean `{s}`?)"),
        None => String::new(),
    };
    format!("unknown key `{key}`{hint}; valid keys: {}", list(valid))
}

/// `a`, `b` and `c` as "`a`, `b`, `c`".
pub(crate) fn list(items: &[&str]) -> String {
    items
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Levenshtein distance, for suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn string(value: &TokenStream, key: &str, example: &str, errors: &mut Errors) -> Option<LitStr> {
    match syn::parse2::<LitStr>(value.clone()) {
        Ok(s) => Some(s),
        Err(_) => {
            errors.spanned(
                value,
                format!("expected a string literal, e.g. `{key} = {example}`"),
            );
            None
        }
    }
}

/// An unsuffixed integer literal (or with the given suffix), else an error.
fn integer(value: &TokenStream, suffix: &str, msg: &str, errors: &mut Errors) -> Option<LitInt> {
    match syn::parse2::<Lit>(value.clone()) {
        Ok(Lit::Int(i)) if i.suffix().is_empty() || i.suffix() == suffix => Some(i),
        _ => {
            errors.spanned(value, msg);
            None
        }
    }
}

fn max_attempts(value: &TokenStream, errors: &mut Errors) -> Option<(u32, Span)> {
    let msg = "expected a whole number of attempts, e.g. `max_attempts = 5`";
    let lit = integer(value, "u32", msg, errors)?;
    let digits = lit.base10_digits();
    let n = if digits.starts_with('-') {
        Ok(0)
    } else {
        digits.parse::<u32>()
    };
    match n {
        Ok(0) => {
            errors.spanned(
                &lit,
                "`max_attempts` must be at least 1: it counts the first attempt too \
                 (1 means no retries)",
            );
            None
        }
        Ok(n) => Some((n, lit.span())),
        Err(_) => {
            errors.spanned(&lit, "`max_attempts` must fit in a `u32`");
            None
        }
    }
}

fn timeout(value: &TokenStream, errors: &mut Errors) -> Option<Dur> {
    let d = duration::parse(value, "`timeout`", errors)?;
    if d.millis == 0 {
        errors.at(
            d.span,
            "`timeout` must be above zero; leave it out for no timeout",
        );
        return None;
    }
    Some(d)
}

fn priority(value: &TokenStream, errors: &mut Errors) -> Option<(i32, Span)> {
    let msg = "expected an integer priority, e.g. `priority = 10` (higher runs first)";
    // `syn` reads `-5` as one negative literal.
    let lit = integer(value, "i32", msg, errors)?;
    match lit.base10_parse::<i32>() {
        Ok(p) => Some((p, lit.span())),
        Err(_) => {
            errors.spanned(
                value,
                format!(
                    "`priority` must fit in an `i32` ({} to {})",
                    i32::MIN,
                    i32::MAX
                ),
            );
            None
        }
    }
}

fn progress_type(value: &TokenStream, errors: &mut Errors) -> Option<syn::Type> {
    match syn::parse2::<syn::Type>(value.clone()) {
        Ok(ty) => Some(ty),
        Err(_) => {
            errors.spanned(
                value,
                "expected the progress type, e.g. `progress = ImportProgress` (a serde type)",
            );
            None
        }
    }
}

fn crate_path(value: &TokenStream, errors: &mut Errors) -> Option<syn::Path> {
    let lit = string(value, "crate", "\"my_app::kosh_jobs\"", errors)?;
    match lit.parse::<syn::Path>() {
        Ok(p) => Some(p),
        Err(_) => {
            errors.spanned(
                &lit,
                format!(
                    "`{}` is not a path; write the path kosh_jobs is re-exported at, \
                     e.g. `crate = \"my_app::kosh_jobs\"`",
                    lit.value()
                ),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert!(unknown_key("max_attempt", KEYS, ALIASES).contains("did you mean `max_attempts`"));
        assert!(unknown_key("retries", KEYS, ALIASES).contains("did you mean `max_attempts`"));
        assert!(unknown_key("queu", KEYS, ALIASES).contains("did you mean `queue`"));
        assert!(!unknown_key("colour", KEYS, ALIASES).contains("did you mean"));
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
