//! The worker's schedule runner: reads the schedules due soon, sleeps until the first tick,
//! fires it with one request.
//!
//! It keeps the schedules due before its next read in memory, so a tick costs one request
//! (the fire), and an idle worker one read per refresh. When another worker fired a tick
//! first (the fire is stale), it assumes that worker moved the cursor as it would have, and
//! reads again only if its next fire is stale too.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{plan, FireOutcome, Plan, ScheduleRecord, Timing};
use crate::any::AnyBackend;
use crate::backend::Backend;
use crate::clock::{Clock, Timestamp};
use crate::worker::outage::Outage;

/// How often an idle worker reads the schedules, by default.
pub(crate) const REFRESH: Duration = Duration::from_secs(60);

/// After a wake-up for nothing (see [`run`]), the schedules are read again, but not sooner than
/// this after the last read.
const REREAD_AFTER: Duration = Duration::from_secs(5);

/// At most this many schedules are read, and fired, per request.
const BATCH: usize = 200;

/// A schedule the runner will fire, as far as it knows.
struct Cached {
    rec: ScheduleRecord,
    /// Its cursor is a guess (another worker fired the previous tick).
    guessed: bool,
}

/// Fires due schedules until `stop` trips, reading them every `refresh`, and again (at most
/// every [`REREAD_AFTER`]) when `changed` is notified: the worker woke for nothing, which is
/// what a schedule created or resumed by another process does to it on a store that wakes
/// waiters for it (Redis), so a worker that reads the schedules seldom still fires its ticks.
pub(crate) async fn run(
    backend: AnyBackend,
    clock: Clock,
    refresh: Duration,
    changed: std::sync::Arc<tokio::sync::Notify>,
    stop: CancellationToken,
) {
    let mut cache: Vec<Cached> = Vec::new();
    let mut read_at = clock.now();
    let mut last_read = read_at;
    let mut outage = Outage::new("firing schedules");
    loop {
        if stop.is_cancelled() {
            return;
        }
        let now = clock.now();
        if now >= read_at {
            match backend.due_schedules(now + refresh, BATCH).await {
                Ok(list) => {
                    outage.ok();
                    last_read = now;
                    read_at = now + refresh;
                    if list.len() == BATCH {
                        // More may be due before the refresh: read again after the last one.
                        if let Some(t) = list.last().and_then(|r| r.next_fire) {
                            read_at = read_at.min(t.max(now + Duration::from_millis(1)));
                        }
                    }
                    cache = list
                        .into_iter()
                        .map(|rec| Cached {
                            rec,
                            guessed: false,
                        })
                        .collect();
                }
                Err(e) => {
                    let wait = outage.failed(&e);
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = clock.sleep(wait) => {}
                    }
                    continue;
                }
            }
        }
        let now = clock.now();
        let (due, later): (Vec<Cached>, Vec<Cached>) = cache
            .into_iter()
            .partition(|c| c.rec.next_fire.is_some_and(|t| t <= now));
        cache = later;
        if !due.is_empty() {
            match fire(&backend, due, now).await {
                Ok((kept, reread)) => {
                    outage.ok();
                    cache.extend(
                        kept.into_iter()
                            .filter(|c| c.rec.next_fire.is_some_and(|t| t < read_at)),
                    );
                    cache.sort_by_key(|c| c.rec.next_fire);
                    if reread {
                        read_at = now;
                    }
                }
                Err(e) => {
                    read_at = now;
                    let wait = outage.failed(&e);
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = clock.sleep(wait) => {}
                    }
                }
            }
            continue;
        }
        let wake = cache
            .first()
            .and_then(|c| c.rec.next_fire)
            .map_or(read_at, |t| t.min(read_at));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = clock.sleep_until(wake) => {}
            _ = changed.notified() => {
                read_at = read_at.min(clock.now().max(last_read + REREAD_AFTER));
            }
        }
    }
}

/// Fires the due schedules; returns them with their cursors moved, and whether to read the
/// schedules again (a fire was stale twice, or a definition could not be read).
async fn fire(
    backend: &AnyBackend,
    due: Vec<Cached>,
    now: Timestamp,
) -> Result<(Vec<Cached>, bool), crate::error::BackendError> {
    let mut reread = false;
    let mut plans: Vec<(Cached, Plan)> = Vec::with_capacity(due.len());
    for c in due {
        match Timing::new(&c.rec.def.every) {
            Ok(timing) => {
                if let Some(p) = plan(&c.rec, &timing, now) {
                    plans.push((c, p));
                }
            }
            Err(e) => {
                // Stored definitions were checked on upsert: this one was written by
                // something else. Leave it alone rather than guess.
                tracing::warn!(schedule = %c.rec.def.id, error = %e, "cannot read a schedule's timing; it does not fire");
                reread = true;
            }
        }
    }
    let mut kept = Vec::with_capacity(plans.len());
    for chunk in chunks(plans, BATCH) {
        if let Some(hook) = crate::__private::BEFORE_FIRE.get() {
            hook(
                &chunk
                    .iter()
                    .map(|(c, _)| c.rec.def.id.as_str())
                    .collect::<Vec<_>>(),
            );
        }
        let fires = chunk.iter().map(|(_, p)| p.fire.clone()).collect();
        let outcomes = backend.fire_schedules(fires).await?;
        for ((mut c, p), outcome) in chunk.into_iter().zip(outcomes) {
            let (queue, job) = (c.rec.def.queue.as_str(), c.rec.def.job.as_str());
            match outcome {
                FireOutcome::Fired(jobs) => {
                    crate::metrics::schedule_ticks(queue, job, "enqueued", jobs.len() as u64);
                    crate::metrics::schedule_ticks(queue, job, "missed", p.skipped);
                    if p.late > 0 {
                        tracing::info!(schedule = %c.rec.def.id, late = p.late, missed = p.skipped, "fired late ticks");
                    }
                    if let (Some(last), Some(tick)) = (jobs.last(), p.fire.ticks.last()) {
                        c.rec.last_job = Some(last.id);
                        c.rec.last_fire = Some(tick.at);
                        c.rec.runs += jobs.len() as u64;
                    }
                    c.guessed = false;
                }
                FireOutcome::Overlapping => {
                    crate::metrics::schedule_ticks(
                        queue,
                        job,
                        "overlapping",
                        p.fire.ticks.len() as u64,
                    );
                    crate::metrics::schedule_ticks(queue, job, "missed", p.skipped);
                    c.guessed = false;
                }
                FireOutcome::Stale => {
                    // Most likely another worker fired this tick and moved the cursor where
                    // this plan would have; if not, the next fire is stale again.
                    if c.guessed {
                        reread = true;
                        continue;
                    }
                    c.guessed = true;
                }
            }
            c.rec.next_fire = p.fire.next_fire;
            kept.push(c);
        }
    }
    Ok((kept, reread))
}

fn chunks<T>(mut items: Vec<T>, size: usize) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    while items.len() > size {
        let rest = items.split_off(size);
        out.push(std::mem::replace(&mut items, rest));
    }
    if !items.is_empty() {
        out.push(items);
    }
    out
}
