//! Checks on names: the queue and the job's stable name.

use proc_macro2::Span;

use crate::errors::Errors;

/// Checks a queue name with the rules of `kosh_jobs::backend::validate_queue_name`: 1 to 128
/// ASCII letters, digits, `-`, `_`, `.` and `:`, not starting with `:`.
pub(crate) fn queue_name(name: &str, span: Span, errors: &mut Errors) -> bool {
    match name_problem(name) {
        None => true,
        Some(problem) => {
            errors.at(span, format!("invalid queue name {name:?}: {problem}"));
            false
        }
    }
}

/// Checks a job name given with `name = "..."`: the same characters as a queue name, so it is
/// safe in keys, file names and URLs.
pub(crate) fn job_name(name: &str, span: Span, errors: &mut Errors) -> bool {
    match name_problem(name) {
        None => true,
        Some(problem) => {
            errors.at(span, format!("invalid job name {name:?}: {problem}"));
            false
        }
    }
}

/// Checks a job name that defaults to the function's name.
pub(crate) fn default_job_name(name: &str, span: Span, errors: &mut Errors) -> bool {
    match name_problem(name) {
        None => true,
        Some(problem) => {
            errors.at(
                span,
                format!(
                    "the job name defaults to the function's name, and `{name}` is not a valid \
                     job name ({problem}); set one with `name = \"...\"`"
                ),
            );
            false
        }
    }
}

fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("it is empty".into());
    }
    if name.len() > 128 {
        return Some(format!(
            "it is {} bytes long, and at most 128 are allowed",
            name.len()
        ));
    }
    if name.starts_with(':') {
        return Some("it must not start with `:`".into());
    }
    name.chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
        .map(|c| {
            let c = match c {
                ' ' => "a space".to_owned(),
                c if c.is_whitespace() || c.is_control() => format!("{c:?}"),
                c => format!("`{c}`"),
            };
            format!("it contains {c}; use only ASCII letters, digits, `-`, `_`, `.` and `:`")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_rules_as_validate_queue_name() {
        for ok in ["csv-uploads", "a", "mail.v2", "x:y_z", &"q".repeat(128)] {
            assert_eq!(name_problem(ok), None, "{ok}");
        }
        for bad in ["", ":x", "csv uploads", "é", &"q".repeat(129), "a/b"] {
            assert!(name_problem(bad).is_some(), "{bad}");
        }
    }
}
