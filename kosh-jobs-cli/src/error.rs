//! The CLI's errors and their exit codes.

use std::error::Error as _;
use std::fmt;

use crate::connect::Target;

/// Exit code: done.
pub(crate) const EXIT_OK: u8 = 0;
/// Exit code: the store cannot be reached, a backend error, declined at the prompt.
pub(crate) const EXIT_ERROR: u8 = 1;
/// Exit code: a bad flag, state, duration, queue name, URL or payload.
pub(crate) const EXIT_USAGE: u8 = 2;
/// Exit code: no such job.
pub(crate) const EXIT_NOT_FOUND: u8 = 3;

/// Why a command failed.
#[derive(Debug)]
pub(crate) enum CliError {
    /// The command line asked for something that makes no sense (exit 2).
    Usage(String),
    /// The thing asked for does not exist (exit 3).
    NotFound(String),
    /// Anything else (exit 1).
    Failed(String),
    /// The operator answered no at the prompt (exit 1, nothing was changed).
    Declined,
}

impl CliError {
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::NotFound(_) => EXIT_NOT_FOUND,
            CliError::Failed(_) | CliError::Declined => EXIT_ERROR,
        }
    }

    /// A library error, with its causes, and `context` first when the store could not be
    /// reached; never the password of the URL.
    pub(crate) fn from_kosh(e: kosh_jobs::Error, target: &Target, context: &str) -> CliError {
        let head = match &e {
            kosh_jobs::Error::InvalidInput(m) => m.clone(),
            kosh_jobs::Error::Unavailable(_) => {
                format!("{context}: {} is unavailable", target.describe())
            }
            kosh_jobs::Error::PermissionDenied(_) => format!(
                "{context}: {} refused the credentials or the operation",
                target.describe()
            ),
            other => format!("{context}: {other}"),
        };
        // The causes, each once (a wrapper often repeats its source's message).
        let mut causes: Vec<String> = Vec::new();
        let mut source = e.source();
        while let Some(s) = source {
            let msg = s.to_string();
            if !causes.iter().any(|c| c.contains(&msg)) {
                causes.push(msg);
            }
            source = s.source();
        }
        let text = match causes.first() {
            // The backend's own message already names the store: it says it best.
            Some(first) if first.contains(&target.describe()) => causes.join(": "),
            _ => [head]
                .into_iter()
                .chain(causes)
                .collect::<Vec<_>>()
                .join(": "),
        };
        let text = target.scrub(&text);
        match e {
            kosh_jobs::Error::InvalidInput(_) => CliError::Usage(text),
            kosh_jobs::Error::NotFound(_) => CliError::NotFound(text),
            _ => CliError::Failed(text),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(m) | CliError::NotFound(m) | CliError::Failed(m) => f.write_str(m),
            CliError::Declined => f.write_str("declined: nothing was changed"),
        }
    }
}

/// Converts library errors of a command run against `target`.
pub(crate) trait Context<T> {
    /// The error with what was being done, e.g. `"cannot search jobs"`.
    fn ctx(self, target: &Target, what: &str) -> Result<T, CliError>;
}

impl<T> Context<T> for Result<T, kosh_jobs::Error> {
    fn ctx(self, target: &Target, what: &str) -> Result<T, CliError> {
        self.map_err(|e| CliError::from_kosh(e, target, what))
    }
}

impl<T> Context<T> for Result<T, kosh_jobs::BackendError> {
    fn ctx(self, target: &Target, what: &str) -> Result<T, CliError> {
        self.map_err(|e| CliError::from_kosh(e.into(), target, what))
    }
}
