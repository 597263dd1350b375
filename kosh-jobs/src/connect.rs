//! `connect(url)`: any enabled backend from one URL.

use kosh_jobs_core::{AnyBackend, Error};

/// The URL schemes [`connect`] knows, with the feature each needs, for error messages.
const SCHEMES: &[(&str, &str)] = &[
    ("memory:", "(always)"),
    ("sqlite://path, sqlite::memory:", "sqlite"),
    (
        "redis://, rediss://, redis+cluster://, rediss+cluster://",
        "redis",
    ),
    ("postgres://, postgresql://", "postgres"),
];

/// Opens the backend a URL names, so the same program runs on any backend by configuration:
///
/// | URL | backend | feature |
/// |---|---|---|
/// | `memory:` | [`MemoryBackend`](crate::memory::MemoryBackend), this process only | |
/// | `sqlite://data/jobs.db` (missing folders are created), `sqlite:///abs/path.db`, `sqlite::memory:` | `sqlite::SqliteBackend` | `sqlite` |
/// | `redis://[user:password@]host:port[/db]`, `rediss://…` (TLS), `redis+cluster://host1:port1,host2:port2` | `redis::RedisBackend` | `redis` |
/// | `postgres://[user:password@]host[:port]/database[?schema=kosh]`, `postgresql://…` | `postgres::PostgresBackend` | `postgres` |
///
/// Options go in the query string where a backend has them, e.g.
/// `redis://localhost:6379?prefix=myapp&timeout=2s`; see each backend's `connect` for its
/// list. An unknown scheme, or one whose feature is not enabled, is an
/// [`Error::InvalidInput`] that names the feature to enable.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), kosh_jobs::Error> {
/// use kosh_jobs::prelude::*;
///
/// let backend = kosh_jobs::connect("memory:").await?;
/// let jobs = Client::new(backend.clone());
/// # let _ = jobs;
/// assert!(matches!(
///     kosh_jobs::connect("mongodb://localhost").await,
///     Err(Error::InvalidInput(_))
/// ));
/// # Ok(()) }
/// ```
pub async fn connect(url: &str) -> Result<AnyBackend, Error> {
    let url = url.trim();
    let scheme = url
        .split(':')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match scheme.as_str() {
        "memory" => {
            if url != "memory:" && url != "memory://" {
                return Err(Error::InvalidInput(format!(
                    "the memory backend's URL is `memory:`, not `{url}`: it has no options"
                )));
            }
            Ok(AnyBackend::new(kosh_jobs_core::memory::MemoryBackend::new()))
        }
        "sqlite" => sqlite(url).await,
        "redis" | "rediss" | "redis+cluster" | "rediss+cluster" => redis(url).await,
        "postgres" | "postgresql" => postgres(url).await,
        "" => Err(Error::InvalidInput(format!(
            "job store URL `{url}` has no scheme; {}",
            known()
        ))),
        other => Err(Error::InvalidInput(format!(
            "unknown job store URL scheme `{other}:`; {}",
            known()
        ))),
    }
}

fn known() -> String {
    let list: Vec<String> = SCHEMES
        .iter()
        .map(|(s, f)| match *f {
            "(always)" => s.to_string(),
            f => format!("{s} (feature `{f}`)"),
        })
        .collect();
    format!("kosh-jobs opens {}", list.join("; "))
}

#[cfg(feature = "sqlite")]
async fn sqlite(url: &str) -> Result<AnyBackend, Error> {
    Ok(AnyBackend::new(
        kosh_jobs_sqlite::SqliteBackend::connect(url).await?,
    ))
}

#[cfg(not(feature = "sqlite"))]
async fn sqlite(_url: &str) -> Result<AnyBackend, Error> {
    Err(feature_off("sqlite", "sqlite://"))
}

#[cfg(feature = "redis")]
async fn redis(url: &str) -> Result<AnyBackend, Error> {
    Ok(AnyBackend::new(
        kosh_jobs_redis::RedisBackend::connect(url).await?,
    ))
}

#[cfg(not(feature = "redis"))]
async fn redis(_url: &str) -> Result<AnyBackend, Error> {
    Err(feature_off("redis", "redis://"))
}

#[cfg(feature = "postgres")]
async fn postgres(url: &str) -> Result<AnyBackend, Error> {
    let backend = kosh_jobs_postgres::PostgresBackend::connect(url)
        .await
        .map_err(|e| Error::from(kosh_jobs_core::BackendError::from(e)))?;
    Ok(AnyBackend::new(backend))
}

#[cfg(not(feature = "postgres"))]
async fn postgres(_url: &str) -> Result<AnyBackend, Error> {
    Err(feature_off("postgres", "postgres://"))
}

#[allow(dead_code)] // unused when every backend feature is on
fn feature_off(feature: &str, scheme: &str) -> Error {
    Error::InvalidInput(format!(
        "`{scheme}` URLs need the `{feature}` feature of kosh-jobs: \
         kosh-jobs = {{ version = \"{}\", features = [\"{feature}\"] }}",
        env!("CARGO_PKG_VERSION")
    ))
}
