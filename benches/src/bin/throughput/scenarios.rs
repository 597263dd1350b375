//! The single-process scenarios: no-op end to end, backlog drain, 10 ms sleeps, pickup
//! latency, and single awaited enqueues. Each runs on a fresh store and checks its work.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use kosh_jobs::{AnyBackend, Backend, Client, Enqueue, Job, QueueLimits, RateLimit};
use kosh_jobs_benches::jobs::{spawn_worker, Noop, Probe, Sleep10, QUEUE};
use kosh_jobs_benches::store::Bench;
use kosh_jobs_benches::tally::Tally;
use serde::Serialize;

use crate::report::{rate, Row};
use crate::Args;

/// How long without any job finishing before a run is declared stuck.
pub(crate) const STALL: Duration = Duration::from_secs(60);

/// Enqueues `jobs` in batches of `batch`; returns how long it took.
pub(crate) async fn enqueue_batches<J: Job + Serialize, E: Into<Enqueue<J>>>(
    client: &Client,
    jobs: u64,
    batch: usize,
    make: impl Fn(u64) -> E,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut n = 0;
    while n < jobs {
        let end = (n + batch as u64).min(jobs);
        let ids = client.enqueue_batch((n..end).map(&make)).await?;
        if ids.iter().any(|e| e.existing()) {
            bail!("a bench job was taken for a duplicate");
        }
        n = end;
    }
    Ok(start.elapsed())
}

/// Waits until `goal` runs are recorded (`done` adds those of other processes), failing if
/// nothing finishes for [`STALL`].
pub(crate) async fn wait_done(
    tally: &Tally,
    goal: u64,
    others: impl Fn() -> u64,
) -> anyhow::Result<()> {
    let mut last = (tally.done() + others(), Instant::now());
    loop {
        let done = tally.done() + others();
        if done >= goal {
            return Ok(());
        }
        if done != last.0 {
            last = (done, Instant::now());
        } else if last.1.elapsed() > STALL {
            bail!("stuck: {done} of {goal} jobs ran, none in the last {STALL:?}");
        }
        // Wake at the goal, or now and then to check for a stall or other processes.
        let _ = tokio::time::timeout(Duration::from_millis(2), tally.wait_for(goal)).await;
    }
}

/// Checks that the store holds nothing left to do and no failed job.
pub(crate) async fn check_store_drained(backend: &AnyBackend) -> anyhow::Result<()> {
    for c in backend.counts().await? {
        if c.queue == QUEUE && (c.ready + c.scheduled + c.running + c.failed + c.cancelled) > 0 {
            bail!("after the run the store still has {c:?}");
        }
    }
    Ok(())
}

/// Enqueues while a worker processes: end to end, from the first enqueue to the last job run.
pub(crate) async fn noop(
    bench: &Bench,
    args: &Args,
    c: usize,
    row: &mut Row,
) -> anyhow::Result<()> {
    let n = args.jobs;
    let store = bench.fresh("noop").await?;
    let tally = Tally::tracking(n);
    let worker = spawn_worker(store.backend.clone(), tally.clone(), c)?;
    let client = Client::new(store.backend.clone());
    let start = Instant::now();
    let batch = args.batch;
    let producer =
        tokio::spawn(async move { enqueue_batches(&client, n, batch, |n| Noop { n }).await });
    let enqueue = producer.await.context("producer task")??;
    wait_done(&tally, n, || 0).await?;
    let took = start.elapsed();
    let stats = worker.shutdown().await?;
    verify(&tally, stats.completed, n, &store.backend).await?;
    row.enqueue = Some(rate(n, enqueue));
    row.process = Some(rate(n, took));
    row.note = "enqueue while processing; processing = end to end".into();
    Ok(())
}

/// Enqueues everything first (batched enqueue rate), then drains the backlog.
pub(crate) async fn backlog(
    bench: &Bench,
    args: &Args,
    c: usize,
    row: &mut Row,
) -> anyhow::Result<()> {
    let limits = QueueLimits::NONE;
    drain(
        bench,
        "backlog",
        args.jobs,
        args.batch,
        c,
        row,
        limits,
        |n| Noop { n },
    )
    .await
}

/// A backlog of jobs that each sleep 10 ms.
pub(crate) async fn sleep10(
    bench: &Bench,
    args: &Args,
    c: usize,
    row: &mut Row,
) -> anyhow::Result<()> {
    let n = args.sleep_jobs.unwrap_or(200 * c as u64);
    let limits = QueueLimits::NONE;
    drain(bench, "sleep10", n, args.batch, c, row, limits, |n| {
        Sleep10 { n }
    })
    .await?;
    let ideal = 100.0 * c as f64;
    row.note = format!(
        "{:.0}% of the ideal {ideal:.0} jobs/s",
        100.0 * row.process.unwrap_or(0.0) / ideal
    );
    Ok(())
}

