//! A private Redis Cluster for a test or bench run: `masters × (1 + replicas)` nodes, each a
//! [`RedisServer`] with `cluster-enabled yes` (and an append-only file, with
//! [`RedisCluster::start`]), joined by `redis-cli --cluster create`; killed when dropped.
//!
//! [`RedisCluster::fail_over`] kills a master (`SIGKILL`) and waits until one of its
//! replicas has taken its slots over; [`RedisCluster::rejoin`] starts the killed node again,
//! and it comes back as a replica of the node that replaced it.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::redis_server::{RedisServer, RedisServerOptions, INSTALL_HINT};
use crate::resp::{RedisAddr, Resp};

/// How long the cluster may take to form, or to fail over, beyond its node timeout.
const DEADLINE: Duration = Duration::from_secs(30);

/// The nodes of one cluster.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    node_timeout: Duration,
}

/// What [`RedisCluster::fail_over`] did.
#[derive(Clone, Copy, Debug)]
pub struct FailedOver {
    /// The index of the master killed.
    pub killed: usize,
    /// The index of the replica that took its slots over.
    pub promoted: usize,
    /// From the kill until every live node saw the cluster whole again.
    pub took: Duration,
}

impl RedisCluster {
    /// Starts `masters` masters with `replicas` replicas each, every node with an
    /// append-only file (`appendfsync always`) and `cluster-node-timeout` `node_timeout`,
    /// and waits until every node says the cluster is whole and every replica is in sync.
    pub fn start(
        masters: usize,
        replicas: usize,
        node_timeout: Duration,
    ) -> anyhow::Result<RedisCluster> {
        let node = RedisServer::options().aof();
        Self::start_with(masters, replicas, node, node_timeout)
    }

    /// Starts a cluster as [`RedisCluster::start`] does, each node started with `node` (no
    /// append-only file unless it asks for one).
    pub fn start_with(
        masters: usize,
        replicas: usize,
        node: RedisServerOptions,
        node_timeout: Duration,
    ) -> anyhow::Result<RedisCluster> {
        if masters < 3 {
            bail!("a redis cluster needs at least 3 masters, not {masters}");
        }
        let mut nodes = Vec::new();
        for _ in 0..masters * (1 + replicas) {
            nodes.push(
                node.clone()
                    .cluster_node(node_timeout)
                    .start()
                    .context("a cluster node")?,
            );
        }
        let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
        args.extend(nodes.iter().map(|s| format!("127.0.0.1:{}", s.port())));
        args.extend([
            "--cluster-replicas".into(),
            replicas.to_string(),
            "--cluster-yes".into(),
        ]);
        let out = Command::new("redis-cli")
            .args(&args)
            .output()
            .with_context(|| {
                format!("cannot run `redis-cli` (it comes with redis-server); {INSTALL_HINT}")
            })?;
        if !out.status.success() {
            bail!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let cluster = RedisCluster {
            nodes,
            node_timeout,
        };
        cluster.wait_whole(|c| {
            let all: Vec<usize> = (0..c.nodes.len()).collect();
            Ok(c.masters()?.len() == masters && c.replicas_in_sync(&all)?)
        })?;
        Ok(cluster)
    }

    /// A `redis+cluster://` URL that names every node as a seed, so the client finds the
    /// cluster while any one of them is down.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// The nodes, masters and replicas, in the order they were started.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The indexes of the running nodes that are masters now.
    pub fn masters(&self) -> anyhow::Result<Vec<usize>> {
        let mut out = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if !n.is_stopped() && role(n)?.first().is_some_and(|r| r == "master") {
                out.push(i);
            }
        }
        Ok(out)
    }

    /// The index of the running master that serves `key`'s hash slot.
    pub fn master_of(&self, key: &str) -> anyhow::Result<usize> {
        let live = self
            .nodes
            .iter()
            .find(|n| !n.is_stopped())
            .context("every node is down")?;
        let slot: u16 = command(live, &["CLUSTER", "KEYSLOT", key])?
            .parse()
            .context("CLUSTER KEYSLOT")?;
        for i in self.masters()? {
            let nodes = command(&self.nodes[i], &["CLUSTER", "NODES"])?;
            let mine = nodes.lines().find(|l| l.contains("myself"));
            if mine.is_some_and(|l| serves(l, slot)) {
                return Ok(i);
            }
        }
        bail!("no running master serves slot {slot}")
    }

