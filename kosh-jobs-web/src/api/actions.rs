//! Actions on jobs: one job (`POST api/jobs/{id}/{action}`), many by ids or by filter
//! (`POST api/bulk`), and the count a bulk action on a filter would touch (`GET api/count`).

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::request::Parts;
use axum::Json;
use kosh_jobs_core::admin::{ActionResult, MAX_ACTION_IDS};
use kosh_jobs_core::{ActionTotals, Admin, AdminAction, JobId};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{json_body, query};
use crate::error::ApiError;
use crate::options::Action;
use crate::params::{parse_id, shorten, FilterParams};
use crate::router::Shared;
use crate::views::action_result;

/// The action on jobs named `name`, or a `400` naming the four.
fn job_action(name: &str) -> Result<(Action, AdminAction), ApiError> {
    Action::job_action(name)
        .and_then(|a| a.admin().map(|admin| (a, admin)))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "unknown action `{}`; use retry, cancel, delete or promote",
                shorten(name)
            ))
        })
}

/// One job: `200` with its new state when done, `404` for an unknown id, `409` when the
/// action does not apply to its state.
pub(crate) async fn one(
    State(s): State<Shared>,
    Path((id, action)): Path<(String, String)>,
    parts: Parts,
) -> Result<Json<Value>, ApiError> {
    let (action, admin_action) = job_action(&action)?;
    s.check(&parts, action)?;
    let id = parse_id("job id", &id)?;
    let results = s.admin.apply_ids(admin_action, &[id]).await?;
    match results.first() {
        Some(ActionResult::Applied) => {
            let state = s.admin.job(id).await?.map(|j| j.state.as_str());
            Ok(Json(json!({
                "id": id.get(),
                "action": action,
                "result": "applied",
                "state": state,
            })))
        }
        Some(ActionResult::Skipped(st)) => Err(ApiError::conflict(format!(
            "{action} does not apply to a {st} job"
        ))),
        Some(ActionResult::UniqueConflict(other)) => Err(ApiError::conflict(format!(
            "not retried: job {other} is live with the same unique key"
        ))),
        Some(ActionResult::NotFound) | None => {
            Err(ApiError::not_found(format!("job {id} not found")))
        }
    }
}

/// `GET api/count`: a filter and an optional action.
#[derive(Debug, Deserialize)]
pub(crate) struct CountParams {
    action: Option<String>,
    #[serde(flatten)]
    filter: FilterParams,
}

/// How many jobs match the filter, exactly (a series of bounded searches); with `action`,
/// the filter is first narrowed to the states the action applies to, as the bulk action
/// will be, and the narrowed states are returned.
pub(crate) async fn count(
    State(s): State<Shared>,
    q: Result<Query<CountParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let p = query(q)?;
    let mut filter = p.filter.to_filter()?;
    let mut action = None;
    if let Some(name) = p.action.as_deref().filter(|a| !a.is_empty()) {
        let (a, admin_action) = job_action(name)?;
        filter = Admin::action_filter(admin_action, &filter)?;
        action = Some(a);
    }
    let n = s.admin.count(&filter).await?;
    Ok(Json(json!({
        "count": n,
        "action": action,
        "states": filter.states.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
    })))
}

/// `POST api/bulk`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkBody {
    action: String,
    ids: Option<Vec<u64>>,
    filter: Option<FilterParams>,
}

fn totals_json(action: Action, t: &ActionTotals) -> Value {
    json!({
        "action": action,
        "applied": t.applied,
        "skipped": t.skipped,
        "not_found": t.not_found,
        "conflicts": t.conflicts,
        "examined": t.examined,
    })
}

/// An action on up to 1,000 jobs by id (one result per id), or on every job matching a
/// filter (narrowed to the action's states; totals only). Count first with `GET api/count`.
pub(crate) async fn bulk(State(s): State<Shared>, req: Request) -> Result<Json<Value>, ApiError> {
    let (parts, body): (Parts, Body) = req.into_parts();
    let b: BulkBody = json_body(&parts.headers, body).await?;
    let (action, admin_action) = job_action(&b.action)?;
    s.check(&parts, action)?;
    match (b.ids, b.filter) {
        (Some(ids), None) => {
            if ids.is_empty() {
                return Err(ApiError::bad_request("`ids` is empty: which jobs?"));
            }
            if ids.len() > MAX_ACTION_IDS {
                return Err(ApiError::bad_request(format!(
                    "too many ids: {} (at most {MAX_ACTION_IDS} per call; act on a filter \
                     for more)",
                    ids.len()
                )));
            }
            let ids: Vec<JobId> = ids.into_iter().map(JobId::new).collect();
            let results = s.admin.apply_ids(admin_action, &ids).await?;
            let mut t = ActionTotals::default();
            results.iter().for_each(|r| t.tally(r));
            let mut v = totals_json(action, &t);
            v["results"] = ids
                .iter()
                .zip(&results)
                .map(|(id, r)| action_result(id.get(), r))
                .collect();
            Ok(Json(v))
        }
        (None, Some(f)) => {
            let filter = f.to_filter()?;
            let t = s.admin.apply_filter(admin_action, &filter, |_| {}).await?;
            Ok(Json(totals_json(action, &t)))
        }
        _ => Err(ApiError::bad_request(
            "give either `ids` (a list of job ids) or `filter` (states, queue, name, search, \
             created_from, created_until, finished_from, finished_until), not both",
        )),
    }
}
