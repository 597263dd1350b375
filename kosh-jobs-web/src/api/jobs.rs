//! `GET api/jobs` (a page of a search) and `GET api/jobs/{id}` (one job in full).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::request::Parts;
use axum::Json;
use kosh_jobs_core::admin::{SearchPage, SearchQuery};
use kosh_jobs_core::AdminAction;
use serde_json::{json, Value};

use super::query;
use crate::error::ApiError;
use crate::params::{parse_id, ListParams};
use crate::router::Shared;
use crate::views::{job_detail, job_summary};

/// At most this many bounded search calls to fill one page; past them the page is returned
/// short, with the cursor to go on from.
const MAX_CALLS: usize = 10;

/// A page of the jobs matching the filter, newest first by default, with the total on the
/// first page (`after` unset), the cursor of the next page, and how many jobs were examined.
pub(crate) async fn list(
    State(s): State<Shared>,
    q: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let p = query(q)?;
    let filter = p.filter.to_filter()?;
    let limit = p.limit()?;
    let mut q = SearchQuery::new(filter).order(p.order()?).limit(limit);
    q.after = p.after()?;
    q.with_total = q.after.is_none();
    let SearchPage {
        jobs,
        next,
        examined,
        total,
    } = s.admin.search_page(&q, MAX_CALLS).await?;
    Ok(Json(json!({
        "jobs": jobs.iter().map(job_summary).collect::<Vec<_>>(),
        "next": next.map(|n| n.get()),
        "total": total.map(|t| json!({"count": t.count, "exact": t.exact})),
        "examined": examined,
        // The page is short only because the search ran out of calls: more may match.
        "partial": jobs.len() < limit && next.is_some(),
    })))
}

/// One job in full, with the actions that apply to its state and this request may do.
pub(crate) async fn show(
    State(s): State<Shared>,
    Path(id): Path<String>,
    parts: Parts,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id("job id", &id)?;
    let job = s
        .admin
        .job(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("job {id} not found")))?;
    let allowed: Vec<AdminAction> = s
        .allowed(&parts)
        .into_iter()
        .filter_map(|a| a.admin())
        .collect();
    Ok(Json(job_detail(&job, &allowed)))
}
