//! The soak's jobs and what their handlers do, and the execution log each worker process
//! appends to: one line per event, one `write()` per line, on a file opened with `O_APPEND`.
//!
//! ```text
//! start KEY ATTEMPT PID MS     a handler started (MS: milliseconds since the Unix epoch)
//! done KEY ATTEMPT PID MS      it returned success
//! fail KEY ATTEMPT PID MS      it failed on purpose (an error, or just before a panic)
//! ```

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kosh_jobs::{Backoff, Handler, Job, JobContext, JobError, JobOptions};
use serde::{Deserialize, Serialize};

/// The queue of every soak job.
pub(crate) const QUEUE: &str = "soak";

/// Attempts allowed to every soak job: enough that faults alone do not use them up.
pub(crate) const MAX_ATTEMPTS: u32 = 8;

/// The timeout of [`SoakTimeoutJob`], which sleeps past it on its first attempt.
pub(crate) const TIMEOUT: Duration = Duration::from_millis(500);

/// What a job's handler does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Act {
    /// Sleeps a little and succeeds.
    Plain,
    /// Fails its first N attempts, then succeeds.
    FailThenOk(u32),
    /// Fails permanently: ends `failed` after one attempt, on purpose.
    Permanent,
    /// Panics on its first attempt.
    PanicOnce,
    /// Blocks its thread past the lease (`block_ms`) on its first attempt, then succeeds.
    BlockOnce,
    /// Sleeps past [`TIMEOUT`] on its first attempt ([`SoakTimeoutJob`] only).
    TimeoutOnce,
}

impl Act {
    /// Whether attempt `attempt` fails on purpose.
    pub(crate) fn fails(self, attempt: u32) -> bool {
        match self {
            Act::Plain | Act::BlockOnce => false,
            Act::FailThenOk(n) => attempt <= n,
            Act::Permanent => true,
            Act::PanicOnce | Act::TimeoutOnce => attempt == 1,
        }
    }

    /// Whether the job is meant to end `failed`.
    pub(crate) fn ends_failed(self) -> bool {
        self == Act::Permanent
    }
}

/// A soak job: its identity is `key`, unique in a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SoakJob {
    pub(crate) key: u64,
    pub(crate) act: Act,
    /// How long a normal execution sleeps.
    pub(crate) sleep_ms: u64,
    /// How long a [`Act::BlockOnce`] blocks its thread.
    pub(crate) block_ms: u64,
}

fn options() -> JobOptions {
    let backoff = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(2))
        .expect("a valid backoff");
    JobOptions::new()
        .max_attempts(MAX_ATTEMPTS)
        .backoff(backoff)
}

impl Job for SoakJob {
    type Output = String;
    const NAME: &'static str = "soak_job";
    const QUEUE: &'static str = QUEUE;
    fn options() -> JobOptions {
        options()
    }
}

/// A soak job of a type with a timeout ([`TIMEOUT`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SoakTimeoutJob(pub(crate) SoakJob);

impl Job for SoakTimeoutJob {
    type Output = String;
    const NAME: &'static str = "soak_timeout_job";
    const QUEUE: &'static str = QUEUE;
    fn options() -> JobOptions {
        options().timeout(TIMEOUT)
    }
}

/// The message of the intended panics (the child's panic hook keeps them quiet).
pub(crate) const PANIC_MESSAGE: &str = "soak: intended panic";

async fn run(job: SoakJob, ctx: JobContext<ExecLog>) -> Result<String, JobError> {
    let log = ctx.state();
    let attempt = ctx.attempt();
    log.line("start", job.key, attempt);
    let first = attempt == 1;
    match job.act {
        Act::BlockOnce if first => std::thread::sleep(Duration::from_millis(job.block_ms)),
        Act::TimeoutOnce if first => tokio::time::sleep(TIMEOUT * 4).await,
        _ => tokio::time::sleep(Duration::from_millis(job.sleep_ms)).await,
    }
    if job.act.fails(attempt) {
        log.line("fail", job.key, attempt);
        if job.act == Act::PanicOnce {
            panic!("{PANIC_MESSAGE}");
        }
        let e = format!("soak: attempt {attempt} fails on purpose");
        return Err(if job.act.ends_failed() {
            JobError::permanent(e)
        } else {
            JobError::retryable(e)
        });
    }
    log.line("done", job.key, attempt);
    Ok(format!("{} {attempt}", log.pid))
}

impl Handler<ExecLog> for SoakJob {
    async fn run(self, ctx: JobContext<ExecLog>) -> Result<String, JobError> {
        run(self, ctx).await
    }
}

impl Handler<ExecLog> for SoakTimeoutJob {
    async fn run(self, ctx: JobContext<ExecLog>) -> Result<String, JobError> {
        run(self.0, ctx).await
    }
}

/// A worker process's execution log.
#[derive(Clone)]
pub(crate) struct ExecLog {
    file: Arc<File>,
    pid: u32,
}

impl ExecLog {
    pub(crate) fn open(path: &Path) -> anyhow::Result<ExecLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(ExecLog {
            file: Arc::new(file),
            pid: std::process::id(),
        })
    }

    fn line(&self, what: &str, key: u64, attempt: u32) {
        let line = format!("{what} {key} {attempt} {} {}\n", self.pid, now_ms());
        // One write() per line: lines of concurrent handlers never interleave.
        if let Err(e) = (&*self.file).write(line.as_bytes()) {
            eprintln!("soak worker {}: cannot write its log: {e}", self.pid);
        }
    }
}

/// Milliseconds since the Unix epoch (all processes of a run share the machine's clock).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
