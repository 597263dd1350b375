//! [`Db`]: the app database, SQLite or Postgres as `DATABASE_URL` says, opened and migrated.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

/// The app database: a pool of one of the two dialects the app speaks.
///
/// The queries of [`crate::db`] are written once, in SQL both accept (`$1` parameters,
/// `ON CONFLICT DO NOTHING`, `RETURNING`), and run on either pool through
/// [`with_pool!`](crate::db::with_pool). Each dialect has its own migrations:
/// `migrations/` (SQLite) and `migrations_postgres/`, the same steps with the same numbers.
#[derive(Clone, Debug)]
pub enum Db {
    /// `sqlite://path/app.db`, `sqlite::memory:`: the default, no server.
    Sqlite(SqlitePool),
    /// `postgres://…`, `postgresql://…`.
    Postgres(PgPool),
}

impl Db {
    /// The SQLite pool, if that is the dialect.
    pub fn as_sqlite(&self) -> Option<&SqlitePool> {
        match self {
            Db::Sqlite(p) => Some(p),
            Db::Postgres(_) => None,
        }
    }

    /// The Postgres pool, if that is the dialect.
    pub fn as_postgres(&self) -> Option<&PgPool> {
        match self {
            Db::Postgres(p) => Some(p),
            Db::Sqlite(_) => None,
        }
    }

    /// Closes the pool.
    pub async fn close(&self) {
        match self {
            Db::Sqlite(p) => p.close().await,
            Db::Postgres(p) => p.close().await,
        }
    }
}

/// Runs `$body` with `$pool` bound to the pool of either dialect: the body is compiled once
/// per dialect, so it may use the pool's own types (its transactions, its query builder).
#[macro_export]
#[doc(hidden)]
macro_rules! __with_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite($pool) => $body,
            $crate::db::Db::Postgres($pool) => $body,
        }
    };
}
pub use crate::__with_pool as with_pool;

/// Whether `url` names a Postgres database (`postgres://`, `postgresql://`).
pub fn is_postgres_url(url: &str) -> bool {
    let scheme = url.split(':').next().unwrap_or_default();
    scheme.eq_ignore_ascii_case("postgres") || scheme.eq_ignore_ascii_case("postgresql")
}

/// Opens the app database at `url` and applies its migrations: SQLite
/// (`sqlite://data/app.db`, created if missing, with its folder; `sqlite::memory:`) or
/// Postgres (`postgres://user:password@host/database`, which must exist).
pub async fn connect(url: &str) -> anyhow::Result<Db> {
    if is_postgres_url(url) {
        connect_postgres(url).await.map(Db::Postgres)
    } else {
        connect_sqlite(url).await.map(Db::Sqlite)
    }
}

async fn connect_sqlite(url: &str) -> anyhow::Result<SqlitePool> {
    let opts = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true);
    if let Some(dir) = opts.get_filename().parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(opts)
        .await?;
    // The web process and the workers may start together on a new file: a loser of that
    // race finds the migration applied on its next try (each migration is one transaction).
    let mut tries = 0;
    loop {
        match sqlx::migrate!("./migrations").run(&pool).await {
            Ok(()) => return Ok(pool),
            Err(e) if tries < 5 => {
                tries += 1;
                tracing::debug!(error = %e, "migrating the app database, retrying");
                tokio::time::sleep(Duration::from_millis(100 * tries)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

async fn connect_postgres(url: &str) -> anyhow::Result<PgPool> {
    // sqlx's errors about a URL or a connection never repeat the password.
    let opts = PgConnectOptions::from_str(url)?;
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(opts)
        .await?;
    // sqlx's Postgres migrator holds an advisory lock while it runs: processes starting
    // together migrate once.
    sqlx::migrate!("./migrations_postgres").run(&pool).await?;
    Ok(pool)
}

/// Whether two Postgres URLs name the same database: the same host (or socket), port and
/// database (the user's name when the URL gives none, as Postgres does). Other parameters
/// (the user, `sslmode`, the job store's `schema=` and `events=`) do not change which database it is.
/// `false` when either is not a Postgres URL.
///
/// The comparison is of the URLs as written: `localhost` and `127.0.0.1` count as
/// different, and the app then takes the two-step path (see `README.md`).
pub fn same_postgres_database(a: &str, b: &str) -> bool {
    fn target(url: &str) -> Option<(String, u16, Option<String>, String)> {
        if !is_postgres_url(url) {
            return None;
        }
        let url = without_param(&without_param(url, "schema"), "events");
        let opts = PgConnectOptions::from_str(&url).ok()?;
        let database = opts
            .get_database()
            .unwrap_or(opts.get_username())
            .to_owned();
        let socket = opts.get_socket().map(|s| s.display().to_string());
        Some((
            opts.get_host().to_owned(),
            opts.get_port(),
            socket,
            database,
        ))
    }
    match (target(a), target(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// `url` without the query parameter `name` (sqlx refuses parameters it does not know).
fn without_param(url: &str, name: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let rest: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && p.split('=').next() != Some(name))
        .collect();
    if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_database_whatever_the_schema_user_or_options() {
        let app = "postgres://app:secret@db.internal:5432/money";
        assert!(same_postgres_database(
            app,
            "postgresql://jobs:other@db.internal/money?schema=kosh&sslmode=prefer"
        ));
        assert!(same_postgres_database(
            app,
            "postgres://app@db.internal/money?schema=kosh&events=true"
        ));
        assert!(same_postgres_database(app, app));
    }

    #[test]
    fn another_database_host_or_port_is_not_the_same() {
        let app = "postgres://app@db.internal:5432/money";
        assert!(!same_postgres_database(
            app,
            "postgres://app@db.internal/jobs"
        ));
        assert!(!same_postgres_database(
            app,
            "postgres://app@db2.internal/money"
        ));
        assert!(!same_postgres_database(
            app,
            "postgres://app@db.internal:5433/money"
        ));
        assert!(!same_postgres_database(app, "sqlite://data/jobs.db"));
        assert!(!same_postgres_database("sqlite://a.db", "sqlite://a.db"));
    }

    #[test]
    fn a_url_without_a_database_names_the_users() {
        assert!(same_postgres_database(
            "postgres://money@h/money",
            "postgres://money@h"
        ));
    }
}
