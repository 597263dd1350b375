//! Schedules (periodic jobs): `GET api/schedules` and
//! `POST api/schedules/{id}/{pause,resume,trigger,delete}`.
//!
//! Everything goes through the [`Client`](kosh_jobs_core::Client)'s schedule methods, the
//! same ones the CLI uses: a resume starts from the next tick after now, a trigger enqueues
//! the job without moving the cursor.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::Json;
use kosh_jobs_core::admin::json::{stored_json, TimeFormat};
use kosh_jobs_core::schedule::{validate_schedule_id, ScheduleRecord};
use kosh_jobs_core::Backend as _;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::options::Action;
use crate::params::shorten;
use crate::router::Shared;

/// A schedule as the page reads it; times in milliseconds like the rest of the API, the
/// payload as JSON (or the stored text, as a string, if it is not JSON).
fn schedule_json(r: &ScheduleRecord) -> Value {
    let ms = |t| TimeFormat::Millis.opt_time(t);
    json!({
        "id": r.def.id,
        "every": r.def.every,
        "job": r.def.job,
        "queue": r.def.queue,
        "payload": stored_json(&r.def.payload),
        "priority": r.def.priority,
        "max_attempts": r.def.max_attempts,
        "start_at": ms(r.def.start_at),
        "end_at": ms(r.def.end_at),
        "max_runs": r.def.max_runs,
        "missed": r.def.missed,
        "overlap": r.def.overlap,
        "paused": r.paused,
        "revision": r.revision,
        "next_fire": ms(r.next_fire),
        "last_fire": ms(r.last_fire),
        "last_job": r.last_job.map(|j| j.get()),
        "runs": r.runs,
    })
}

/// Every schedule, by id.
pub(crate) async fn list(State(s): State<Shared>) -> Result<Json<Value>, ApiError> {
    let now = s.admin.backend().clock().now();
    let list = s.client.schedules().await?;
    Ok(Json(json!({
        "now": now.as_millis(),
        "schedules": list.iter().map(schedule_json).collect::<Vec<_>>(),
    })))
}

/// The action named by the last path segment, or a `400` naming the four.
fn schedule_action(op: &str) -> Result<Action, ApiError> {
    match op {
        "pause" => Ok(Action::PauseSchedule),
        "resume" => Ok(Action::ResumeSchedule),
        "trigger" => Ok(Action::TriggerSchedule),
        "delete" => Ok(Action::RemoveSchedule),
        other => Err(ApiError::bad_request(format!(
            "unknown schedule action `{}`; use pause, resume, trigger or delete",
            shorten(other)
        ))),
    }
}

/// One action on one schedule: `200` when done, `404` for an unknown id.
///
/// The id is one percent-encoded path segment (`nightly%3Aeu`, `a%2Fb`): axum decodes it.
pub(crate) async fn schedule_op(
    State(s): State<Shared>,
    path: Result<Path<(String, String)>, PathRejection>,
    parts: Parts,
) -> Result<Json<Value>, ApiError> {
    let Path((id, op)) =
        path.map_err(|e| ApiError::bad_request(format!("bad path: {}", e.body_text())))?;
    let action = schedule_action(&op)?;
    s.check(&parts, action)?;
    validate_schedule_id(&id).map_err(ApiError::bad_request)?;
    let not_found = || ApiError::not_found(format!("schedule {:?} not found", shorten(&id)));
    let c = &s.client;
    let answer = match action {
        Action::PauseSchedule => {
            if !c.pause_schedule(&id).await? {
                return Err(not_found());
            }
            json!({"schedule": id, "action": action, "paused": true})
        }
        Action::ResumeSchedule => {
            if !c.resume_schedule(&id).await? {
                return Err(not_found());
            }
            let next = c.schedule(&id).await?.and_then(|r| r.next_fire);
            json!({
                "schedule": id,
                "action": action,
                "paused": false,
                "next_fire": TimeFormat::Millis.opt_time(next),
            })
        }
        Action::TriggerSchedule => {
            let job = c.trigger_schedule(&id).await?.ok_or_else(not_found)?;
            json!({"schedule": id, "action": action, "job": job.get()})
        }
        _ => {
            if !c.remove_schedule(&id).await? {
                return Err(not_found());
            }
            json!({"schedule": id, "action": action, "removed": true})
        }
    };
    Ok(Json(answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_by_name() {
        assert_eq!(schedule_action("pause").ok(), Some(Action::PauseSchedule));
        assert_eq!(schedule_action("delete").ok(), Some(Action::RemoveSchedule));
        let e = schedule_action("explode").err().map(|e| e.status());
        assert_eq!(e, Some(axum::http::StatusCode::BAD_REQUEST));
    }
}
