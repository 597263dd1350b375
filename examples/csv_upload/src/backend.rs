//! The job store, chosen by URL: the one place that knows the backends.

use std::path::Path;

use anyhow::{bail, Context};
use kosh_jobs::memory::MemoryBackend;
use kosh_jobs::AnyBackend;
use kosh_jobs_redis::{RedisBackend, RedisOptions};
use kosh_jobs_sqlite::SqliteBackend;

/// Opens the job store named by `url`:
///
/// - `sqlite://path/to/jobs.db` (the folder is created): one file, shared by the web
///   process and any number of worker processes on the machine;
/// - `redis://host:6379`, `rediss://user:password@host:port` (TLS, e.g. Upstash): workers
///   on many machines;
/// - `memory:`: inside this process only (the `dev` command with no files, tests).
pub async fn open_backend(url: &str) -> anyhow::Result<AnyBackend> {
    open_backend_with(url, None).await
}

/// Like [`open_backend`], with the prefix of the job store's Redis keys (default `kosh`):
/// several apps or environments can share one Redis database under different prefixes.
pub async fn open_backend_with(
    url: &str,
    redis_prefix: Option<&str>,
) -> anyhow::Result<AnyBackend> {
    let scheme = url.split(':').next().unwrap_or_default();
    match scheme {
        "memory" => Ok(AnyBackend::new(MemoryBackend::new())),
        "sqlite" => {
            if let Some(path) = url
                .strip_prefix("sqlite://")
                .map(|p| p.split('?').next().unwrap_or(p))
            {
                if let Some(dir) = Path::new(path).parent() {
                    if !dir.as_os_str().is_empty() {
                        std::fs::create_dir_all(dir)
                            .with_context(|| format!("cannot create {}", dir.display()))?;
                    }
                }
            }
            let backend = SqliteBackend::connect(url)
                .await
                .with_context(|| format!("cannot open the job store {url}"))?;
            Ok(AnyBackend::new(backend))
        }
        "redis" | "rediss" => {
            let mut options = RedisOptions::builder(url);
            if let Some(prefix) = redis_prefix {
                options = options.prefix(prefix);
            }
            // The error names host and port, never the password.
            let backend = RedisBackend::connect(options.build()?)
                .await
                .context("cannot connect to the Redis job store")?;
            Ok(AnyBackend::new(backend))
        }
        _ => bail!(
            "unknown job store URL scheme `{scheme}:`: expected sqlite://path, redis://host:port, \
             rediss://… or memory:"
        ),
    }
}
