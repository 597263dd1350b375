//! Flow control (see [`kosh_jobs_core::limits`]): the limits of a queue in `kosh_limits`, the
//! start log of a rate-limited queue in `kosh_starts`.
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

/// The limits of `queue`, if it has any.
pub(super) fn limits_of(conn: &Connection, queue: &str) -> Result<Option<QueueLimits>> {
    conn.prepare_cached(
        "SELECT concurrency, rate_max, rate_per_ms FROM kosh_limits WHERE queue = ?1",
    )
    .and_then(|mut s| s.query_row([queue], limits_row).optional())
    .map_err(sql_err)
}

fn limits_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<QueueLimits> {
    Ok(limits_from(r.get(0)?, r.get(1)?, r.get(2)?))
}

/// Limits from their columns. They are written only by [`set`], from validated limits; a
/// rate with a missing half reads as no rate limit.
fn limits_from(
    concurrency: Option<i64>,
    rate_max: Option<i64>,
    rate_per: Option<i64>,
) -> QueueLimits {
    let rate = match (rate_max, rate_per) {
        (Some(max), Some(per)) => Some(RateLimit::new(
            u32::try_from(max).unwrap_or(u32::MAX),
            Duration::from_millis(u64::try_from(per).unwrap_or(0)),
        )),
        _ => None,
    };
    QueueLimits {
        concurrency: concurrency.map(|k| u32::try_from(k).unwrap_or(u32::MAX)),
        rate,
    }
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

/// How many jobs of `queue` the limits let start at `now`, and when none may, the time the
/// rate window opens (`None`: a running job must end first).
pub(super) fn room(
    conn: &Connection,
    queue: &str,
    limits: &QueueLimits,
    now: Timestamp,
) -> Result<(usize, Option<Timestamp>)> {
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
pub(super) fn set(
    conn: &Connection,
    queue: &str,
    limits: &QueueLimits,
    fx: &mut Effects,
) -> Result<()> {
    validate_queue_name(queue).map_err(SqliteError::InvalidInput)?;
    limits.validate().map_err(SqliteError::InvalidInput)?;
    if limits.rate.is_none() {
        exec(conn, "DELETE FROM kosh_starts WHERE queue = ?1", [queue])?;
    }
    if limits.is_none() {
        exec(conn, "DELETE FROM kosh_limits WHERE queue = ?1", [queue])?;
    } else {
        exec(
            conn,
            "INSERT INTO kosh_limits (queue, concurrency, rate_max, rate_per_ms) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (queue) DO UPDATE SET \
             concurrency = excluded.concurrency, rate_max = excluded.rate_max, \
             rate_per_ms = excluded.rate_per_ms",
            params![
                queue,
                limits.concurrency,
                limits.rate.map(|r| r.max),
                limits
                    .rate
                    .map(|r| i64::try_from(r.per.as_millis()).unwrap_or(i64::MAX)),
            ],
        )?;
    }
    fx.wake(queue);
    Ok(())
}

/// Every queue with limits, by name, and where it stands.
pub(super) fn flows(conn: &Connection, now: Timestamp) -> Result<Vec<QueueFlow>> {
    let limited: Vec<(String, QueueLimits)> = conn
        .prepare_cached(
            "SELECT queue, concurrency, rate_max, rate_per_ms FROM kosh_limits ORDER BY queue",
        )
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok((r.get(0)?, limits_from(r.get(1)?, r.get(2)?, r.get(3)?)))
            })?
            .collect()
        })
        .map_err(sql_err)?;
    let mut out = Vec::with_capacity(limited.len());
    for (queue, limits) in limited {
        let (starts_in_window, next_start_at) = match limits.rate {
            Some(rate) => window(conn, &queue, rate, now)?,
            None => (0, None),
        };
        out.push(QueueFlow {
            running: running(conn, &queue)?,
            queue,
            limits,
            starts_in_window,
            next_start_at,
        });
    }
    Ok(out)
}

/// Whether a change of `n` jobs of stored state `state` frees a running slot.
pub(super) fn frees_a_slot(state: JobState, n: i64) -> bool {
    state == JobState::Running && n < 0
}
