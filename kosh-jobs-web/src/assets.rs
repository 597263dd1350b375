//! The page and its assets, compiled into the binary: one HTML shell (no job data in it),
//! one script, one style sheet, one icon.

use axum::extract::{OriginalUri, Path};
use axum::http::header::{self, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");
const ICON: &str = include_str!("../assets/icon.svg");

/// Where the shell's `{{base}}` points: the router's root relative to the page's URL.
///
/// Nested at `/admin/jobs`, the page is `/admin/jobs` (axum does not match `/admin/jobs/`
/// there), and a relative `assets/app.js` would resolve to `/admin/assets/app.js`: so the
/// page names its last path segment first (`jobs/assets/app.js`). At a path ending in `/`
/// the base is empty. The script finds the API from its own URL.
fn base_of(path: &str) -> String {
    if path.ends_with('/') || path.is_empty() {
        return String::new();
    }
    let last = path.rsplit('/').next().unwrap_or_default();
    let mut out = String::with_capacity(last.len() + 3);
    out.push_str("./");
    for b in last.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'%') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push('/');
    out
}

/// The HTML shell.
pub(crate) async fn shell(OriginalUri(uri): OriginalUri) -> Response {
    let html = INDEX.replace("{{base}}", &base_of(uri.path()));
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        html,
    )
        .into_response()
}

/// `assets/{file}`.
pub(crate) async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        "icon.svg" => (ICON, "image/svg+xml"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases() {
        assert_eq!(base_of("/"), "");
        assert_eq!(base_of("/admin/jobs/"), "");
        assert_eq!(base_of("/admin/jobs"), "./jobs/");
        assert_eq!(base_of("/a/\"><x"), "./%22%3E%3Cx/");
    }
}
