//! `POST /api/imports`: the upload, streamed to disk with a running byte count and a
//! SHA-256, then one import row and one job.

use std::path::{Path, PathBuf};

use axum::extract::multipart::{Field, MultipartError, MultipartRejection};
use axum::extract::{Multipart, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::error::ApiError;
use super::Web;
use crate::db::NewImport;
use crate::queueing::Created;
use crate::user::{User, UserError, MAX_USER_CHARS};

/// Past the limit, at most this much more is read (and dropped) so that the client gets
/// its 413 cleanly instead of a reset connection.
const DRAIN_CAP: u64 = 1024 * 1024;

/// The client's file name, for display only: its last path component, without control
/// characters, at most 200 characters. Never used to build a path.
pub fn display_name(raw: Option<&str>) -> String {
    let last = raw
        .unwrap_or_default()
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default();
    let clean: String = last.chars().filter(|c| !c.is_control()).take(200).collect();
    let clean = clean.trim();
    if clean.is_empty() || clean == "." || clean == ".." {
        "upload.csv".to_owned()
    } else {
        clean.to_owned()
    }
}

fn is_csv(name: &str, content_type: Option<&str>) -> bool {
    let ext_ok = Path::new(name)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let type_ok = content_type.is_some_and(|t| {
        let t = t.split(';').next().unwrap_or_default().trim();
        ["text/csv", "application/csv", "text/comma-separated-values"]
            .iter()
            .any(|ok| t.eq_ignore_ascii_case(ok))
    });
    ext_ok || type_ok
}

fn multipart_error(e: MultipartError) -> ApiError {
    let status = e.status();
    let status = if status == StatusCode::PAYLOAD_TOO_LARGE {
        status
    } else {
        StatusCode::BAD_REQUEST
    };
    ApiError::new(status, format!("cannot read the upload: {}", e.body_text()))
}

/// Removes a file when dropped, unless kept: no partial upload is left behind, whatever
/// path the handler leaves by.
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the file is larger than the limit of {}",
            crate::words::human_size(max)
        ),
    )
    .with(json!({ "max_bytes": max }))
}

/// The header naming the upload's user when the form has no `user` field.
pub const USER_HEADER: &str = "x-user";

/// The most bytes of a `user` form field read: past it the field is refused, unread.
const USER_FIELD_CAP: usize = 1024;

/// Reads the `user` form field, refusing one longer than [`USER_FIELD_CAP`] bytes before
/// reading more of it.
async fn user_field(mut field: Field<'_>) -> Result<User, ApiError> {
    let mut raw = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        if raw.len() + chunk.len() > USER_FIELD_CAP {
            return Err(ApiError::bad_request(format!(
                "the user is too long: at most {MAX_USER_CHARS} characters"
            )));
        }
        raw.extend_from_slice(&chunk);
    }
    User::parse_bytes(&raw).map_err(bad_user)
}

fn bad_user(e: UserError) -> ApiError {
    ApiError::bad_request(e.to_string())
}

/// Handles an upload: `202` with the import id, `400` for a bad user, `409` for a file
/// already imported, `413` past the size limit, `415` for something that is not CSV.
///
/// The user is the form's `user` field, else the `X-User` header, else `demo` (see
/// [`User::choose`]). A `user` field sent before the file (as the page does) is checked
/// before the file is read; one sent after it, once the file is stored (and the file is
/// removed again if the user is refused).
pub(super) async fn upload(
    State(web): State<Web>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let max = web.max_upload_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max.saturating_add(DRAIN_CAP)) {
        return Err(too_large(max));
    }
    let mut multipart = multipart.map_err(|e| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "send the CSV as multipart/form-data in a field named `file` ({})",
                e.body_text()
            ),
        )
    })?;
    let mut form_user: Option<User> = None;
    let mut stored: Option<Stored> = None;
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        match field.name() {
            Some("user") if form_user.is_some() => {
                return Err(ApiError::bad_request(
                    "send one `user` field per upload, not several",
                ));
            }
            Some("user") => form_user = Some(user_field(field).await?),
            Some("file") if stored.is_some() => {
                return Err(ApiError::bad_request(
                    "send one file per upload, not several",
                ));
            }
            Some("file") => stored = Some(store(&web, field).await?),
            _ => {}
        }
    }
    let Some(stored) = stored else {
        return Err(ApiError::bad_request(
            "no file: send the CSV as a multipart field named `file`",
        ));
    };
    let user = match form_user {
        Some(user) => user,
        None => {
            User::choose(None, headers.get(USER_HEADER).map(|v| v.as_bytes())).map_err(bad_user)?
        }
    };
    enqueue(&web, stored, user).await
}

