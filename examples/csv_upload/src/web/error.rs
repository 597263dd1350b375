//! API errors: JSON `{"error": message}` with the right status code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// An error answered as JSON.
#[derive(Debug)]
pub struct ApiError {
    /// The status code.
    pub status: StatusCode,
    /// What went wrong, for the user.
    pub message: String,
    /// More fields for the body.
    pub extra: Option<Value>,
}

impl ApiError {
    /// An error with a status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            extra: None,
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 500, logging the cause and telling the user little.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "request failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }

    /// Adds fields to the body.
    pub fn with(mut self, extra: Value) -> Self {
        self.extra = Some(extra);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message, "status": self.status.as_u16() });
        if let (Some(Value::Object(extra)), Value::Object(b)) = (self.extra, &mut body) {
            b.extend(extra);
        }
        (self.status, Json(body)).into_response()
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        // `{:#}` writes the error with its sources: `outer: inner: innermost`.
        ApiError::internal(format!("app database: {:#}", anyhow::Error::new(e)))
    }
}

impl From<kosh_jobs::Error> for ApiError {
    fn from(e: kosh_jobs::Error) -> Self {
        let unavailable = e.is_unavailable();
        if unavailable {
            tracing::warn!(
                error = format!("{:#}", anyhow::Error::new(e)),
                "job store unavailable"
            );
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the job queue is unavailable, try again shortly",
            )
        } else {
            // The backend's own words (Redis out of memory, a full disk) are in the sources.
            ApiError::internal(format!("job store: {:#}", anyhow::Error::new(e)))
        }
    }
}

impl From<crate::queueing::CreateError> for ApiError {
    fn from(e: crate::queueing::CreateError) -> Self {
        match e {
            crate::queueing::CreateError::Db { source, .. } => source.into(),
            crate::queueing::CreateError::Queue { source, .. } => source.into(),
        }
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(e: axum::extract::rejection::PathRejection) -> Self {
        ApiError::bad_request(e.body_text())
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(e: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::bad_request(e.body_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kosh_jobs::BackendError;

    #[test]
    fn a_job_store_error_is_logged_with_its_cause() {
        let e = kosh_jobs::Error::from(BackendError::storage(std::io::Error::other(
            "redis is out of memory",
        )));
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        let api = tracing::subscriber::with_default(subscriber, || ApiError::from(e));
        assert_eq!(api.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            api.message, "internal error",
            "the cause is logged, not shown"
        );
        let logged = String::from_utf8_lossy(&logs.lock().expect("logs")).into_owned();
        assert!(
            logged.contains("job store: storage error: redis is out of memory"),
            "{logged}"
        );
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("logs").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
