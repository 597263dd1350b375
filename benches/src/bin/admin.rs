//! The operating surface at scale: how fast an operator's questions are answered on a big
//! store, and what a bulk action costs the workers running beside it.
//!
//! ```text
//! cargo run --release -p kosh-jobs-benches --bin admin -- --backend sqlite --jobs 1000000
//! ```
//!
//! It seeds one queue, `csv-uploads`, with `--jobs` jobs run to the end (`--failed` of them,
//! default a tenth, fail with "database is locked"; one payload holds a rare text), then
//! measures, each over `--repeat` calls (median and worst):
//!
//! - `stats`: what `kosh-jobs stats` reads (counts, the last day's throughput, live workers);
//! - `first page`: the newest 50 failed jobs of the queue, with their total;
//! - the dashboard (`kosh-jobs-web`), server-side: its router answering in process (no
//!   socket) `GET api/overview` and the first page of failed jobs, `GET api/jobs`;
//! - `rare search`: a text found in one payload, every page to the end: the scan rate;
//! - `bulk retry`: every failed job back to ready with `Admin::apply_filter` (what the CLI and
//!   the dashboard run: pages of 1,000 ids from `search_ids`, each given to `apply` while the
//!   next is looked for), while a worker drains another queue: the retry rate, and the
//!   worker's slowest reserve during it.
//!
//! Results are printed as lines, and with `--table` as a Markdown table row.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use kosh_jobs::admin::{AdminAction, JobFilter, Order, SearchQuery, ThroughputQuery};
use kosh_jobs::{Admin, AnyBackend, Backend, Finish, JobState, NewJob, Outcome, ReserveRequest};
use kosh_jobs_benches::store::{BackendKind, Bench};

const USAGE: &str = "flags: --backend memory|sqlite|redis|postgres|sqlite://DIR|redis://URL|postgres://URL, --jobs N, \
--failed N, --repeat N, --drain-jobs N, --table";

const QUEUE: &str = "csv-uploads";
const DRAIN: &str = "drain";
const RARE: &str = "needle-7f3a";

struct Args {
    backend: BackendKind,
    jobs: u64,
    failed: Option<u64>,
    repeat: usize,
    drain_jobs: u64,
    table: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        backend: BackendKind::Memory,
        jobs: 100_000,
        failed: None,
        repeat: 9,
        drain_jobs: 200_000,
        table: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .with_context(|| format!("{flag} needs a value; {USAGE}"))
        };
        match flag.as_str() {
            "--backend" => args.backend = value()?.parse()?,
            "--jobs" => args.jobs = value()?.parse().context("--jobs")?,
            "--failed" => args.failed = Some(value()?.parse().context("--failed")?),
            "--repeat" => args.repeat = value()?.parse().context("--repeat")?,
            "--drain-jobs" => args.drain_jobs = value()?.parse().context("--drain-jobs")?,
            "--table" => args.table = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown flag `{other}`; {USAGE}"),
        }
    }
    ensure!(args.jobs >= 10, "--jobs must be at least 10");
    ensure!(args.repeat >= 1, "--repeat must be at least 1");
    Ok(args)
}

fn lease_req(queue: &str, max: usize) -> ReserveRequest {
    ReserveRequest {
        queues: vec![queue.to_owned()],
        worker: "admin-bench".to_owned(),
        max,
        lease: Duration::from_secs(600),
    }
}

