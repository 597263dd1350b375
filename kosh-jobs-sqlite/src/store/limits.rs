//! Flow control (see [`kosh_jobs_core::limits`]): the limits and the hold of a queue in
//! `kosh_limits`, the start log of a rate-limited queue in `kosh_starts`. Groups' turns,
//! slots and start logs (`kosh_group_starts`) are in [`super::groups`].
//!
//! Every reserve runs in the writer's `BEGIN IMMEDIATE` transaction, which no other process
//! can run at the same time: reading the room and leasing within it is atomic across
//! processes.

use std::time::Duration;

use kosh_jobs_core::backend::validate_queue_name;
use kosh_jobs_core::limits::{QueueFlow, QueueLimits, RateLimit};
use kosh_jobs_core::{JobState, Timestamp};
use rusqlite::{params, Connection, OptionalExtension};

use super::{exec, sql_err, Effects};
use crate::error::{Result, SqliteError};

/// What `kosh_limits` holds for a queue: its limits, and the end of its hold.
#[derive(Debug, Clone, Copy)]
pub(super) struct Flow {
    pub(super) limits: QueueLimits,
    /// No job starts before this time (it may have passed: the row is then only stale).
    pub(super) held_until: Option<Timestamp>,
}

impl Flow {
    /// The hold, if it is still in force at `now`.
    pub(super) fn hold_at(&self, now: Timestamp) -> Option<Timestamp> {
        self.held_until.filter(|&t| t > now)
    }
}

/// The columns of `kosh_limits` that [`flow_row`] reads, in order.
const FLOW_COLUMNS: &str = "concurrency, rate_max, rate_per_ms, group_concurrency, held_until, \
     group_rate_max, group_rate_per_ms";

/// The limits and hold of `queue`, if it has a row.
pub(super) fn flow_of(conn: &Connection, queue: &str) -> Result<Option<Flow>> {
    conn.prepare_cached(&format!(
        "SELECT {FLOW_COLUMNS} FROM kosh_limits WHERE queue = ?1"
    ))
    .and_then(|mut s| s.query_row([queue], |r| flow_row(r, 0)).optional())
    .map_err(sql_err)
}

