//! `POST api/jobs`: enqueue a job by hand.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use kosh_jobs_core::{Backend as _, NewJob};
use serde::Deserialize;
use serde_json::{json, Value};

use super::json_body;
use crate::error::ApiError;
use crate::options::Action;
use crate::router::Shared;

/// A job to enqueue.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnqueueBody {
    name: String,
    queue: String,
    /// Any JSON value; `{}` when left out.
    #[serde(default)]
    payload: Option<Value>,
    #[serde(default)]
    priority: i32,
    /// Run no sooner than this many seconds from now.
    #[serde(default)]
    delay_secs: u64,
    max_attempts: Option<u32>,
    unique_key: Option<String>,
}

/// Stores the job: `201` with its id, or the id of the live job holding its unique key
/// (`existing: true`).
pub(crate) async fn enqueue(
    State(s): State<Shared>,
    req: Request,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (parts, body): (Parts, Body) = req.into_parts();
    s.check(&parts, Action::Enqueue)?;
    let b: EnqueueBody = json_body(&parts.headers, body).await?;
    let backend = s.admin.backend();
    let payload = b.payload.unwrap_or_else(|| json!({})).to_string();
    let run_at = backend.clock().now() + Duration::from_secs(b.delay_secs);
    let mut job = NewJob::new(b.name, b.queue, payload, run_at);
    job.priority = b.priority;
    if let Some(n) = b.max_attempts {
        job.max_attempts = n;
    }
    job.unique_key = b.unique_key.filter(|k| !k.is_empty());
    let out = backend.push(vec![job]).await?;
    let first = out.first().ok_or_else(|| {
        ApiError::from(kosh_jobs_core::Error::InvalidInput("nothing stored".into()))
    })?;
    let status = if first.existing {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(json!({"id": first.id.get(), "existing": first.existing})),
    ))
}
