//! `GET api/workers`: the live workers, their queues, and the jobs they run now.

use axum::extract::State;
use axum::Json;
use kosh_jobs_core::admin::json::{self, TimeFormat};
use kosh_jobs_core::Backend as _;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::router::Shared;

/// At most this many running jobs are looked up (name, queue, start) per answer; the rest
/// are given by id only.
const MAX_LOOKUPS: usize = 50;

/// Every live worker with its registration and its jobs.
pub(crate) async fn workers(State(s): State<Shared>) -> Result<Json<Value>, ApiError> {
    let now = s.admin.backend().clock().now();
    let workers = s.admin.workers().await?;
    let mut lookups = 0usize;
    let mut out = Vec::with_capacity(workers.len());
    for w in &workers {
        let mut jobs = Vec::with_capacity(w.jobs.len());
        for id in &w.jobs {
            let mut j = json!({"id": id.get()});
            if lookups < MAX_LOOKUPS {
                lookups += 1;
                if let Some(rec) = s.admin.job(*id).await? {
                    j["name"] = json!(rec.name);
                    j["queue"] = json!(rec.queue);
                    j["state"] = json!(rec.state.as_str());
                    j["started_at"] = TimeFormat::Millis.opt_time(rec.started_at);
                    j["attempts"] = json!(rec.attempts);
                    j["max_attempts"] = json!(rec.max_attempts);
                }
            }
            jobs.push(j);
        }
        let mut v = json::worker(w, TimeFormat::Millis);
        v["jobs"] = Value::Array(jobs);
        out.push(v);
    }
    Ok(Json(json!({"now": now.as_millis(), "workers": out})))
}
