//! Throughput runner: enqueues N no-op jobs in batches, processes them with a worker at the
//! given concurrency, checks every job ran exactly once, and prints jobs/s.
//!
//! `cargo run --release -p kosh-jobs-benches --bin throughput -- --jobs 200000 --concurrency 64`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _};
use kosh_jobs::memory::MemoryBackend;
use kosh_jobs::{Backend, Client, Handler, Job, JobContext, JobError, Worker};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Noop {
    n: u64,
}

impl Job for Noop {
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
    type Output = ();
    async fn run(self, ctx: JobContext<Tally>) -> Result<(), JobError> {
        let t = ctx.state();
        t.runs[self.n as usize].fetch_add(1, Ordering::Relaxed);
        if t.done.fetch_add(1, Ordering::AcqRel) + 1 == t.total {
            t.all_done.notify_one();
        }
        Ok(())
    }
}

struct Args {
    jobs: u64,
    concurrency: usize,
    batch: usize,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        jobs: 100_000,
        concurrency: 64,
        batch: 1_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--jobs" => args.jobs = value()?.parse()?,
            "--concurrency" => args.concurrency = value()?.parse()?,
            "--batch" => args.batch = value()?.parse()?,
            "--backend" => {
                let b = value()?;
                if b != "memory" {
                    bail!("backend `{b}` is not supported by this runner yet (memory only)");
                }
            }
            other => bail!("unknown flag `{other}` (flags: --backend memory, --jobs N, --concurrency N, --batch N)"),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let client = Client::from_arc(backend.clone());

    let start = Instant::now();
    let mut n = 0u64;
    while n < args.jobs {
        let end = (n + args.batch as u64).min(args.jobs);
        client.enqueue_batch((n..end).map(|n| Noop { n })).await?;
        n = end;
    }
    let enqueue = start.elapsed();

    let tally = Tally {
        runs: Arc::new((0..args.jobs).map(|_| AtomicU64::new(0)).collect()),
        done: Arc::new(AtomicU64::new(0)),
        all_done: Arc::new(tokio::sync::Notify::new()),
        total: args.jobs,
    };
    let start = Instant::now();
    let worker = Worker::builder_arc(backend.clone())
        .state(tally.clone())
        .register::<Noop>()
        .concurrency(args.concurrency)
        .build()?
        .spawn();
    if args.jobs > 0 {
        tally.all_done.notified().await;
    }
    // Every job's completion is stored before the worker returns.
    let stats = worker.shutdown().await?;
    let process = start.elapsed();

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
        "backend=memory jobs={} concurrency={} enqueue: {:.0} jobs/s ({:?}), process: {:.0} jobs/s ({:?}); every job ran exactly once",
        args.jobs,
        args.concurrency,
        args.jobs as f64 / enqueue.as_secs_f64(),
        enqueue,
        args.jobs as f64 / process.as_secs_f64(),
        process,
    );
    Ok(())
}
