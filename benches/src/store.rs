//! Which backend to measure, and a fresh store of it for each run.
//!
//! A [`Bench`] is set up once per backend: for SQLite a temporary directory (one new database
//! file per run), for Redis a private `redis-server` on a free port (or the server named by
//! `KOSH_BENCH_REDIS_URL`, where each run gets a key prefix of its own). [`Bench::fresh`]
//! gives each run an empty store, and its [`Locator`] lets a second process open the same one.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{bail, Context as _};
use kosh_jobs::memory::MemoryBackend;
use kosh_jobs::AnyBackend;
use kosh_jobs_postgres::{PostgresBackend, PostgresOptions};
use kosh_jobs_redis::{RedisBackend, RedisOptions};
use kosh_jobs_sqlite::{Retention, SqliteBackend, SqliteOptions};

use crate::commandstats::CommandStats;
use kosh_jobs_testsupport::postgres_server::PostgresServer;
use kosh_jobs_testsupport::redis_server::RedisServer;
use kosh_jobs_testsupport::resp::{RedisAddr, Resp};

/// The environment variable naming a Redis server to use instead of starting one.
pub const REDIS_URL_VAR: &str = "KOSH_BENCH_REDIS_URL";

/// The environment variable naming a Postgres database to use instead of starting a cluster.
pub const POSTGRES_URL_VAR: &str = "KOSH_BENCH_DATABASE_URL";

/// A backend to measure, as given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// The in-process memory backend.
    Memory,
    /// SQLite: a new file in a temporary directory per run, or the directory given.
    Sqlite {
        /// Directory for the database files (`sqlite://DIR`), default a temporary one.
        dir: Option<PathBuf>,
    },
    /// Redis: a private server, or the server at the URL (`redis://…`, or
    /// `KOSH_BENCH_REDIS_URL`).
    Redis {
        /// The server, when not started by the bench.
        url: Option<String>,
    },
    /// Postgres: a private cluster (`initdb`), or the database at the URL (`postgres://…`,
    /// or `KOSH_BENCH_DATABASE_URL`); each run in a schema of its own.
    Postgres {
        /// The database, when not started by the bench.
        url: Option<String>,
    },
}

impl BackendKind {
    /// `memory`, `sqlite`, `redis` or `postgres`.
    pub fn name(&self) -> &'static str {
        match self {
            BackendKind::Memory => "memory",
            BackendKind::Sqlite { .. } => "sqlite",
            BackendKind::Redis { .. } => "redis",
            BackendKind::Postgres { .. } => "postgres",
        }
    }
}

impl FromStr for BackendKind {
    type Err = anyhow::Error;

    /// `memory`, `sqlite`, `redis`, `sqlite://DIR` (database files go in DIR), or a
    /// `redis://` / `rediss://` URL.
    fn from_str(s: &str) -> anyhow::Result<BackendKind> {
        Ok(match s {
            "memory" => BackendKind::Memory,
            "sqlite" => BackendKind::Sqlite { dir: None },
            "redis" => BackendKind::Redis { url: None },
            "postgres" => BackendKind::Postgres { url: None },
            _ if s.starts_with("postgres://") || s.starts_with("postgresql://") => {
                BackendKind::Postgres {
                    url: Some(s.to_owned()),
                }
            }
            _ if s.starts_with("sqlite:") => {
                let dir = s.trim_start_matches("sqlite:").trim_start_matches("//");
                if dir.is_empty() {
                    bail!("`{s}`: name a directory for the database files");
                }
                BackendKind::Sqlite {
                    dir: Some(dir.into()),
                }
            }
            _ if s.starts_with("redis://") || s.starts_with("rediss://") => BackendKind::Redis {
                url: Some(s.to_owned()),
            },
            _ => bail!(
                "unknown backend `{s}`: use memory, sqlite, redis, postgres, sqlite://DIR, a redis:// \
                 or a postgres:// url"
            ),
        })
    }
}

/// The backend's side of a bench: where its stores go, and the Redis server, if started.
pub struct Bench {
    kind: BackendKind,
    dir: Option<tempfile::TempDir>,
    sqlite_dir: Option<PathBuf>,
    redis_url: Option<String>,
    /// The probe connection (`INFO`, `FLUSHALL`); `None` for `rediss://`.
    redis_probe: Option<RedisAddr>,
    /// Whether the server is ours to flush between runs.
    redis_owned: bool,
    server: Option<RedisServer>,
    postgres_url: Option<String>,
    postgres_server: Option<PostgresServer>,
    runs: AtomicU64,
    keep_completed: bool,
    /// Redis: whether concurrent single enqueues share script calls (the backend's default).
    coalesce_enqueues: bool,
}

