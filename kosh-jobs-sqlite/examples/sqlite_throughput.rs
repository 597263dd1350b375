//! A quick throughput check of the SQLite backend on a file on disk.
//!
//! ```text
//! cargo run --release -p kosh-jobs-sqlite --example sqlite_throughput -- [JOBS]
//! ```
//!
//! Prints jobs/s for: batch enqueue (1,000 a batch), single awaited enqueue (one caller, one
//! job a call; then 64 callers at once), processing with the backend driven directly (64 jobs
//! in flight: reserve, then finish each job on its own, as a worker does) and processing with
//! the `Worker` runtime at concurrency 64 with a no-op handler; then how soon an idle Worker
//! starts a job pushed in the same process. Each processing run checks that every job ran
//! exactly once.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kosh_jobs_core::{
    Backend, Finish, Handler, Job, JobContext, JobError, NewJob, Outcome, ReserveRequest, Worker,
};
use kosh_jobs_sqlite::{SqliteBackend, SqliteOptions};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

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
    seen: Arc<Vec<AtomicU8>>,
    done: Arc<AtomicU64>,
    total: u64,
    finished: Arc<Notify>,
}

impl Tally {
    fn new(total: u64) -> Self {
        Tally {
            seen: Arc::new((0..total).map(|_| AtomicU8::new(0)).collect()),
            done: Arc::new(AtomicU64::new(0)),
            total,
            finished: Arc::new(Notify::new()),
        }
    }

    fn record(&self, n: u64) {
        if let Some(slot) = self.seen.get(n as usize) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
        if self.done.fetch_add(1, Ordering::AcqRel) + 1 == self.total {
            self.finished.notify_one();
        }
    }

    fn check(&self) -> anyhow::Result<()> {
        let wrong: Vec<usize> = self
            .seen
            .iter()
            .enumerate()
            .filter(|(_, s)| s.load(Ordering::Relaxed) != 1)
            .map(|(i, _)| i)
            .take(10)
            .collect();
        anyhow::ensure!(wrong.is_empty(), "jobs not run exactly once: {wrong:?}");
        Ok(())
    }
}

impl Handler<Tally> for Noop {
    async fn run(self, ctx: JobContext<Tally>) -> Result<(), JobError> {
        ctx.state().record(self.n);
        Ok(())
    }
}

fn jobs(from: u64, n: u64, now: kosh_jobs_core::Timestamp) -> Vec<NewJob> {
    (from..from + n)
        .map(|i| NewJob::new(Noop::NAME, Noop::QUEUE, format!("{{\"n\":{i}}}"), now))
        .collect()
}

async fn open(dir: &std::path::Path, name: &str) -> anyhow::Result<SqliteBackend> {
    let opts = SqliteOptions::builder(dir.join(name)).build()?;
    Ok(SqliteBackend::connect_with(opts).await?)
}

fn rate(n: u64, d: Duration) -> String {
    format!(
        "{:>9.0} jobs/s  ({n} jobs in {:.2?})",
        n as f64 / d.as_secs_f64(),
        d
    )
}

/// CPU time used so far (Linux, from /proc): the whole process, and the threads whose name
/// starts with `kosh-sqlite-wri` (the writers). `None` where /proc is not readable.
fn cpu() -> Option<(Duration, Duration)> {
    fn ticks(stat: &str) -> Option<(String, u64)> {
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let name = stat[open + 1..close].to_owned();
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some((name, utime + stime))
    }
    let tick = Duration::from_millis(10); // USER_HZ is 100 on Linux
    let (_, process) = ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    let mut writer = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        if let Some((name, t)) = std::fs::read_to_string(task.path().join("stat"))
            .ok()
            .and_then(|s| ticks(&s))
        {
            if name.starts_with("kosh-sqlite-wri") {
                writer += t;
            }
        }
    }
    Some((tick * process as u32, tick * writer as u32))
}

/// Runs one measured phase and prints its rate, with the CPU it used: on a busy machine the
/// wall-clock rate understates what an idle one does, while CPU per job changes less.
async fn phase<F: std::future::Future<Output = anyhow::Result<(u64, Duration)>>>(
    name: &str,
    f: F,
) -> anyhow::Result<()> {
    let before = cpu();
    let (n, took) = f.await?;
    let cpu_note = match (before, cpu()) {
        (Some((p0, w0)), Some((p1, w1))) => {
            let (p, w) = (p1.saturating_sub(p0), w1.saturating_sub(w0));
            let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
            // Two cores: the process can use at most 2 s of CPU a second, the writer thread 1 s.
            let bound = n as f64 / (p.as_secs_f64() / 2.0).max(w.as_secs_f64()).max(1e-9);
            format!(
                "  cpu {:.1} us/job, writer {:.1} us/job: ~{:.0} jobs/s if CPU-bound on 2 idle cores",
                per(p),
                per(w),
                bound
            )
        }
        _ => String::new(),
    };
    println!("{name:<32}{}{cpu_note}", rate(n, took));
    Ok(())
}

async fn batch_enqueue(b: &SqliteBackend, total: u64) -> anyhow::Result<Duration> {
    let now = b.clock().now();
    let start = Instant::now();
    let mut i = 0;
    while i < total {
        let n = 1000.min(total - i);
        b.push(jobs(i, n, now)).await?;
        i += n;
    }
    Ok(start.elapsed())
}

