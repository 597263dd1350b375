//! Reads: get, counts, list, and what a waiting worker needs to know.

use std::collections::BTreeMap;

use kosh_jobs_core::{
    JobId, JobRecord, JobState, ListQuery, Page, QueueCounts, QueueLimits, Timestamp,
};
use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension};

use super::row::{self, db_id, RECORD_COLUMNS};
use super::{is_paused, sql_err};
use crate::error::Result;

/// One job, in full.
pub(super) fn get(conn: &Connection, id: JobId, now: Timestamp) -> Result<Option<JobRecord>> {
    let Some(id) = db_id(id) else {
        return Ok(None);
    };
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {RECORD_COLUMNS} FROM kosh_jobs WHERE id = ?1"
        ))
        .map_err(sql_err)?;
    let mut rows = stmt.query([id]).map_err(sql_err)?;
    match rows.next().map_err(sql_err)? {
        Some(r) => Ok(Some(row::record(r, now)?)),
        None => Ok(None),
    }
}

/// The counts per queue and state, as stored in `kosh_counts` (changed in the transaction
/// of every change, schema version 4): a few rows however many jobs are stored. A count that
/// fell to 0 keeps its row, so rows without jobs are skipped. Running jobs are in the
/// `ready` row ([`super::counted_as`]).
pub(super) const COUNTS: &str = "SELECT queue, state, n FROM kosh_counts WHERE n > 0";

/// The queue of each running job: one per lease held, through the lease index.
pub(super) const RUNNING: &str = "SELECT queue FROM kosh_jobs \
     WHERE state = 'running' AND lease_expires_at IS NOT NULL";

/// The scheduled jobs of queue ?1 that are due at ?2: readers count them as ready. A range
/// of `kosh_jobs_scheduled`, normally short: reserve promotes due jobs to ready.
pub(super) const DUE_COUNT: &str = "SELECT count(*) FROM kosh_jobs \
     WHERE state = 'scheduled' AND queue = ?1 AND run_at <= ?2";

/// The scheduled jobs of `queue` due at `now`.
pub(super) fn due_count(conn: &Connection, queue: &str, now: Timestamp) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached(DUE_COUNT)
        .and_then(|mut s| s.query_row(params![queue, now.as_millis()], |r| r.get(0)))
        .map_err(sql_err)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Counts per queue and state (due scheduled jobs count as ready), plus paused queues, all
/// read from one snapshot of the database.
pub(super) fn counts(conn: &Connection, now: Timestamp) -> Result<Vec<QueueCounts>> {
    // A savepoint is a read transaction on the reader, and nests in the writer's
    // transaction (an in-memory database has no reader).
    conn.execute_batch("SAVEPOINT kosh_counts")
        .map_err(sql_err)?;
    let result = counts_now(conn, now);
    let end = conn.execute_batch("RELEASE kosh_counts").map_err(sql_err);
    let counts = result?;
    end?;
    Ok(counts)
}

fn counts_now(conn: &Connection, now: Timestamp) -> Result<Vec<QueueCounts>> {
    let mut by_queue: BTreeMap<String, QueueCounts> = BTreeMap::new();
    let mut stmt = conn.prepare_cached(COUNTS).map_err(sql_err)?;
    let mut rows = stmt.query([]).map_err(sql_err)?;
    while let Some(r) = rows.next().map_err(sql_err)? {
        let queue: String = r.get(0).map_err(sql_err)?;
        let state: String = r.get(1).map_err(sql_err)?;
        let n: i64 = r.get(2).map_err(sql_err)?;
        let state = row::state(0, &state)?;
        let entry = by_queue
            .entry(queue.clone())
            .or_insert_with(|| QueueCounts::empty(queue));
        *entry.get_mut(state) += u64::try_from(n).unwrap_or(0);
    }
    let mut stmt = conn.prepare_cached(RUNNING).map_err(sql_err)?;
    let mut rows = stmt.query([]).map_err(sql_err)?;
    while let Some(r) = rows.next().map_err(sql_err)? {
        let queue: String = r.get(0).map_err(sql_err)?;
        if let Some(c) = by_queue.get_mut(&queue) {
            // The stored `ready` row counts it too.
            if c.ready > 0 {
                c.ready -= 1;
                c.running += 1;
            }
        }
    }
    for c in by_queue.values_mut() {
        if c.scheduled > 0 {
            let due = due_count(conn, &c.queue, now)?.min(c.scheduled);
            c.scheduled -= due;
            c.ready += due;
        }
    }
    let mut stmt = conn
        .prepare_cached("SELECT name FROM kosh_queues WHERE paused = 1")
        .map_err(sql_err)?;
    let mut rows = stmt.query([]).map_err(sql_err)?;
    while let Some(r) = rows.next().map_err(sql_err)? {
        let queue: String = r.get(0).map_err(sql_err)?;
        by_queue
            .entry(queue.clone())
            .or_insert_with(|| QueueCounts::empty(queue))
            .paused = true;
    }
    for c in by_queue.values_mut() {
        if c.ready > 0 {
            c.oldest_ready_at = super::operate::oldest_ready(conn, &c.queue, now)?;
        }
    }
    Ok(by_queue.into_values().collect())
}

