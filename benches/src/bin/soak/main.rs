//! The chaos soak: a steady stream of jobs through several worker processes while faults
//! are injected at random intervals from a seed, then a check that nothing was lost or
//! completed twice, from an execution log kept outside the system under test.
//!
//! ```text
//! cargo run --release -p kosh-jobs-benches --bin soak -- --backend redis --duration 60s
//! ```
//!
//! Flags: `--backend sqlite|redis|cluster|postgres` (default sqlite), `--duration` (default 60s),
//! `--seed N` (default random, printed), `--workers N` (3), `--concurrency N` per worker (8),
//! `--lease` (3s), `--rate` jobs/s (50), `--fault-every MIN..MAX` (2s..6s), `--faults
//! kill,stop,restart,partition,failover` (all that work: `partition` needs a single server,
//! root and `ip`; `failover` the cluster),
//! `--drain` (60s), `--one-attempt` (jobs with one attempt allowed, per mille; 45), `--keep`
//! (keep the execution logs).
//! It exits non-zero if any must-be-zero figure of the report is not zero.
//!
//! Modules: `producer` enqueues, `pool` runs the worker processes (this binary again, in
//! the `child` role, running `jobs`), `faults` injects faults, `ledger` reads the execution
//! logs and `check` compares them with the store and prints the report; `net` makes the
//! network namespaces that partitions cut.

mod check;
mod child;
mod faults;
mod jobs;
mod ledger;
mod net;
mod pool;
mod producer;
mod server;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use kosh_jobs::Client;
use tokio::sync::oneshot;

use child::ChildArgs;
use faults::Kinds;
use pool::Slot;
use server::{Kind, Server};

const USAGE: &str = "flags: --backend sqlite|redis|cluster|postgres, --duration 60s, --seed N, \
--workers N, --concurrency N, --lease 3s, --rate JOBS_PER_S, --fault-every 2s..6s, \
--faults kill,stop,restart,partition,failover, --drain 60s, --one-attempt PER_MILLE (45), \
--keep (keep the logs and the store's files)";

struct Args {
    backend: Kind,
    duration: Duration,
    seed: Option<u64>,
    workers: usize,
    concurrency: usize,
    lease: Duration,
    rate: u32,
    fault_min: Duration,
    fault_max: Duration,
    drain: Duration,
    /// `None`: every kind that works with this backend on this machine.
    faults: Option<Kinds>,
    keep: bool,
    /// Jobs with one attempt allowed, per mille.
    one_attempt: u32,
    /// Set in the worker role.
    child: Option<ChildArgs>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        backend: Kind::Sqlite,
        duration: Duration::from_secs(60),
        seed: None,
        workers: 3,
        concurrency: 8,
        lease: Duration::from_secs(3),
        rate: 50,
        fault_min: Duration::from_secs(2),
        fault_max: Duration::from_secs(6),
        drain: Duration::from_secs(60),
        faults: None,
        keep: false,
        one_attempt: 45,
        child: None,
    };
    let (mut child, mut url, mut log) = (false, None, None);
    let mut it = std::env::args().skip(1);
    let dur = |v: String| humantime::parse_duration(&v).with_context(|| format!("`{v}`"));
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .with_context(|| format!("{flag} needs a value; {USAGE}"))
        };
        match flag.as_str() {
            "--backend" => a.backend = value()?.parse()?,
            "--duration" => a.duration = dur(value()?)?,
            "--seed" => a.seed = Some(value()?.parse().context("--seed")?),
            "--workers" => a.workers = value()?.parse().context("--workers")?,
            "--concurrency" => a.concurrency = value()?.parse().context("--concurrency")?,
            "--lease" => a.lease = dur(value()?)?,
            "--lease-ms" => a.lease = Duration::from_millis(value()?.parse()?),
            "--rate" => a.rate = value()?.parse().context("--rate")?,
            "--fault-every" => {
                let v = value()?;
                let (lo, hi) = v
                    .split_once("..")
                    .with_context(|| format!("--fault-every MIN..MAX, not `{v}`"))?;
                (a.fault_min, a.fault_max) = (dur(lo.into())?, dur(hi.into())?);
            }
            "--drain" => a.drain = dur(value()?)?,
            "--faults" => a.faults = Some(value()?.parse()?),
            "--keep" => a.keep = true,
            "--one-attempt" => {
                a.one_attempt = value()?.parse().context("--one-attempt")?;
                if a.one_attempt > 1000 {
                    bail!("--one-attempt is per mille: at most 1000");
                }
            }
            "--child" => child = true,
            "--url" => url = Some(value()?),
            "--log" => log = Some(PathBuf::from(value()?)),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown flag `{other}`; {USAGE}"),
        }
    }
    if a.workers == 0 || a.concurrency == 0 {
        bail!("--workers and --concurrency must be at least 1");
    }
    if child {
        a.child = Some(ChildArgs {
            url: url.context("--child needs --url")?,
            log: log.context("--child needs --log")?,
            lease: a.lease,
            concurrency: a.concurrency,
        });
    }
    Ok(a)
}