/// An uploaded file on disk, not yet an import: removed when dropped unless kept.
struct Stored {
    part: TempFile,
    stored_name: String,
    file_name: String,
    sha256: String,
    size: u64,
}

/// Streams the `file` field to the upload folder, checking its size and that it is text.
async fn store(web: &Web, mut field: Field<'_>) -> Result<Stored, ApiError> {
    let max = web.max_upload_bytes;
    let file_name = display_name(field.file_name());
    if !is_csv(&file_name, field.content_type()) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "only CSV files are accepted (a .csv name or a text/csv content type)",
        ));
    }
    let dir = &web.app.upload_dir;
    let stored_name = format!("{:032x}.csv", fastrand::u128(..));
    let mut part = TempFile {
        path: dir.join(format!(".{stored_name}.part")),
        keep: false,
    };
    let mut out = tokio::fs::File::create(&part.path)
        .await
        .map_err(ApiError::internal)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut over = false;
    let mut drained = 0u64;
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        if over {
            drained += chunk.len() as u64;
            if drained > DRAIN_CAP {
                break;
            }
            continue;
        }
        // NUL bytes mean a binary file, unless it is UTF-16 text (Windows "Unicode" exports).
        if size == 0
            && chunk.iter().take(8192).any(|b| *b == 0)
            && !crate::parse::looks_like_utf16(&chunk[..chunk.len().min(8192)])
        {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the file is not a CSV text file",
            ));
        }
        size += chunk.len() as u64;
        if size > max {
            over = true;
            continue;
        }
        hasher.update(&chunk);
        out.write_all(&chunk).await.map_err(ApiError::internal)?;
    }
    if over {
        return Err(too_large(max));
    }
    if size == 0 {
        return Err(ApiError::bad_request("the file is empty"));
    }
    out.flush().await.map_err(ApiError::internal)?;
    drop(out);
    let sha256: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let stored_path = dir.join(&stored_name);
    tokio::fs::rename(&part.path, &stored_path)
        .await
        .map_err(ApiError::internal)?;
    part.path = stored_path;
    Ok(Stored {
        part,
        stored_name,
        file_name,
        sha256,
        size,
    })
}

/// Records the import of a stored file for `user` and queues its job (in one transaction
/// when the app's tables and the job store share a Postgres database, see
/// [`crate::queueing`]).
async fn enqueue(
    web: &Web,
    stored: Stored,
    user: User,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Stored {
        mut part,
        stored_name,
        file_name,
        sha256,
        size,
    } = stored;
    let new = NewImport {
        file_name: &file_name,
        stored_name: &stored_name,
        sha256: &sha256,
        size_bytes: size as i64,
        user: user.as_str(),
    };
    let created = web.queueing.create(&web.app.db, &web.jobs, &new).await;
    // The file stays with an import that exists: a new one, or one left failed when its job
    // could not be queued (two steps), to be retried.
    part.keep = match &created {
        Ok(Created::New { .. }) => true,
        Ok(Created::Duplicate(_)) => false,
        Err(e) => e.kept().is_some(),
    };
    let (id, job_id) = match created? {
        Created::New { id, job } => (id, job.to_string()),
        Created::Duplicate(existing) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("this file was already uploaded (import {existing}); its transactions are not imported twice"),
            )
            .with(json!({ "existing_import_id": existing })));
        }
    };
    tracing::info!(import = id, job = %job_id, bytes = size, user = %user, "upload stored, import queued");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "id": id,
            "job_id": job_id,
            "state": "queued",
            "user": user.as_str(),
            "file_name": file_name,
            "size_bytes": size,
            "sha256": sha256,
            "status_url": format!("/api/imports/{id}"),
        })),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_file_names_are_display_text_only() {
        assert_eq!(display_name(Some("../../etc/passwd")), "passwd");
        assert_eq!(display_name(Some("C:\\Users\\me\\march.csv")), "march.csv");
        assert_eq!(display_name(Some("..")), "upload.csv");
        assert_eq!(display_name(None), "upload.csv");
        assert_eq!(display_name(Some("a\u{0}b\nc.csv")), "abc.csv");
    }

    #[test]
    fn only_csv() {
        assert!(is_csv("march.CSV", None));
        assert!(is_csv("export", Some("text/csv; charset=utf-8")));
        assert!(!is_csv("photo.png", Some("image/png")));
        assert!(!is_csv("notes.txt", Some("text/plain")));
    }
}
