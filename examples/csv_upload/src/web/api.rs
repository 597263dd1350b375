//! The JSON endpoints other than the upload.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::Json;
use kosh_jobs::{JobId, JobState};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::Web;
use crate::db::{self, Import};

/// Paging.
#[derive(Debug, Deserialize)]
pub(super) struct Paging {
    limit: Option<i64>,
    offset: Option<i64>,
}

impl Paging {
    fn get(&self) -> (i64, i64) {
        (
            self.limit.unwrap_or(100).clamp(1, 1000),
            self.offset.unwrap_or(0).max(0),
        )
    }
}

/// The job of an import, as far as the job store knows it.
async fn job_of(web: &Web, import: &Import) -> Result<Option<kosh_jobs::JobRecord>, ApiError> {
    let Some(id) = import
        .job_id
        .as_deref()
        .and_then(|j| j.parse::<JobId>().ok())
    else {
        return Ok(None);
    };
    Ok(web.jobs.get(id).await?)
}

/// An import with its job. An import whose job failed or was cancelled without the handler
/// saying so (a timeout, or a last attempt whose worker died) is marked failed here.
async fn with_job(web: &Web, mut import: Import) -> Result<Value, ApiError> {
    let job = job_of(web, &import).await?;
    if let Some(j) = &job {
        if !import.is_final() && matches!(j.state, JobState::Failed | JobState::Cancelled) {
            let reason = j.last_error().unwrap_or("the import job was cancelled");
            db::fail_import(&web.app.db, import.id, reason).await?;
            if let Some(fresh) = db::get_import(&web.app.db, import.id).await? {
                import = fresh;
            }
        }
    }
    let mut v = serde_json::to_value(&import).map_err(ApiError::internal)?;
    // How the file was read, in words: `["2 summary lines skipped", "dates read as
    // month/day"]`.
    v["notes"] = json!(import.notes());
    v["job"] = match job {
        Some(j) => json!({
            "state": j.state.to_string(),
            "attempts": j.attempts,
            "max_attempts": j.max_attempts,
            "progress": j.progress,
            "last_error": j.last_error(),
        }),
        None => Value::Null,
    };
    Ok(v)
}

async fn find(web: &Web, id: i64) -> Result<Import, ApiError> {
    db::get_import(&web.app.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no import {id}")))
}

/// `GET /api/imports`.
pub(super) async fn list_imports(State(web): State<Web>) -> Result<Json<Value>, ApiError> {
    let mut items = Vec::new();
    for i in db::list_imports(&web.app.db, 50).await? {
        items.push(with_job(&web, i).await?);
    }
    Ok(Json(json!({ "items": items })))
}

/// `GET /api/imports/{id}`.
pub(super) async fn get_import(
    State(web): State<Web>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(id) = id?;
    let import = find(&web, id).await?;
    Ok(Json(with_job(&web, import).await?))
}

/// `GET /api/imports/{id}/rejected`.
pub(super) async fn rejected_rows(
    State(web): State<Web>,
    id: Result<Path<i64>, PathRejection>,
    paging: Result<Query<Paging>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(id) = id?;
    let (limit, offset) = paging?.get();
    let import = find(&web, id).await?;
    let items = db::rejected_rows(&web.app.db, id, limit, offset).await?;
    Ok(Json(
        json!({ "import_id": id, "total": import.rows_rejected, "items": items }),
    ))
}

/// `GET /api/imports/{id}/transactions`.
pub(super) async fn transactions(
    State(web): State<Web>,
    id: Result<Path<i64>, PathRejection>,
    paging: Result<Query<Paging>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(id) = id?;
    let (limit, offset) = paging?.get();
    let import = find(&web, id).await?;
    let items = db::transactions(&web.app.db, id, limit, offset).await?;
    Ok(Json(
        json!({ "import_id": id, "total": import.rows_imported, "items": items }),
    ))
}

/// Notification filter.
#[derive(Debug, Deserialize)]
pub(super) struct NotificationQuery {
    #[serde(default)]
    unread: bool,
}

/// `GET /api/notifications`.
pub(super) async fn notifications(
    State(web): State<Web>,
    q: Result<Query<NotificationQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = q?;
    let items = db::notifications(&web.app.db, q.unread, 100).await?;
    let unread = db::unread_count(&web.app.db).await?;
    Ok(Json(json!({ "unread": unread, "items": items })))
}

/// `POST /api/notifications/{id}/read`.
pub(super) async fn mark_read(
    State(web): State<Web>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(id) = id?;
    if db::mark_read(&web.app.db, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no notification {id}")))
    }
}

/// `POST /api/notifications/read`.
pub(super) async fn mark_all_read(State(web): State<Web>) -> Result<Json<Value>, ApiError> {
    let n = db::mark_all_read(&web.app.db).await?;
    Ok(Json(json!({ "marked": n })))
}

/// Anything else.
pub(super) async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}