/// Pushes `jobs` jobs and runs them all: about `failed` of them (spread evenly) fail.
/// Returns how many failed.
async fn seed(b: &AnyBackend, jobs: u64, failed: u64) -> anyhow::Result<u64> {
    let mut failures = 0u64;
    let now = b.clock().now();
    let every = jobs.checked_div(failed).unwrap_or(u64::MAX).max(1);
    let mut pushed = 0u64;
    while pushed < jobs {
        let n = (jobs - pushed).min(1000);
        let batch: Vec<NewJob> = (pushed..pushed + n)
            .map(|i| {
                let text = if i == jobs / 2 { RARE } else { "statement" };
                let payload = format!(r#"{{"upload_id":{i},"file":"{text}-{i}.csv","rows":120}}"#);
                NewJob::new("import_csv", QUEUE, payload, now)
            })
            .collect();
        b.push(batch).await?;
        pushed += n;
        let leased = b.reserve(&lease_req(QUEUE, n as usize)).await?;
        let finishes = leased
            .iter()
            .map(|l| {
                let seq = l.payload_index();
                let outcome = if failed > 0 && seq % every == 0 {
                    failures += 1;
                    Outcome::failed("database is locked")
                } else {
                    Outcome::Completed { result: None }
                };
                Finish {
                    lease: l.lease,
                    outcome,
                }
            })
            .collect();
        b.finish(finishes).await?;
    }
    Ok(failures)
}

/// The upload number in a seeded payload.
trait PayloadIndex {
    fn payload_index(&self) -> u64;
}

impl PayloadIndex for kosh_jobs::LeasedJob {
    fn payload_index(&self) -> u64 {
        serde_json::from_str::<serde_json::Value>(&self.payload)
            .ok()
            .and_then(|v| v.get("upload_id").and_then(serde_json::Value::as_u64))
            .unwrap_or(1)
    }
}

/// Median and worst of `repeat` timed calls of `f`.
async fn timed<F, Fut, T>(repeat: usize, mut f: F) -> anyhow::Result<(Duration, Duration, T)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut times = Vec::with_capacity(repeat);
    let mut last = None;
    for _ in 0..repeat {
        let t = Instant::now();
        last = Some(f().await?);
        times.push(t.elapsed());
    }
    times.sort_unstable();
    let out = last.context("at least one call")?;
    Ok((times[times.len() / 2], times[times.len() - 1], out))
}

