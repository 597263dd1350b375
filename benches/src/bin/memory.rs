//! Redis memory per job: `used_memory` (from `INFO memory`) before and after 100,000 tiny
//! jobs (name `noop`, payload `{}`), waiting, running, completed (kept, no retention) and
//! failed, and what each of the queue's keys holds (`MEMORY USAGE`).
//!
//! ```text
//! cargo run --release -p kosh-jobs-benches --bin memory -- --jobs 100000
//! ```
//!
//! It starts its own `redis-server` (or uses `KOSH_BENCH_REDIS_URL`; then other clients'
//! keys are counted too). Jobs are pushed in batches of 1,000 and reserved and finished
//! 1,000 at a time.

use std::time::Duration;

use anyhow::{bail, Context as _};
use kosh_jobs::{Backend, FailureKind, Finish, NewJob, Outcome, ReserveRequest};
use kosh_jobs_benches::jobs::QUEUE;
use kosh_jobs_benches::store::{BackendKind, Bench, Store};

const USAGE: &str = "flags: --jobs N (default 100000), --payload TEXT (default {})";

/// The columns and indexes of the bench queue whose size is shown.
const KEYS: &[&str] = &[
    "spec", "ready", "rl:0", "rlp", "run", "lease", "again", "fin", "err", "hist", "cb", "rc",
    "s:failed", "t:failed",
];

fn used_memory(bench: &Bench) -> anyhow::Result<i64> {
    let info = bench.redis_command(&["INFO", "memory"])?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .context("no used_memory in INFO memory")
}

/// `MEMORY USAGE` of each of the queue's keys that exists, with its encoding.
fn key_sizes(bench: &Bench, store: &Store) -> anyhow::Result<String> {
    let prefix = match &store.locator {
        kosh_jobs_benches::store::Locator::Redis { prefix, .. } => prefix.clone(),
        _ => bail!("not a redis store"),
    };
    let mut out = Vec::new();
    for k in KEYS {
        let key = format!("{{{prefix}:{QUEUE}}}:{k}");
        let bytes = bench.redis_command(&["MEMORY", "USAGE", &key, "SAMPLES", "0"])?;
        if bytes.is_empty() {
            continue;
        }
        let enc = bench.redis_command(&["OBJECT", "ENCODING", &key])?;
        out.push(format!("{k} {bytes} ({enc})"));
    }
    Ok(out.join(", "))
}

fn per_job(bytes: i64, n: u64) -> f64 {
    bytes as f64 / n as f64
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut jobs: u64 = 100_000;
    let mut payload = "{}".to_owned();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--jobs" => {
                jobs = it
                    .next()
                    .context("--jobs needs a value")?
                    .parse()
                    .context("--jobs")?
            }
            "--payload" => payload = it.next().context("--payload needs a value")?,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown flag `{other}`; {USAGE}"),
        }
    }
    if jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    let mut bench = Bench::setup(&BackendKind::Redis { url: None })?;
    bench.keep_completed();
    println!(
        "{jobs} jobs, name `noop`, payload `{payload}`, batches of 1,000; bytes per job from \
         used_memory"
    );
    for (label, max_attempts, outcome) in [
        ("completed", 3, Outcome::Completed { result: None }),
        (
            "failed",
            1,
            Outcome::Failed {
                error: "boom".into(),
                kind: FailureKind::Error,
            },
        ),
    ] {
        let store = bench.fresh("memory").await?;
        let b = &store.backend;
        let req = ReserveRequest {
            queues: vec![QUEUE.into()],
            worker: "bench-host-1-4242-0123456789abcdef".into(),
            max: 1000,
            lease: Duration::from_secs(600),
        };
        let job = |now| {
            let mut j = NewJob::new("noop", QUEUE, payload.clone(), now);
            j.max_attempts = max_attempts;
            j
        };
        // The queue's keys exist and the scripts are loaded before the first reading.
        b.push(vec![job(b.clock().now())]).await?;
        let warm = b.reserve(&req).await?;
        b.finish(
            warm.iter()
                .map(|l| Finish {
                    lease: l.lease,
                    outcome: outcome.clone(),
                })
                .collect(),
        )
        .await?;
        let before = used_memory(&bench)?;
        let mut pushed = 0;
        while pushed < jobs {
            let k = (jobs - pushed).min(1000);
            let now = b.clock().now();
            b.push((0..k).map(|_| job(now)).collect()).await?;
            pushed += k;
        }
        let waiting = used_memory(&bench)? - before;
        if label == "completed" {
            println!(
                "waiting:   {:7.1} bytes per job; {} waiting jobs fit in 100 MB; keys: {}",
                per_job(waiting, jobs),
                (100_000_000.0 / per_job(waiting, jobs)) as u64,
                key_sizes(&bench, &store)?
            );
        }
        let mut leases = Vec::with_capacity(jobs as usize);
        loop {
            let l = b.reserve(&req).await?;
            if l.is_empty() {
                break;
            }
            leases.extend(l.into_iter().map(|l| l.lease));
        }
        if leases.len() as u64 != jobs {
            bail!("reserved {} of {jobs} jobs", leases.len());
        }
        let running = used_memory(&bench)? - before;
        if label == "completed" {
            println!(
                "running:   {:7.1} bytes per job; keys: {}",
                per_job(running, jobs),
                key_sizes(&bench, &store)?
            );
        }
        for chunk in leases.chunks(1000) {
            b.finish(
                chunk
                    .iter()
                    .map(|l| Finish {
                        lease: *l,
                        outcome: outcome.clone(),
                    })
                    .collect(),
            )
            .await?;
        }
        let done = used_memory(&bench)? - before;
        println!(
            "{label}: {:7.1} bytes per job; keys: {}",
            per_job(done, jobs),
            key_sizes(&bench, &store)?
        );
    }
    Ok(())
}
