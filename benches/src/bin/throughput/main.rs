//! Throughput runner: larger runs than criterion's, on any backend, each checking that every
//! job ran exactly once (a run that finds otherwise exits non-zero).
//!
//! ```text
//! cargo run --release -p kosh-jobs-benches --bin throughput -- \
//!     --backend sqlite --jobs 100000 --concurrency 1,16,64 --scenario all
//! ```
//!
//! Scenarios (`--scenario`, several separated by commas, default `all`):
//!
//! - `noop`: a worker runs while one task enqueues the jobs in batches; processing is end to
//!   end, from the first enqueue to the last job run;
//! - `backlog`: all jobs enqueued first (batched enqueue rate), then drained;
//! - `sleep10`: a backlog of jobs that each sleep 10 ms (`--sleep-jobs`, default
//!   200 × concurrency), to show how throughput scales with concurrency;
//! - `multiprocess`: a backlog drained by two worker processes (this one and a copy of it);
//! - `latency`: pickup latency on an idle queue, enqueue call → handler start, p50/p99 of
//!   `--samples` jobs (default 200) enqueued one at a time;
//! - `enqueue`: single awaited enqueues from one caller (`--single-jobs`, default
//!   min(jobs, 20,000));
//! - `concurrent`: single enqueues from `--tasks` concurrent tasks (default 1,000, a busy web
//!   process), each enqueuing one job, round after round until `--single-jobs` (default
//!   min(jobs, 100,000)) are stored; no worker. `--no-coalesce` turns the Redis backend's
//!   coalescing of such enqueues off, to compare;
//! - `rate`: a backlog of 3 × `--rate-limit` jobs (default 1,000) drained under a rate limit
//!   of `--rate-limit` starts per second (issue #18); the rate given is the steady one, after
//!   the first window's jobs start at once, and the note says how close it is to the limit;
//! - `groups`: the `backlog` jobs spread over `--groups` groups (default 1,000) with one
//!   running per group, drained right after the same jobs without groups; the note gives the
//!   grouped rate as a share of the ungrouped one (issue #18).
//!
//! Each result line also gives the peak RSS of the process during that scenario and, for
//! Redis, the commands sent per job (from `INFO commandstats`). `--table` ends with the
//! results as Markdown table rows.

mod multiprocess;
mod report;
mod scenarios;

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use kosh_jobs_benches::rss;
use kosh_jobs_benches::store::{BackendKind, Bench};

use report::Row;

const SCENARIOS: [&str; 9] = [
    "enqueue",
    "concurrent",
    "noop",
    "backlog",
    "sleep10",
    "latency",
    "multiprocess",
    "rate",
    "groups",
];

const USAGE: &str =
    "flags: --backend memory|sqlite|redis|postgres|sqlite://DIR|redis://URL|postgres://URL, \
--scenario all|enqueue|concurrent|noop|backlog|sleep10|latency|multiprocess|rate|groups \
(comma-separated), --jobs N, --concurrency N[,N…], --batch N, --sleep-jobs N, --samples N, \
--single-jobs N, --tasks N, --rate-limit N, --groups N, --no-coalesce, --table";