/// A backlog of 3 × `--rate-limit` jobs drained under a limit of `--rate-limit` starts per
/// second. The first window's jobs start at once, then the limit paces the rest: the rate
/// reported is theirs, `(n - limit) / time`, which is at most the limit.
pub(crate) async fn rate_limited(
    bench: &Bench,
    args: &Args,
    c: usize,
    row: &mut Row,
) -> anyhow::Result<()> {
    let limit = args.rate_limit;
    let n = 3 * u64::from(limit);
    let limits = QueueLimits::default().with_rate(RateLimit::new(limit, Duration::from_secs(1)));
    drain(bench, "rate", n, args.batch, c, row, limits, |n| Noop { n }).await?;
    // `drain` timed all n; the first window's jobs started at once, so the steady rate is
    // that of the other n - limit.
    let took = n as f64 / row.process.unwrap_or(f64::INFINITY);
    let steady = (n - u64::from(limit)) as f64 / took;
    row.process = Some(steady);
    row.note = format!(
        "limit {limit}/s: {:.1}% of it, after the first {limit} started at once",
        100.0 * steady / f64::from(limit)
    );
    Ok(())
}

/// 1,000 groups (`--groups`) of `--jobs` / groups jobs each, one running per group, drained
/// right after the same jobs without groups: the note gives the grouped rate as a share of
/// the ungrouped one (issue #18 asks for 50% or more).
pub(crate) async fn groups(
    bench: &Bench,
    args: &Args,
    c: usize,
    row: &mut Row,
) -> anyhow::Result<()> {
    let n = args.jobs;
    let groups = args.groups.max(1);
    let mut plain = row.clone();
    drain(
        bench,
        "groups-off",
        n,
        args.batch,
        c,
        &mut plain,
        QueueLimits::NONE,
        |n| Noop { n },
    )
    .await?;
    let one_each = QueueLimits::default().with_group_concurrency(1);
    drain(bench, "groups", n, args.batch, c, row, one_each, |n| {
        Noop { n }.with().group(format!("g{}", n % groups))
    })
    .await?;
    let (with, without) = (row.process.unwrap_or(0.0), plain.process.unwrap_or(0.0));
    row.note = format!(
        "{groups} groups, 1 running per group: {:.0}% of the same jobs without groups ({without:.0} jobs/s)",
        100.0 * with / without.max(f64::MIN_POSITIVE)
    );
    Ok(())
}

/// Enqueues `n` jobs in batches on a fresh store with `limits` on the queue, then drains them
/// with a worker of concurrency `c`, checking each ran exactly once.
#[allow(clippy::too_many_arguments)]
async fn drain<J: Job + Serialize, E: Into<Enqueue<J>>>(
    bench: &Bench,
    tag: &str,
    n: u64,
    batch: usize,
    c: usize,
    row: &mut Row,
    limits: QueueLimits,
    make: impl Fn(u64) -> E,
) -> anyhow::Result<()> {
    row.jobs = n;
    let store = bench.fresh(tag).await?;
    let client = Client::new(store.backend.clone());
    if !limits.is_none() {
        client.set_queue_limits(QUEUE, limits).await?;
    }
    let enqueue = enqueue_batches(&client, n, batch, make).await?;
    let tally = Tally::tracking(n);
    let start = Instant::now();
    let worker = spawn_worker(store.backend.clone(), tally.clone(), c)?;
    wait_done(&tally, n, || 0).await?;
    let took = start.elapsed();
    let stats = worker.shutdown().await?;
    verify(&tally, stats.completed, n, &store.backend).await?;
    row.enqueue = Some(rate(n, enqueue));
    row.process = Some(rate(n, took));
    Ok(())
}

async fn verify(tally: &Tally, completed: u64, n: u64, backend: &AnyBackend) -> anyhow::Result<()> {
    tally.check()?;
    if completed != n {
        bail!("NOT EXACTLY ONCE: the worker completed {completed} jobs, {n} were enqueued");
    }
    check_store_drained(backend).await
}

