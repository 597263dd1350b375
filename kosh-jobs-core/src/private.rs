//! Items the `#[job]` attribute's expansion names. Not a public API: may change in any release.
//!
//! The expansion refers to everything through `::kosh_jobs::__private` (or
//! `<crate>::__private` with `crate = "..."`), so users need no imports of their own and a
//! local item called `Result`, `Option` or `format` cannot change what the generated code means.

pub use core::default::Default;
pub use core::future::Future;
pub use core::marker::{Send, Sync};
pub use core::option::Option::{self, None, Some};
pub use core::result::Result::{self, Err, Ok};
pub use std::format;
pub use std::string::String;
pub use std::time::Duration;

pub use crate::context::JobContext;
pub use crate::error::JobError;
pub use crate::job::{Handler, Job, JobOptions, JobProgress};
pub use crate::retry::Backoff;
pub use crate::schedule::DeclaredSchedule;

/// What a job's payload must be. Checked once, with one message, for the payload type of
/// each `#[job]` handler; the generated `Job` impl assumes it so the same problem is not
/// reported again for every supertrait of `Job` and `Handler`.
#[diagnostic::on_unimplemented(
    message = "the payload `{Self}` of a job must be `Serialize + DeserializeOwned + Send + Sync + 'static`",
    label = "the job's payload type",
    note = "derive them: `#[derive(serde::Serialize, serde::Deserialize)]`, and keep the \
            payload free of borrows, `Rc` and `RefCell`"
)]
pub trait Payload: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static {}

impl<T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static> Payload for T {}

/// Fails to compile, at the payload's type, if it is not a valid payload.
pub fn assert_payload<T: Payload>() {}

/// What a handler's success value must be: it is stored as the job's result and read back,
/// typed, by the application.
#[diagnostic::on_unimplemented(
    message = "the result `{Self}` of a job handler must be `Serialize + DeserializeOwned + Send + 'static`: it is stored as the job's result and read back",
    label = "the handler's result type",
    note = "derive them: `#[derive(serde::Serialize, serde::Deserialize)]`, or return `Result<(), E>` to store nothing"
)]
pub trait Output: serde::Serialize + serde::de::DeserializeOwned + Send + 'static {}

impl<T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static> Output for T {}

/// Fails to compile, at the handler's result type, if it cannot be stored.
pub fn assert_output<T: Output>() {}

/// What a job's progress type must be.
#[diagnostic::on_unimplemented(
    message = "the progress type `{Self}` of a job must be `Serialize + DeserializeOwned + Send + 'static`",
    label = "the job's progress type",
    note = "derive them: `#[derive(serde::Serialize, serde::Deserialize)]`"
)]
pub trait ProgressType: serde::Serialize + serde::de::DeserializeOwned + Send + 'static {}

impl<T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static> ProgressType for T {}

/// Fails to compile, at the progress type, if it cannot be stored and read back.
pub fn assert_progress<T: ProgressType>() {}

/// Turns a handler's error into a [`JobError`]: any `E: Into<BoxError>` becomes a retryable
/// error, a `JobError` (e.g. [`JobError::permanent`]) passes through unchanged.
///
/// [`BoxError`]: crate::BoxError
#[diagnostic::on_unimplemented(
    message = "a job handler's error type must convert into `JobError`, and `{Self}` does not",
    label = "the error type of this handler",
    note = "return an error type that implements `std::error::Error + Send + Sync + 'static`, \
            a `Box<dyn Error + Send + Sync>`, `anyhow::Error`, or `kosh_jobs::JobError`"
)]
pub trait IntoJobError {
    /// The conversion.
    fn into_job_error(self) -> JobError;
}

impl<E: Into<JobError>> IntoJobError for E {
    fn into_job_error(self) -> JobError {
        self.into()
    }
}

/// Maps a handler's result: the value passes through, the error becomes a [`JobError`].
pub fn job_result<T, E: IntoJobError>(r: Result<T, E>) -> Result<T, JobError> {
    match r {
        Ok(v) => Ok(v),
        Err(e) => Err(e.into_job_error()),
    }
}

/// The result type a handler returns, for return types written as an alias without
/// arguments (`-> ImportResult`): names the success type.
#[diagnostic::on_unimplemented(
    message = "a job handler must return `Result<T, E>`, not `{Self}`",
    label = "expected `Result<T, E>`"
)]
pub trait HandlerResult {
    /// The success type, stored as the job's result.
    type Ok;
    /// The error type.
    type Err;
}

impl<T, E> HandlerResult for Result<T, E> {
    type Ok = T;
    type Err = E;
}

/// `Backoff::none()`.
pub const fn backoff_none() -> Backoff {
    Backoff::none()
}

/// A fixed backoff of `delay_ms` with `jitter`. The macro checked the values at compile time;
/// should they be refused anyway, the default backoff is used rather than a panic.
pub fn backoff_fixed(delay_ms: u64, jitter: f64) -> Backoff {
    checked(Backoff::fixed(Duration::from_millis(delay_ms)), jitter)
}

/// A linear backoff (see [`backoff_fixed`] on invalid values).
pub fn backoff_linear(step_ms: u64, max_ms: u64, jitter: f64) -> Backoff {
    checked(
        Backoff::linear(
            Duration::from_millis(step_ms),
            Duration::from_millis(max_ms),
        ),
        jitter,
    )
}

/// An exponential backoff (see [`backoff_fixed`] on invalid values).
pub fn backoff_exponential(base_ms: u64, max_ms: u64, jitter: f64) -> Backoff {
    checked(
        Backoff::exponential(
            Duration::from_millis(base_ms),
            Duration::from_millis(max_ms),
        ),
        jitter,
    )
}

fn checked(b: Result<Backoff, crate::Error>, jitter: f64) -> Backoff {
    let with_jitter = if jitter == 0.0 {
        b
    } else {
        b.and_then(|b| b.with_jitter(jitter))
    };
    with_jitter.unwrap_or_default()
}

/// Test hook: called by a worker's schedule runner after it has planned a fire and before it
/// sends it, with the schedule ids. Process tests set it to stop a worker exactly there and
/// kill it. Not a public API.
pub static BEFORE_FIRE: std::sync::OnceLock<fn(&[&str])> = std::sync::OnceLock::new();

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn backoff_helpers_build_what_they_say() {
        assert_eq!(
            backoff_exponential(2000, 600_000, 0.0),
            Backoff::exponential(2 * S, 600 * S).unwrap()
        );
        assert_eq!(
            backoff_linear(1000, 5000, 0.25),
            Backoff::linear(S, 5 * S)
                .unwrap()
                .with_jitter(0.25)
                .unwrap()
        );
        assert_eq!(backoff_fixed(30_000, 0.0), Backoff::fixed(30 * S).unwrap());
        assert_eq!(backoff_none(), Backoff::none());
    }

    #[test]
    fn values_the_macro_would_refuse_fall_back_to_the_default() {
        assert_eq!(backoff_exponential(10_000, 1000, 0.0), Backoff::default());
        assert_eq!(backoff_fixed(1000, 2.0), Backoff::default());
    }

    #[test]
    fn handler_errors_convert() {
        let e = job_result::<(), _>(Err(std::io::Error::other("disk full"))).unwrap_err();
        assert!(!e.is_permanent());
        let e = job_result::<(), _>(Err(JobError::permanent("bad file"))).unwrap_err();
        assert!(e.is_permanent());
        assert_eq!(job_result::<u8, JobError>(Ok(7)).unwrap(), 7);
    }
}