async fn direct_processing(b: &SqliteBackend, total: u64) -> anyhow::Result<Duration> {
    let tally = Tally::new(total);
    let start = Instant::now();
    let in_flight = Arc::new(tokio::sync::Semaphore::new(64));
    let req = ReserveRequest {
        queues: vec![Noop::QUEUE.into()],
        worker: "bench".into(),
        max: 64,
        lease: Duration::from_secs(30),
    };
    let finished = tally.finished.notified();
    tokio::pin!(finished);
    loop {
        if tally.done.load(Ordering::Acquire) >= total {
            break;
        }
        let free = in_flight.available_permits();
        if free == 0 {
            let _p = in_flight.acquire().await?;
            continue;
        }
        let leased = b
            .reserve(&ReserveRequest {
                max: free,
                ..req.clone()
            })
            .await?;
        if leased.is_empty() {
            tokio::select! {
                _ = &mut finished => break,
                _ = tokio::time::sleep(Duration::from_millis(1)) => {}
            }
            continue;
        }
        for job in leased {
            let permit = in_flight.clone().acquire_owned().await?;
            let b = b.clone();
            let tally = tally.clone();
            tokio::spawn(async move {
                let n: Noop = serde_json::from_str(&job.payload).expect("payload");
                let r = b
                    .finish(vec![Finish {
                        lease: job.lease,
                        outcome: Outcome::Completed { result: None },
                    }])
                    .await
                    .expect("finish");
                assert_eq!(r, vec![kosh_jobs_core::FinishResult::Applied]);
                tally.record(n.n);
                drop(permit);
            });
        }
    }
    let took = start.elapsed();
    tally.check()?;
    Ok(took)
}

async fn worker_processing(b: &SqliteBackend, total: u64) -> anyhow::Result<Duration> {
    let tally = Tally::new(total);
    let start = Instant::now();
    let handle = Worker::builder(b.clone())
        .state(tally.clone())
        .register::<Noop>()
        .concurrency(64)
        .build()?
        .spawn();
    let finished = tally.finished.notified();
    if tally.done.load(Ordering::Acquire) < total {
        finished.await;
    }
    let took = start.elapsed();
    handle.shutdown().await?;
    tally.check()?;
    Ok(took)
}

#[derive(Serialize, Deserialize)]
struct Ping;

impl Job for Ping {
    type Output = ();
    const NAME: &'static str = "ping";
    const QUEUE: &'static str = "ping";
}

#[derive(Clone)]
struct PingState {
    base: Instant,
    started: tokio::sync::mpsc::UnboundedSender<Duration>,
}

impl Handler<PingState> for Ping {
    async fn run(self, ctx: JobContext<PingState>) -> Result<(), JobError> {
        let st = ctx.state();
        let _ = st.started.send(st.base.elapsed());
        Ok(())
    }
}

/// From an awaited push to the start of the handler, with the Worker idle and waiting (the
/// in-process wake-up).
async fn wake_up_latency(b: &SqliteBackend, rounds: usize) -> anyhow::Result<Vec<Duration>> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let base = Instant::now();
    let handle = Worker::builder(b.clone())
        .state(PingState { base, started: tx })
        .register::<Ping>()
        .build()?
        .spawn();
    let mut latencies = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        // Let the worker go back to waiting.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let pushed = base.elapsed();
        let now = b.clock().now();
        b.push(vec![NewJob::new(Ping::NAME, Ping::QUEUE, "null", now)])
            .await?;
        let started = rx
            .recv()
            .await
            .ok_or_else(|| anyhow::anyhow!("worker stopped"))?;
        latencies.push(started.saturating_sub(pushed));
    }
    handle.shutdown().await?;
    latencies.sort();
    Ok(latencies)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let total: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(100_000);
    let dir = tempfile::tempdir()?;
    println!(
        "kosh-jobs-sqlite throughput, {total} jobs, file in {}, {} cores",
        dir.path().display(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let b = open(dir.path(), "batch.db").await?;
    phase("batch enqueue (1000/batch)", async {
        Ok((total, batch_enqueue(&b, total).await?))
    })
    .await?;

    let single = total.min(50_000);
    let b1 = open(dir.path(), "single.db").await?;
    phase("single enqueue, 1 caller", async {
        let now = b1.clock().now();
        let start = Instant::now();
        for i in 0..single {
            b1.push(jobs(i, 1, now)).await?;
        }
        Ok((single, start.elapsed()))
    })
    .await?;

    let b2 = open(dir.path(), "single64.db").await?;
    phase("single enqueue, 64 callers", async {
        let now = b2.clock().now();
        let start = Instant::now();
        let per = single / 64;
        let tasks: Vec<_> = (0..64)
            .map(|t| {
                let b = b2.clone();
                tokio::spawn(async move {
                    for i in 0..per {
                        b.push(jobs(t * per + i, 1, now)).await?;
                    }
                    Ok::<_, kosh_jobs_core::BackendError>(())
                })
            })
            .collect();
        for t in tasks {
            t.await??;
        }
        Ok((per * 64, start.elapsed()))
    })
    .await?;

    phase("reserve+finish, 64 in flight", async {
        Ok((total, direct_processing(&b, total).await?))
    })
    .await?;

    let b3 = open(dir.path(), "worker.db").await?;
    batch_enqueue(&b3, total).await?;
    phase("Worker, concurrency 64, no-op", async {
        Ok((total, worker_processing(&b3, total).await?))
    })
    .await?;

    // End to end: enqueue while the worker runs.
    let b4 = open(dir.path(), "e2e.db").await?;
    phase("end to end (enqueue + Worker)", async {
        let producer = {
            let b4 = b4.clone();
            tokio::spawn(async move { batch_enqueue(&b4, total).await })
        };
        let took = worker_processing(&b4, total).await?;
        producer.await??;
        Ok((total, took))
    })
    .await?;

    let b5 = open(dir.path(), "wake.db").await?;
    let lat = wake_up_latency(&b5, 50).await?;
    println!(
        "push -> handler start, idle Worker  median {:.2?}, max {:.2?} (50 pushes)",
        lat[lat.len() / 2],
        lat[lat.len() - 1]
    );
    Ok(())
}
