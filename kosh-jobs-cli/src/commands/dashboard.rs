//! `kosh-jobs dashboard`: the web dashboard ([`kosh_jobs_web`]) served on its own, with
//! optional basic auth and a read-only mode.

use std::io::Write;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use super::Session;
use crate::args::DashboardArgs;
use crate::error::CliError;

/// The environment variable holding the dashboard's password.
pub(crate) const PASSWORD_VAR: &str = "KOSH_JOBS_DASHBOARD_PASSWORD";

pub(crate) async fn serve(s: &Session, a: &DashboardArgs) -> Result<(), CliError> {
    let options = kosh_jobs_web::Options::new()
        .title(format!("kosh-jobs · {}", s.target.describe()))
        .read_only(a.read_only);
    let mut app: axum::Router = kosh_jobs_web::router(s.admin.backend().clone(), options);
    let password = std::env::var(PASSWORD_VAR).ok().filter(|p| !p.is_empty());
    let auth = match &password {
        Some(p) => {
            if a.user.contains(':') {
                return Err(CliError::Usage(
                    "--user: a basic-auth user name cannot contain `:`".into(),
                ));
            }
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{}:{p}", a.user));
            app = app.layer(middleware::from_fn(move |req: Request, next: Next| {
                let expected = format!("Basic {token}");
                async move { basic_auth(&expected, req, next).await }
            }));
            "basic auth on"
        }
        None => "no password: anyone who can reach the address can use it",
    };
    let listener = tokio::net::TcpListener::bind(a.bind)
        .await
        .map_err(|e| CliError::Failed(format!("cannot listen on {}: {e}", a.bind)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Failed(format!("cannot read the listening address: {e}")))?;
    let mode = if a.read_only {
        "read-only"
    } else {
        "read-write"
    };
    {
        // The URL on its own line first (scripts and tests read it), then how it is set up.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "http://{addr}/");
        let _ = writeln!(
            out,
            "kosh-jobs dashboard for {}: {mode}, {auth}{} (Ctrl-C stops)",
            s.target.describe(),
            if password.is_none() && !addr.ip().is_loopback() {
                " (WARNING: listening beyond this machine without a password; set \
                 KOSH_JOBS_DASHBOARD_PASSWORD)"
            } else {
                ""
            }
        );
        let _ = out.flush();
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| CliError::Failed(format!("the dashboard stopped: {e}")))
}

/// Lets the request through when its `Authorization` header is `expected`; otherwise 401
/// with a basic-auth challenge.
async fn basic_auth(expected: &str, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes)
        .unwrap_or_default();
    if same_bytes(given, expected.as_bytes()) {
        return next.run(req).await;
    }
    let mut res = (
        StatusCode::UNAUTHORIZED,
        "a user name and password are needed\n",
    )
        .into_response();
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"kosh-jobs\", charset=\"UTF-8\""),
    );
    res
}

/// Compares in time that depends on the lengths only, not on where the bytes differ.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::same_bytes;

    #[test]
    fn same_bytes_compares_whole_values() {
        assert!(same_bytes(b"Basic YTpi", b"Basic YTpi"));
        assert!(!same_bytes(b"Basic YTpi", b"Basic YTpj"));
        assert!(!same_bytes(b"Basic YTp", b"Basic YTpi"));
        assert!(!same_bytes(b"", b"Basic YTpi"));
    }
}
