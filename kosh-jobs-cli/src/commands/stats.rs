//! `stats`, `queues ls|pause|resume`, `workers`.

use comfy_table::{Cell, CellAlignment};
use kosh_jobs::admin::json::{self, TimeFormat};
use kosh_jobs::admin::LiveWorker;
use kosh_jobs::backend::validate_queue_name;
use kosh_jobs::{Finished, JobState, QueueStats, Stats, Timestamp};
use serde_json::{json, Value};

use super::Session;
use crate::error::{CliError, Context as _};
use crate::output::{line, render, thousands};
use crate::time;

fn finished_json(f: Finished) -> Value {
    json!({"completed": f.completed, "failed": f.failed})
}

/// One queue of `stats` / `queues ls` as JSON.
pub(super) fn queue_json(q: &QueueStats, with_rates: bool) -> Value {
    let c = &q.counts;
    let mut v = json!({
        "queue": c.queue,
        "paused": c.paused,
        "counts": {
            "scheduled": c.scheduled,
            "ready": c.ready,
            "running": c.running,
            "completed": c.completed,
            "failed": c.failed,
            "cancelled": c.cancelled,
        },
        "oldest_ready_at": c.oldest_ready_at.map(time::iso),
        "oldest_ready_age_ms": q.oldest_ready_age.map(|d| d.as_millis() as u64),
    });
    if with_rates {
        v["last_minute"] = finished_json(q.last_minute);
        v["last_hour"] = finished_json(q.last_hour);
        v["last_day"] = finished_json(q.last_day);
    }
    v
}

pub(super) async fn snapshot(s: &Session) -> Result<Stats, CliError> {
    s.admin
        .stats()
        .await
        .ctx(&s.target, "cannot read the stats")
}

fn rate(f: Finished) -> String {
    format!("{}/{}", thousands(f.completed), thousands(f.failed))
}

fn latency(q: &QueueStats) -> String {
    q.oldest_ready_age.map_or_else(|| "-".into(), time::span)
}

/// The per-queue table of `stats` and `watch`.
pub(super) fn stats_table(s: &Session, stats: &Stats) -> String {
    let mut t = s.out.table(&[
        "QUEUE",
        "PAUSED",
        "SCHEDULED",
        "READY",
        "RUNNING",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "LATENCY",
        "DONE/FAILED 1M",
        "1H",
        "24H",
    ]);
    for q in &stats.queues {
        let c = &q.counts;
        let mut row = vec![
            Cell::new(&c.queue),
            Cell::new(if c.paused { "paused" } else { "" }),
        ];
        for st in JobState::ALL {
            let n = c.get(st);
            let cell = Cell::new(thousands(n)).set_alignment(CellAlignment::Right);
            row.push(if n > 0 && st == JobState::Failed && s.out.color {
                cell.fg(comfy_table::Color::Red)
            } else {
                cell
            });
        }
        row.push(Cell::new(latency(q)).set_alignment(CellAlignment::Right));
        for f in [q.last_minute, q.last_hour, q.last_day] {
            row.push(Cell::new(rate(f)).set_alignment(CellAlignment::Right));
        }
        t.add_row(row);
    }
    render(t)
}

pub(super) async fn stats(s: &Session) -> Result<(), CliError> {
    let stats = snapshot(s).await?;
    if s.out.json {
        return s.out.json(&json!({
            "at": time::iso(stats.at),
            "queues": stats.queues.iter().map(|q| queue_json(q, true)).collect::<Vec<_>>(),
            "workers": stats.workers.len(),
        }));
    }
    if stats.queues.is_empty() {
        line("no queues yet")?;
    } else {
        line(&stats_table(s, &stats))?;
    }
    line("")?;
    line(&format!(
        "{} live worker{}, {}",
        stats.workers.len(),
        if stats.workers.len() == 1 { "" } else { "s" },
        s.out.dim(&format!(
            "as of {} (DONE/FAILED: jobs completed/failed in the last minute, hour, day)",
            time::abs(stats.at)
        ))
    ))
}

pub(super) async fn queues(s: &Session) -> Result<(), CliError> {
    let stats = snapshot(s).await?;
    if s.out.json {
        return s.out.json(&Value::Array(
            stats.queues.iter().map(|q| queue_json(q, false)).collect(),
        ));
    }
    if stats.queues.is_empty() {
        return line("no queues yet");
    }
    let mut t = s.out.table(&[
        "QUEUE",
        "STATUS",
        "READY",
        "RUNNING",
        "SCHEDULED",
        "FAILED",
        "LATENCY",
    ]);
    for q in &stats.queues {
        let c = &q.counts;
        t.add_row(vec![
            Cell::new(&c.queue),
            Cell::new(if c.paused { "paused" } else { "active" }),
            Cell::new(thousands(c.ready)).set_alignment(CellAlignment::Right),
            Cell::new(thousands(c.running)).set_alignment(CellAlignment::Right),
            Cell::new(thousands(c.scheduled)).set_alignment(CellAlignment::Right),
            Cell::new(thousands(c.failed)).set_alignment(CellAlignment::Right),
            Cell::new(latency(q)).set_alignment(CellAlignment::Right),
        ]);
    }
    line(&render(t))
}

pub(super) async fn pause(s: &Session, queue: &str, pause: bool) -> Result<(), CliError> {
    validate_queue_name(queue).map_err(CliError::Usage)?;
    let b = s.admin.backend();
    if pause {
        b.pause(queue)
            .await
            .ctx(&s.target, "cannot pause the queue")?;
    } else {
        b.resume(queue)
            .await
            .ctx(&s.target, "cannot resume the queue")?;
    }
    if s.out.json {
        return s.out.json(&json!({"queue": queue, "paused": pause}));
    }
    line(&if pause {
        format!("paused {queue}: workers take no more of its jobs (running ones go on)")
    } else {
        format!("resumed {queue}")
    })
}

pub(super) async fn workers(s: &Session) -> Result<(), CliError> {
    let workers = s
        .admin
        .workers()
        .await
        .ctx(&s.target, "cannot list the workers")?;
    if s.out.json {
        return s.out.json(&Value::Array(
            workers
                .iter()
                .map(|w| json::worker(w, TimeFormat::Rfc3339))
                .collect(),
        ));
    }
    if workers.is_empty() {
        return line("no live workers");
    }
    let now = s.now();
    line(&workers_table(s, &workers, now))
}

fn workers_table(s: &Session, workers: &[LiveWorker], now: Timestamp) -> String {
    let mut t = s.out.table(&[
        "WORKER",
        "HOST",
        "PID",
        "VERSION",
        "QUEUES",
        "RUNNING",
        "STARTED",
        "LAST SEEN",
    ]);
    for w in workers {
        let ids: Vec<String> = w.jobs.iter().take(5).map(|j| j.to_string()).collect();
        let more = if w.jobs.len() > 5 { ", …" } else { "" };
        t.add_row(vec![
            Cell::new(&w.info.id),
            Cell::new(&w.info.host),
            Cell::new(w.info.pid),
            Cell::new(&w.info.version),
            Cell::new(w.info.queues.join(",")),
            Cell::new(format!(
                "{}/{}{}",
                w.jobs.len(),
                w.info.concurrency,
                if ids.is_empty() {
                    String::new()
                } else {
                    format!(" ({}{more})", ids.join(", "))
                }
            )),
            Cell::new(time::both(w.info.started_at, now)),
            Cell::new(time::rel(w.last_seen, now)),
        ]);
    }
    render(t)
}
