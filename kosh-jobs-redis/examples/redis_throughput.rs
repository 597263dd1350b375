//! Throughput of the Redis backend: batch enqueue, then processing no-op jobs with one worker
//! at concurrency 64; prints jobs/s and the Redis commands used per job (`INFO commandstats`).
//!
//! ```text
//! cargo run --release -p kosh-jobs-redis --example redis_throughput -- --jobs 200000
//! cargo run --release -p kosh-jobs-redis --example redis_throughput -- --url redis://127.0.0.1:6400
//! cargo run --release -p kosh-jobs-redis --example redis_throughput -- --idle 120
//! ```
//!
//! Without `--url` it starts its own `redis-server` on a free port (no persistence) and stops
//! it at the end. With `--url`, use a server of its own: the command counts are server-wide.
//! `--idle SECONDS` instead measures an idle worker on an empty queue for that long, in real
//! time, and prints its commands per minute. `--no-retention` keeps every completed job (to
//! see what the default retention costs).

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures_util::future::try_join_all;
use kosh_jobs_core::{AnyBackend, Client, Handler, Job, JobContext, JobError, Worker};
use kosh_jobs_redis::{RedisBackend, RedisOptions};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Noop {
    n: u64,
}

impl Job for Noop {
    type Output = ();
    const NAME: &'static str = "noop";
    const QUEUE: &'static str = "bench";
}

#[derive(Clone)]
struct Tally {
    runs: Arc<Vec<AtomicU64>>,
    done: Arc<AtomicU64>,
    all_done: Arc<tokio::sync::Notify>,
    total: u64,
}

impl Handler<Tally> for Noop {
    async fn run(self, ctx: JobContext<Tally>) -> Result<(), JobError> {
        let t = ctx.state();
        if let Some(r) = t.runs.get(self.n as usize) {
            r.fetch_add(1, Ordering::Relaxed);
        }
        if t.done.fetch_add(1, Ordering::AcqRel) + 1 == t.total {
            t.all_done.notify_one();
        }
        Ok(())
    }
}

struct Args {
    url: Option<String>,
    jobs: u64,
    concurrency: usize,
    batch: usize,
    producers: usize,
    idle: Option<u64>,
    no_retention: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        url: None,
        jobs: 200_000,
        concurrency: 64,
        batch: 1_000,
        producers: 4,
        idle: None,
        no_retention: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => args.url = Some(value()?),
            "--jobs" => args.jobs = value()?.parse()?,
            "--concurrency" => args.concurrency = value()?.parse()?,
            "--batch" => args.batch = value()?.parse()?,
            "--producers" => args.producers = value()?.parse()?,
            "--idle" => args.idle = Some(value()?.parse()?),
            "--no-retention" => args.no_retention = true,
            other => bail!(
                "unknown flag `{other}` (flags: --url URL, --jobs N, --concurrency N, --batch N, --producers N, --idle SECONDS, --no-retention)"
            ),
        }
    }
    Ok(args)
}

/// A `redis-server` of our own, stopped on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start() -> anyhow::Result<Server> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .spawn()
            .context("redis-server not found: install it with `apt-get install redis-server` or pass --url")?;
        let server = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        let client = redis::Client::open(server.url())?;
        loop {
            if let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(200)) {
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    return Ok(server);
                }
            }
            if Instant::now() > deadline {
                bail!("redis-server did not start on port {port}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Calls per command, from `INFO commandstats`.
fn command_stats(url: &str) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut c = redis::Client::open(url)?.get_connection()?;
    let info: String = redis::cmd("INFO").arg("commandstats").query(&mut c)?;
    let mut out = BTreeMap::new();
    for line in info.lines() {
        let Some(rest) = line.strip_prefix("cmdstat_") else {
            continue;
        };
        let Some((name, fields)) = rest.split_once(':') else {
            continue;
        };
        if let Some(calls) = fields.split(',').find_map(|f| f.strip_prefix("calls=")) {
            out.insert(name.to_owned(), calls.parse()?);
        }
    }
    Ok(out)
}

/// Commands between two snapshots, leaving out the ones this program sends to measure.
fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "info" | "ping" | "hello"))
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

fn total(d: &BTreeMap<String, u64>) -> u64 {
    d.values().sum()
}

/// Commands sent over the network (the rest ran inside scripts).
fn sent(d: &BTreeMap<String, u64>) -> u64 {
    [
        "evalsha",
        "eval",
        "blpop",
        "hgetall",
        "hget",
        "incrby",
        "config|get",
        "client|unblock",
    ]
    .iter()
    .filter_map(|k| d.get(*k))
    .sum::<u64>()
}

/// CPU seconds used so far by redis-server (user + system), from `INFO cpu`.
fn redis_cpu(url: &str) -> anyhow::Result<f64> {
    let mut c = redis::Client::open(url)?.get_connection()?;
    let info: String = redis::cmd("INFO").arg("cpu").query(&mut c)?;
    let mut sum = 0.0;
    for line in info.lines() {
        if let Some(v) = line
            .strip_prefix("used_cpu_user:")
            .or_else(|| line.strip_prefix("used_cpu_sys:"))
        {
            sum += v.trim().parse::<f64>()?;
        }
    }
    Ok(sum)
}

/// CPU seconds used so far by this process (user + system), from `/proc/self/stat`.
fn own_cpu() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of the whole line (utime, stime) are 12 and 13 after the `)`.
    let ticks = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Wall and CPU time of one phase.
