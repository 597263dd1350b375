//! Which process holds a TCP connection: the local port of a Redis client, as `MONITOR` shows
//! it, mapped to the process that owns the socket (Linux `/proc`), so each request is counted
//! against the web process or the worker.

use std::collections::HashMap;
use std::path::Path;

/// The processes whose connections are told apart, by name.
#[derive(Debug, Default)]
pub(crate) struct Owners {
    procs: Vec<(u32, &'static str)>,
    by_port: HashMap<u16, &'static str>,
}

impl Owners {
    /// Names connections of process `pid` `role`.
    pub(crate) fn add(&mut self, pid: u32, role: &'static str) {
        self.procs.push((pid, role));
    }

    /// The role of the process whose socket has local port `port` on this machine, looked up
    /// again when the port is not known yet (a new connection); `None` if no watched process
    /// has it (the runner's own probes).
    pub(crate) fn of_port(&mut self, port: u16) -> Option<&'static str> {
        if let Some(r) = self.by_port.get(&port) {
            return Some(r);
        }
        self.rescan();
        self.by_port.get(&port).copied()
    }

    fn rescan(&mut self) {
        let inodes = socket_ports();
        for &(pid, role) in &self.procs {
            let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
                continue;
            };
            for fd in fds.flatten() {
                let Ok(target) = std::fs::read_link(fd.path()) else {
                    continue;
                };
                if let Some(port) = socket_inode(&target).and_then(|i| inodes.get(&i)) {
                    self.by_port.insert(*port, role);
                }
            }
        }
    }
}

/// `socket:[12345]` → 12345.
fn socket_inode(target: &Path) -> Option<u64> {
    let s = target.to_str()?;
    s.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// Socket inode → local port, for every TCP socket of the machine (IPv4 and IPv6).
fn socket_ports() -> HashMap<u64, u16> {
    let mut out = HashMap::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(inode)) = (cols.get(1), cols.get(9)) else {
                continue;
            };
            let port = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if let (Some(port), Ok(inode)) = (port, inode.parse()) {
                out.insert(inode, port);
            }
        }
    }
    out
}