impl Bench {
    /// Prepares `kind`: creates the temporary directory or starts `redis-server` (unless a
    /// URL is given, or `KOSH_BENCH_REDIS_URL` is set). Fails if no Redis can be had.
    pub fn setup(kind: &BackendKind) -> anyhow::Result<Bench> {
        let mut bench = Bench {
            kind: kind.clone(),
            dir: None,
            sqlite_dir: None,
            redis_url: None,
            redis_probe: None,
            redis_owned: false,
            server: None,
            postgres_url: None,
            postgres_server: None,
            runs: AtomicU64::new(0),
            keep_completed: false,
            coalesce_enqueues: true,
        };
        match kind {
            BackendKind::Memory => {}
            BackendKind::Sqlite { dir } => {
                let path = match dir {
                    Some(d) => {
                        std::fs::create_dir_all(d)
                            .with_context(|| format!("creating {}", d.display()))?;
                        d.clone()
                    }
                    None => {
                        let t = tempfile::Builder::new()
                            .prefix("kosh-bench-sqlite-")
                            .tempdir()?;
                        let p = t.path().to_path_buf();
                        bench.dir = Some(t);
                        p
                    }
                };
                bench.sqlite_dir = Some(path);
            }
            BackendKind::Redis { url } => {
                let env = std::env::var(REDIS_URL_VAR).ok().filter(|u| !u.is_empty());
                let url = match url.clone().or(env) {
                    Some(u) => u,
                    None => {
                        let server = RedisServer::start()?;
                        let u = server.url();
                        bench.server = Some(server);
                        bench.redis_owned = true;
                        u
                    }
                };
                bench.redis_probe = RedisAddr::parse(&url).ok();
                bench.redis_url = Some(url);
            }
            BackendKind::Postgres { url } => {
                let env = std::env::var(POSTGRES_URL_VAR)
                    .ok()
                    .filter(|u| !u.is_empty());
                let url = match url.clone().or(env) {
                    Some(u) => u,
                    None => {
                        let server = PostgresServer::start()?;
                        let u = server.url();
                        bench.postgres_server = Some(server);
                        u
                    }
                };
                bench.postgres_url = Some(url);
            }
        }
        Ok(bench)
    }

    /// The backend measured.
    pub fn kind(&self) -> &BackendKind {
        &self.kind
    }

    /// An empty store for one run, named after `tag`.
    ///
    /// On a Redis server the bench started, this empties the server (`FLUSHALL`), so stores
    /// from earlier calls must no longer be in use. On a server given by URL each store gets a
    /// key prefix of its own (`kbench-TAG-PID-N`) and nothing is deleted.
    pub async fn fresh(&self, tag: &str) -> anyhow::Result<Store> {
        let run = self.runs.fetch_add(1, Ordering::Relaxed);
        let locator = match &self.kind {
            BackendKind::Memory => Locator::Memory,
            BackendKind::Sqlite { .. } => {
                let dir = self.sqlite_dir.as_ref().expect("set up");
                let path = dir.join(format!("{tag}-{}-{run}.db", std::process::id()));
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
                Locator::Sqlite(path)
            }
            BackendKind::Redis { .. } => {
                if self.redis_owned {
                    // Our own server: start each run from an empty database.
                    self.probe(|c| c.command(&["FLUSHALL"]).map(drop))?;
                }
                let mut url = self.redis_url.clone().expect("set up");
                if !self.coalesce_enqueues {
                    url.push(if url.contains('?') { '&' } else { '?' });
                    url.push_str("coalesce_enqueues=false");
                }
                Locator::Redis {
                    url,
                    prefix: format!("kbench-{tag}-{}-{run}", std::process::id()),
                }
            }
            BackendKind::Postgres { .. } => Locator::Postgres {
                url: self.postgres_url.clone().expect("set up"),
                schema: format!(
                    "kbench_{}_{}_{run}",
                    tag.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
                        .to_ascii_lowercase(),
                    std::process::id()
                ),
            },
        };
        let backend = locator.open_with(self.keep_completed).await?;
        Ok(Store { backend, locator })
    }

    /// Stores opened from now on keep every completed job (no retention), as the admin
    /// runner's "900,000 completed" store needs.
    pub fn keep_completed(&mut self) {
        self.keep_completed = true;
    }

    /// Redis stores opened from now on send each single enqueue as its own script call
    /// (`coalesce_enqueues=false`), for comparison with the default.
    pub fn no_coalescing(&mut self) {
        self.coalesce_enqueues = false;
    }

    /// Commands the Redis server has run so far; `None` for other backends or a server the
    /// probe cannot reach (`rediss://`).
    pub fn command_stats(&self) -> Option<CommandStats> {
        self.redis_probe.as_ref()?;
        self.probe(|c| c.command(&["INFO", "commandstats"]))
            .ok()
            .map(|info| CommandStats::parse(&info))
    }

    /// Runs one command on the Redis server (through the probe connection) and returns its
    /// reply as text; fails for other backends and `rediss://`.
    pub fn redis_command(&self, args: &[&str]) -> anyhow::Result<String> {
        self.probe(|c| c.command(args))
    }

    /// Whether the Redis server is shared with others (its command counts include theirs).
    pub fn redis_shared(&self) -> bool {
        self.redis_url.is_some() && !self.redis_owned
    }

