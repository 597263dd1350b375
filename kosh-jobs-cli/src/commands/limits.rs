//! `queues limits` and `queues limit`: flow control (see `kosh_jobs::limits`).

use comfy_table::{Cell, CellAlignment};
use kosh_jobs::backend::validate_queue_name;
use kosh_jobs::{GroupFlow, GroupQuery, QueueFlow, QueueLimits, RateLimit, Timestamp};
use serde_json::{json, Value};

use super::Session;
use crate::args::{GroupsArgs, LimitArgs};
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
    if let Some(k) = l.group_concurrency {
        parts.push(format!(
            "at most {} running per group",
            thousands(u64::from(k))
        ));
    }
    if let Some(r) = l.group_rate {
        parts.push(format!(
            "at most {} starts per group per {}",
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
        "group_concurrency": l.group_concurrency,
        "group_rate": l.group_rate.map(|r| json!({"max": r.max, "per_ms": r.per.as_millis() as u64})),
    })
}

fn flow_json(f: &QueueFlow) -> Value {
    json!({
        "queue": f.queue,
        "limits": limits_json(&f.limits),
        "running": f.running,
        "starts_in_window": f.starts_in_window,
        "next_start_at": f.next_start_at.map(time::iso),
        "held_until": f.held_until.map(time::iso),
        "groups_running": f.groups_running,
        "groups_at_limit": f.groups_at_limit,
        "held_in_groups": f.held_in_groups,
    })
}

fn next_start(f: &QueueFlow, now: Timestamp) -> String {
    if let Some(t) = f.held_until {
        return format!("held until {}", time::both(t, now));
    }
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

/// `3 running, 1 full (1 per group)`, or `-` without a group limit and no group running.
fn groups_text(f: &QueueFlow) -> String {
    let mut per_group = Vec::new();
    if let Some(k) = f.limits.group_concurrency {
        per_group.push(thousands(u64::from(k)));
    }
    if let Some(r) = f.limits.group_rate {
        per_group.push(rate_text(r));
    }
    if per_group.is_empty() {
        return if f.groups_running > 0 {
            format!("{} running", thousands(f.groups_running))
        } else {
            "-".to_owned()
        };
    }
    let mut out = format!(
        "{} running, {} full ({} per group)",
        thousands(f.groups_running),
        thousands(f.groups_at_limit),
        per_group.join(", ")
    );
    if f.held_in_groups > 0 {
        out.push_str(&format!(", {} jobs waiting", thousands(f.held_in_groups)));
    }
    out
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
        return line(
            "no queue has limits or a hold (set some with `kosh-jobs queues limit QUEUE ...`)",
        );
    }
    let now = s.now();
    let mut t = s.out.table(&[
        "QUEUE",
        "RUNNING",
        "CONCURRENCY",
        "STARTS",
        "RATE",
        "GROUPS",
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
            Cell::new(groups_text(f)),
            Cell::new(next_start(f, now)),
        ]);
    }
    line(&render(t))
}

fn group_json(g: &GroupFlow) -> Value {
    json!({
        "group": g.group,
        "ready": g.ready.count,
        "ready_exact": g.ready.exact,
        "running": g.running,
        "starts_in_window": g.starts_in_window,
        "at_limit": g.at_limit,
        "next_start_at": g.next_start_at.map(time::iso),
    })
}

/// Where a group stands: `may start`, `full`, or `full, opens in 4 s (…)`.
fn group_state(g: &GroupFlow, now: Timestamp) -> String {
    match (g.at_limit, g.next_start_at) {
        (false, _) => "may start".to_owned(),
        (true, Some(t)) => format!("full, opens {}", time::both(t, now)),
        (true, None) => "full until a running job ends".to_owned(),
    }
}

pub(super) async fn groups(s: &Session, a: &GroupsArgs) -> Result<(), CliError> {
    validate_queue_name(&a.queue).map_err(CliError::Usage)?;
    let mut query = GroupQuery::new(&a.queue).limit(usize::from(a.limit));
    if let Some(after) = &a.after {
        query = query.after(after);
    }
    let page = s
        .admin
        .backend()
        .queue_groups(&query)
        .await
        .ctx(&s.target, "cannot list the queue's groups")?;
    if s.out.json {
        return s.out.json(&json!({
            "queue": a.queue,
            "groups": page.groups.iter().map(group_json).collect::<Vec<_>>(),
            "next": page.next,
        }));
    }
    if page.groups.is_empty() {
        return line(&format!(
            "{}: no group has a ready or running job{}",
            a.queue,
            if a.after.is_some() {
                " after that one"
            } else {
                ""
            }
        ));
    }
    let now = s.now();
    let mut t = s
        .out
        .table(&["GROUP", "READY", "RUNNING", "STARTS IN WINDOW", "STATE"]);
    for g in &page.groups {
        t.add_row(vec![
            Cell::new(&g.group),
            Cell::new(g.ready.to_string()).set_alignment(CellAlignment::Right),
            Cell::new(thousands(g.running)).set_alignment(CellAlignment::Right),
            Cell::new(thousands(g.starts_in_window)).set_alignment(CellAlignment::Right),
            Cell::new(group_state(g, now)),
        ]);
    }
    line(&render(t))?;
    let full = page.groups.iter().filter(|g| g.at_limit).count() as u64;
    line(&format!(
        "{} group{}, {} at {} limit",
        thousands(page.groups.len() as u64),
        if page.groups.len() == 1 { "" } else { "s" },
        thousands(full),
        if full == 1 { "its" } else { "their" }
    ))?;
    if let Some(next) = &page.next {
        line(&format!(
            "next page: {}",
            s.out.bold(&super::jobs::next_page_command(
                std::env::args().skip(1),
                next
            ))
        ))?;
    }
    Ok(())
}

pub(super) async fn set(s: &Session, a: &LimitArgs) -> Result<(), CliError> {
    validate_queue_name(&a.queue).map_err(CliError::Usage)?;
    let limits = if a.clear {
        QueueLimits::NONE
    } else {
        QueueLimits {
            concurrency: a.concurrency,
            rate: a.rate,
            group_concurrency: a.group_concurrency,
            group_rate: a.group_rate,
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

pub(super) async fn hold(
    s: &Session,
    queue: &str,
    duration: std::time::Duration,
) -> Result<(), CliError> {
    validate_queue_name(queue).map_err(CliError::Usage)?;
    let until = s.now() + duration;
    s.admin
        .backend()
        .hold_queue(queue, until)
        .await
        .ctx(&s.target, "cannot hold the queue")?;
    if s.out.json {
        return s
            .out
            .json(&json!({"queue": queue, "held_until": time::iso(until)}));
    }
    line(&format!(
        "{queue}: no job starts before {} (every worker; a longer hold already set stays)",
        time::both(until, s.now())
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
        assert_eq!(
            describe(&QueueLimits::default().with_group_concurrency(2)),
            "at most 2 running per group"
        );
    }
}
