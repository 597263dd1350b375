//! A worker and a producer as separate processes, for this crate's fault tests (SIGKILL of a
//! worker mid-job, Redis restarted mid-run). Not meant for production use.
//!
//! ```text
//! kosh-jobs-redis-fault-worker worker  URL PREFIX LOG LEASE_MS
//! kosh-jobs-redis-fault-worker produce URL PREFIX LOG COUNT
//! ```
//!
//! The worker runs `fault_job`s from queue `faults` until its standard input closes, appending
//! `start N ATTEMPT PID` and `done N ATTEMPT PID` lines to LOG. A job with `block_first`
//! blocks forever on its first attempt (so the test can kill the worker mid-job); a job with
//! `sleep_ms` sleeps that long. The producer enqueues jobs 0..COUNT one at a time with unique
//! keys, retrying each until Redis takes it, appending `pushed N` (and before it
//! `retried N FAILURES 0` when it took more than one attempt). Both log to stderr.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kosh_jobs_core::{Client, Handler, Job, JobContext, JobError, Worker};
use kosh_jobs_redis::{RedisBackend, RedisOptions};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct FaultJob {
    n: u64,
    #[serde(default)]
    block_first: bool,
    #[serde(default)]
    sleep_ms: u64,
}

impl Job for FaultJob {
    type Output = ();
    const NAME: &'static str = "fault_job";
    const QUEUE: &'static str = "faults";
    fn unique_key(&self) -> Option<String> {
        Some(format!("job-{}", self.n))
    }
}

#[derive(Clone)]
struct Log(Arc<PathBuf>);

impl Log {
    fn line(&self, s: &str) {
        let mut f = match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&*self.0)
        {
            Ok(f) => f,
            Err(e) => {
                eprintln!("cannot open the log: {e}");
                std::process::exit(3)
            }
        };
        // One write per line: O_APPEND keeps lines of several processes whole.
        if let Err(e) = f.write_all(format!("{s}\n").as_bytes()) {
            eprintln!("cannot write the log: {e}");
            std::process::exit(3)
        }
    }
}

impl Handler<Log> for FaultJob {
    async fn run(self, ctx: JobContext<Log>) -> Result<(), JobError> {
        let pid = std::process::id();
        ctx.state()
            .line(&format!("start {} {} {pid}", self.n, ctx.attempt()));
        if self.block_first && ctx.attempt() == 1 {
            std::future::pending::<()>().await;
        }
        if self.sleep_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.sleep_ms)).await;
        }
        ctx.state()
            .line(&format!("done {} {} {pid}", self.n, ctx.attempt()));
        Ok(())
    }
}

/// Prints `LEVEL target: message fields` lines to stderr.
struct StderrLog;

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?} ");
        } else {
            let _ = write!(self.0, "{}={value:?} ", field.name());
        }
    }
}

impl tracing::Subscriber for StderrLog {
    fn enabled(&self, m: &tracing::Metadata<'_>) -> bool {
        *m.level() <= tracing::Level::INFO
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, e: &tracing::Event<'_>) {
        let mut f = Fields(String::new());
        e.record(&mut f);
        eprintln!(
            "{} {}: {}",
            e.metadata().level(),
            e.metadata().target(),
            f.0
        );
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn usage() -> ! {
    eprintln!("usage: fault_worker worker URL PREFIX LOG LEASE_MS | produce URL PREFIX LOG COUNT");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let _ = tracing::subscriber::set_global_default(StderrLog);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [role, url, prefix, log, n] = args.as_slice() else {
        usage()
    };
    let Ok(n) = n.parse::<u64>() else { usage() };
    let options = match RedisOptions::builder(url.as_str())
        .prefix(prefix.as_str())
        .build()
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bad options: {e}");
            std::process::exit(2)
        }
    };
    let backend = match RedisBackend::connect_with(options).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cannot connect: {e}");
            std::process::exit(1)
        }
    };
    let log = Log(Arc::new(PathBuf::from(log)));
    match role.as_str() {
        "worker" => {
            let worker = match Worker::builder(backend)
                .state(log)
                .register::<FaultJob>()
                .concurrency(8)
                .lease(Duration::from_millis(n))
                .build()
            {
                Ok(w) => w,
                Err(e) => {
                    eprintln!("bad worker: {e}");
                    std::process::exit(2)
                }
            };
            // Runs until standard input closes (the test drops its end).
            let stdin_closed = tokio::task::spawn_blocking(|| {
                let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            });
            match worker.run_until(stdin_closed).await {
                Ok(stats) => eprintln!("INFO fault_worker: stopped {stats:?}"),
                Err(e) => {
                    eprintln!("worker failed: {e}");
                    std::process::exit(1)
                }
            }
        }
        "produce" => {
            let client = Client::new(backend);
            for i in 0..n {
                let job = FaultJob {
                    n: i,
                    block_first: false,
                    sleep_ms: 20,
                };
                let mut failures = 0u32;
                loop {
                    match client.enqueue(FaultJob { ..job }).await {
                        Ok(_) => break,
                        Err(e) => {
                            failures += 1;
                            if failures == 1 {
                                eprintln!("WARN fault_worker: enqueue failed, retrying: {e}");
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
                if failures > 0 {
                    // The failed attempts may have been stored (their replies were lost): the
                    // test allows one extra job per retried enqueue, and no more.
                    log.line(&format!("retried {i} {failures} 0"));
                }
                log.line(&format!("pushed {i}"));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        _ => usage(),
    }
}
