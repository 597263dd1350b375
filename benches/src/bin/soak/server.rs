//! The store under test: a SQLite file in a temporary directory, or a server this run starts
//! (testsupport's `RedisServer` with an append-only file, or `PostgresServer`), which the
//! fault injector may restart. A server listens on 127.0.0.1 and, with partitions, on the
//! host end of every worker slot's veth pair.

use std::net::IpAddr;
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

/// Redis: keep every completed job, so the final check can read each one back.
const REDIS_QUERY: &str = "?prefix=soak&keep_completed_max=none&keep_completed_for=none";
const POSTGRES_QUERY: &str = "?schema=kosh_soak";

impl Server {
    /// Starts the store, a server listening on `also_on` too; returns it and the URL the
    /// runner opens (and workers that are not in a namespace of their own).
    pub(crate) fn start(
        kind: Kind,
        dir: &Path,
        also_on: &[IpAddr],
    ) -> anyhow::Result<(Server, String)> {
        Ok(match kind {
            Kind::Sqlite => {
                let url = format!("sqlite://{}", dir.join("soak.db").display());
                (Server::Sqlite, url)
            }
            Kind::Redis => {
                let mut opts = RedisServer::options().aof();
                for &a in also_on {
                    opts = opts.also_listen_on(a);
                }
                let s = opts.start()?;
                let url = format!("{}{REDIS_QUERY}", s.url());
                (Server::Redis(s), url)
            }
            Kind::Postgres => {
                let s = PostgresServer::start_also_on(also_on)?;
                let url = format!("{}{POSTGRES_QUERY}", s.url());
                (Server::Postgres(s), url)
            }
        })
    }

    /// The store's URL at `addr`, one of the `also_on` addresses it was started with (`None`
    /// for SQLite, which has no address).
    pub(crate) fn url_on(&self, addr: IpAddr) -> Option<String> {
        match self {
            Server::Sqlite => None,
            Server::Redis(s) => Some(format!("{}{REDIS_QUERY}", s.url_on(addr))),
            Server::Postgres(s) => Some(format!("{}{POSTGRES_QUERY}", s.url_on(addr, "postgres"))),
        }
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
