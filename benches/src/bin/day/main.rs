//! A day of the csv_upload app on a free hosted Redis (issue #21): how many requests the web
//! process and one worker send in a day that is idle except for some imports, each watched
//! live in the page.
//!
//! ```text
//! cargo build --release -p csv_upload -p kosh-jobs-benches
//! cargo run --release -p kosh-jobs-benches --bin day -- --idle 10m --imports 100
//! ```
//!
//! It starts a private `redis-server`, then `csv_upload serve` and `csv_upload worker` (the
//! binary built beside this runner, or `--app PATH`) as separate processes with the app's
//! default settings, the job store on that Redis and the app's tables in a SQLite file. A
//! page is open on the app all along, as `index.html` behaves: it listens to `/api/events`
//! and redraws (`GET /api/imports`, `GET /api/notifications`) after each burst of events.
//!
//! - **Idle**: over `--idle` (default 30 s; ten minutes covers every timer of an idle
//!   worker), the requests of each process.
//! - **Imports**: `--imports N` (default 3) uploads of a statement of `--rows` rows (default
//!   1,000), one after the other; each is counted from its upload until the page saw it
//!   complete, redrew, and neither process sent anything for 1.5 s.
//!
//! The app's defaults but one: the worker samples the metrics gauges every second
//! (`METRICS_SAMPLE_SECS=1`, `--sample-secs`) instead of 15 s. While the store is quiet the
//! sampler rests (a read every ten minutes on Redis) and samples once more an interval after
//! the worker gets a job: with a second, that sample falls within its import's count rather
//! than 15 s later, in the next import's or the idle window's. It costs the same.
//!
//! Requests are read from Redis's `MONITOR` feed and counted against the process owning the
//! connection; a script call is one request, whatever it runs inside (what hosted Redis
//! bills). The day is idle × 24 h plus the mean import × `--day-imports` (default 100).

mod app;
mod monitor;
mod procs;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use kosh_jobs_benches::commandstats::CommandStats;
use kosh_jobs_benches::redis_server::RedisServer;
use kosh_jobs_benches::resp::{RedisAddr, Resp};

use crate::app::{AppConfig, Page};
use crate::monitor::{Monitor, Tally};

struct Args {
    idle: Duration,
    imports: usize,
    rows: usize,
    day_imports: u64,
    app: Option<std::path::PathBuf>,
    max_day: Option<u64>,
    sample_secs: u64,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        idle: Duration::from_secs(30),
        imports: 3,
        rows: 1000,
        day_imports: 100,
        app: None,
        max_day: None,
        sample_secs: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--idle" => args.idle = humantime::parse_duration(&value()?)?,
            "--imports" => args.imports = value()?.parse()?,
            "--rows" => args.rows = value()?.parse()?,
            "--day-imports" => args.day_imports = value()?.parse()?,
            "--app" => args.app = Some(value()?.into()),
            "--max-day" => args.max_day = Some(value()?.parse()?),
            "--sample-secs" => args.sample_secs = value()?.parse()?,
            other => bail!(
                "unknown flag `{other}` (flags: --idle 30s, --imports N, --rows N, \
                 --day-imports N, --app PATH, --max-day N, --sample-secs N)"
            ),
        }
    }
    if args.imports == 0 || args.idle.is_zero() {
        bail!("--imports and --idle must be above zero");
    }
    Ok(args)
}

