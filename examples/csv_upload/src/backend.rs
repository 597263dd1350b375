//! The job store, chosen by URL through `kosh_jobs::connect`.

use anyhow::Context;
use kosh_jobs::postgres::PostgresBackend;
use kosh_jobs::AnyBackend;

/// Opens the job store named by `url`:
///
/// - `sqlite://path/to/jobs.db` (the folder is created): one file, shared by the web
///   process and any number of worker processes on the machine;
/// - `redis://host:6379`, `rediss://user:password@host:port` (TLS, e.g. Upstash): workers
///   on many machines;
/// - `postgres://user:password@host/database?schema=kosh`: Postgres, the backend's tables in
///   their own schema (default `kosh`), which may be the app's own database;
/// - `memory:`: inside this process only (the `dev` command with no files, tests).
///
/// `redis_prefix` (default `kosh`) puts the job store's Redis keys under another prefix, so
/// several apps or environments can share one Redis database; a `?prefix=` in the URL does
/// the same.
pub async fn open_backend(url: &str, redis_prefix: Option<&str>) -> anyhow::Result<AnyBackend> {
    Ok(open_jobs(url, redis_prefix).await?.backend)
}

/// The job store, and its Postgres backend when it is one.
#[derive(Clone, Debug)]
pub struct Jobs {
    /// The store, whichever it is.
    pub backend: AnyBackend,
    /// The same store as a [`PostgresBackend`] when the URL is `postgres://…`: it can
    /// enqueue inside a transaction of the app's own (see [`crate::queueing`]).
    pub postgres: Option<PostgresBackend>,
}

/// Opens the job store named by `url`, as [`open_backend`] does, keeping the
/// [`PostgresBackend`] of a `postgres://` URL at hand (`kosh_jobs::connect` gives only the
/// [`AnyBackend`] it wraps).
pub async fn open_jobs(url: &str, redis_prefix: Option<&str>) -> anyhow::Result<Jobs> {
    let url = with_events(&with_prefix(url, redis_prefix));
    let scheme = url.split(':').next().unwrap_or_default();
    // The errors name the SQLite file's absolute path, Redis's or Postgres's host and port,
    // never a password: the URL itself is not repeated here, as it may hold one.
    let context = || format!("cannot open the job store ({scheme}: URL)");
    if crate::db::is_postgres_url(&url) {
        let postgres = PostgresBackend::connect(&url).await.with_context(context)?;
        return Ok(Jobs {
            backend: AnyBackend::new(postgres.clone()),
            postgres: Some(postgres),
        });
    }
    let backend = kosh_jobs::connect(&url).await.with_context(context)?;
    Ok(Jobs {
        backend,
        postgres: None,
    })
}

/// The URL with `events=true` added to a SQLite, Redis or Postgres URL that does not say: the
/// page's live updates (`GET /api/events`) need the job store to carry lifecycle events.
fn with_events(url: &str) -> String {
    let carries =
        url.starts_with("redis") || url.starts_with("sqlite:") || crate::db::is_postgres_url(url);
    let says = url.split_once('?').is_some_and(|(_, query)| {
        query
            .split('&')
            .any(|pair| pair.split('=').next() == Some("events"))
    });
    if !carries || says {
        return url.to_owned();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}events=true")
}

/// The URL with `prefix=…` added to a Redis URL's query string.
fn with_prefix(url: &str, prefix: Option<&str>) -> String {
    match prefix {
        Some(p) if url.starts_with("redis") => {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}prefix={p}")
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{with_events, with_prefix};

    #[test]
    fn events_are_asked_for_unless_the_url_says() {
        assert_eq!(with_events("sqlite://j.db"), "sqlite://j.db?events=true");
        assert_eq!(
            with_events("redis://h:1?prefix=app"),
            "redis://h:1?prefix=app&events=true"
        );
        assert_eq!(
            with_events("redis://h:1?events=false"),
            "redis://h:1?events=false"
        );
        assert_eq!(
            with_events("postgres://app@db/money?schema=kosh"),
            "postgres://app@db/money?schema=kosh&events=true"
        );
        assert_eq!(
            with_events("postgresql://app@db/money?events=false"),
            "postgresql://app@db/money?events=false"
        );
        assert_eq!(with_events("memory:"), "memory:");
    }

    #[test]
    fn the_prefix_joins_the_redis_query_string() {
        assert_eq!(
            with_prefix("redis://h:1", Some("app")),
            "redis://h:1?prefix=app"
        );
        assert_eq!(
            with_prefix("rediss://h:1/0?timeout=2s", Some("app")),
            "rediss://h:1/0?timeout=2s&prefix=app"
        );
        assert_eq!(
            with_prefix("sqlite://data/jobs.db", Some("app")),
            "sqlite://data/jobs.db"
        );
        assert_eq!(with_prefix("redis://h:1", None), "redis://h:1");
    }
}
