//! The JSON shapes the pages read. Times are milliseconds since the epoch (the page shows
//! them absolute and relative); every job value is plain JSON text, for the page to show as
//! text.

use kosh_jobs_core::admin::json::{JobJson, TimeFormat};
use kosh_jobs_core::admin::{ActionResult, AdminAction};
use kosh_jobs_core::JobRecord;
use serde_json::{json, Value};

/// A job in a list: no payload, the last error cut to 300 characters.
pub(crate) fn job_summary(j: &JobRecord) -> Value {
    JobJson::new(TimeFormat::Millis)
        .last_error_chars(300)
        .to_value(j)
}

/// A job in full, with the actions that apply to its state and that this request may do.
pub(crate) fn job_detail(j: &JobRecord, allowed: &[AdminAction]) -> Value {
    let mut v = JobJson::new(TimeFormat::Millis)
        .outcome(true)
        .history(true)
        .to_value(j);
    let pretty = serde_json::from_str::<Value>(&j.payload)
        .ok()
        .and_then(|p| serde_json::to_string_pretty(&p).ok());
    v["payload"] = json!(j.payload);
    v["payload_pretty"] = json!(pretty.unwrap_or_else(|| j.payload.clone()));
    v["payload_is_json"] = json!(serde_json::from_str::<Value>(&j.payload).is_ok());
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
