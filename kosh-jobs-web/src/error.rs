//! The API's errors: a status and `{"error": "..."}`, never a backend's internals.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kosh_jobs_core::{BackendError, Error};
use serde_json::json;

/// An error answer of the JSON API.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// 400: the request asked for something that makes no sense.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 403.
    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// 404.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 409: the job is not in a state the action applies to.
    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    #[cfg(test)]
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }
}

/// The error of a `503`: the store is down or too busy (Redis unreachable, SQLite locked past
/// its busy timeout); the page shows it and polls again.
const UNAVAILABLE: &str = "job store unavailable: try again shortly";

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidInput(m) => ApiError::bad_request(m),
            Error::NotFound(id) => ApiError::not_found(format!("job {id} not found")),
            e => {
                // The message of these kinds is fixed ("storage error", "permission
                // denied"): their sources, which may name hosts, paths or users, stay in the
                // server's log.
                tracing::warn!(error = %kosh_jobs_core::ErrorChain(&e), "kosh-jobs dashboard: backend call failed");
                if e.is_unavailable() {
                    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE)
                } else {
                    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
                }
            }
        }
    }
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        ApiError::from(Error::from(e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_errors_answer_without_their_sources() {
        let secret = || std::io::Error::other("redis://:hunter2@10.0.0.7:6379 refused");
        let down = ApiError::from(Error::Unavailable(Box::new(secret())));
        assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(down.message, "job store unavailable: try again shortly");
        let broken = ApiError::from(BackendError::storage(secret()));
        assert_eq!(
            (broken.status(), broken.message.as_str()),
            (StatusCode::INTERNAL_SERVER_ERROR, "storage error")
        );
        let bad = ApiError::from(Error::InvalidInput("limit must be 1..=1000".into()));
        assert_eq!(
            (bad.status(), bad.message.as_str()),
            (StatusCode::BAD_REQUEST, "limit must be 1..=1000")
        );
    }
}
