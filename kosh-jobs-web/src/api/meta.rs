//! `GET api/meta`: what the page needs to know before it draws anything.

use axum::extract::State;
use axum::http::request::Parts;
use axum::Json;
use kosh_jobs_core::admin::MAX_ACTION_IDS;
use kosh_jobs_core::{Backend as _, JobState};
use serde_json::{json, Value};

use crate::router::Shared;

/// Title, store (redacted), poll interval, and the actions this request may do.
pub(crate) async fn meta(State(s): State<Shared>, parts: Parts) -> Json<Value> {
    let allowed = s.allowed(&parts);
    Json(json!({
        "title": s.options.title,
        "backend": s.options.backend,
        "read_only": s.options.read_only,
        "allowed": allowed,
        "poll_ms": s.options.poll_interval.as_millis() as u64,
        "version": env!("CARGO_PKG_VERSION"),
        "now": s.admin.backend().clock().now().as_millis(),
        "states": JobState::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "max_ids": MAX_ACTION_IDS,
    }))
}
