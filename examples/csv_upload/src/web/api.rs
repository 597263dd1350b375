//! The JSON endpoints other than the upload.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::Json;
use kosh_jobs::{JobId, JobState, RetryOutcome};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::Web;
use crate::db::{self, Import};
use crate::import::ImportCsv;
use crate::parse::{all_layouts, DateOrder};

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
async fn with_job(web: &Web, import: Import) -> Result<Value, ApiError> {
    let job = job_of(web, &import).await?;
    let mut v = settled_by(web, import, job.as_ref()).await?;
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

/// An import as JSON, marked failed first if its job ended without the handler saying so.
async fn settled_by(
    web: &Web,
    mut import: Import,
    job: Option<&kosh_jobs::JobRecord>,
) -> Result<Value, ApiError> {
    if let Some(j) = job {
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
    // Whether the page may offer to read the dates the other way.
    v["date_order_choosable"] = json!(import.date_order_choosable());
    Ok(v)
}

async fn find(web: &Web, id: i64) -> Result<Import, ApiError> {
    db::get_import(&web.app.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no import {id}")))
}

/// `GET /api/imports`: with `job` for the imports not final only. Every redraw of the page
/// reads the list, and on Redis each job read is a billed request: a finished import's
/// outcome is in the import itself, so the list reads only the jobs of imports still queued
/// or running (a handful, not fifty).
pub(super) async fn list_imports(State(web): State<Web>) -> Result<Json<Value>, ApiError> {
    let mut items = Vec::new();
    for i in db::list_imports(&web.app.db, 50).await? {
        items.push(if i.is_final() {
            settled_by(&web, i, None).await?
        } else {
            with_job(&web, i).await?
        });
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

/// Whether an import's job has settled: no run of it is still ready, scheduled or running
/// (the handler writes an import's outcome just before its job finishes).
async fn job_settled(web: &Web, import: &Import) -> Result<(), ApiError> {
    match job_of(web, import).await? {
        Some(j) if !j.state.is_final() => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "import {} is still finishing (its job is {}); try again in a moment",
                import.id, j.state
            ),
        )),
        _ => Ok(()),
    }
}

/// Runs an import again from the start: back to `queued` with its earlier rows dropped
/// (see [`db::reset_import`]), then its job retried when the queue still holds it failed
/// or cancelled (the same job, a fresh count of attempts), else a new one. `chosen`: the
/// order of day and month to read its dates in (always a new job, carrying it). A new job
/// carries the import's user from the database, its group; a retried job keeps the group
/// it was enqueued with (the same user: an import's user never changes).
async fn run_again(
    web: &Web,
    import: Import,
    from: &[&str],
    chosen: Option<DateOrder>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = import.id;
    job_settled(web, &import).await?;
    match db::reset_import(&web.app.db, id, from, chosen).await? {
        db::Reset::Done(_) => {}
        db::Reset::NotFound => return Err(ApiError::not_found(format!("no import {id}"))),
        db::Reset::WrongState(state) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("import {id} is {state}: it cannot be run again now"),
            ))
        }
        db::Reset::Duplicate(other) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("this file is imported by import {other} since; delete that one first"),
            )
            .with(json!({ "existing_import_id": other })))
        }
    }
    let old_job = import
        .job_id
        .as_deref()
        .and_then(|j| j.parse::<JobId>().ok())
        .filter(|_| chosen.is_none());
    let queued = async {
        if let Some(job) = old_job {
            if web.jobs.retry(job).await? == RetryOutcome::Retried {
                return Ok::<_, kosh_jobs::Error>(Some(job));
            }
        }
        let handle = web
            .jobs
            .enqueue(ImportCsv {
                date_order: chosen,
                ..ImportCsv::of(&import)
            })
            .await?;
        // A live job holding the import's key would find the import reset and run it,
        // but not with `chosen`: only a new job is sure to.
        Ok((!handle.existing() || chosen.is_none()).then(|| handle.id()))
    }
    .await;
    let job = match queued {
        Ok(Some(job)) => job,
        Ok(None) => {
            db::fail_import(
                &web.app.db,
                id,
                "another run of this import was still finishing",
            )
            .await?;
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "another run of this import was still finishing; try again in a moment",
            ));
        }
        Err(e) => {
            let _ = db::fail_import(&web.app.db, id, "could not queue the import again").await;
            return Err(e.into());
        }
    };
    db::set_job_id(&web.app.db, id, &job.to_string()).await?;
    tracing::info!(import = id, job = %job, date_order = ?chosen, "import queued again");
    let import = find(web, id).await?;
    Ok((StatusCode::ACCEPTED, Json(with_job(web, import).await?)))
}

/// `POST /api/imports/{id}/retry`: runs a failed import again.
pub(super) async fn retry_import(
    State(web): State<Web>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Path(id) = id?;
    let import = find(&web, id).await?;
    if import.state != "failed" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "import {id} is {}: only a failed import can be retried",
                import.state
            ),
        ));
    }
    run_again(&web, import, &["failed"], None).await
}

/// The body of `POST /api/imports/{id}/reimport`.
#[derive(Debug, Deserialize)]
pub(super) struct Reimport {
    /// `dmy` or `mdy`.
    date_order: DateOrder,
}

/// `POST /api/imports/{id}/reimport` with `{"date_order": "dmy" | "mdy"}`: imports the same
/// file again reading its dates in that order, replacing the import's transactions. Only
/// for a finished import whose order was a guess (or chosen before).
pub(super) async fn reimport(
    State(web): State<Web>,
    id: Result<Path<i64>, PathRejection>,
    body: Result<Json<Reimport>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Path(id) = id?;
    let Json(body) = body.map_err(|e| {
        ApiError::bad_request(format!(
            "send {{\"date_order\": \"dmy\"}} or {{\"date_order\": \"mdy\"}} as JSON ({})",
            e.body_text()
        ))
    })?;
    let import = find(&web, id).await?;
    if !import.is_final() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("import {id} is {}: wait until it finishes", import.state),
        ));
    }
    if !import.date_order_choosable() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("the dates of import {id} settle the order of day and month: there is nothing to choose"),
        ));
    }
    run_again(
        &web,
        import,
        &["completed", "failed"],
        Some(body.date_order),
    )
    .await
}

/// `DELETE /api/imports/{id}`: removes an import, its transactions, rejected rows and
/// notifications, and its stored file. A queued or running import's job is cancelled
/// first.
pub(super) async fn delete_import(
    State(web): State<Web>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(id) = id?;
    let import = find(&web, id).await?;
    if !import.is_final() {
        if let Some(job) = import
            .job_id
            .as_deref()
            .and_then(|j| j.parse::<JobId>().ok())
        {
            // Cancelled, already final or gone: either way no run of it goes on.
            web.jobs.cancel(job).await?;
        }
    }
    let Some(gone) = db::delete_import(&web.app.db, id).await? else {
        return Err(ApiError::not_found(format!("no import {id}")));
    };
    let path = web.app.upload_dir.join(&gone.stored_name);
    match tokio::fs::remove_file(&path).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        // The import is gone; a file left behind is logged, not the user's problem.
        Err(e) => {
            tracing::warn!(import = id, file = %path.display(), error = %e, "could not remove the uploaded file")
        }
    }
    tracing::info!(import = id, "import deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/layouts`: the banks' exports the parser knows by their layout (any other file
/// is read by its column names).
pub(super) async fn layouts() -> Json<Value> {
    let items: Vec<Value> = all_layouts()
        .into_iter()
        .map(|l| json!({ "name": l.name, "country": l.country }))
        .collect();
    Json(json!({ "items": items }))
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
