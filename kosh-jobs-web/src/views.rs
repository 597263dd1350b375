//! The JSON shapes the pages read. Times are milliseconds since the epoch (the page shows
//! them absolute and relative); every job value is plain JSON text, for the page to show as
//! text.

use kosh_jobs_core::admin::{ActionResult, AdminAction};
use kosh_jobs_core::{JobRecord, Timestamp};
use serde_json::{json, Value};

fn ms(t: Timestamp) -> i64 {
    t.as_millis()
}

fn opt_ms(t: Option<Timestamp>) -> Option<i64> {
    t.map(ms)
}

/// A job in a list: no payload, the last error cut to 300 characters.
pub(crate) fn job_summary(j: &JobRecord) -> Value {
    json!({
        "id": j.id.get(),
        "name": j.name,
        "queue": j.queue,
        "state": j.state.as_str(),
        "priority": j.priority,
        "attempts": j.attempts,
        "max_attempts": j.max_attempts,
        "created_at": ms(j.created_at),
        "run_at": ms(j.run_at),
        "started_at": opt_ms(j.started_at),
        "finished_at": opt_ms(j.finished_at),
        "last_error": j.last_error().map(|e| cut(e, 300)),
        "unique_key": j.unique_key,
    })
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push('…');
    out
}

/// A job in full, with the actions that apply to its state and that this request may do.
pub(crate) fn job_detail(j: &JobRecord, allowed: &[AdminAction]) -> Value {
    let mut v = job_summary(j);
    let pretty = serde_json::from_str::<Value>(&j.payload)
        .ok()
        .and_then(|p| serde_json::to_string_pretty(&p).ok());
    v["last_error"] = json!(j.last_error());
    v["payload"] = json!(j.payload);
    v["payload_pretty"] = json!(pretty.unwrap_or_else(|| j.payload.clone()));
    v["payload_is_json"] = json!(serde_json::from_str::<Value>(&j.payload).is_ok());
    v["progress"] = json!(j.progress);
    v["result"] = json!(j.result);
    v["lease_expires_at"] = json!(opt_ms(j.lease_expires_at));
    v["errors"] = j
        .errors
        .iter()
        .map(|e| json!({"attempt": e.attempt, "error": e.error, "at": ms(e.at)}))
        .collect();
    v["history"] = j
        .history
        .iter()
        .map(|a| {
            json!({
                "attempt": a.attempt,
                "started_at": ms(a.started_at),
                "worker": a.worker,
                "ended_at": opt_ms(a.ended_at),
                "duration_ms": a.ended_at.map(|e| e.saturating_duration_since(a.started_at).as_millis() as u64),
                "outcome": a.outcome.map(|o| o.as_str()),
                "error": a.error,
            })
        })
        .collect();
    let applies: Vec<&str> = AdminAction::ALL
        .into_iter()
        .filter(|a| a.applies_to(j.state))
        .map(AdminAction::as_str)
        .collect();
    v["applicable_actions"] = json!(applies);
    v["actions"] = json!(allowed
        .iter()
        .filter(|a| a.applies_to(j.state))
        .map(|a| a.as_str())
        .collect::<Vec<_>>());
    v
}

/// One id's result of an action.
pub(crate) fn action_result(id: u64, r: &ActionResult) -> Value {
    let (result, state, holder) = match r {
        ActionResult::Applied => ("applied", None, None),
        ActionResult::NotFound => ("not_found", None, None),
        ActionResult::Skipped(st) => ("skipped", Some(st.as_str()), None),
        ActionResult::UniqueConflict(other) => ("conflict", None, Some(other.get())),
    };
    json!({"id": id, "result": result, "state": state, "held_by": holder})
}
