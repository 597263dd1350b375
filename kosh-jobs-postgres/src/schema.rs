//! Creating and migrating the backend's schema, once, however many processes start at once.
//!
//! Every migration runs in one transaction that first takes a transaction-scoped advisory
//! lock (`pg_advisory_xact_lock`) keyed by the schema's name: the first process creates or
//! migrates the schema, the others wait for its lock and then find the work done. The version
//! reached is kept in the schema's `meta` table.

use sqlx::{Connection as _, PgConnection};

use crate::error::{PostgresError, Result};

/// The migrations, in order: (schema version reached, SQL with `__SCHEMA__` for the schema).
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_initial.sql")),
    (2, include_str!("../migrations/0002_start_ack.sql")),
    (3, include_str!("../migrations/0003_flow.sql")),
    (4, include_str!("../migrations/0004_groups.sql")),
    (5, include_str!("../migrations/0005_group_rate.sql")),
    (6, include_str!("../migrations/0006_group_keys.sql")),
    (7, include_str!("../migrations/0007_trace.sql")),
];

/// The schema version this build migrates a store to (`schema_version` in the schema's `meta` table); a store with a newer
/// one, written by a newer version, is refused rather than misread.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// The first key of the advisory lock: "KOSH" in ASCII; the second is a hash of the schema.
const LOCK_KEY: i32 = 0x4B4F_5348;

/// Creates or migrates `schema` on `conn`; returns how many migrations this call applied.
pub(crate) async fn migrate(conn: &mut PgConnection, schema: &str) -> Result<usize> {
    let ident = quoted(schema);
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(LOCK_KEY)
        .bind(schema)
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS {ident}; \
         CREATE TABLE IF NOT EXISTS {ident}.meta (key text PRIMARY KEY, value bigint NOT NULL)"
    )))
    .execute(&mut *tx)
    .await?;
    let version: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT value FROM {ident}.meta WHERE key = 'schema_version'"
    )))
    .fetch_optional(&mut *tx)
    .await?;
    let version = version.unwrap_or(0);
    if version > SCHEMA_VERSION {
        return Err(PostgresError::Incompatible(format!(
            "schema `{schema}` is at version {version}, written by a newer kosh-jobs-postgres; \
             this one knows up to version {SCHEMA_VERSION}"
        )));
    }
    let mut applied = 0;
    for (to, sql) in MIGRATIONS.iter().filter(|(to, _)| *to > version) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.replace("__SCHEMA__", &ident)))
            .execute(&mut *tx)
            .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {ident}.meta (key, value) VALUES ('schema_version', $1) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        )))
        .bind(to)
        .execute(&mut *tx)
        .await?;
        applied += 1;
    }
    tx.commit().await?;
    if applied > 0 {
        tracing::info!(
            schema,
            version = SCHEMA_VERSION,
            "migrated the kosh-jobs schema"
        );
    }
    Ok(applied)
}

/// The schema as a quoted identifier (its name is checked: no quote can be in it).
pub(crate) fn quoted(schema: &str) -> String {
    format!("\"{schema}\"")
}
