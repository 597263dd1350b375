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
/// safe in keys, file names and URLs. This is stricter than
/// `kosh_jobs::backend::validate_job_name` (1 to 128 bytes, no control characters), which
/// backends apply to every pushed job: every name accepted here passes there.
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

/// Checks a cron expression as `kosh_jobs::schedule::validate_cron` does at run time (the same
/// croner parser settings: five fields, or six with seconds first; no year field).
pub(crate) fn cron(expr: &str, span: Span, errors: &mut Errors) -> bool {
    use croner::parser::{CronParser, Seconds, Year};
    let parser = CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build();
    match parser.parse(expr.trim()) {
        Ok(_) if !expr.trim().is_empty() => true,
        Ok(_) => {
            errors.at(span, "the cron expression is empty");
            false
        }
        Err(e) => {
            errors.at(
                span,
                format!(
                    "invalid cron expression {expr:?}: {e} (five fields: minute hour \
                     day-of-month month day-of-week, or `@daily`-style aliases)"
                ),
            );
            false
        }
    }
}

/// Checks an IANA time zone name.
pub(crate) fn time_zone(tz: &str, span: Span, errors: &mut Errors) -> bool {
    if tz.parse::<chrono_tz::Tz>().is_ok() {
        return true;
    }
    errors.at(
        span,
        format!("unknown time zone {tz:?}: use an IANA name such as \"Europe/Berlin\" or \"UTC\""),
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_rules_as_validate_queue_name() {
        for ok in ["csv-uploads", "a", "mail.v2", "x:y_z", &"q".repeat(128)] {
            assert_eq!(name_problem(ok), None, "{ok}");
            assert_eq!(kosh_jobs::backend::validate_queue_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", ":x", "csv uploads", "é", &"q".repeat(129), "a/b"] {
            assert!(name_problem(bad).is_some(), "{bad}");
            assert!(
                kosh_jobs::backend::validate_queue_name(bad).is_err(),
                "{bad}"
            );
        }
    }

    /// The macro's job names are a subset of what `validate_job_name` accepts (so a job it
    /// defines can always be pushed), and both refuse the same lengths and control characters.
    #[test]
    fn job_names_within_validate_job_name() {
        let cases = [
            "import_csv",
            "a",
            "mail.v2",
            "x:y_z",
            &"q".repeat(128),
            "",
            &"q".repeat(129),
            "a\nb",
            "tab\t",
            "nul\0",
            "del\u{7f}",
            "csv uploads",
            "é",
            ":x",
        ];
        for name in cases {
            if name_problem(name).is_none() {
                assert_eq!(
                    kosh_jobs::backend::validate_job_name(name),
                    Ok(()),
                    "{name:?}: accepted by the macro, refused at run time"
                );
            }
        }
        // Both refuse the bounds and control characters.
        for name in ["", &"q".repeat(129), "a\nb", "nul\0"] {
            assert!(name_problem(name).is_some(), "{name:?}");
            assert!(
                kosh_jobs::backend::validate_job_name(name).is_err(),
                "{name:?}"
            );
        }
        // Stricter on purpose: the macro keeps to the queue name's characters.
        for name in ["csv uploads", "é", ":x"] {
            assert!(name_problem(name).is_some(), "{name:?}");
            assert_eq!(
                kosh_jobs::backend::validate_job_name(name),
                Ok(()),
                "{name:?}"
            );
        }
    }
}