/// Neither process sent anything for this long: what it was doing is over (the worker's
/// metrics sample after an import included, one `--sample-secs` after it).
const QUIET: Duration = Duration::from_millis(1500);
/// The longest an import or a start-up may take.
const LIMIT: Duration = Duration::from_secs(120);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let binary = app::find_binary(args.app.clone())?;
    let server = RedisServer::start()?;
    let monitor = Monitor::start(server.port())?;
    let addr = RedisAddr::parse(&server.url())?;
    let mut probe = Resp::connect(&addr, Duration::from_secs(5))?;
    let mut stats = || -> anyhow::Result<CommandStats> {
        Ok(CommandStats::parse(
            &probe.command(&["INFO", "commandstats"])?,
        ))
    };
    let dir = tempfile::Builder::new().prefix("kosh-day-").tempdir()?;
    let bind = format!(
        "127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port()
    );
    let config = AppConfig {
        binary,
        dir: dir.path().to_path_buf(),
        jobs_url: server.url(),
        bind: bind.clone(),
        sample_secs: args.sample_secs,
    };

    // Start-up: the web process, the page, then the worker.
    let web = config.serve().await?;
    monitor.watch(web.pid(), "web");
    let mut page = Page::open(&bind).await?;
    let worker = config.worker()?;
    monitor.watch(worker.pid(), "worker");
    page.idle().await?;
    monitor.settle(Duration::from_secs(2), LIMIT).await?;
    let startup = monitor.tally();

    // Imports, one after the other.
    let mut imports = Tally::default();
    let started = Instant::now();
    for n in 0..args.imports {
        let before = monitor.tally();
        let job = page
            .upload(&format!("statement-{n}.csv"), statement(n, args.rows))
            .await?;
        let deadline = Instant::now() + LIMIT;
        loop {
            let e = tokio::time::timeout_at(deadline.into(), page.events.recv())
                .await
                .with_context(|| format!("import {n} did not finish within {LIMIT:?}"))?
                .context("the event stream ended")?;
            if e.job_id == job && matches!(e.kind.as_str(), "completed" | "failed") {
                if e.kind != "completed" {
                    bail!("import {n}'s job {job} {}", e.kind);
                }
                break;
            }
        }
        page.idle().await?;
        monitor.settle(QUIET, LIMIT).await?;
        let one = monitor.tally().since(&before);
        for (k, v) in one.calls {
            *imports.calls.entry(k).or_insert(0) += v;
        }
    }
    let import_time = started.elapsed();

    // Idle.
    monitor.settle(Duration::from_secs(2), LIMIT).await?;
    let (before, info_before) = (monitor.tally(), stats()?);
    tokio::time::sleep(args.idle).await;
    let (idle, info_idle) = (
        monitor.tally().since(&before),
        stats()?.since(&info_before).without_probes(),
    );

    // Every import complete, each row imported (read after the counts).
    let list = page.get("/api/imports?limit=1000").await?;
    let items = list["items"].as_array().context("imports")?;
    let done = items
        .iter()
        .filter(|i| i["state"] == "completed" && i["rows_imported"] == args.rows as u64)
        .count();
    if done != args.imports.min(50) {
        bail!("{done} of the latest imports completed with every row: {list}");
    }
    worker.stop()?;
    web.stop()?;
    let foreign = monitor.foreign();

    report(&args, &startup, &imports, import_time, &idle, &info_idle)?;
    println!("(requests of other connections, the runner's probes: {foreign})");
    if let Some(max) = args.max_day {
        let day = Day::of(&args, &imports, &idle).total();
        if day > max {
            bail!("the day's {day} requests are over --max-day {max}");
        }
    }
    Ok(())
}

/// A statement of `rows` rows, different for each `n` (the app refuses the same file twice).
fn statement(n: usize, rows: usize) -> Vec<u8> {
    let mut s = String::from("Date,Description,Amount\n");
    for i in 1..=rows {
        s.push_str(&format!(
            "2026-11-{:02},Statement {n} payment {i},-{}.{:02}\n",
            1 + i % 28,
            i,
            i % 100
        ));
    }
    s.into_bytes()
}

/// What a request is for, in the issue's breakdown.
fn kind(what: &str) -> &'static str {
    match what {
        "push" => "enqueue",
        "reserve" | "finish" | "heartbeat" | "release" | "recover" | "due" | "blpop" | "rpush" => {
            "reserve/finish"
        }
        "progress" => "progress",
        "publish" | "subscribe" | "unsubscribe" | "psubscribe" | "punsubscribe" => "events/publish",
        "get" | "counts" | "list" | "flows" | "running" | "throughput" | "search" | "groups"
        | "worker" => "status reads",
        _ => "other",
    }
}