/// One page of the jobs in a state, by id.
pub(super) fn list(conn: &Connection, q: &ListQuery, now: Timestamp) -> Result<Page> {
    let limit = q.effective_limit();
    let filter = match q.state {
        JobState::Ready => "(state = 'ready' OR (state = 'scheduled' AND run_at <= ?1))",
        JobState::Scheduled => "state = 'scheduled' AND run_at > ?1",
        _ => "state = ?2",
    };
    let sql = format!(
        "SELECT {RECORD_COLUMNS} FROM kosh_jobs WHERE {filter} \
         AND (?3 IS NULL OR queue = ?3) AND id > ?4 ORDER BY id LIMIT ?5"
    );
    let after = match q.after {
        Some(a) => db_id(a).unwrap_or(i64::MAX),
        None => 0,
    };
    let mut stmt = conn.prepare_cached(&sql).map_err(sql_err)?;
    let mut rows = stmt
        .query(params![
            now.as_millis(),
            q.state.as_str(),
            q.queue
                .as_deref()
                .map(|s| Value::Text(s.to_owned()))
                .unwrap_or(Value::Null),
            after,
            i64::try_from(limit + 1).unwrap_or(i64::MAX),
        ])
        .map_err(sql_err)?;
    let mut jobs = Vec::with_capacity(limit.min(128));
    let mut more = false;
    while let Some(r) = rows.next().map_err(sql_err)? {
        if jobs.len() == limit {
            more = true;
            break;
        }
        jobs.push(row::record(r, now)?);
    }
    let next = if more {
        jobs.last().map(|j| j.id)
    } else {
        None
    };
    Ok(Page { jobs, next })
}

/// Whether queue ?1 has a ready job without a group: one seek of `kosh_jobs_ready`.
pub(super) const READY_UNGROUPED: &str =
    "SELECT 1 FROM kosh_jobs WHERE state = 'ready' AND grp IS NULL AND queue = ?1 LIMIT 1";

/// Whether queue ?1 has a ready job in a group: one seek of `kosh_jobs_ready_grouped`.
pub(super) const READY_GROUPED: &str =
    "SELECT 1 FROM kosh_jobs WHERE state = 'ready' AND grp IS NOT NULL AND queue = ?1 LIMIT 1";

/// Whether the query `sql` of one parameter, `queue`, finds a row.
fn exists(conn: &Connection, sql: &str, queue: &str) -> Result<bool> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.query_row([queue], |_| Ok(())).optional())
        .map(|found| found.is_some())
        .map_err(sql_err)
}

/// What a waiting worker needs to know about its queues.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WaitInfo {
    /// A job is ready now in one of the (unpaused) queues.
    pub(crate) ready: bool,
    /// The earliest `run_at` of a scheduled job in the (unpaused) queues.
    pub(crate) next_run_at: Option<Timestamp>,
    /// The earliest lease expiry of any running job: its recovery may bring work.
    pub(crate) next_expiry: Option<Timestamp>,
}

pub(super) fn wait_info(conn: &Connection, queues: &[String], now: Timestamp) -> Result<WaitInfo> {
    let mut info = WaitInfo::default();
    for queue in queues {
        if is_paused(conn, queue)? {
            continue;
        }
        let ungrouped = exists(conn, READY_UNGROUPED, queue)?;
        if ungrouped || exists(conn, READY_GROUPED, queue)? {
            // Held back by a limit or a hold, ready jobs are work only once the hold ends or
            // the rate window opens, or (concurrency) once a running job ends, which wakes
            // the waiters. Jobs of groups at their group limit wait for a running job of
            // their group to end, which wakes the waiters too; jobs of groups whose rate
            // window is full wait until the first such window opens.
            let flow = super::limits::flow_of(conn, queue)?;
            let held = match &flow {
                Some(f) => super::limits::room(conn, queue, f, now)?,
                None => (1, None),
            };
            match held {
                (0, Some(at)) => {
                    info.next_run_at = Some(info.next_run_at.map_or(at, |cur| cur.min(at)));
                }
                (0, None) => {}
                _ if ungrouped => {
                    info.ready = true;
                    return Ok(info);
                }
                _ => {
                    let limits = flow.map_or(QueueLimits::NONE, |f| f.limits);
                    match super::groups::startable_group(conn, queue, &limits, now)? {
                        (true, _) => {
                            info.ready = true;
                            return Ok(info);
                        }
                        (false, Some(at)) => {
                            info.next_run_at = Some(info.next_run_at.map_or(at, |cur| cur.min(at)));
                        }
                        (false, None) => {}
                    }
                }
            }
        }
        let next: Option<i64> = conn
            .prepare_cached(
                "SELECT min(run_at) FROM kosh_jobs WHERE state = 'scheduled' AND queue = ?1",
            )
            .and_then(|mut s| s.query_row([queue], |r| r.get(0)))
            .map_err(sql_err)?;
        if let Some(t) = next.map(Timestamp::from_millis) {
            info.next_run_at = Some(info.next_run_at.map_or(t, |cur| cur.min(t)));
        }
    }
    let expiry: Option<i64> = conn
        .prepare_cached("SELECT min(lease_expires_at) FROM kosh_jobs WHERE state = 'running'")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(sql_err)?;
    info.next_expiry = expiry.map(Timestamp::from_millis);
    Ok(info)
}
