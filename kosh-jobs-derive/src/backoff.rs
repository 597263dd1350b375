//! The `backoff` value: `none`, `fixed(30s)`, `linear(10s, max = 5m)` or
//! `exponential(2s, max = 10m)`, each with an optional `jitter = 0.2`.
//!
//! Checked here with the same rules as `kosh_jobs::Backoff`'s constructors, so the
//! generated calls cannot fail at run time.

use proc_macro2::{Delimiter, Span, TokenStream, TokenTree};
use syn::Lit;

use crate::args::{entries, list, unknown_key, Entry};
use crate::duration::{self, Dur};
use crate::errors::Errors;

/// The longest delay a backoff may produce: `kosh_jobs::retry::MAX_DELAY`, 30 days.
const MAX_DELAY_MILLIS: u64 = 30 * 24 * 3600 * 1000;

const GRAMMAR: &str = "`none`, `fixed(30s)`, `linear(10s, max = 5m)` or \
                       `exponential(2s, max = 10m)`, optionally with `jitter = 0.2` inside the \
                       parentheses";

/// A checked backoff.
#[derive(Clone)]
pub(crate) enum BackoffSpec {
    None,
    Fixed { delay: Dur, jitter: f64 },
    Linear { step: Dur, max: Dur, jitter: f64 },
    Exponential { base: Dur, max: Dur, jitter: f64 },
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Fixed,
    Linear,
    Exponential,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Fixed => "fixed",
            Kind::Linear => "linear",
            Kind::Exponential => "exponential",
        }
    }
    /// With its article, for messages: "an exponential".
    fn described(self) -> &'static str {
        match self {
            Kind::Fixed => "a fixed",
            Kind::Linear => "a linear",
            Kind::Exponential => "an exponential",
        }
    }
    fn example(self) -> &'static str {
        match self {
            Kind::Fixed => "`fixed(30s)`",
            Kind::Linear => "`linear(10s, max = 5m)`",
            Kind::Exponential => "`exponential(2s, max = 10m)`",
        }
    }
    fn keys(self) -> &'static [&'static str] {
        match self {
            Kind::Fixed => &["jitter"],
            Kind::Linear | Kind::Exponential => &["max", "jitter"],
        }
    }
}

/// Parses and checks a `backoff` value.
pub(crate) fn parse(value: &TokenStream, errors: &mut Errors) -> Option<BackoffSpec> {
    let tokens: Vec<TokenTree> = value.clone().into_iter().collect();
    let Some(TokenTree::Ident(ident)) = tokens.first() else {
        errors.spanned(value, format!("expected a backoff: {GRAMMAR}"));
        return None;
    };
    let kind = match ident.to_string().as_str() {
        "none" => {
            if tokens.len() > 1 {
                errors.spanned(
                    value,
                    "`none` takes no arguments: write `backoff = none` to retry at once",
                );
                return None;
            }
            return Some(BackoffSpec::None);
        }
        "fixed" => Kind::Fixed,
        "linear" => Kind::Linear,
        "exponential" => Kind::Exponential,
        other => {
            errors.at(
                ident.span(),
                format!("unknown backoff `{other}`; expected {GRAMMAR}"),
            );
            return None;
        }
    };
    let group = match tokens.get(1) {
        Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Parenthesis => g,
        Some(other) => {
            errors.at(
                other.span(),
                format!(
                    "expected `(` after `{}`, e.g. {}",
                    kind.name(),
                    kind.example()
                ),
            );
            return None;
        }
        None => {
            errors.at(
                ident.span(),
                format!(
                    "`{}` needs its arguments, e.g. {}",
                    kind.name(),
                    kind.example()
                ),
            );
            return None;
        }
    };
    if let Some(extra) = tokens.get(2) {
        errors.at(
            extra.span(),
            format!("unexpected tokens after `{}(...)`", kind.name()),
        );
        return None;
    }
    arguments(kind, ident.span(), group.stream(), group.span(), errors)
}

