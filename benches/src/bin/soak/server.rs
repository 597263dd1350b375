//! The store under test: a SQLite file in a temporary directory, or a server this run starts
//! (testsupport's `RedisServer` with an append-only file, or `PostgresServer`), which the
//! fault injector may restart.

use std::path::Path;

use kosh_jobs_testsupport::postgres_server::PostgresServer;
use kosh_jobs_testsupport::redis_server::RedisServer;

/// Which backend a run soaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Sqlite,
    Redis,
    Postgres,
}

impl std::str::FromStr for Kind {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Kind> {
        Ok(match s {
            "sqlite" => Kind::Sqlite,
            "redis" => Kind::Redis,
            "postgres" => Kind::Postgres,
            _ => anyhow::bail!("unknown backend `{s}`: use sqlite, redis or postgres"),
        })
    }
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Sqlite => "sqlite",
            Kind::Redis => "redis",
            Kind::Postgres => "postgres",
        }
    }
}

/// The running store.
pub(crate) enum Server {
    Sqlite,
    Redis(RedisServer),
    Postgres(PostgresServer),
}

impl Server {
    /// Starts the store; returns it and the URL every process opens.
    pub(crate) fn start(kind: Kind, dir: &Path) -> anyhow::Result<(Server, String)> {
        Ok(match kind {
            Kind::Sqlite => {
                let url = format!("sqlite://{}", dir.join("soak.db").display());
                (Server::Sqlite, url)
            }
            Kind::Redis => {
                let s = RedisServer::start_with_aof()?;
                // Keep every completed job, so the final check can read each one back.
                let url = format!(
                    "{}?prefix=soak&keep_completed_max=none&keep_completed_for=none",
                    s.url()
                );
                (Server::Redis(s), url)
            }
            Kind::Postgres => {
                let s = PostgresServer::start()?;
                let url = format!("{}?schema=kosh_soak", s.url());
                (Server::Postgres(s), url)
            }
        })
    }

    /// Whether [`Server::restart`] does anything.
    pub(crate) fn restartable(&self) -> bool {
        !matches!(self, Server::Sqlite)
    }

    /// Restarts the server (Redis: `SIGKILL` and a new one on the same AOF; Postgres: a fast
    /// shutdown and start); returns when it answers again.
    pub(crate) fn restart(&mut self) -> anyhow::Result<()> {
        match self {
            Server::Sqlite => Ok(()),
            Server::Redis(s) => s.restart(),
            Server::Postgres(s) => s.restart(),
        }
    }
}