    /// Kills master `i` (`SIGKILL`, so what it had not sent its replicas yet is gone) and
    /// waits until one of its replicas has been promoted and every running node sees the
    /// cluster whole again.
    pub fn fail_over(&mut self, i: usize) -> anyhow::Result<FailedOver> {
        let port = self.nodes[i].port().to_string();
        let replicas: Vec<usize> = (0..self.nodes.len())
            .filter(|&j| j != i && !self.nodes[j].is_stopped())
            .filter(|&j| {
                role(&self.nodes[j]).is_ok_and(|r| {
                    r.first().is_some_and(|x| x == "slave") && r.get(2) == Some(&port)
                })
            })
            .collect();
        if replicas.is_empty() {
            bail!("node {i} is not a master with a running replica");
        }
        let t = Instant::now();
        self.nodes[i].stop();
        let mut promoted = None;
        self.wait_whole(|c| {
            promoted = replicas.iter().copied().find(|&j| {
                role(&c.nodes[j]).is_ok_and(|r| r.first().is_some_and(|x| x == "master"))
            });
            Ok(promoted.is_some())
        })?;
        Ok(FailedOver {
            killed: i,
            promoted: promoted.context("no replica promoted")?,
            took: t.elapsed(),
        })
    }

    /// Starts node `i` again after [`RedisCluster::fail_over`] and waits until it is a
    /// replica in sync with its master.
    pub fn rejoin(&mut self, i: usize) -> anyhow::Result<()> {
        self.nodes[i].start_again()?;
        self.wait_whole(|c| c.replicas_in_sync(&[i]))
    }

    /// Whether each of `nodes` is a running replica whose link to its master is up.
    fn replicas_in_sync(&self, nodes: &[usize]) -> anyhow::Result<bool> {
        for &i in nodes {
            let n = &self.nodes[i];
            if n.is_stopped() || role(n)?.first().is_some_and(|r| r == "master") {
                continue;
            }
            let info = command(n, &["INFO", "replication"])?;
            if !info.contains("master_link_status:up") {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Waits until `done` holds and every running node says `cluster_state:ok`.
    fn wait_whole(
        &self,
        mut done: impl FnMut(&Self) -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + self.node_timeout * 3 + DEADLINE;
        let mut last = String::new();
        loop {
            let whole = self.nodes.iter().filter(|n| !n.is_stopped()).all(|n| {
                command(n, &["CLUSTER", "INFO"]).is_ok_and(|i| i.contains("cluster_state:ok"))
            });
            match done(self) {
                Ok(true) if whole => return Ok(()),
                Ok(_) => {}
                Err(e) => last = format!(" (last error: {e:#})"),
            }
            if Instant::now() > deadline {
                bail!("the redis cluster did not settle within the deadline{last}");
            }
            // Polling a condition with a deadline: the nodes gossip on their own time.
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `ROLE`, flattened: `master …` or `slave HOST PORT STATE OFFSET`.
fn role(node: &RedisServer) -> anyhow::Result<Vec<String>> {
    Ok(command(node, &["ROLE"])?
        .lines()
        .map(str::to_owned)
        .collect())
}

fn command(node: &RedisServer, args: &[&str]) -> anyhow::Result<String> {
    let addr = RedisAddr::parse(&node.url())?;
    Resp::connect(&addr, Duration::from_millis(500))?.command(args)
}

/// Whether a `CLUSTER NODES` line lists `slot` among its ranges.
fn serves(line: &str, slot: u16) -> bool {
    line.split_whitespace().skip(8).any(|range| {
        let (a, b) = range.split_once('-').unwrap_or((range, range));
        matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if (a..=b).contains(&slot))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_slot_ranges() {
        let line =
            "abc 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460 6000 [5999-<-x]";
        assert!(serves(line, 0));
        assert!(serves(line, 5460));
        assert!(serves(line, 6000));
        assert!(!serves(line, 5461));
        // A slot being imported or migrated is not served yet.
        assert!(!serves(line, 5999));
    }
}
