//! The network a `partition` fault cuts. Each worker slot gets a network namespace of its
//! own, `kosh-soak-PID-SLOT` (PID: the runner's), holding one end of a veth pair,
//! `ksoakNw`, at 10.231.A.B+2/30; the other end, `ksoakNh` at 10.231.A.B+1/30, stays in the
//! runner's namespace, where the server also listens on that address. A worker started in
//! the namespace (`ip netns exec`) has only that veth and its own loopback, so it reaches
//! the server over the veth only. A partition takes the host end down (packets are dropped,
//! nothing is refused, as when a cable is cut further away), then brings it back up.
//!
//! `N` is the first number whose host-end name is free: creating a link is atomic, so two
//! runs at once never share a name or a subnet. Namespaces left by a run that was killed
//! (their PID no longer a running soak) are removed when the next run starts; a run removes
//! its own at the end, when dropped, and on Ctrl-C ([`remove_created`]).

use std::io::ErrorKind;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context as _};

const NS_PREFIX: &str = "kosh-soak-";
const DEV_PREFIX: &str = "ksoak";
/// /30 blocks in 10.231.0.0/16.
const BLOCKS: u32 = 1 << 14;

/// The namespaces and host-end devices this process created and has not removed, for
/// [`remove_created`].
static CREATED: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// One slot's namespace and veth pair.
#[derive(Debug)]
pub(crate) struct Link {
    /// The namespace a worker of this slot runs in.
    pub(crate) ns: String,
    /// The host end of the veth pair (the one a partition takes down).
    dev: String,
    /// The host end's address: where the slot's workers find the server.
    pub(crate) host: Ipv4Addr,
    /// Set while the link is down: when to bring it back up.
    pub(crate) cut_until: Option<Instant>,
}

/// Every slot's link.
#[derive(Debug)]
pub(crate) struct Net {
    pub(crate) links: Vec<Link>,
}

/// Why this machine cannot make partitions, or `None` if it can (root, and `ip` present).
pub(crate) fn unavailable() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    // `Uid:  real  effective  saved  fs`
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1));
    if euid != Some("0") {
        return Some("partitions need root (they create network namespaces and veth pairs)".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!("`ip -V` failed ({})", o.status)),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            Some("partitions need the `ip` command (iproute2: `apt-get install iproute2`)".into())
        }
        Err(e) => Some(format!("cannot run `ip`: {e}")),
    }
}

impl Net {
    /// Removes what killed runs left, then makes `slots` namespaces and veth pairs, all up.
    pub(crate) fn create(slots: usize) -> anyhow::Result<Net> {
        for stale in remove_stale()? {
            println!("soak: removed network namespace {stale}, left by a run that ended early");
        }
        let me = std::process::id();
        // Dropped on an error: what was made so far goes.
        let mut net = Net { links: Vec::new() };
        let mut block = 0;
        for slot in 0..slots {
            let ns = format!("{NS_PREFIX}{me}-{slot}");
            ip(&["netns", "add", &ns])?;
            let dev = loop {
                if block >= BLOCKS {
                    let _ = ip(&["netns", "del", &ns]);
                    bail!("every veth name {DEV_PREFIX}0h..{DEV_PREFIX}{BLOCKS}h is taken");
                }
                let (dev, peer) = (
                    format!("{DEV_PREFIX}{block}h"),
                    format!("{DEV_PREFIX}{block}w"),
                );
                let made = ip(&[
                    "link", "add", &dev, "type", "veth", "peer", "name", &peer, "netns", &ns,
                ]);
                match made {
                    Ok(()) => break dev,
                    // Another run (or a leftover whose namespace still has a process) has it.
                    Err(e) if format!("{e:#}").contains("File exists") => block += 1,
                    Err(e) => {
                        let _ = ip(&["netns", "del", &ns]);
                        return Err(e);
                    }
                }
            };
            lock_created().push((ns.clone(), dev.clone()));
            let [a, b] = [(block >> 6) as u8, ((block & 63) * 4) as u8];
            let host = Ipv4Addr::new(10, 231, a, b + 1);
            let inside = Ipv4Addr::new(10, 231, a, b + 2);
            let peer = format!("{DEV_PREFIX}{block}w");
            net.links.push(Link {
                ns: ns.clone(),
                dev: dev.clone(),
                host,
                cut_until: None,
            });
            ip(&["addr", "add", &format!("{host}/30"), "dev", &dev])?;
            ip(&["link", "set", "dev", &dev, "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{inside}/30"),
                "dev",
                &peer,
            ])?;
            ip(&["-n", &ns, "link", "set", "dev", &peer, "up"])?;
            ip(&["-n", &ns, "link", "set", "dev", "lo", "up"])?;
            block += 1;
        }
        // Workers start with `ip netns exec`, which also needs to make a mount namespace:
        // find out now if it cannot, not from workers that exit at once.
        if let Some(link) = net.links.first() {
            ip(&["netns", "exec", &link.ns, "true"])?;
        }
        Ok(net)
    }

    /// Takes slot `slot`'s link down until `until`.
    pub(crate) fn cut(&mut self, slot: usize, until: Instant) -> anyhow::Result<()> {
        let link = &mut self.links[slot];
        ip(&["link", "set", "dev", &link.dev, "down"])?;
        link.cut_until = Some(until);
        Ok(())
    }

    /// Brings back up the links whose time has come (all of them with `all`); returns
    /// their slots.
    pub(crate) fn heal_due(&mut self, all: bool) -> anyhow::Result<Vec<usize>> {
        let now = Instant::now();
        let mut healed = Vec::new();
        for (slot, link) in self.links.iter_mut().enumerate() {
            if link.cut_until.is_some_and(|t| all || t <= now) {
                ip(&["link", "set", "dev", &link.dev, "up"])?;
                link.cut_until = None;
                healed.push(slot);
            }
        }
        Ok(healed)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for link in self.links.drain(..) {
            remove(&link.ns, &link.dev);
            lock_created().retain(|(ns, _)| *ns != link.ns);
        }
    }
}

/// Removes every namespace and veth pair this process made and still has (on Ctrl-C, when
/// nothing will be dropped).
pub(crate) fn remove_created() {
    for (ns, dev) in lock_created().drain(..) {
        remove(&ns, &dev);
    }
}

fn lock_created() -> std::sync::MutexGuard<'static, Vec<(String, String)>> {
    CREATED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Deletes the veth pair (at once, even if a process still holds the namespace) and the
/// namespace's name (the namespace itself goes with its last process).
fn remove(ns: &str, dev: &str) {
    for args in [&["link", "del", "dev", dev][..], &["netns", "del", ns]] {
        if let Err(e) = ip(args) {
            eprintln!("soak: cleaning up: {e:#}");
        }
    }
}

/// Removes the namespaces named by runs whose process is gone; returns their names. Their
/// veth pairs go with them (a veth pair goes when either end's namespace does).
fn remove_stale() -> anyhow::Result<Vec<String>> {
    let list = ip_out(&["netns", "list"])?;
    let mut removed = Vec::new();
    for line in list.lines() {
        // `NAME` or `NAME (id: N)`
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(NS_PREFIX)
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "soak" {
            continue; // a run still going
        }
        ip(&["netns", "del", name])?;
        removed.push(name.to_owned());
    }
    Ok(removed)
}

/// Runs `ip ARGS`; fails with what it printed.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    ip_out(args).map(drop)
}

fn ip_out(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "ip {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
