//! Criterion benchmarks, the same on every backend: memory, SQLite (a file on disk) and Redis
//! (a `redis-server` started on a free port, or `KOSH_BENCH_REDIS_URL`).
//!
//! For each backend:
//! - `BACKEND/enqueue/single`: one awaited `enqueue` per job, one caller;
//! - `BACKEND/enqueue/batch_1000`: `enqueue_batch` of 1,000 jobs (throughput per job);
//! - `BACKEND/process_noop/C` for concurrency C = 1, 16, 64: end to end, one batch of 1,000
//!   no-op jobs enqueued to a running worker and waited for until all have run.
//!
//! If no Redis can be had, the Redis group says so and the rest runs. Each processing bench
//! checks at the end that the worker ran exactly as many jobs as were enqueued; the
//! throughput runner (`src/bin/throughput`) checks each job individually on larger runs.
//!
//! `cargo bench -p kosh-jobs-benches -- sqlite/` runs one backend only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use kosh_jobs::Client;
use kosh_jobs_benches::jobs::{spawn_worker, Noop};
use kosh_jobs_benches::store::{BackendKind, Bench};
use kosh_jobs_benches::tally::Tally;
use tokio::runtime::Runtime;

/// Jobs per batch (enqueue) and per iteration (processing).
const BATCH: u64 = 1_000;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn backends(c: &mut Criterion) {
    let rt = runtime();
    let kinds = [
        BackendKind::Memory,
        BackendKind::Sqlite { dir: None },
        BackendKind::Redis { url: None },
    ];
    for kind in kinds {
        let bench = match Bench::setup(&kind) {
            Ok(b) => b,
            Err(e) => {
                println!(
                    "\n{0}: SKIPPED, no {0} backend to measure: {e:#}\n",
                    kind.name()
                );
                continue;
            }
        };
        enqueue(c, &rt, &bench);
        process(c, &rt, &bench);
    }
}

fn enqueue(c: &mut Criterion, rt: &Runtime, bench: &Bench) {
    let mut g = c.benchmark_group(format!("{}/enqueue", bench.kind().name()));
    g.throughput(Throughput::Elements(1));
    g.bench_function("single", |b| {
        b.to_async(rt).iter_custom(|iters| async move {
            // A fresh store per sample, so the store does not grow without bound.
            let store = bench.fresh("crit-single").await.expect("fresh store");
            let client = Client::new(store.backend.clone());
            let start = Instant::now();
            for n in 0..iters {
                client.enqueue(Noop { n }).await.expect("enqueue");
            }
            start.elapsed()
        })
    });
    g.throughput(Throughput::Elements(BATCH));
    g.bench_function("batch_1000", |b| {
        b.to_async(rt).iter_custom(|iters| async move {
            let store = bench.fresh("crit-batch").await.expect("fresh store");
            let client = Client::new(store.backend.clone());
            let start = Instant::now();
            for i in 0..iters {
                let ids = client
                    .enqueue_batch((i * BATCH..(i + 1) * BATCH).map(|n| Noop { n }))
                    .await
                    .expect("enqueue_batch");
                assert_eq!(ids.len() as u64, BATCH);
            }
            start.elapsed()
        })
    });
    g.finish();
}

fn process(c: &mut Criterion, rt: &Runtime, bench: &Bench) {
    let mut g = c.benchmark_group(format!("{}/process_noop", bench.kind().name()));
    g.throughput(Throughput::Elements(BATCH));
    g.sampling_mode(SamplingMode::Flat);
    for concurrency in [1usize, 16, 64] {
        let store = rt
            .block_on(bench.fresh("crit-process"))
            .expect("fresh store");
        let client = Client::new(store.backend.clone());
        let tally = Tally::counting();
        let worker = rt
            .block_on(async { spawn_worker(store.backend.clone(), tally.clone(), concurrency) })
            .expect("worker");
        let sent = AtomicU64::new(0);
        g.bench_with_input(
            BenchmarkId::from_parameter(concurrency),
            &concurrency,
            |b, _| {
                b.to_async(rt).iter_custom(|iters| {
                    let (client, tally, sent) = (&client, &tally, &sent);
                    async move {
                        // Not timed: drop finished jobs so every sample starts alike.
                        client.purge(Duration::ZERO).await.expect("purge");
                        let start = Instant::now();
                        for _ in 0..iters {
                            let from = sent.fetch_add(BATCH, Ordering::Relaxed);
                            client
                                .enqueue_batch((from..from + BATCH).map(|n| Noop { n }))
                                .await
                                .expect("enqueue_batch");
                            tally.wait_for(from + BATCH).await;
                        }
                        start.elapsed()
                    }
                })
            },
        );
        let stats = rt.block_on(worker.shutdown()).expect("worker shutdown");
        let sent = sent.load(Ordering::Relaxed);
        assert!(
            stats.completed == sent && tally.done() == sent,
            "not every job ran exactly once: {sent} enqueued, {} completed, {} handler runs",
            stats.completed,
            tally.done()
        );
    }
    g.finish();
}

// The macro's function has no doc comment.
#[allow(missing_docs)]
mod group {
    use super::*;

    criterion_group! {
        name = benches;
        // Modest, so that `cargo bench` finishes in a few minutes on two cores.
        config = Criterion::default()
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
        targets = backends
    }
}
criterion_main!(group::benches);