struct Phase {
    wall: Duration,
    redis_cpu: f64,
    own_cpu: f64,
    cmds: BTreeMap<String, u64>,
}

impl Phase {
    fn print(&self, what: &str, jobs: u64) {
        let n = jobs.max(1) as f64;
        println!(
            "{what}: {:.0} jobs/s ({:.2?} wall); CPU per job: redis-server {:.2} µs, this process {:.2} µs; redis commands per job: {:.4} sent, {:.4} with those inside scripts",
            jobs as f64 / self.wall.as_secs_f64(),
            self.wall,
            self.redis_cpu * 1e6 / n,
            self.own_cpu * 1e6 / n,
            sent(&self.cmds) as f64 / n,
            total(&self.cmds) as f64 / n,
        );
        println!("  commands: {:?}", self.cmds);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let server = match &args.url {
        Some(_) => None,
        None => Some(Server::start()?),
    };
    let url = match (&args.url, &server) {
        (Some(u), _) => u.clone(),
        (None, Some(s)) => s.url(),
        (None, None) => unreachable!("a server was started"),
    };
    let prefix = format!("bench-{}", std::process::id());
    let mut options = RedisOptions::builder(url.as_str()).prefix(prefix);
    if args.no_retention {
        options = options.keep_completed_for(None).keep_completed_max(None);
    }
    let backend = RedisBackend::connect_with(options.build()?).await?;
    let backend: AnyBackend = AnyBackend::new(backend);

    if let Some(secs) = args.idle {
        return idle(backend, &url, secs).await;
    }

    // Batch enqueue: `producers` concurrent callers, `batch` jobs per call.
    let client = Client::new(backend.clone());
    let before = command_stats(&url)?;
    let (rc0, oc0) = (redis_cpu(&url)?, own_cpu());
    let start = Instant::now();
    let batches: Vec<(u64, u64)> = (0..args.jobs)
        .step_by(args.batch.max(1))
        .map(|s| (s, (s + args.batch as u64).min(args.jobs)))
        .collect();
    let per_producer = batches.len().div_ceil(args.producers.max(1)).max(1);
    let producers = batches.chunks(per_producer).map(|chunk| {
        let client = client.clone();
        let chunk = chunk.to_vec();
        async move {
            for (s, e) in chunk {
                client.enqueue_batch((s..e).map(|n| Noop { n })).await?;
            }
            Ok::<_, kosh_jobs_core::Error>(())
        }
    });
    try_join_all(producers).await?;
    let enqueue = Phase {
        wall: start.elapsed(),
        redis_cpu: redis_cpu(&url)? - rc0,
        own_cpu: own_cpu() - oc0,
        cmds: delta(&before, &command_stats(&url)?),
    };

    // Processing: one worker, `concurrency` jobs in flight.
    let tally = Tally {
        runs: Arc::new((0..args.jobs).map(|_| AtomicU64::new(0)).collect()),
        done: Arc::new(AtomicU64::new(0)),
        all_done: Arc::new(tokio::sync::Notify::new()),
        total: args.jobs,
    };
    let before = command_stats(&url)?;
    let (rc0, oc0) = (redis_cpu(&url)?, own_cpu());
    let start = Instant::now();
    let worker = Worker::builder(backend.clone())
        .state(tally.clone())
        .register::<Noop>()
        .concurrency(args.concurrency)
        .build()?
        .spawn();
    if args.jobs > 0 {
        tally.all_done.notified().await;
    }
    // Every completion is stored in Redis before the worker returns.
    let stats = worker.shutdown().await?;
    let process = Phase {
        wall: start.elapsed(),
        redis_cpu: redis_cpu(&url)? - rc0,
        own_cpu: own_cpu() - oc0,
        cmds: delta(&before, &command_stats(&url)?),
    };

    let bad: Vec<_> = tally
        .runs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.load(Ordering::Relaxed) != 1)
        .take(5)
        .map(|(i, r)| (i, r.load(Ordering::Relaxed)))
        .collect();
    if !bad.is_empty() || stats.completed != args.jobs {
        bail!(
            "not every job ran exactly once: completed {} of {}, e.g. (job, runs) {bad:?}",
            stats.completed,
            args.jobs
        );
    }
    println!(
        "backend=redis jobs={} concurrency={} batch={} producers={}",
        args.jobs, args.concurrency, args.batch, args.producers
    );
    enqueue.print("batch enqueue", args.jobs);
    process.print("processing   ", args.jobs);
    println!("every job ran exactly once");
    Ok(())
}

/// An idle worker on an empty queue, in real time: commands per minute.
async fn idle(backend: AnyBackend, url: &str, secs: u64) -> anyhow::Result<()> {
    let tally = Tally {
        runs: Arc::new(Vec::new()),
        done: Arc::new(AtomicU64::new(0)),
        all_done: Arc::new(tokio::sync::Notify::new()),
        total: u64::MAX,
    };
    let worker = Worker::builder(backend)
        .state(tally)
        .register::<Noop>()
        .build()?
        .spawn();
    // Let the worker start up (first recovery, first reserve) before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = command_stats(url)?;
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let d = delta(&before, &command_stats(url)?);
    worker.shutdown().await?;
    println!(
        "idle worker: {} requests in {secs} s = {:.1} per minute ({} commands run by Redis including those inside scripts) {:?}",
        sent(&d),
        sent(&d) as f64 * 60.0 / secs as f64,
        total(&d),
        d
    );
    Ok(())
}