/// Pickup latency on an idle queue: enqueue one job, time until its handler starts.
pub(crate) async fn latency(
    bench: &Bench,
    args: &Args,
    c: usize,
    row: &mut Row,
) -> anyhow::Result<()> {
    let n = args.samples;
    row.jobs = n;
    let store = bench.fresh("latency").await?;
    let client = Client::new(store.backend.clone());
    let tally = Tally::tracking(n);
    let mut starts = tally.watch_starts();
    let worker = spawn_worker(store.backend.clone(), tally.clone(), c)?;
    // Let the worker find the queue empty and wait for work.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut samples = Vec::with_capacity(n as usize);
    for i in 0..n {
        let t0 = Instant::now();
        client.enqueue(Probe { n: i }).await?;
        let (got, t1) = tokio::time::timeout(Duration::from_secs(30), starts.recv())
            .await
            .with_context(|| format!("probe {i} did not start within 30 s"))?
            .context("worker gone")?;
        if got != i {
            bail!("probe {got} started while waiting for probe {i}");
        }
        samples.push(t1 - t0);
        wait_done(&tally, i + 1, || 0).await?;
        // Idle again: the completion is stored and the worker waits for work.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = worker.shutdown().await?;
    verify(&tally, stats.completed, n, &store.backend).await?;
    samples.sort();
    row.p50 = Some(percentile(&samples, 50.0));
    row.p99 = Some(percentile(&samples, 99.0));
    row.note = format!(
        "enqueue call → handler start; max {:.2} ms",
        samples.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    Ok(())
}

/// The `p`th percentile (nearest rank) of sorted samples.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Single awaited enqueues from one caller (no worker).
pub(crate) async fn enqueue(bench: &Bench, args: &Args, row: &mut Row) -> anyhow::Result<()> {
    let n = args.single_jobs.unwrap_or(args.jobs.min(20_000));
    row.jobs = n;
    let store = bench.fresh("enqueue").await?;
    let client = Client::new(store.backend.clone());
    let start = Instant::now();
    let mut ids = Vec::with_capacity(n as usize);
    for i in 0..n {
        ids.push(client.enqueue(Noop { n: i }).await?.id());
    }
    let took = start.elapsed();
    ids.sort();
    ids.dedup();
    if ids.len() as u64 != n {
        bail!("{n} enqueues returned only {} distinct ids", ids.len());
    }
    let ready: u64 = store
        .backend
        .counts()
        .await?
        .iter()
        .filter(|c| c.queue == QUEUE)
        .map(|c| c.ready)
        .sum();
    if ready != n {
        bail!("{n} jobs enqueued but {ready} are ready");
    }
    row.enqueue = Some(rate(n, took));
    row.note = "single awaited enqueue, one caller".into();
    Ok(())
}

/// Single enqueues from `--tasks` concurrent tasks, one job each, round after round (no
/// worker): a busy web process.
pub(crate) async fn concurrent(bench: &Bench, args: &Args, row: &mut Row) -> anyhow::Result<()> {
    let n = args.single_jobs.unwrap_or(args.jobs.min(100_000));
    row.jobs = n;
    let store = bench.fresh("concurrent").await?;
    let client = Client::new(store.backend.clone());
    let start = Instant::now();
    let mut ids = Vec::with_capacity(n as usize);
    let mut next = 0;
    while next < n {
        let end = (next + args.tasks as u64).min(n);
        let mut set = tokio::task::JoinSet::new();
        for i in next..end {
            let client = client.clone();
            set.spawn(async move { client.enqueue(Noop { n: i }).await });
        }
        while let Some(r) = set.join_next().await {
            ids.push(r.context("enqueue task")??.id());
        }
        next = end;
    }
    let took = start.elapsed();
    ids.sort();
    ids.dedup();
    if ids.len() as u64 != n {
        bail!("{n} enqueues returned only {} distinct ids", ids.len());
    }
    let ready: u64 = store
        .backend
        .counts()
        .await?
        .iter()
        .filter(|c| c.queue == QUEUE)
        .map(|c| c.ready)
        .sum();
    if ready != n {
        bail!("{n} jobs enqueued but {ready} are ready");
    }
    row.enqueue = Some(rate(n, took));
    row.note = format!(
        "single enqueues from {} concurrent tasks{}",
        args.tasks,
        if args.no_coalesce {
            ", coalescing off"
        } else {
            ""
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let s: Vec<_> = (1..=200).map(Duration::from_millis).collect();
        assert_eq!(percentile(&s, 50.0), Duration::from_millis(100));
        assert_eq!(percentile(&s, 99.0), Duration::from_millis(198));
        assert_eq!(percentile(&s[..1], 99.0), Duration::from_millis(1));
    }
}
