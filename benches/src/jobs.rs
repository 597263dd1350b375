//! The jobs the benches run, all on queue [`QUEUE`], each carrying its number `n` so the
//! [`Tally`] can check that it ran exactly once.

use std::time::Duration;

use kosh_jobs::worker::WorkerHandle;
use kosh_jobs::{AnyBackend, Handler, Job, JobContext, JobError, Worker};
use serde::{Deserialize, Serialize};

use crate::tally::Tally;

/// The queue of every bench job.
pub const QUEUE: &str = "bench";

/// Does nothing: measures the library's overhead per job.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Noop {
    /// The job's number.
    pub n: u64,
}

impl Job for Noop {
    type Output = ();
    const NAME: &'static str = "bench_noop";
    const QUEUE: &'static str = QUEUE;
}

impl Handler<Tally> for Noop {
    async fn run(self, ctx: JobContext<Tally>) -> Result<(), JobError> {
        ctx.state().record(self.n);
        Ok(())
    }
}

/// Sleeps 10 ms, like a job waiting on a remote API: shows how throughput scales with
/// concurrency (at most 100 × concurrency jobs/s).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Sleep10 {
    /// The job's number.
    pub n: u64,
}

/// How long a [`Sleep10`] job sleeps.
pub const SLEEP: Duration = Duration::from_millis(10);

impl Job for Sleep10 {
    type Output = ();
    const NAME: &'static str = "bench_sleep10";
    const QUEUE: &'static str = QUEUE;
}

impl Handler<Tally> for Sleep10 {
    async fn run(self, ctx: JobContext<Tally>) -> Result<(), JobError> {
        tokio::time::sleep(SLEEP).await;
        ctx.state().record(self.n);
        Ok(())
    }
}

/// Reports the moment its handler starts (pickup latency), then does nothing.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Probe {
    /// The job's number.
    pub n: u64,
}

impl Job for Probe {
    type Output = ();
    const NAME: &'static str = "bench_probe";
    const QUEUE: &'static str = QUEUE;
}

impl Handler<Tally> for Probe {
    async fn run(self, ctx: JobContext<Tally>) -> Result<(), JobError> {
        ctx.state().started(self.n);
        ctx.state().record(self.n);
        Ok(())
    }
}

/// Starts a worker for all bench jobs at the given concurrency, with default timings.
pub fn spawn_worker(
    backend: AnyBackend,
    tally: Tally,
    concurrency: usize,
) -> anyhow::Result<WorkerHandle> {
    Ok(Worker::builder(backend)
        .state(tally)
        .register::<Noop>()
        .register::<Sleep10>()
        .register::<Probe>()
        .concurrency(concurrency)
        .build()?
        .spawn())
}