const KINDS: &[&str] = &[
    "enqueue",
    "reserve/finish",
    "progress",
    "events/publish",
    "status reads",
    "other",
];

/// The day: idle requests per process scaled to 24 h, and the imports' by kind scaled to
/// the day's imports.
struct Day {
    idle_worker: f64,
    idle_web: f64,
    imports: BTreeMap<&'static str, f64>,
}

impl Day {
    fn of(args: &Args, imports: &Tally, idle: &Tally) -> Day {
        let per_day = 86_400.0 / args.idle.as_secs_f64();
        let scale = args.day_imports as f64 / args.imports as f64;
        let mut by = BTreeMap::new();
        for ((_, what), n) in &imports.calls {
            *by.entry(kind(what)).or_insert(0.0) += *n as f64 * scale;
        }
        Day {
            idle_worker: idle.requests(Some("worker")) as f64 * per_day,
            idle_web: idle.requests(Some("web")) as f64 * per_day,
            imports: by,
        }
    }

    fn total(&self) -> u64 {
        (self.idle_worker + self.idle_web + self.imports.values().sum::<f64>()).round() as u64
    }
}

fn report(
    args: &Args,
    startup: &Tally,
    imports: &Tally,
    import_time: Duration,
    idle: &Tally,
    info_idle: &CommandStats,
) -> anyhow::Result<()> {
    let n = args.imports as f64;
    let mins = args.idle.as_secs_f64() / 60.0;
    println!(
        "csv_upload on Redis: `csv_upload serve` + `csv_upload worker`, a page open on /api/events"
    );
    println!(
        "start-up (once a deploy): web {} [{}], worker {} [{}]",
        startup.requests(Some("web")),
        startup.detail("web"),
        startup.requests(Some("worker")),
        startup.detail("worker")
    );
    println!(
        "idle {:?}: worker {} requests ({:.2} a minute) [{}], web {} ({:.2} a minute) [{}]; \
         Redis ran {} commands including those inside scripts",
        args.idle,
        idle.requests(Some("worker")),
        idle.requests(Some("worker")) as f64 / mins,
        idle.detail("worker"),
        idle.requests(Some("web")),
        idle.requests(Some("web")) as f64 / mins,
        idle.detail("web"),
        info_idle.total(),
    );
    println!(
        "imports: {} of {} rows in {:.1} s, every row imported; per import {:.2} requests: \
         web {:.2} [{}], worker {:.2} [{}] (totals over all imports)",
        args.imports,
        args.rows,
        import_time.as_secs_f64(),
        imports.requests(None) as f64 / n,
        imports.requests(Some("web")) as f64 / n,
        imports.detail("web"),
        imports.requests(Some("worker")) as f64 / n,
        imports.detail("worker"),
    );
    let day = Day::of(args, imports, idle);
    println!(
        "\nthe day: idle 24 h + {} imports of {} rows",
        args.day_imports, args.rows
    );
    println!("| | requests a day |\n|---|---:|");
    println!("| idle, worker | {:.0} |", day.idle_worker);
    println!("| idle, web | {:.0} |", day.idle_web);
    for k in KINDS {
        let v = day.imports.get(k).copied().unwrap_or(0.0);
        println!(
            "| imports: {k} ({:.2} per import) | {v:.0} |",
            v / args.day_imports as f64
        );
    }
    println!("| **total** | **{}** |", day.total());
    if args.idle < Duration::from_secs(600) {
        println!(
            "(an idle window under 10 minutes misses some of the worker's timers, which run \
             every 5 and 10 minutes: use --idle 10m or more for the day's figure)"
        );
    }
    Ok(())
}
