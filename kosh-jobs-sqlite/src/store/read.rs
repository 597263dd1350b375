//! Reads: get, counts, list, and what a waiting worker needs to know.

use std::collections::BTreeMap;

use kosh_jobs_core::{JobId, JobRecord, JobState, ListQuery, Page, QueueCounts, Timestamp};
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

/// The counts per queue and state, each part read from its partial index rather than the
/// table: the final states (most of a big store) are counted in `kosh_jobs_final`, which is
/// in (queue, state) order, so no row is read and no sort is needed. A job has `finished_at`
/// exactly when it is in a final state (set when it finishes, cleared when it is retried).
/// A due scheduled job counts as ready.
pub(super) const COUNTS: &str = "SELECT queue, state, count(*) FROM kosh_jobs \
     WHERE finished_at IS NOT NULL GROUP BY queue, state \
     UNION ALL SELECT queue, 'ready', count(*) FROM kosh_jobs WHERE state = 'ready' GROUP BY queue \
     UNION ALL SELECT queue, CASE WHEN run_at <= ?1 THEN 'ready' ELSE 'scheduled' END AS s, \
     count(*) FROM kosh_jobs INDEXED BY kosh_jobs_scheduled WHERE state = 'scheduled' \
     GROUP BY queue, s \
     UNION ALL SELECT queue, 'running', count(*) FROM kosh_jobs WHERE state = 'running' \
     GROUP BY queue";

/// Counts per queue and state (due scheduled jobs count as ready), plus paused queues.
pub(super) fn counts(conn: &Connection, now: Timestamp) -> Result<Vec<QueueCounts>> {
    let mut by_queue: BTreeMap<String, QueueCounts> = BTreeMap::new();
    let mut stmt = conn.prepare_cached(COUNTS).map_err(sql_err)?;
    let mut rows = stmt.query([now.as_millis()]).map_err(sql_err)?;
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

pub(super) fn wait_info(conn: &Connection, queues: &[String]) -> Result<WaitInfo> {
    let mut info = WaitInfo::default();
    for queue in queues {
        if is_paused(conn, queue)? {
            continue;
        }
        let ready: Option<i64> = conn
            .prepare_cached("SELECT 1 FROM kosh_jobs WHERE state = 'ready' AND queue = ?1 LIMIT 1")
            .and_then(|mut s| s.query_row([queue], |r| r.get(0)).optional())
            .map_err(sql_err)?;
        if ready.is_some() {
            info.ready = true;
            return Ok(info);
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
