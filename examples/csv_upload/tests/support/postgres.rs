//! A Postgres cluster of the test binary's own (`initdb` on a free port, see
//! `kosh_jobs_testsupport::postgres_server`), started on first use, and a fresh database in
//! it per call. Without Postgres installed the test fails saying how to install it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use kosh_jobs_testsupport::postgres_server::{PostgresServer, INSTALL_HINT};
use sqlx::Connection;

static SERVER: OnceLock<PostgresServer> = OnceLock::new();
static COUNTER: AtomicU64 = AtomicU64::new(0);

fn server() -> &'static PostgresServer {
    SERVER.get_or_init(|| {
        PostgresServer::start()
            .unwrap_or_else(|e| panic!("cannot start a test postgres ({e:#}): {INSTALL_HINT}"))
    })
}

/// The URL of a new, empty database of the test cluster.
pub async fn fresh_database(tag: &str) -> String {
    let server = server();
    let name = format!(
        "csv_{tag}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let mut admin = sqlx::PgConnection::connect(&server.url()).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
    server.url_for(&name)
}
