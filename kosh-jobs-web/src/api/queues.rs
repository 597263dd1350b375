//! `POST api/queues/{queue}/{pause,resume,purge}`.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::request::Parts;
use axum::Json;
use kosh_jobs_core::admin::{JobFilter, TimeRange};
use kosh_jobs_core::backend::validate_queue_name;
use kosh_jobs_core::{AdminAction, Backend as _, JobState};
use serde::Deserialize;
use serde_json::{json, Value};

use super::json_body;
use crate::error::ApiError;
use crate::options::Action;
use crate::params::{parse_state, parse_time, shorten};
use crate::router::Shared;

/// `POST api/queues/{queue}/purge`: which finished jobs to delete.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeBody {
    /// Jobs that finished before this time (milliseconds or RFC 3339) ...
    finished_before: Option<Value>,
    /// ... or more than this many seconds ago.
    older_than_secs: Option<u64>,
    /// Comma-separated final states; all three by default.
    states: Option<String>,
}

/// Pause, resume, or purge one queue.
pub(crate) async fn queue_op(
    State(s): State<Shared>,
    Path((queue, op)): Path<(String, String)>,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    let (parts, body): (Parts, Body) = req.into_parts();
    let action = match op.as_str() {
        "pause" => Action::Pause,
        "resume" => Action::Resume,
        "purge" => Action::Purge,
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown queue action `{}`; use pause, resume or purge",
                shorten(other)
            )))
        }
    };
    s.check(&parts, action)?;
    validate_queue_name(&queue).map_err(ApiError::bad_request)?;
    let backend = s.admin.backend();
    match action {
        Action::Pause => {
            backend.pause(&queue).await?;
            Ok(Json(json!({"queue": queue, "paused": true})))
        }
        Action::Resume => {
            backend.resume(&queue).await?;
            Ok(Json(json!({"queue": queue, "paused": false})))
        }
        _ => {
            let b: PurgeBody = json_body(&parts.headers, body).await?;
            let before = match (&b.finished_before, b.older_than_secs) {
                (Some(t), None) => {
                    let text = match t {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    parse_time("finished_before", &text)?
                }
                (None, Some(secs)) => backend.clock().now() - Duration::from_secs(secs),
                _ => {
                    return Err(ApiError::bad_request(
                        "give either `finished_before` (a time) or `older_than_secs`, not both",
                    ))
                }
            };
            let mut states = Vec::new();
            for st in b
                .states
                .as_deref()
                .unwrap_or("completed,failed,cancelled")
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                let st = parse_state(st)?;
                if !st.is_final() {
                    return Err(ApiError::bad_request(format!(
                        "purge deletes finished jobs: states take completed, failed or \
                         cancelled, not {st}"
                    )));
                }
                if !states.contains(&st) {
                    states.push(st);
                }
            }
            if states.is_empty() {
                states = vec![JobState::Completed, JobState::Failed, JobState::Cancelled];
            }
            let filter = JobFilter {
                states,
                queue: Some(queue.clone()),
                finished: TimeRange {
                    from: None,
                    until: Some(before),
                },
                ..JobFilter::default()
            };
            let t = s
                .admin
                .apply_filter(AdminAction::Delete, &filter, |_| {})
                .await?;
            Ok(Json(json!({
                "queue": queue,
                "finished_before": before.as_millis(),
                "deleted": t.applied,
                "skipped": t.skipped + t.not_found,
                "examined": t.examined,
            })))
        }
    }
}