/// The fault kinds of the run: `--faults` as given (failing if a partition cannot be had),
/// or every kind that works here, with a note when partitions are left out.
fn fault_kinds(args: &Args) -> anyhow::Result<Kinds> {
    let cut_off = args.backend.partitionable();
    let cluster = args.backend == Kind::Cluster;
    if let Some(k) = args.faults {
        if k.failover && !cluster {
            bail!("--faults failover: only the Redis Cluster (--backend cluster) fails over");
        }
        if k.restart && cluster {
            bail!("--faults restart: the cluster's fault is `failover`, not `restart`");
        }
        if k.partition {
            if let Some(why) = cut_off {
                bail!("--faults partition: {why}");
            }
            if let Some(why) = net::unavailable() {
                bail!(
                    "--faults partition: {why}; leave `partition` out of --faults to run without"
                );
            }
        }
        return Ok(k);
    }
    let mut k: Kinds = if cluster {
        "kill,stop,failover"
    } else {
        "kill,stop,restart"
    }
    .parse()?;
    match cut_off {
        None => match net::unavailable() {
            None => k.partition = true,
            Some(why) => println!("soak: no partitions in this run: {why}"),
        },
        Some(why) if cluster => println!("soak: no partitions in this run: {why}"),
        Some(_) => {}
    }
    Ok(k)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    if let Some(c) = args.child {
        return child::run(c).await;
    }
    let mut kinds = fault_kinds(&args)?;
    // The namespaces go on Ctrl-C too (nothing is dropped then). The workers see their
    // standard input close and stop; the servers' watchdogs stop the servers.
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            net::remove_created();
            eprintln!("soak: interrupted");
            std::process::exit(130);
        }
    });
    let net = if kinds.partition {
        match net::Net::create(args.workers) {
            Ok(n) => Some(n),
            Err(e) if args.faults.is_none() => {
                println!("soak: no partitions in this run: {e:#}");
                kinds.partition = false;
                None
            }
            Err(e) => return Err(e.context("--faults partition: making the network")),
        }
    } else {
        None
    };
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
    let head = format!(
        "soak: backend {}, seed {seed}, {} s, {} workers × {} slots, lease {} ms, {} jobs/s, \
         a fault every {}..{} ms ({kinds})",
        args.backend.name(),
        args.duration.as_secs_f64(),
        args.workers,
        args.concurrency,
        args.lease.as_millis(),
        args.rate,
        args.fault_min.as_millis(),
        args.fault_max.as_millis(),
    );
    println!("{head}");
    let dir = tempfile::Builder::new().prefix("kosh-soak-").tempdir()?;
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs)?;
    let hosts: Vec<IpAddr> = net
        .iter()
        .flat_map(|n| n.links.iter().map(|l| IpAddr::V4(l.host)))
        .collect();
    let (server, url) = Server::start(args.backend, dir.path(), &hosts)?;
    let slots = (0..args.workers)
        .map(|i| match &net {
            Some(n) => Slot {
                url: server.url_on(hosts[i]).unwrap_or_else(|| url.clone()),
                netns: Some(n.links[i].ns.clone()),
            },
            None => Slot {
                url: url.clone(),
                netns: None,
            },
        })
        .collect();
    // Opening the store here first also creates its schema before the workers start.
    let client = Client::new(
        kosh_jobs::connect(&url)
            .await
            .context("opening the store")?,
    );
    let template = ChildArgs {
        url,
        log: PathBuf::new(),
        lease: args.lease,
        concurrency: args.concurrency,
    };
    let pool = pool::Pool::start(template, logs.clone(), slots, net)?;

    let started = Instant::now();
    let (stop_producer, rx) = oneshot::channel();
    let producer = tokio::spawn(producer::produce(
        client.clone(),
        seed,
        args.rate,
        args.lease,
        args.one_attempt,
        rx,
    ));
    let plan = faults::Plan {
        seed,
        min_gap: args.fault_min,
        max_gap: args.fault_max,
        lease: args.lease,
        kinds,
    };
    let (stop_faults, rx) = oneshot::channel();
    let injector = tokio::spawn(faults::inject(plan, pool, server, started, rx));
    tokio::time::sleep(args.duration).await;
    let _ = stop_producer.send(());
    let produced = producer.await?;
    let _ = stop_faults.send(());
    let (mut pool, server, faults) = injector.await??;
    println!(
        "faults stopped at {:.1} s; draining (at most {} s)",
        started.elapsed().as_secs_f64(),
        args.drain.as_secs()
    );
    let drained = drain(&client, &mut pool, args.drain).await?;
    let killed = tokio::task::block_in_place(|| pool.shutdown(Duration::from_secs(15)))?;

    let ledger = ledger::Ledger::read(&logs)?;
    let figures = check::check(&client, &produced, &ledger, &faults).await?;
    print!(
        "{}",
        check::report(&head, &produced, &faults, &ledger, &figures)
    );
    println!(
        "drain: {}; worker processes started: {}; killed at the end (no graceful stop): {:?}",
        match drained {
            Some(d) => format!("done in {} ms", d.as_millis()),
            None => "NOT done within the bound".into(),
        },
        pool.started(),
        killed
    );
    for e in &pool.unexpected_exits {
        println!("  {e}");
    }
    drop(server);
    if args.keep {
        println!("logs and store files kept in {}", dir.keep().display());
    }
    let violations = figures.violations(&produced);
    if !violations.is_empty() {
        let names: Vec<_> = violations
            .iter()
            .map(|(n, v)| format!("{n}: {}", v.len()))
            .collect();
        bail!("soak FAILED (seed {seed}): {}", names.join(", "));
    }
    println!("soak passed (seed {seed})");
    Ok(())
}

/// Waits until no job is scheduled, ready or running, replacing workers that exit, for at
/// most `bound`; returns how long it took, or `None` if it did not happen.
async fn drain(
    client: &Client,
    pool: &mut pool::Pool,
    bound: Duration,
) -> anyhow::Result<Option<Duration>> {
    let t = Instant::now();
    loop {
        pool.replace_exited()?;
        let open: u64 = match client.counts().await {
            Ok(counts) => counts
                .iter()
                .map(|c| c.scheduled + c.ready + c.running)
                .sum(),
            Err(e) => {
                eprintln!("soak: counts during the drain: {e}");
                u64::MAX
            }
        };
        if open == 0 {
            return Ok(Some(t.elapsed()));
        }
        if t.elapsed() > bound {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