/// The command line.
pub(crate) struct Args {
    backend: BackendKind,
    scenarios: Vec<&'static str>,
    pub(crate) jobs: u64,
    concurrency: Vec<usize>,
    pub(crate) batch: usize,
    pub(crate) sleep_jobs: Option<u64>,
    pub(crate) samples: u64,
    pub(crate) single_jobs: Option<u64>,
    /// `concurrent`: tasks enqueuing at once.
    pub(crate) tasks: usize,
    /// `rate`: the limit, in starts per second.
    pub(crate) rate_limit: u32,
    /// `groups`: how many groups the jobs are spread over.
    pub(crate) groups: u64,
    /// Redis: send each single enqueue alone.
    no_coalesce: bool,
    table: bool,
    /// `--worker-only`: the second process of a multi-process run.
    worker_only: bool,
    store: Option<String>,
    runs_out: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        backend: BackendKind::Memory,
        scenarios: SCENARIOS.to_vec(),
        jobs: 100_000,
        concurrency: vec![64],
        batch: 1_000,
        sleep_jobs: None,
        samples: 200,
        single_jobs: None,
        tasks: 1_000,
        rate_limit: 1_000,
        groups: 1_000,
        no_coalesce: false,
        table: false,
        worker_only: false,
        store: None,
        runs_out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .with_context(|| format!("{flag} needs a value; {USAGE}"))
        };
        match flag.as_str() {
            "--backend" => args.backend = value()?.parse()?,
            "--scenario" => {
                let v = value()?;
                args.scenarios = Vec::new();
                for s in v.split(',') {
                    match SCENARIOS.iter().find(|x| **x == s) {
                        Some(x) => args.scenarios.push(x),
                        None if s == "all" => args.scenarios.extend(SCENARIOS),
                        None => bail!("unknown scenario `{s}`; {USAGE}"),
                    }
                }
            }
            "--jobs" => args.jobs = value()?.parse().context("--jobs")?,
            "--concurrency" => {
                args.concurrency = value()?
                    .split(',')
                    .map(|c| c.parse().context("--concurrency"))
                    .collect::<anyhow::Result<_>>()?;
                if args.concurrency.contains(&0) {
                    bail!("--concurrency must be at least 1");
                }
            }
            "--batch" => args.batch = value()?.parse().context("--batch")?,
            "--sleep-jobs" => args.sleep_jobs = Some(value()?.parse().context("--sleep-jobs")?),
            "--samples" => args.samples = value()?.parse().context("--samples")?,
            "--single-jobs" => args.single_jobs = Some(value()?.parse().context("--single-jobs")?),
            "--tasks" => args.tasks = value()?.parse().context("--tasks")?,
            "--rate-limit" => args.rate_limit = value()?.parse().context("--rate-limit")?,
            "--groups" => args.groups = value()?.parse().context("--groups")?,
            "--no-coalesce" => args.no_coalesce = true,
            "--table" => args.table = true,
            "--worker-only" => args.worker_only = true,
            "--store" => args.store = Some(value()?),
            "--runs-out" => args.runs_out = Some(value()?.into()),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown flag `{other}`; {USAGE}"),
        }
    }
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if args.tasks == 0 {
        bail!("--tasks must be at least 1");
    }
    kosh_jobs::QueueLimits::default()
        .with_rate(kosh_jobs::RateLimit::new(
            args.rate_limit,
            std::time::Duration::from_secs(1),
        ))
        .validate()
        .map_err(|e| anyhow::anyhow!("--rate-limit: {e}"))?;
    Ok(args)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    if args.worker_only {
        return multiprocess::child(
            args.store
                .as_deref()
                .context("--worker-only needs --store")?,
            args.jobs,
            args.concurrency[0],
            args.runs_out
                .clone()
                .context("--worker-only needs --runs-out")?,
        )
        .await;
    }
    let mut bench = Bench::setup(&args.backend)
        .with_context(|| format!("setting up the {} backend", args.backend.name()))?;
    if args.no_coalesce {
        bench.no_coalescing();
    }
    if bench.redis_shared() {
        eprintln!("note: the Redis server is shared; commands per job include other clients'");
    }
    let mut rows = Vec::new();
    for scenario in &args.scenarios {
        let levels: &[usize] = if matches!(*scenario, "enqueue" | "concurrent") {
            &[0]
        } else {
            &args.concurrency
        };
        for &c in levels {
            let mut row = Row {
                backend: args.backend.name().into(),
                scenario,
                concurrency: (c > 0).then_some(c),
                jobs: args.jobs,
                ..Row::default()
            };
            rss::reset_peak();
            let before = bench.command_stats();
            match *scenario {
                "enqueue" => scenarios::enqueue(&bench, &args, &mut row).await,
                "concurrent" => scenarios::concurrent(&bench, &args, &mut row).await,
                "noop" => scenarios::noop(&bench, &args, c, &mut row).await,
                "backlog" => scenarios::backlog(&bench, &args, c, &mut row).await,
                "sleep10" => scenarios::sleep10(&bench, &args, c, &mut row).await,
                "latency" => scenarios::latency(&bench, &args, c, &mut row).await,
                "multiprocess" => multiprocess::run(&bench, &args, c, &mut row).await,
                "rate" => scenarios::rate_limited(&bench, &args, c, &mut row).await,
                "groups" => scenarios::groups(&bench, &args, c, &mut row).await,
                _ => unreachable!("scenario names are checked when parsed"),
            }
            .with_context(|| format!("{} {scenario} c={c}", args.backend.name()))?;
            row.rss_kib = rss::peak_kib();
            if let (Some(before), Some(after)) = (before, bench.command_stats()) {
                let sent = after.since(&before).without_probes();
                if row.jobs > 0 && sent.total() > 0 {
                    let per_job = |x: u64| x as f64 / row.jobs as f64;
                    row.cmds_per_job = Some((per_job(sent.requests()), per_job(sent.total())));
                    row.note = [row.note.as_str(), &format!("redis: {}", sent.summary(4))]
                        .join("; ")
                        .trim_start_matches("; ")
                        .into();
                }
            }
            println!("{}", row.human());
            if !row.note.starts_with("skipped") {
                rows.push(row);
            }
        }
    }
    println!(
        "{} runs; every job of every run ran exactly once",
        rows.len()
    );
    if args.table {
        println!("\n{}", report::HEADER);
        for r in &rows {
            println!("{}", r.markdown());
        }
    }
    Ok(())
}
