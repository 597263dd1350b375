//! Every route and action of the dashboard on SQLite (a fresh temporary file per test).

#[macro_use]
mod support;

use kosh_jobs::AnyBackend;

async fn sqlite() -> (AnyBackend, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("jobs.db").display());
    let backend = kosh_jobs::connect(&url).await.expect("open SQLite");
    (backend, dir)
}

scenarios!(sqlite);
