//! `GET api/queues/{queue}/groups`: a page of a queue's groups and where each stands.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use kosh_jobs_core::backend::validate_queue_name;
use kosh_jobs_core::limits::MAX_GROUP_PAGE;
use kosh_jobs_core::{Backend as _, GroupQuery};
use serde::Deserialize;
use serde_json::{json, Value};

use super::overview::flow_json;
use super::query;
use crate::error::ApiError;
use crate::router::Shared;

/// The page asked for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GroupParams {
    /// Continue after this group key.
    after: Option<String>,
    /// At most this many groups (1 to `MAX_GROUP_PAGE`, 50 by default).
    limit: Option<usize>,
}

/// One page of the queue's groups by key, each with its ready and running jobs, its starts
/// in the group rate window, whether it is at its limit and when its window opens; with the
/// queue's group limits, and the key to continue after.
pub(crate) async fn groups(
    State(s): State<Shared>,
    Path(queue): Path<String>,
    q: Result<Query<GroupParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let p = query(q)?;
    validate_queue_name(&queue).map_err(ApiError::bad_request)?;
    let limit = p.limit.unwrap_or(50);
    if !(1..=MAX_GROUP_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "`limit` must be 1 to {MAX_GROUP_PAGE}"
        )));
    }
    let mut gq = GroupQuery::new(&queue).limit(limit);
    gq.after = p.after.filter(|a| !a.is_empty());
    let backend = s.admin.backend();
    let page = backend.queue_groups(&gq).await?;
    let flows = backend.queue_flows().await?;
    let limits = flows.iter().find(|f| f.queue == queue).map(flow_json);
    Ok(Json(json!({
        "queue": queue,
        "now": backend.clock().now().as_millis(),
        "limits": limits,
        "groups": page.groups.iter().map(|g| json!({
            "group": g.group,
            "ready": {"count": g.ready.count, "exact": g.ready.exact},
            "running": g.running,
            "starts_in_window": g.starts_in_window,
            "at_limit": g.at_limit,
            "next_start_at": g.next_start_at.map(|t| t.as_millis()),
        })).collect::<Vec<_>>(),
        "next": page.next,
    })))
}
