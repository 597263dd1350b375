//! Schedules at scale: how long a worker takes to fire many schedules due at the same second,
//! and (on Redis, with `--idle`) what an idle worker with schedules costs the server.
//!
//! ```text
//! cargo run --release -p kosh-jobs-benches --bin schedules -- --backend sqlite --schedules 1000
//! cargo run --release -p kosh-jobs-benches --bin schedules -- --backend redis --idle 120s
//! ```
//!
//! - burst: `--schedules` schedules (hourly) whose first tick is the same second; one worker
//!   fires them. Prints the time from the tick until every job is stored.
//! - idle (`--idle D`, Redis only): 10 hourly schedules none of which is due, one worker, for
//!   `D`: the server's commands per minute (`INFO commandstats`), everything the worker does
//!   in the background included.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use kosh_jobs::schedule::Schedule;
use kosh_jobs::{job, AnyBackend, Backend, Client, JobError, Timestamp, Worker};
use kosh_jobs_benches::store::{BackendKind, Bench};
use serde::{Deserialize, Serialize};

const USAGE: &str =
    "flags: --backend memory|sqlite|redis|postgres|sqlite://DIR|redis://URL|postgres://URL, \
--schedules N, --idle DURATION (e.g. 120s)";

/// The queue the fired jobs go to: no worker of this bench takes them.
const FIRED: &str = "sched-bench";

#[derive(Serialize, Deserialize, Default)]
struct Noop;

/// Registered so the worker can be built; it listens on a queue nothing is sent to.
#[job(queue = "sched-bench-idle")]
async fn noop(_job: Noop) -> Result<(), JobError> {
    Ok(())
}

#[derive(Serialize, Deserialize, Default)]
struct Fired;

#[job(queue = "sched-bench")]
async fn fired(_job: Fired) -> Result<(), JobError> {
    Ok(())
}

struct Args {
    backend: BackendKind,
    schedules: usize,
    idle: Option<Duration>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        backend: BackendKind::Memory,
        schedules: 1000,
        idle: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .with_context(|| format!("{flag} needs a value; {USAGE}"))
        };
        match flag.as_str() {
            "--backend" => args.backend = value()?.parse()?,
            "--schedules" => args.schedules = value()?.parse().context("--schedules")?,
            "--idle" => args.idle = Some(humantime::parse_duration(&value()?).context("--idle")?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown flag `{other}`; {USAGE}"),
        }
    }
    ensure!(args.schedules >= 1, "--schedules must be at least 1");
    Ok(args)
}

/// The start of a whole second at least `lead` from now.
fn whole_second_after(now: Timestamp, lead: Duration) -> Timestamp {
    let t = now + lead;
    Timestamp::from_millis(t.as_millis() - t.as_millis() % 1000 + 1000)
}

async fn stored(b: &AnyBackend) -> anyhow::Result<u64> {
    let counts = b.counts().await?;
    Ok(counts
        .iter()
        .filter(|c| c.queue == FIRED)
        .map(|c| c.scheduled + c.ready + c.running + c.completed)
        .sum())
}

async fn burst(bench: &Bench, n: usize) -> anyhow::Result<()> {
    let store = bench.fresh("sched-burst").await?;
    let b = store.backend.clone();
    let client = Client::new(b.clone());
    let tick = whole_second_after(b.clock().now(), Duration::from_secs(3));
    let started = Instant::now();
    for i in 0..n {
        let s = Schedule::every(format!("burst-{i:05}"), Duration::from_secs(3600))?.start_at(tick);
        client.upsert_schedule(s, Fired).await?;
    }
    let upserts = started.elapsed();
    ensure!(
        b.clock().now() < tick,
        "upserting {n} schedules took {upserts:?}, past their tick: use fewer"
    );
    let worker = Worker::builder(b.clone())
        .register::<Noop>()
        .build()?
        .spawn();
    // Wait for the tick on the wall clock, then for every job.
    let wait = tick.saturating_duration_since(b.clock().now());
    tokio::time::sleep(wait).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if stored(&b).await? >= n as u64 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the schedules did not all fire in 2 min"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let fired_in = b.clock().now().saturating_duration_since(tick);
    worker.shutdown().await?;
    println!(
        "{}: {n} schedules due at one second: all {n} jobs stored {} ms after the tick \
         ({} upserts in {} ms)",
        bench.kind().name(),
        fired_in.as_millis(),
        n,
        upserts.as_millis()
    );
    Ok(())
}

async fn idle(bench: &Bench, d: Duration) -> anyhow::Result<()> {
    ensure!(
        bench.command_stats().is_some(),
        "--idle counts the Redis server's commands: use --backend redis"
    );
    let store = bench.fresh("sched-idle").await?;
    let b = store.backend.clone();
    let client = Client::new(b.clone());
    for i in 0..10 {
        let s = Schedule::every(format!("idle-{i}"), Duration::from_secs(3600))?;
        client.upsert_schedule(s, Fired).await?;
    }
    let worker = Worker::builder(b.clone())
        .register::<Noop>()
        .build()?
        .spawn();
    // Let the worker settle (registration, first reads) before counting.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = bench.command_stats().context("commandstats")?;
    tokio::time::sleep(d).await;
    let after = bench.command_stats().context("commandstats")?;
    worker.shutdown().await?;
    let used = after.since(&before);
    let total: u64 = used.calls.values().sum();
    let per_minute = total as f64 / d.as_secs_f64() * 60.0;
    println!(
        "redis: one idle worker with 10 schedules, {} s: {total} commands, {per_minute:.1} per minute ({:?})",
        d.as_secs(),
        used.calls
    );
    if bench.redis_shared() {
        println!("(the server is shared: its counts include other clients)");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let bench = Bench::setup(&args.backend)?;
    burst(&bench, args.schedules).await?;
    if let Some(d) = args.idle {
        idle(&bench, d).await?;
    }
    Ok(())
}
