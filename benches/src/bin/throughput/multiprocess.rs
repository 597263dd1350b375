//! Two worker processes on one store: this one and a copy of itself started with the hidden
//! `--worker-only` flag. They talk over the child's stdin/stdout, one line each:
//!
//! ```text
//! child  → ready            (store opened, worker built)
//! parent → go               (both start processing now)
//! child  → done K           (its runs so far, every few ms while it changes)
//! parent → stop             (every job has run)
//! child  → exit RSS_KIB COMPLETED STRAY   (worker shut down, its runs written to --runs-out)
//! ```
//!
//! The parent adds the child's record of runs to its own and checks that every job ran
//! exactly once across both processes.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use kosh_jobs::Client;
use kosh_jobs_benches::jobs::{spawn_worker, Noop};
use kosh_jobs_benches::rss;
use kosh_jobs_benches::store::{Bench, Locator};
use kosh_jobs_benches::tally::{check_exactly_once, merge_runs, read_runs, write_runs, Tally};
use tokio::sync::mpsc;

use crate::report::{rate, Row};
use crate::scenarios::{check_store_drained, enqueue_batches, wait_done};
use crate::Args;

/// Kills the child if the parent gives up early.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub(crate) async fn run(bench: &Bench, args: &Args, c: usize, row: &mut Row) -> anyhow::Result<()> {
    let n = args.jobs;
    let store = bench.fresh("multi").await?;
    if store.locator == Locator::Memory {
        row.note = "skipped: the memory backend cannot be shared by two processes".into();
        return Ok(());
    }
    let client = Client::new(store.backend.clone());
    let enqueue = enqueue_batches(&client, n, args.batch, |n| Noop { n }).await?;

    let dir = tempfile::tempdir()?;
    let runs_out = dir.path().join("child-runs");
    let mut child = ChildGuard(
        Command::new(std::env::current_exe().context("path of this program")?)
            .arg("--worker-only")
            .args(["--store", &store.locator.to_arg()])
            .args(["--jobs", &n.to_string()])
            .args(["--concurrency", &c.to_string()])
            .arg("--runs-out")
            .arg(&runs_out)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the second worker process")?,
    );
    let mut to_child = child.0.stdin.take().context("child stdin")?;
    let from_child = child.0.stdout.take().context("child stdout")?;
    let (lines_tx, mut lines) = mpsc::unbounded_channel::<String>();
    let child_done = Arc::new(AtomicU64::new(0));
    let counter = child_done.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(from_child).lines() {
            let Ok(line) = line else { break };
            if let Some(k) = line.strip_prefix("done ").and_then(|k| k.parse().ok()) {
                counter.store(k, Ordering::Release);
            } else if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let expect = |line: Option<String>, what: &str| -> anyhow::Result<String> {
        match line {
            Some(l) if l.starts_with(what) => Ok(l),
            Some(l) => bail!("second process said `{l}`, expected `{what}`"),
            None => bail!("second process exited before saying `{what}`"),
        }
    };
    let ready = tokio::time::timeout(Duration::from_secs(60), lines.recv())
        .await
        .context("second process not ready within 60 s")?;
    expect(ready, "ready")?;

    let tally = Tally::tracking(n);
    send(&mut to_child, "go")?;
    let start = Instant::now();
    let worker = spawn_worker(store.backend.clone(), tally.clone(), c)?;
    wait_done(&tally, n, || child_done.load(Ordering::Acquire)).await?;
    let took = start.elapsed();
    send(&mut to_child, "stop")?;
    let stats = worker.shutdown().await?;
    let exit = tokio::time::timeout(Duration::from_secs(60), lines.recv())
        .await
        .context("second process did not stop within 60 s")?;
    let exit = expect(exit, "exit ")?;
    let mut fields = exit.split_whitespace().skip(1);
    let child_rss: Option<u64> = fields.next().and_then(|f| f.parse().ok());
    let child_completed: u64 = fields
        .next()
        .and_then(|f| f.parse().ok())
        .context("exit line without a count")?;
    let child_stray: u64 = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0);
    let status = child.0.wait()?;
    if !status.success() {
        bail!("second process failed: {status}");
    }

    let mut runs = tally.runs();
    merge_runs(&mut runs, &read_runs(&runs_out)?)?;
    check_exactly_once(&runs, tally.stray() + child_stray)?;
    if stats.completed + child_completed != n {
        bail!(
            "NOT EXACTLY ONCE: the workers completed {} + {child_completed} jobs, {n} were enqueued",
            stats.completed
        );
    }
    check_store_drained(&store.backend).await?;
    row.enqueue = Some(rate(n, enqueue));
    row.process = Some(rate(n, took));
    row.child_rss_kib = child_rss;
    row.note = format!(
        "2 processes × c={c}; jobs run {} here, {child_completed} there",
        stats.completed
    );
    Ok(())
}

fn send(to: &mut ChildStdin, line: &str) -> anyhow::Result<()> {
    writeln!(to, "{line}")
        .and_then(|()| to.flush())
        .context("writing to the second process")
}

/// The second process: `--worker-only --store LOC --jobs N --concurrency C --runs-out PATH`.
pub(crate) async fn child(
    locator: &str,
    jobs: u64,
    concurrency: usize,
    runs_out: PathBuf,
) -> anyhow::Result<()> {
    let backend = Locator::from_arg(locator)?.open().await?;
    let tally = Tally::tracking(jobs);
    rss::reset_peak();
    let (stdin_tx, mut stdin) = mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if stdin_tx.send(line).is_err() {
                break;
            }
        }
    });
    println!("ready");
    match stdin.recv().await.as_deref() {
        Some("go") => {}
        other => bail!("expected `go`, got {other:?}"),
    }
    let worker = spawn_worker(backend, tally.clone(), concurrency)?;
    let reporter = {
        let tally = tally.clone();
        tokio::spawn(async move {
            let mut last = 0;
            loop {
                let done = tally.done();
                if done != last {
                    println!("done {done}");
                    last = done;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    // `stop`, or the parent went away: either way, stop cleanly.
    let _ = stdin.recv().await;
    let stats = worker.shutdown().await?;
    reporter.abort();
    write_runs(&runs_out, &tally.runs())?;
    println!(
        "exit {} {} {}",
        rss::peak_kib().unwrap_or(0),
        stats.completed,
        tally.stray()
    );
    Ok(())
}
