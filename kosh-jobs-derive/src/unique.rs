//! The `unique` value: how a job's unique key is derived from its payload.
//!
//! - `unique = "upload-{upload_id}"`: a format string over the payload's fields, used as the
//!   key verbatim. Each `{field}` (optionally `{field:spec}`) names a field; `{{` and `}}` are
//!   literal braces. A string without fields is a constant key: one live job of the type.
//! - `unique = upload_id`: one field; the key is `"<job name>:<value>"`, so keys of different
//!   job types never collide.
//!
//! Field names are checked here for shape; whether the payload has them (and whether they
//! implement `Display`) is checked by the compiler, pointing at the attribute's value.

use proc_macro2::{Ident, TokenStream};
use syn::LitStr;

use crate::errors::Errors;

/// A checked `unique` value.
#[derive(Clone)]
pub(crate) enum Unique {
    /// A format string and the distinct fields it names, in order of first use.
    Format { lit: LitStr, fields: Vec<Ident> },
    /// A single field.
    Field(Ident),
}

/// Parses and checks a `unique` value.
pub(crate) fn parse(value: &TokenStream, errors: &mut Errors) -> Option<Unique> {
    parse_key(value, Key::Unique, errors)
}

/// Parses and checks a `group` value: the same forms as `unique`.
pub(crate) fn parse_group(value: &TokenStream, errors: &mut Errors) -> Option<Unique> {
    parse_key(value, Key::Group, errors)
}

/// Which key a value derives.
#[derive(Clone, Copy)]
enum Key {
    Unique,
    Group,
}

impl Key {
    fn noun(self) -> &'static str {
        match self {
            Key::Unique => "unique key",
            Key::Group => "group key",
        }
    }
}

fn parse_key(value: &TokenStream, key: Key, errors: &mut Errors) -> Option<Unique> {
    if let Ok(lit) = syn::parse2::<LitStr>(value.clone()) {
        return format_string(lit, key, errors);
    }
    if let Ok(field) = syn::parse2::<Ident>(value.clone()) {
        return Some(Unique::Field(field));
    }
    let msg = match key {
        Key::Unique => {
            "expected a payload field (`unique = upload_id`) or a format string over the \
             payload's fields (`unique = \"upload-{upload_id}\"`)"
        }
        Key::Group => {
            "expected a payload field (`group = user_id`) or a format string over the \
             payload's fields (`group = \"user-{user_id}\"`)"
        }
    };
    errors.spanned(value, msg);
    None
}

fn format_string(lit: LitStr, key: Key, errors: &mut Errors) -> Option<Unique> {
    let text = lit.value();
    if text.is_empty() {
        errors.spanned(&lit, format!("the {} must not be empty", key.noun()));
        return None;
    }
    match placeholders(&text, key.noun()) {
        Ok(names) => {
            let mut fields: Vec<Ident> = Vec::new();
            for name in names {
                if !fields.iter().any(|f| f == name.as_str()) {
                    fields.push(Ident::new(&name, lit.span()));
                }
            }
            Some(Unique::Format { lit, fields })
        }
        Err(msg) => {
            errors.spanned(&lit, msg);
            None
        }
    }
}

/// The field names of a format string's placeholders, or what is wrong with it.
fn placeholders(text: &str, noun: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
            }
            '}' => {
                return Err(format!(
                    "unmatched `}}` in the {noun}; write `}}}}` for a brace"
                ))
            }
            '{' => {
                let mut inner = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => inner.push(c),
                        None => {
                            return Err(format!(
                                "unclosed `{{` in the {noun}; write `{{{{` for a brace"
                            ))
                        }
                    }
                }
                let name = inner.split(':').next().unwrap_or_default().trim();
                if !is_field_name(name) {
                    return Err(format!(
                        "`{{{inner}}}` in the {noun}: each `{{...}}` names a field of the \
                         payload, e.g. `{{upload_id}}`"
                    ));
                }
                names.push(name.to_owned());
            }
            _ => {}
        }
    }
    Ok(names)
}

fn is_field_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c == '_' || c.is_alphabetic() => {
            s != "_"
                && chars.all(|c| c == '_' || c.is_alphanumeric())
                && syn::parse_str::<Ident>(s).is_ok()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_fields() {
        assert_eq!(
            placeholders("upload-{upload_id}-{{x}}-{user:>5}", "unique key").unwrap(),
            ["upload_id", "user"]
        );
        assert_eq!(
            placeholders("nightly", "unique key").unwrap(),
            Vec::<String>::new()
        );
        assert!(placeholders("a-{}", "unique key").is_err());
        assert!(placeholders("a-{0}", "unique key").is_err());
        assert!(placeholders("a-{self}", "unique key").is_err());
        assert!(placeholders("a-{x", "unique key").is_err());
        assert!(placeholders("a}", "unique key").is_err());
    }
}
