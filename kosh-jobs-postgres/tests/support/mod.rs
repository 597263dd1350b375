//! One Postgres cluster per test binary (started on first use, or `KOSH_TEST_DATABASE_URL`),
//! and a fresh schema per test.

#![allow(dead_code, unreachable_pub)]

pub mod held;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use kosh_jobs_core::Clock;
use kosh_jobs_postgres::{PostgresBackend, PostgresOptions};
use kosh_jobs_testsupport::postgres_server::PostgresServer;

static SERVER: OnceLock<(Option<PostgresServer>, String)> = OnceLock::new();
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The URL of the shared test database (its password included).
pub fn shared_url() -> String {
    let (_, url) = SERVER.get_or_init(|| match std::env::var("KOSH_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => (None, url),
        _ => {
            let server = PostgresServer::start()
                .unwrap_or_else(|e| panic!("cannot start a test postgres: {e:#}"));
            let url = server.url();
            (Some(server), url)
        }
    });
    url.clone()
}

/// A schema name no other test of this run uses.
pub fn unique_schema(tag: &str) -> String {
    format!(
        "t_{tag}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A backend on the shared database, in `schema` (4 connections), on `clock` if given.
pub async fn backend_on(schema: &str, clock: Option<Clock>) -> PostgresBackend {
    let mut options = PostgresOptions::from_url(&shared_url())
        .expect("url")
        .schema(schema.to_owned())
        .max_connections(4);
    if let Some(clock) = clock {
        options = options.clock(clock);
    }
    PostgresBackend::connect_with(options.build().expect("options"))
        .await
        .expect("connect")
}

/// A backend on the shared database, in a schema of its own named after `tag`.
pub async fn backend(tag: &str) -> PostgresBackend {
    backend_on(&unique_schema(tag), None).await
}

/// The migrations of this crate, in order, as `migrate` applies them (`__SCHEMA__` for the
/// quoted schema).
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_initial.sql"),
    include_str!("../../migrations/0002_start_ack.sql"),
    include_str!("../../migrations/0003_flow.sql"),
    include_str!("../../migrations/0004_groups.sql"),
    include_str!("../../migrations/0005_group_rate.sql"),
    include_str!("../../migrations/0006_group_keys.sql"),
];

/// Makes `schema` as an older release left it: its first `version` migrations and the
/// version in `meta`, as that release's backend would have.
pub async fn schema_at(conn: &mut sqlx::PgConnection, schema: &str, version: usize) {
    let ident = format!("\"{schema}\"");
    let mut sql = format!(
        "CREATE SCHEMA {ident}; \
         CREATE TABLE {ident}.meta (key text PRIMARY KEY, value bigint NOT NULL); \
         INSERT INTO {ident}.meta VALUES ('schema_version', {version}); "
    );
    for m in &MIGRATIONS[..version] {
        sql.push_str(&m.replace("__SCHEMA__", &ident));
        sql.push('\n');
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("a schema at version {version}: {e}"));
}