/// A [`Flow`] from [`FLOW_COLUMNS`] starting at column `at`.
fn flow_row(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Flow> {
    let count = |v: Option<i64>| v.map(|k| u32::try_from(k).unwrap_or(u32::MAX));
    let limits = QueueLimits {
        group_concurrency: count(r.get(at + 3)?),
        group_rate: rate_from(r.get(at + 5)?, r.get(at + 6)?),
        ..limits_from(r.get(at)?, r.get(at + 1)?, r.get(at + 2)?)
    };
    let held_until: Option<i64> = r.get(at + 4)?;
    Ok(Flow {
        limits,
        held_until: held_until.map(Timestamp::from_millis),
    })
}

/// A rate limit from its two columns. They are written only by [`set`], from validated
/// limits; a rate with a missing half reads as no rate limit.
fn rate_from(max: Option<i64>, per_ms: Option<i64>) -> Option<RateLimit> {
    match (max, per_ms) {
        (Some(max), Some(per)) => Some(RateLimit::new(
            u32::try_from(max).unwrap_or(u32::MAX),
            Duration::from_millis(u64::try_from(per).unwrap_or(0)),
        )),
        _ => None,
    }
}

/// The queue-wide limits from their columns (see [`rate_from`]).
fn limits_from(
    concurrency: Option<i64>,
    rate_max: Option<i64>,
    rate_per: Option<i64>,
) -> QueueLimits {
    QueueLimits {
        concurrency: concurrency.map(|k| u32::try_from(k).unwrap_or(u32::MAX)),
        rate: rate_from(rate_max, rate_per),
        group_concurrency: None,
        group_rate: None,
    }
}

/// A rate's window in ms, as stored.
fn per_ms(rate: RateLimit) -> i64 {
    i64::try_from(rate.per.as_millis()).unwrap_or(i64::MAX)
}

/// Jobs of `queue` running now.
fn running(conn: &Connection, queue: &str) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM kosh_jobs WHERE state = 'running' AND queue = ?1")
        .and_then(|mut s| s.query_row([queue], |r| r.get(0)))
        .map_err(sql_err)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Starts of `queue` in the window of `rate` at `now`, and when the next may start if the
/// window is full (the SQL form of [`RateLimit::room`]).
fn window(
    conn: &Connection,
    queue: &str,
    rate: RateLimit,
    now: Timestamp,
) -> Result<(u64, Option<Timestamp>)> {
    let from = now.saturating_sub(rate.per).as_millis();
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM kosh_starts WHERE queue = ?1 AND at > ?2")
        .and_then(|mut s| s.query_row(params![queue, from], |r| r.get(0)))
        .map_err(sql_err)?;
    let max = i64::from(rate.max);
    if n < max {
        return Ok((u64::try_from(n).unwrap_or(0), None));
    }
    // Full: the `max`-th most recent start leaves the window `per` after it happened.
    let at: Option<i64> = conn
        .prepare_cached(
            "SELECT at FROM kosh_starts WHERE queue = ?1 AND at > ?2 \
             ORDER BY at LIMIT 1 OFFSET ?3",
        )
        .and_then(|mut s| {
            s.query_row(params![queue, from, n - max], |r| r.get(0))
                .optional()
        })
        .map_err(sql_err)?;
    let next = at.map(|t| Timestamp::from_millis(t).saturating_add(rate.per));
    Ok((u64::try_from(n).unwrap_or(0), next))
}

/// How many jobs of `queue` its hold and limits let start at `now`, and when none may, the
/// time the hold ends or the rate window opens (`None`: a running job must end first). The
/// group concurrency limit is applied per group by [`super::groups`], not here.
pub(super) fn room(
    conn: &Connection,
    queue: &str,
    flow: &Flow,
    now: Timestamp,
) -> Result<(usize, Option<Timestamp>)> {
    if let Some(until) = flow.hold_at(now) {
        return Ok((0, Some(until)));
    }
    let limits = &flow.limits;
    let mut room = usize::MAX;
    if let Some(k) = limits.concurrency {
        let free = u64::from(k).saturating_sub(running(conn, queue)?);
        room = usize::try_from(free).unwrap_or(usize::MAX);
        if room == 0 {
            return Ok((0, None));
        }
    }
    if let Some(rate) = limits.rate {
        let (n, next) = window(conn, queue, rate, now)?;
        let free = u64::from(rate.max).saturating_sub(n);
        room = room.min(usize::try_from(free).unwrap_or(usize::MAX));
        if room == 0 {
            return Ok((0, next));
        }
    }
    Ok((room, None))
}

/// Logs `n` starts of `queue` at `now` and forgets the starts that left the window.
pub(super) fn log_starts(
    conn: &Connection,
    queue: &str,
    rate: RateLimit,
    now: Timestamp,
    n: usize,
) -> Result<()> {
    let at = now.as_millis();
    exec(
        conn,
        "DELETE FROM kosh_starts WHERE queue = ?1 AND at <= ?2",
        params![queue, now.saturating_sub(rate.per).as_millis()],
    )?;
    let mut insert = conn
        .prepare_cached("INSERT INTO kosh_starts (queue, at) VALUES (?1, ?2)")
        .map_err(sql_err)?;
    for _ in 0..n {
        insert.execute(params![queue, at]).map_err(sql_err)?;
    }
    Ok(())
}

/// Sets (or with `QueueLimits::NONE` removes) the limits of `queue` and wakes its workers.
/// The queue's row stays while a hold is in force.
pub(super) fn set(
    conn: &Connection,
    queue: &str,
    limits: &QueueLimits,
    now: Timestamp,
    fx: &mut Effects,
) -> Result<()> {
    validate_queue_name(queue).map_err(SqliteError::InvalidInput)?;
    limits.validate().map_err(SqliteError::InvalidInput)?;
    if limits.rate.is_none() {
        exec(conn, "DELETE FROM kosh_starts WHERE queue = ?1", [queue])?;
    }
    if limits.group_rate.is_none() {
        super::groups::forget_group_starts(conn, queue)?;
    }
    if limits.is_none() {
        // The row goes, unless a hold in force keeps it (then only its limits go).
        exec(
            conn,
            "DELETE FROM kosh_limits WHERE queue = ?1 \
             AND (held_until IS NULL OR held_until <= ?2)",
            params![queue, now.as_millis()],
        )?;
        exec(
            conn,
            "UPDATE kosh_limits SET concurrency = NULL, rate_max = NULL, rate_per_ms = NULL, \
             group_concurrency = NULL, group_rate_max = NULL, group_rate_per_ms = NULL \
             WHERE queue = ?1",
            [queue],
        )?;
    } else {
        exec(
            conn,
            "INSERT INTO kosh_limits (queue, concurrency, rate_max, rate_per_ms, \
             group_concurrency, group_rate_max, group_rate_per_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (queue) DO UPDATE SET \
             concurrency = excluded.concurrency, rate_max = excluded.rate_max, \
             rate_per_ms = excluded.rate_per_ms, group_concurrency = excluded.group_concurrency, \
             group_rate_max = excluded.group_rate_max, \
             group_rate_per_ms = excluded.group_rate_per_ms",
            params![
                queue,
                limits.concurrency,
                limits.rate.map(|r| r.max),
                limits.rate.map(per_ms),
                limits.group_concurrency,
                limits.group_rate.map(|r| r.max),
                limits.group_rate.map(per_ms),
            ],
        )?;
    }
    fx.wake(queue);
    Ok(())
}

/// Holds `queue` back until `until` (see [`kosh_jobs_core::Backend::hold_queue`]): only ever
/// lengthens a hold. A longer hold wakes the queue's waiters, so they sleep until it ends.
pub(super) fn hold(
    conn: &Connection,
    queue: &str,
    until: Timestamp,
    fx: &mut Effects,
) -> Result<()> {
    validate_queue_name(queue).map_err(SqliteError::InvalidInput)?;
    let changed = exec(
        conn,
        "INSERT INTO kosh_limits (queue, held_until) VALUES (?1, ?2) \
         ON CONFLICT (queue) DO UPDATE SET held_until = excluded.held_until \
         WHERE held_until IS NULL OR held_until < excluded.held_until",
        params![queue, until.as_millis()],
    )?;
    if changed > 0 {
        fx.wake(queue);
    }
    Ok(())
}

/// Deletes the row of `queue` if it holds no limit and its hold has ended: a queue back to
/// no flow control costs nothing more on its reserves. Called by a reserve that read such a
/// row.
pub(super) fn forget_if_idle(conn: &Connection, queue: &str, now: Timestamp) -> Result<()> {
    exec(
        conn,
        "DELETE FROM kosh_limits WHERE queue = ?1 AND concurrency IS NULL \
         AND rate_max IS NULL AND group_concurrency IS NULL AND group_rate_max IS NULL \
         AND (held_until IS NULL OR held_until <= ?2)",
        params![queue, now.as_millis()],
    )?;
    Ok(())
}

/// Every queue with limits or a hold in force at `now`, by name, and where it stands.
pub(super) fn flows(conn: &Connection, now: Timestamp) -> Result<Vec<QueueFlow>> {
    let listed: Vec<(String, Flow)> = conn
        .prepare_cached(&format!(
            "SELECT queue, {FLOW_COLUMNS} FROM kosh_limits \
             WHERE concurrency IS NOT NULL OR rate_max IS NOT NULL \
             OR group_concurrency IS NOT NULL OR group_rate_max IS NOT NULL \
             OR held_until > ?1 ORDER BY queue"
        ))
        .and_then(|mut s| {
            s.query_map([now.as_millis()], |r| Ok((r.get(0)?, flow_row(r, 1)?)))?
                .collect()
        })
        .map_err(sql_err)?;
    let mut out = Vec::with_capacity(listed.len());
    for (queue, flow) in listed {
        let limits = flow.limits;
        let (starts_in_window, next_start_at) = match limits.rate {
            Some(rate) => window(conn, &queue, rate, now)?,
            None => (0, None),
        };
        let (groups_running, groups_at_limit, held_in_groups) =
            super::groups::group_flows(conn, &queue, &limits, now)?;
        out.push(QueueFlow {
            running: running(conn, &queue)?,
            limits,
            starts_in_window,
            next_start_at,
            held_until: flow.hold_at(now),
            groups_running,
            groups_at_limit,
            held_in_groups,
            queue,
        });
    }
    Ok(out)
}

/// Whether a change of `n` jobs of stored state `state` frees a running slot.
pub(super) fn frees_a_slot(state: JobState, n: i64) -> bool {
    state == JobState::Running && n < 0
}
