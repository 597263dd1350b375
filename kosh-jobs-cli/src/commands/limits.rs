//! `queues limits` and `queues limit`: flow control (see `kosh_jobs::limits`).

use comfy_table::{Cell, CellAlignment};
use kosh_jobs::backend::validate_queue_name;
use kosh_jobs::{QueueFlow, QueueLimits, RateLimit, Timestamp};
use serde_json::{json, Value};

use super::Session;
use crate::args::LimitArgs;
use crate::error::{CliError, Context as _};
use crate::output::{line, render, thousands};
use crate::time;

/// `100 per 1 s`.
fn rate_text(r: RateLimit) -> String {
    format!("{} per {}", thousands(u64::from(r.max)), time::span(r.per))
}

/// What the limits say, in words.
fn describe(l: &QueueLimits) -> String {
    let mut parts = Vec::new();
    if let Some(k) = l.concurrency {
        parts.push(format!("at most {} running", thousands(u64::from(k))));
    }
    if let Some(r) = l.rate {
        parts.push(format!(
            "at most {} starts per {}",
            thousands(u64::from(r.max)),
            time::span(r.per)
        ));
    }
    if parts.is_empty() {
        "no limits".to_owned()
    } else {
        parts.join(", ")
    }
}

fn limits_json(l: &QueueLimits) -> Value {
    json!({
        "concurrency": l.concurrency,
        "rate": l.rate.map(|r| json!({"max": r.max, "per_ms": r.per.as_millis() as u64})),
    })
}

fn flow_json(f: &QueueFlow) -> Value {
    json!({
        "queue": f.queue,
        "limits": limits_json(&f.limits),
        "running": f.running,
        "starts_in_window": f.starts_in_window,
        "next_start_at": f.next_start_at.map(time::iso),
    })
}

fn next_start(f: &QueueFlow, now: Timestamp) -> String {
    match f.next_start_at {
        Some(t) => time::both(t, now),
        None if f
            .limits
            .concurrency
            .is_some_and(|k| f.running >= u64::from(k)) =>
        {
            "when a running job ends".to_owned()
        }
        None => "now".to_owned(),
    }
}

pub(super) async fn list(s: &Session) -> Result<(), CliError> {
    let flows = s
        .admin
        .backend()
        .queue_flows()
        .await
        .ctx(&s.target, "cannot read the queues' limits")?;
    if s.out.json {
        return s
            .out
            .json(&Value::Array(flows.iter().map(flow_json).collect()));
    }
    if flows.is_empty() {
        return line("no queue has limits (set some with `kosh-jobs queues limit QUEUE ...`)");
    }
    let now = s.now();
    let mut t = s.out.table(&[
        "QUEUE",
        "RUNNING",
        "CONCURRENCY",
        "STARTS",
        "RATE",
        "NEXT START",
    ]);
    for f in &flows {
        let dash = || "-".to_owned();
        t.add_row(vec![
            Cell::new(&f.queue),
            Cell::new(thousands(f.running)).set_alignment(CellAlignment::Right),
            Cell::new(
                f.limits
                    .concurrency
                    .map_or_else(dash, |k| thousands(u64::from(k))),
            )
            .set_alignment(CellAlignment::Right),
            Cell::new(if f.limits.rate.is_some() {
                thousands(f.starts_in_window)
            } else {
                dash()
            })
            .set_alignment(CellAlignment::Right),
            Cell::new(f.limits.rate.map_or_else(dash, rate_text)),
            Cell::new(next_start(f, now)),
        ]);
    }
    line(&render(t))
}

pub(super) async fn set(s: &Session, a: &LimitArgs) -> Result<(), CliError> {
    validate_queue_name(&a.queue).map_err(CliError::Usage)?;
    let limits = if a.clear {
        QueueLimits::NONE
    } else {
        QueueLimits {
            concurrency: a.concurrency,
            rate: a.rate,
        }
    };
    limits.validate().map_err(CliError::Usage)?;
    s.admin
        .backend()
        .set_queue_limits(&a.queue, limits)
        .await
        .ctx(&s.target, "cannot set the queue's limits")?;
    if s.out.json {
        return s
            .out
            .json(&json!({"queue": a.queue, "limits": limits_json(&limits)}));
    }
    line(&format!(
        "{}: {} (every worker, from its next reserve)",
        a.queue,
        describe(&limits)
    ))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn limits_read_as_words() {
        assert_eq!(describe(&QueueLimits::NONE), "no limits");
        let l = QueueLimits::default()
            .with_concurrency(1)
            .with_rate(RateLimit::new(1000, Duration::from_secs(60)));
        assert_eq!(
            describe(&l),
            "at most 1 running, at most 1,000 starts per 1 min"
        );
    }
}