/// Milliseconds, to the hundredth: stats read from stored counts take well under one.
fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// `GET uri` on the dashboard's router, in process; the answer's JSON.
async fn get_json(web: &axum::Router, uri: &str) -> anyhow::Result<serde_json::Value> {
    use tower::ServiceExt as _;
    let req = axum::http::Request::get(uri).body(axum::body::Body::empty())?;
    let res = web.clone().oneshot(req).await?;
    let status = res.status();
    let body = axum::body::to_bytes(res.into_body(), 64 << 20).await?;
    ensure!(
        status.is_success(),
        "GET {uri}: {status}: {}",
        String::from_utf8_lossy(&body)
    );
    Ok(serde_json::from_slice(&body)?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Quiet unless asked: `RUST_LOG=kosh_jobs_sqlite=debug` shows the checkpointer's rounds.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = parse_args()?;
    let wanted = args.failed.unwrap_or(args.jobs / 10).min(args.jobs);
    let mut bench = Bench::setup(&args.backend)?;
    // The scenario is a store holding every job seeded: retention must not thin it out.
    bench.keep_completed();
    let store = bench.fresh("admin").await?;
    let b = store.backend.clone();
    let name = args.backend.name();

    let t = Instant::now();
    let failed = seed(&b, args.jobs, wanted).await?;
    let seeded = t.elapsed();
    println!(
        "{name}: seeded {} jobs ({failed} failed) in {:.1} s ({:.0} jobs/s)",
        args.jobs,
        seeded.as_secs_f64(),
        args.jobs as f64 / seeded.as_secs_f64()
    );

    let seeded_counts = b.counts().await?;
    let q = seeded_counts
        .iter()
        .find(|c| c.queue == QUEUE)
        .context("no counts for the seeded queue")?;
    ensure!(
        q.completed == args.jobs - failed && q.failed == failed,
        "seeded store holds {} completed and {} failed, expected {} and {failed}",
        q.completed,
        q.failed,
        args.jobs - failed
    );

    let (stats_med, stats_max, _) = timed(args.repeat, || async {
        let day_ago = b.clock().now() - Duration::from_secs(86_400);
        let counts = b.counts().await?;
        let tp = b
            .throughput(&ThroughputQuery {
                queue: None,
                since: day_ago,
            })
            .await?;
        let workers = b.workers().await?;
        Ok((counts, tp, workers))
    })
    .await?;
    println!(
        "{name}: stats: median {}, worst {}",
        ms(stats_med),
        ms(stats_max)
    );

    let first_page = SearchQuery::new(JobFilter::new().state(JobState::Failed).queue(QUEUE))
        .order(Order::NewestFirst)
        .limit(50);
    let (page_med, page_max, page) =
        timed(args.repeat, || async { Ok(b.search(&first_page).await?) }).await?;
    ensure!(
        page.jobs.len() as u64 == failed.min(50),
        "first page: {} jobs, expected {}",
        page.jobs.len(),
        failed.min(50)
    );
    let total = page.total.context("first page: a total")?;
    ensure!(
        total.count == failed && total.exact,
        "first page: total {total:?}, expected {failed} exactly"
    );
    println!(
        "{name}: first page of failed jobs (total {total}): median {}, worst {}",
        ms(page_med),
        ms(page_max)
    );

    // The dashboard's two busiest routes, served in process: what a browser tab waits for
    // on the server, JSON encoding included.
    let web = kosh_jobs_web::router::<()>(b.clone(), kosh_jobs_web::Options::new());
    let (ov_med, ov_max, ov) = timed(args.repeat, || get_json(&web, "/api/overview")).await?;
    let seen_failed = ov["queues"]
        .as_array()
        .and_then(|qs| qs.iter().find(|q| q["queue"] == QUEUE))
        .and_then(|q| q["counts"]["failed"].as_u64());
    ensure!(
        seen_failed == Some(failed),
        "dashboard overview: {seen_failed:?} failed, expected {failed}"
    );
    let uri = format!("/api/jobs?states=failed&queue={QUEUE}&order=newest&limit=50");
    let (jp_med, jp_max, jp) = timed(args.repeat, || get_json(&web, &uri)).await?;
    let listed = jp["jobs"].as_array().map_or(0, Vec::len) as u64;
    ensure!(
        listed == failed.min(50) && jp["total"]["count"].as_u64() == Some(failed),
        "dashboard first page: {listed} jobs, total {}",
        jp["total"]
    );
    println!(
        "{name}: dashboard: api/overview median {}, worst {}; api/jobs (first failed page) median {}, worst {}",
        ms(ov_med),
        ms(ov_max),
        ms(jp_med),
        ms(jp_max)
    );
    // What an open tab costs Redis: the page refreshes its view every 5 s (the overview, or a
    // list), not while hidden or paused.
    if let Some(before) = bench.command_stats() {
        get_json(&web, "/api/overview").await?;
        let overview = bench
            .command_stats()
            .map(|after| after.since(&before).without_probes());
        let before = bench.command_stats();
        get_json(&web, &uri).await?;
        let list = before
            .zip(bench.command_stats())
            .map(|(b, a)| a.since(&b).without_probes());
        if let (Some(o), Some(l)) = (overview, list) {
            println!(
                "{name}: dashboard refresh costs Redis {} requests for the overview ({}), {} for a list page ({}); at one refresh per 5 s, at most {:.1} requests/s per open tab",
                o.requests(),
                o.summary(4),
                l.requests(),
                l.summary(4),
                o.requests().max(l.requests()) as f64 / 5.0
            );
        }
    }

    // The rare text, to the end of the cursor.
    let t = Instant::now();
    let mut q = SearchQuery::new(JobFilter::new().search(RARE)).with_total(false);
    let (mut examined, mut found, mut calls) = (0u64, 0usize, 0u64);
    loop {
        let page = b.search(&q).await?;
        calls += 1;
        examined += page.examined;
        found += page.jobs.len();
        match page.next {
            Some(n) => q.after = Some(n),
            None => break,
        }
    }
    let scan = t.elapsed();
    ensure!(found == 1, "rare search: found {found} jobs, expected 1");
    let scan_rate = examined as f64 / scan.as_secs_f64();
    println!(
        "{name}: rare search: {examined} jobs examined in {calls} calls, {:.2} s ({scan_rate:.0} jobs/s)",
        scan.as_secs_f64()
    );

    // Bulk retry while a worker drains another queue.
    let now = b.clock().now();
    let mut pushed = 0;
    while pushed < args.drain_jobs {
        let n = (args.drain_jobs - pushed).min(1000);
        b.push(
            (0..n)
                .map(|_| NewJob::new("noop", DRAIN, "{}", now))
                .collect(),
        )
        .await?;
        pushed += n;
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let drainer = {
        let b = b.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            // Each reserve's time, and when it began.
            let mut times: Vec<(Duration, Duration)> = Vec::new();
            let mut ran = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                let leased = b.reserve(&lease_req(DRAIN, 16)).await?;
                let took = t.elapsed();
                if took > Duration::from_millis(20) {
                    // Beside the backend's own trace (`RUST_LOG=…=trace,admin=info`), to find
                    // what held a slow reserve up.
                    tracing::info!(
                        target: "admin",
                        took_ms = took.as_secs_f64() * 1000.0,
                        "slow reserve ended"
                    );
                }
                times.push((took, t - start));
                if leased.is_empty() {
                    break;
                }
                ran += leased.len() as u64;
                let fin = leased
                    .iter()
                    .map(|l| Finish {
                        lease: l.lease,
                        outcome: Outcome::Completed { result: None },
                    })
                    .collect();
                b.finish(fin).await?;
            }
            anyhow::Ok((times, ran))
        })
    };
    // What `kosh-jobs jobs retry --state failed --queue …` and the dashboard run.
    let t = Instant::now();
    let filter = JobFilter::new().state(JobState::Failed).queue(QUEUE);
    let mut pages = 0u64;
    let totals = Admin::new(b.clone())
        .apply_filter(AdminAction::Retry, &filter, |_| pages += 1)
        .await?;
    let applied = totals.applied;
    let bulk = t.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut times, drained) = drainer.await.context("drain task")??;
    let reserves = times.len();
    let (worst_reserve, worst_at) = times.iter().max().copied().unwrap_or_default();
    let over_50 = times
        .iter()
        .filter(|(d, _)| *d > Duration::from_millis(50))
        .count();
    times.sort_unstable();
    let pct = |p: usize| {
        times
            .get((times.len() * p / 100).min(times.len().saturating_sub(1)))
            .map_or(Duration::ZERO, |t| t.0)
    };
    let (p50, p99) = (pct(50), pct(99));
    ensure!(
        applied == failed,
        "bulk retry: {applied} jobs retried, expected {failed}"
    );
    let retry_rate = applied as f64 / bulk.as_secs_f64();
    println!(
        "{name}: bulk retry: {applied} jobs in {:.2} s ({retry_rate:.0} jobs/s, {pages} pages of `Admin::apply_filter`); a worker draining `{DRAIN}` meanwhile ran {drained} jobs in {reserves} reserves: median {}, 99th percentile {}, {over_50} over 50 ms, the slowest {} ({:.0} ms into the retry)",
        bulk.as_secs_f64(),
        ms(p50),
        ms(p99),
        ms(worst_reserve),
        worst_at.as_secs_f64() * 1000.0
    );
    if args.table {
        println!();
        println!("| backend | jobs | stats (median / worst) | first failed page (median / worst) | dashboard overview (median / worst) | dashboard first page (median / worst) | rare search | bulk retry | slowest reserve during it |");
        println!("|---|---|---|---|---|---|---|---|---|");
        println!(
            "| {name} | {} | {} / {} | {} / {} | {} / {} | {} / {} | {scan_rate:.0} jobs/s | {retry_rate:.0} jobs/s | {} |",
            args.jobs,
            ms(stats_med),
            ms(stats_max),
            ms(page_med),
            ms(page_max),
            ms(ov_med),
            ms(ov_max),
            ms(jp_med),
            ms(jp_max),
            ms(worst_reserve)
        );
    }
    Ok(())
}
