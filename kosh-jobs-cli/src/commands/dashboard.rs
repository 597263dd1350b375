//! `kosh-jobs dashboard`: the web dashboard ([`kosh_jobs_web`]) served on its own, with
//! optional basic auth and a read-only mode.

use std::io::Write;

use super::Session;
use crate::args::DashboardArgs;
use crate::error::CliError;

/// The environment variable holding the dashboard's password.
pub(crate) const PASSWORD_VAR: &str = "KOSH_JOBS_DASHBOARD_PASSWORD";

pub(crate) async fn serve(s: &Session, a: &DashboardArgs) -> Result<(), CliError> {
    let mut options = kosh_jobs_web::Options::new()
        .title(format!("kosh-jobs · {}", s.target.describe()))
        .read_only(a.read_only);
    let password = std::env::var(PASSWORD_VAR).ok().filter(|p| !p.is_empty());
    let auth = match &password {
        Some(p) => {
            if a.user.contains(':') {
                return Err(CliError::Usage(
                    "--user: a basic-auth user name cannot contain `:`".into(),
                ));
            }
            options = options.basic_auth(&a.user, p);
            "basic auth on"
        }
        None => "no password: anyone who can reach the address can use it",
    };
    let app: axum::Router = kosh_jobs_web::router(s.admin.backend().clone(), options);
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