fn arguments(
    kind: Kind,
    kind_span: Span,
    inner: TokenStream,
    parens: Span,
    errors: &mut Errors,
) -> Option<BackoffSpec> {
    let before = errors.len();
    let mut list_entries = entries(inner, errors).into_iter();
    let first_name = match kind {
        Kind::Fixed => "delay",
        Kind::Linear => "step",
        Kind::Exponential => "base delay",
    };
    let base = match list_entries.next() {
        Some(Entry::Other(tokens)) => duration::parse(
            &tokens,
            &format!("the {first_name} of `{}`", kind.name()),
            errors,
        ),
        Some(Entry::KeyValue { key, .. }) => {
            errors.at(
                key.span(),
                format!(
                    "the first argument of `{}` is its {first_name}, without a name, e.g. {}",
                    kind.name(),
                    kind.example()
                ),
            );
            None
        }
        None => {
            errors.at(
                parens,
                format!(
                    "`{}` needs its {first_name}, e.g. {}",
                    kind.name(),
                    kind.example()
                ),
            );
            return None;
        }
    };
    let mut max: Option<Dur> = None;
    let mut jitter: Option<(f64, Span)> = None;
    let mut seen: Vec<String> = Vec::new();
    for e in list_entries {
        let (key, value) = match e {
            Entry::KeyValue { key, eq, value } => {
                if value.is_empty() {
                    errors.at(eq.span(), format!("missing value after `{key} =`"));
                    continue;
                }
                (key, value)
            }
            Entry::Other(tokens) => {
                errors.spanned(
                    &tokens,
                    format!(
                        "expected {} after the {first_name}, e.g. {}",
                        list(kind.keys()),
                        kind.example()
                    ),
                );
                continue;
            }
        };
        let k = key.to_string();
        if !kind.keys().contains(&k.as_str()) {
            let msg = if k == "max" {
                "a `fixed` backoff has no cap: remove `max`".to_owned()
            } else {
                unknown_key(&k, kind.keys(), &[("cap", "max"), ("limit", "max")])
            };
            errors.at(key.span(), msg);
            continue;
        }
        if seen.contains(&k) {
            errors.at(key.span(), format!("duplicate key `{k}`"));
            continue;
        }
        seen.push(k.clone());
        if k == "max" {
            max = duration::parse(&value, "`max`", errors);
        } else {
            jitter = parse_jitter(&value, errors);
        }
    }
    // Checked in the order written, so the errors come in that order.
    if kind != Kind::Fixed {
        if let Some(base) = base.as_ref().filter(|b| b.millis == 0) {
            errors.at(
                base.span,
                format!(
                    "the {first_name} of {} backoff must be above zero; \
                     use `backoff = none` to retry at once",
                    kind.described()
                ),
            );
        }
    }
    if let Some(base) = &base {
        check_limit(base, errors);
    }
    if let Some(max) = &max {
        check_limit(max, errors);
    }
    if kind != Kind::Fixed {
        if max.is_none() && !seen.iter().any(|k| k == "max") {
            errors.at(
                kind_span,
                format!(
                    "`{}` needs a cap on its delay, e.g. {}",
                    kind.name(),
                    kind.example()
                ),
            );
        }
        if let (Some(base), Some(max)) = (&base, &max) {
            if max.millis < base.millis {
                errors.at(
                    max.span,
                    format!(
                        "the cap `{}` is below the {first_name} `{}`; \
                         the cap must be at least the {first_name}",
                        max.text, base.text
                    ),
                );
            }
        }
    }
    let jitter = match jitter {
        Some((j, _)) if (0.0..=1.0).contains(&j) => j,
        Some((_, span)) => {
            errors.at(span, JITTER_HELP);
            0.0
        }
        None => 0.0,
    };
    if errors.len() != before {
        return None;
    }
    match (kind, base, max) {
        (Kind::Fixed, Some(delay), _) => Some(BackoffSpec::Fixed { delay, jitter }),
        (Kind::Linear, Some(step), Some(max)) => Some(BackoffSpec::Linear { step, max, jitter }),
        (Kind::Exponential, Some(base), Some(max)) => {
            Some(BackoffSpec::Exponential { base, max, jitter })
        }
        _ => None,
    }
}

fn check_limit(d: &Dur, errors: &mut Errors) {
    if d.millis > MAX_DELAY_MILLIS {
        errors.at(
            d.span,
            format!(
                "`{}` is longer than the 30 days a backoff may wait; use at most `30d`",
                d.text
            ),
        );
    }
}

const JITTER_HELP: &str = "`jitter` is a fraction between 0.0 and 1.0, e.g. `jitter = 0.2`";

/// A jitter literal and where it is; its range is checked by the caller.
fn parse_jitter(value: &TokenStream, errors: &mut Errors) -> Option<(f64, Span)> {
    let parsed = match syn::parse2::<Lit>(value.clone()) {
        Ok(Lit::Float(f)) if f.suffix().is_empty() || f.suffix() == "f64" => {
            f.base10_parse::<f64>().ok().map(|n| (n, f.span()))
        }
        Ok(Lit::Int(i)) if i.suffix().is_empty() => {
            i.base10_parse::<f64>().ok().map(|n| (n, i.span()))
        }
        _ => None,
    };
    if parsed.is_none() {
        errors.spanned(value, JITTER_HELP);
    }
    parsed
}
