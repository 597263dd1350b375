//! The store under test: a SQLite file in a temporary directory, or a server this run starts
//! (testsupport's `RedisServer` with an append-only file, `RedisCluster` with replicas, or
//! `PostgresServer`), which the fault injector may restart or fail over. A single server
//! listens on 127.0.0.1 and, with partitions, on the host end of every worker slot's veth
//! pair; the cluster's nodes announce 127.0.0.1 only, so a cluster run has no partitions.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use kosh_jobs_testsupport::postgres_server::PostgresServer;
use kosh_jobs_testsupport::redis_cluster::RedisCluster;
use kosh_jobs_testsupport::redis_server::RedisServer;

use crate::jobs::QUEUE;

/// Which backend a run soaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Sqlite,
    Redis,
    Cluster,
    Postgres,
}

impl std::str::FromStr for Kind {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Kind> {
        Ok(match s {
            "sqlite" => Kind::Sqlite,
            "redis" => Kind::Redis,
            "cluster" => Kind::Cluster,
            "postgres" => Kind::Postgres,
            _ => anyhow::bail!("unknown backend `{s}`: use sqlite, redis, cluster or postgres"),
        })
    }
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Sqlite => "sqlite",
            Kind::Redis => "redis",
            Kind::Cluster => "cluster",
            Kind::Postgres => "postgres",
        }
    }

    /// Whether a worker can be cut off the store by a partition (see `net`): not on SQLite,
    /// which has no server, nor on the cluster, whose nodes announce 127.0.0.1 only.
    pub(crate) fn partitionable(self) -> Option<&'static str> {
        match self {
            Kind::Sqlite => Some("SQLite has no server to cut a worker off from"),
            Kind::Cluster => Some(
                "the cluster's nodes announce 127.0.0.1, which a worker in a network namespace \
                 cannot reach",
            ),
            Kind::Redis | Kind::Postgres => None,
        }
    }
}

/// The running store.
pub(crate) enum Server {
    Sqlite,
    Redis(RedisServer),
    Cluster(Cluster),
    Postgres(PostgresServer),
}

/// The cluster, and its node killed by the last failover until it rejoins.
pub(crate) struct Cluster {
    nodes: RedisCluster,
    down: Option<(usize, Instant)>,
}

/// Masters, replicas per master, and how long a master may be unreachable before its
/// replica takes over (`cluster-node-timeout`).
const CLUSTER_MASTERS: usize = 3;
const CLUSTER_REPLICAS: usize = 1;
const CLUSTER_NODE_TIMEOUT: Duration = Duration::from_millis(1_000);
/// How long a node killed by a failover stays down before it is started again.
const CLUSTER_DOWN_FOR: Duration = Duration::from_secs(3);

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
            Kind::Cluster => {
                let nodes =
                    RedisCluster::start(CLUSTER_MASTERS, CLUSTER_REPLICAS, CLUSTER_NODE_TIMEOUT)?;
                let url = format!("{}{REDIS_QUERY}", nodes.url());
                (Server::Cluster(Cluster { nodes, down: None }), url)
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
            Server::Sqlite | Server::Cluster(_) => None,
            Server::Redis(s) => Some(format!("{}{REDIS_QUERY}", s.url_on(addr))),
            Server::Postgres(s) => Some(format!("{}{POSTGRES_QUERY}", s.url_on(addr, "postgres"))),
        }
    }

    /// Whether [`Server::restart`] does anything.
    pub(crate) fn restartable(&self) -> bool {
        matches!(self, Server::Redis(_) | Server::Postgres(_))
    }

    /// Whether [`Server::fail_over`] does anything.
    pub(crate) fn can_fail_over(&self) -> bool {
        matches!(self, Server::Cluster(_))
    }

    /// Kills (`SIGKILL`) the cluster master that serves the soak's queue and waits until its
    /// replica has taken over; returns what it did. A node still down from the last failover
    /// rejoins first, so that the master has a replica.
    pub(crate) fn fail_over(&mut self) -> anyhow::Result<String> {
        let Server::Cluster(c) = self else {
            return Ok("no failover: not a cluster".into());
        };
        let t = Instant::now();
        c.rejoin_due(true)?;
        let rejoin = t.elapsed();
        let key = format!("{{soak:{QUEUE}}}");
        let master = c.nodes.master_of(&key)?;
        let port = c.nodes.nodes()[master].port();
        let done = c.nodes.fail_over(master)?;
        c.down = Some((master, Instant::now()));
        let promoted = c.nodes.nodes()[done.promoted].port();
        Ok(format!(
            "fail over the queue's master :{port} (SIGKILL; replica :{promoted} took over in \
             {} ms{})",
            done.took.as_millis(),
            if rejoin > Duration::from_millis(10) {
                format!(
                    "; the node down before rejoined first, {} ms",
                    rejoin.as_millis()
                )
            } else {
                String::new()
            }
        ))
    }

    /// Starts again a cluster node killed by a failover once it has been down long enough
    /// (or now, with `all`); returns a note of it.
    pub(crate) fn rejoin_due(&mut self, all: bool) -> anyhow::Result<Option<String>> {
        match self {
            Server::Cluster(c) => c.rejoin_due(all),
            _ => Ok(None),
        }
    }

    /// Restarts the server (Redis: `SIGKILL` and a new one on the same AOF; Postgres: a fast
    /// shutdown and start); returns when it answers again.
    pub(crate) fn restart(&mut self) -> anyhow::Result<()> {
        match self {
            Server::Sqlite | Server::Cluster(_) => Ok(()),
            Server::Redis(s) => s.restart(),
            Server::Postgres(s) => s.restart(),
        }
    }
}

impl Cluster {
    fn rejoin_due(&mut self, all: bool) -> anyhow::Result<Option<String>> {
        let Some((node, since)) = self.down else {
            return Ok(None);
        };
        if !all && since.elapsed() < CLUSTER_DOWN_FOR {
            return Ok(None);
        }
        let t = Instant::now();
        self.nodes.rejoin(node)?;
        self.down = None;
        Ok(Some(format!(
            "node :{} rejoined as a replica (in sync after {} ms)",
            self.nodes.nodes()[node].port(),
            t.elapsed().as_millis()
        )))
    }
}
