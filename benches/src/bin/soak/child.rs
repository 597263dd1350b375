//! The worker role: the soak binary re-executed with `--child`. It opens the store from its
//! URL with [`kosh_jobs::connect`], runs a real [`Worker`] on the soak queue, logs each
//! execution to its own file, and shuts down gracefully when its standard input closes.

use std::io::Read as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use kosh_jobs::Worker;

use crate::jobs::{ExecLog, SoakJob, SoakTimeoutJob, PANIC_MESSAGE};

/// How a worker process is started.
#[derive(Clone, Debug)]
pub(crate) struct ChildArgs {
    pub(crate) url: String,
    pub(crate) log: PathBuf,
    pub(crate) lease: Duration,
    pub(crate) concurrency: usize,
}

impl ChildArgs {
    /// The flags that start this role.
    pub(crate) fn to_args(&self) -> Vec<String> {
        vec![
            "--child".into(),
            "--url".into(),
            self.url.clone(),
            "--log".into(),
            self.log.display().to_string(),
            "--lease-ms".into(),
            self.lease.as_millis().to_string(),
            "--concurrency".into(),
            self.concurrency.to_string(),
        ]
    }
}

/// How long a new worker keeps trying to open the store (it may start during a restart).
const CONNECT_DEADLINE: Duration = Duration::from_secs(60);

pub(crate) async fn run(args: ChildArgs) -> anyhow::Result<()> {
    quiet_intended_panics();
    let log = ExecLog::open(&args.log).with_context(|| format!("{}", args.log.display()))?;
    let started = Instant::now();
    let backend = loop {
        match kosh_jobs::connect(&args.url).await {
            Ok(b) => break b,
            Err(e) if started.elapsed() < CONNECT_DEADLINE => {
                eprintln!("soak worker {}: connect: {e}; retrying", std::process::id());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e).context("opening the store"),
        }
    };
    let (eof_tx, eof) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        let _ = eof_tx.send(());
    });
    Worker::builder(backend)
        .state(log)
        .register::<SoakJob>()
        .register::<SoakTimeoutJob>()
        .concurrency(args.concurrency)
        .lease(args.lease)
        .grace_period(Duration::from_secs(5))
        .schedules(false)
        .build()?
        .run_until(async {
            let _ = eof.await;
        })
        .await?;
    Ok(())
}

/// Keeps the handlers' intended panics off stderr; every other panic still prints.
fn quiet_intended_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied());
        if msg != Some(PANIC_MESSAGE) {
            default(info);
        }
    }));
}
