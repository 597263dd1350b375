//! `GET api/overview`: every queue, its limits, and the live workers, in four backend calls.

use std::time::Duration;

use axum::extract::State;
use axum::Json;
use kosh_jobs_core::admin::{minute_of, ThroughputQuery};
use kosh_jobs_core::{Backend as _, JobState, QueueCounts, QueueFlow, RateLimit, Timestamp};
use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::router::Shared;

/// Minutes in the chart.
const MINUTES: usize = 60;

/// Per queue: counts per state, paused, the oldest ready job, completed and failed per
/// minute over the last hour (60 points, oldest first, the current minute last) with their
/// sums and failure ratio; and how many workers are live and how many jobs they run.
///
/// `Admin::stats` reads a day of throughput and sums it into windows; the chart needs the
/// minutes of one hour, so this reads counts, one hour of throughput and the workers itself.
pub(crate) async fn overview(State(s): State<Shared>) -> Result<Json<Value>, ApiError> {
    let backend = s.admin.backend();
    let now = backend.clock().now();
    let this_minute = minute_of(now);
    let first = this_minute - Duration::from_secs(60 * (MINUTES as u64 - 1));
    let counts = backend.counts().await?;
    let points = backend
        .throughput(&ThroughputQuery {
            queue: None,
            since: first,
        })
        .await?;
    let workers = backend.workers().await?;
    let flows = backend.queue_flows().await?;

    let mut queues: Vec<Row> = counts.iter().map(|c| Row::new(c, now)).collect();
    for f in flows {
        let i = match queues.iter().position(|q| q.name == f.queue) {
            Some(i) => i,
            None => {
                // A limited queue with no jobs yet: shown, so its limits are seen.
                queues.push(Row::new(&QueueCounts::empty(f.queue.clone()), now));
                queues.len() - 1
            }
        };
        queues[i].fields.insert("limits".into(), flow_json(&f));
    }
    for p in points {
        let slot = (p.minute.as_millis() - first.as_millis()).div_euclid(60_000);
        let Some(slot) = usize::try_from(slot).ok().filter(|s| *s < MINUTES) else {
            continue;
        };
        let i = match queues.iter().position(|q| q.name == p.queue) {
            Some(i) => i,
            None => {
                // A queue with no jobs left (purged) that finished jobs this hour.
                queues.push(Row::new(&QueueCounts::empty(p.queue.clone()), now));
                queues.len() - 1
            }
        };
        let cell = &mut queues[i].series[slot];
        cell.0 += p.completed;
        cell.1 += p.failed;
    }
    queues.sort_by(|a, b| a.name.cmp(&b.name));
    let queues: Vec<Value> = queues
        .into_iter()
        .map(
            |Row {
                 name,
                 mut fields,
                 series,
             }| {
                let completed: u64 = series.iter().map(|c| c.0).sum();
                let failed: u64 = series.iter().map(|c| c.1).sum();
                let ratio =
                    (completed + failed > 0).then(|| failed as f64 / (completed + failed) as f64);
                fields.insert("queue".into(), json!(name));
                fields.insert(
                    "last_hour".into(),
                    json!({"completed": completed, "failed": failed, "failure_ratio": ratio}),
                );
                fields.insert(
                    "per_minute".into(),
                    series
                        .iter()
                        .enumerate()
                        .map(|(i, (c, f))| {
                            let minute = first + Duration::from_secs(60 * i as u64);
                            json!({"minute": minute.as_millis(), "completed": c, "failed": f})
                        })
                        .collect(),
                );
                Value::Object(fields)
            },
        )
        .collect();
    let running: usize = workers.iter().map(|w| w.jobs.len()).sum();
    Ok(Json(json!({
        "now": now.as_millis(),
        "queues": queues,
        "workers": {"live": workers.len(), "running": running},
    })))
}

/// One queue of the answer while it is built.
struct Row {
    name: String,
    fields: Map<String, Value>,
    /// (completed, failed) per minute, oldest first.
    series: Vec<(u64, u64)>,
}

impl Row {
    fn new(c: &QueueCounts, now: Timestamp) -> Row {
        let mut m = Map::new();
        m.insert("paused".into(), json!(c.paused));
        m.insert("limits".into(), Value::Null);
        let per_state: Map<String, Value> = JobState::ALL
            .into_iter()
            .map(|st| (st.as_str().to_owned(), json!(c.get(st))))
            .collect();
        m.insert("counts".into(), Value::Object(per_state));
        m.insert(
            "oldest_ready_at".into(),
            json!(c.oldest_ready_at.map(|t| t.as_millis())),
        );
        m.insert(
            "oldest_ready_age_ms".into(),
            json!(c
                .oldest_ready_at
                .map(|t| now.saturating_duration_since(t).as_millis() as u64)),
        );
        Row {
            name: c.queue.clone(),
            fields: m,
            series: vec![(0, 0); MINUTES],
        }
    }
}

/// A queue's limits and where it stands against them, as the pages read them (times in ms).
pub(crate) fn flow_json(f: &QueueFlow) -> Value {
    let rate = |r: RateLimit| {
        json!({
            "max": r.max,
            "per_ms": u64::try_from(r.per.as_millis()).unwrap_or(u64::MAX),
        })
    };
    json!({
        "concurrency": f.limits.concurrency,
        "rate": f.limits.rate.map(rate),
        "running": f.running,
        "starts_in_window": f.starts_in_window,
        "next_start_at": f.next_start_at.map(|t| t.as_millis()),
        "group_concurrency": f.limits.group_concurrency,
        "group_rate": f.limits.group_rate.map(rate),
        "groups_running": f.groups_running,
        "groups_at_limit": f.groups_at_limit,
        "held_in_groups": f.held_in_groups,
        "held_until": f.held_until.map(|t| t.as_millis()),
    })
}