    fn probe<T>(&self, f: impl FnOnce(&mut Resp) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let addr = self
            .redis_probe
            .as_ref()
            .context("no redis probe for this url")?;
        let mut conn = Resp::connect(addr, Duration::from_secs(10))?;
        f(&mut conn)
    }
}

/// How to open one store: passed to the second process of a multi-process run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Locator {
    /// Memory: private to its process.
    Memory,
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A Redis server and key prefix.
    Redis {
        /// The server.
        url: String,
        /// The key prefix of this run.
        prefix: String,
    },
    /// A Postgres database and schema.
    Postgres {
        /// The database.
        url: String,
        /// The schema of this run.
        schema: String,
    },
}

impl Locator {
    /// Opens the store.
    pub async fn open(&self) -> anyhow::Result<AnyBackend> {
        self.open_with(false).await
    }

    /// Opens the store; with `keep_completed`, retention deletes no completed job (the
    /// memory backend keeps every job anyway).
    pub async fn open_with(&self, keep_completed: bool) -> anyhow::Result<AnyBackend> {
        Ok(match self {
            Locator::Memory => AnyBackend::new(MemoryBackend::new()),
            Locator::Sqlite(path) => {
                let mut opts = SqliteOptions::builder(path.clone());
                if keep_completed {
                    opts = opts.retention(Retention::keep_all());
                }
                AnyBackend::new(
                    SqliteBackend::connect_with(opts.build()?)
                        .await
                        .with_context(|| format!("opening {}", path.display()))?,
                )
            }
            Locator::Redis { url, prefix } => {
                let mut opts = RedisOptions::builder(url.clone()).prefix(prefix.clone());
                if keep_completed {
                    opts = opts.keep_completed_for(None).keep_completed_max(None);
                }
                let opts = opts.build()?;
                AnyBackend::new(RedisBackend::connect_with(opts).await?)
            }
            Locator::Postgres { url, schema } => {
                let mut opts = PostgresOptions::from_url(url)?
                    .schema(schema.clone())
                    .max_connections(16);
                if keep_completed {
                    opts = opts.retention(None);
                }
                AnyBackend::new(PostgresBackend::connect_with(opts.build()?).await?)
            }
        })
    }

    /// As one command-line argument (see [`Locator::from_arg`]).
    pub fn to_arg(&self) -> String {
        match self {
            Locator::Memory => "memory".into(),
            Locator::Sqlite(p) => format!("sqlite:{}", p.display()),
            Locator::Redis { url, prefix } => format!("redis:{prefix}:{url}"),
            Locator::Postgres { url, schema } => format!("postgres:{schema}:{url}"),
        }
    }

    /// Parses what [`Locator::to_arg`] wrote.
    pub fn from_arg(s: &str) -> anyhow::Result<Locator> {
        if s == "memory" {
            Ok(Locator::Memory)
        } else if let Some(p) = s.strip_prefix("sqlite:") {
            Ok(Locator::Sqlite(p.into()))
        } else if let Some(rest) = s.strip_prefix("redis:") {
            let (prefix, url) = rest.split_once(':').context("redis locator without url")?;
            Ok(Locator::Redis {
                url: url.to_owned(),
                prefix: prefix.to_owned(),
            })
        } else if let Some(rest) = s.strip_prefix("postgres:") {
            let (schema, url) = rest
                .split_once(':')
                .context("postgres locator without url")?;
            Ok(Locator::Postgres {
                url: url.to_owned(),
                schema: schema.to_owned(),
            })
        } else {
            bail!("bad store locator `{s}`")
        }
    }
}

/// One run's store.
pub struct Store {
    /// The backend, opened.
    pub backend: AnyBackend,
    /// How another process opens it.
    pub locator: Locator,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_backends() {
        assert_eq!(
            "memory".parse::<BackendKind>().unwrap(),
            BackendKind::Memory
        );
        assert_eq!(
            "sqlite:///tmp/b".parse::<BackendKind>().unwrap(),
            BackendKind::Sqlite {
                dir: Some("/tmp/b".into())
            }
        );
        assert_eq!(
            "redis://127.0.0.1:7000".parse::<BackendKind>().unwrap(),
            BackendKind::Redis {
                url: Some("redis://127.0.0.1:7000".into())
            }
        );
        assert_eq!(
            "postgres://u@h/db".parse::<BackendKind>().unwrap(),
            BackendKind::Postgres {
                url: Some("postgres://u@h/db".into())
            }
        );
        assert!("mongodb://x".parse::<BackendKind>().is_err());
    }

    #[test]
    fn locators_round_trip() {
        for l in [
            Locator::Memory,
            Locator::Sqlite("/tmp/x y/a.db".into()),
            Locator::Redis {
                url: "redis://:pw@127.0.0.1:7000/1".into(),
                prefix: "kbench-a-1-2".into(),
            },
            Locator::Postgres {
                url: "postgres://u:pw@127.0.0.1:5/db".into(),
                schema: "kbench_a_1_2".into(),
            },
        ] {
            assert_eq!(Locator::from_arg(&l.to_arg()).unwrap(), l);
        }
    }
}
