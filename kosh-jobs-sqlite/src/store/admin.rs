//! Administration: retry, cancel, purge, pause, resume, and retention of completed jobs.

use kosh_jobs_core::backend::validate_queue_name;
use kosh_jobs_core::{CancelOutcome, JobId, JobState, RetryOutcome, Timestamp};
use rusqlite::{params, Connection, OptionalExtension};

use super::jobs::append_attempt;
use super::row::{self, db_id};
use super::{exec, live_holder, sql_err, Effects};
use crate::error::{Result, SqliteError};
use crate::options::Retention;

/// What the admin operations need to know of one job.
pub(super) struct Look {
    /// Its state as readers see it (a due scheduled job is ready).
    pub(super) state: JobState,
    /// Its state as stored (what `kosh_counts` counts).
    pub(super) stored: JobState,
    pub(super) queue: String,
    pub(super) unique_key: Option<String>,
    /// Its group, if any.
    pub(super) group: Option<String>,
}

/// One job's states, queue, unique key and group.
pub(super) fn look(conn: &Connection, id: i64, now: Timestamp) -> Result<Option<Look>> {
    type Found = (String, i64, String, Option<String>, Option<String>);
    let found: Option<Found> = conn
        .prepare_cached("SELECT state, run_at, queue, unique_key, grp FROM kosh_jobs WHERE id = ?1")
        .and_then(|mut s| {
            s.query_row([id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .optional()
        })
        .map_err(sql_err)?;
    found
        .map(|(state, run_at, queue, unique_key, group)| {
            let stored = row::state(id, &state)?;
            Ok(Look {
                state: row::effective_state(stored, run_at, now),
                stored,
                queue,
                unique_key,
                group,
            })
        })
        .transpose()
}

/// Puts a failed or cancelled job back to ready with its attempts reset.
pub(super) fn retry(
    conn: &Connection,
    id: JobId,
    now: Timestamp,
    fx: &mut Effects,
) -> Result<RetryOutcome> {
    let Some(id) = db_id(id) else {
        return Ok(RetryOutcome::NotFound);
    };
    let Some(job) = look(conn, id, now)? else {
        return Ok(RetryOutcome::NotFound);
    };
    retry_job(conn, id, job, now, fx)
}

/// [`retry`] of job `id`, already looked up.
pub(super) fn retry_job(
    conn: &Connection,
    id: i64,
    job: Look,
    now: Timestamp,
    fx: &mut Effects,
) -> Result<RetryOutcome> {
    if !matches!(job.state, JobState::Failed | JobState::Cancelled) {
        return Ok(RetryOutcome::NotRetryable(job.state));
    }
    if let Some(key) = &job.unique_key {
        if let Some(holder) = live_holder(conn, key)? {
            return Ok(RetryOutcome::UniqueConflict(row::job_id(holder)?));
        }
    }
    exec(
        conn,
        "UPDATE kosh_jobs SET state = 'ready', attempts = 0, run_at = ?2, finished_at = NULL, \
         lease_expires_at = NULL WHERE id = ?1",
        params![id, now.as_millis()],
    )?;
    if let Some(g) = &job.group {
        super::groups::group_ready(conn, &job.queue, g)?;
    }
    fx.moved(&job.queue, job.stored, JobState::Ready, 1);
    fx.wake(&job.queue);
    Ok(RetryOutcome::Retried)
}

/// Cancels a job that is not final.
pub(super) fn cancel(
    conn: &Connection,
    id: JobId,
    now: Timestamp,
    fx: &mut Effects,
) -> Result<CancelOutcome> {
    let Some(id) = db_id(id) else {
        return Ok(CancelOutcome::NotFound);
    };
    let Some(job) = look(conn, id, now)? else {
        return Ok(CancelOutcome::NotFound);
    };
    cancel_job(conn, id, job, now, fx)
}

/// [`cancel`] of job `id`, already looked up.
pub(super) fn cancel_job(
    conn: &Connection,
    id: i64,
    job: Look,
    now: Timestamp,
    fx: &mut Effects,
) -> Result<CancelOutcome> {
    if job.state.is_final() {
        return Ok(CancelOutcome::AlreadyFinal(job.state));
    }
    exec(
        conn,
        concat!(
            "UPDATE kosh_jobs SET state = 'cancelled', finished_at = ?2, lease_expires_at = NULL, \
             history = CASE WHEN state = 'running' THEN ",
            append_attempt!("?2", "'cancelled'", "NULL"),
            " ELSE history END WHERE id = ?1"
        ),
        params![id, now.as_millis()],
    )?;
    fx.moved(&job.queue, job.stored, JobState::Cancelled, 1);
    Ok(CancelOutcome::Cancelled)
}

/// Raises the id floor to the highest id stored, before deleting jobs: ids of deleted jobs
/// are never given out again.
pub(super) fn raise_id_floor(conn: &Connection) -> Result<()> {
    exec(
        conn,
        "UPDATE kosh_meta SET value = max(value, coalesce((SELECT max(id) FROM kosh_jobs), 0)) \
         WHERE key = 'id_floor'",
        [],
    )?;
    Ok(())
}

/// Counts the jobs a `DELETE … RETURNING queue` of jobs in stored state `state` deletes;
/// returns how many.
fn count_deleted(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    state: JobState,
    fx: &mut Effects,
) -> Result<usize> {
    let mut stmt = conn.prepare_cached(sql).map_err(sql_err)?;
    let mut rows = stmt.query(params).map_err(sql_err)?;
    let mut n = 0;
    while let Some(r) = rows.next().map_err(sql_err)? {
        let queue: String = r.get(0).map_err(sql_err)?;
        fx.count(&queue, state, -1);
        n += 1;
    }
    Ok(n)
}

/// Deletes final jobs that finished before `before`.
pub(super) fn purge(
    conn: &Connection,
    states: &[JobState],
    before: Timestamp,
    fx: &mut Effects,
) -> Result<u64> {
    if let Some(s) = states.iter().find(|s| !s.is_final()) {
        return Err(SqliteError::InvalidInput(format!(
            "purge deletes only completed, failed or cancelled jobs, not {s} ones"
        )));
    }
    raise_id_floor(conn)?;
    let mut deleted = 0;
    let mut seen = Vec::new();
    for s in states {
        if seen.contains(s) {
            continue;
        }
        seen.push(*s);
        deleted += count_deleted(
            conn,
            "DELETE FROM kosh_jobs WHERE state = ?1 AND finished_at < ?2 RETURNING queue",
            params![s.as_str(), before.as_millis()],
            *s,
            fx,
        )? as u64;
    }
    Ok(deleted)
}

/// Pauses a queue.
pub(super) fn pause(conn: &Connection, queue: &str) -> Result<()> {
    validate_queue_name(queue).map_err(SqliteError::InvalidInput)?;
    exec(
        conn,
        "INSERT INTO kosh_queues (name, paused) VALUES (?1, 1) \
         ON CONFLICT (name) DO UPDATE SET paused = 1",
        [queue],
    )?;
    Ok(())
}

/// Resumes a queue and wakes its workers.
pub(super) fn resume(conn: &Connection, queue: &str, fx: &mut Effects) -> Result<()> {
    validate_queue_name(queue).map_err(SqliteError::InvalidInput)?;
    exec(conn, "DELETE FROM kosh_queues WHERE name = ?1", [queue])?;
    fx.wake(queue);
    Ok(())
}

/// Deletes at most `chunk` completed jobs that retention no longer keeps; returns how many.
/// The caller writes the counts of `fx` in the same transaction.
pub(crate) fn prune_completed(
    conn: &Connection,
    retention: &Retention,
    now: Timestamp,
    chunk: usize,
    fx: &mut Effects,
) -> Result<usize> {
    let chunk = i64::try_from(chunk).unwrap_or(i64::MAX);
    raise_id_floor(conn)?;
    let mut deleted = 0;
    if let Some(age) = retention.max_age_value() {
        let cutoff = (now - age).as_millis();
        deleted += count_deleted(
            conn,
            "DELETE FROM kosh_jobs WHERE id IN (SELECT id FROM kosh_jobs \
             WHERE state = 'completed' AND finished_at < ?1 ORDER BY finished_at LIMIT ?2) \
             RETURNING queue",
            params![cutoff, chunk],
            JobState::Completed,
            fx,
        )?;
    }
    if let Some(max) = retention.max_count_value() {
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        // The newest job past the limit: it and everything finished before it go.
        let edge: Option<(i64, i64)> = conn
            .prepare_cached(
                "SELECT finished_at, id FROM kosh_jobs \
                 WHERE state = 'completed' AND finished_at IS NOT NULL \
                 ORDER BY finished_at DESC, id DESC LIMIT 1 OFFSET ?1",
            )
            .and_then(|mut s| {
                s.query_row([max], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(sql_err)?;
        if let Some((at, id)) = edge {
            deleted += count_deleted(
                conn,
                "DELETE FROM kosh_jobs WHERE id IN (SELECT id FROM kosh_jobs \
                 WHERE state = 'completed' AND finished_at IS NOT NULL \
                 AND (finished_at < ?1 OR (finished_at = ?1 AND id <= ?2)) \
                 ORDER BY finished_at LIMIT ?3) RETURNING queue",
                params![at, id, chunk],
                JobState::Completed,
                fx,
            )?;
        }
    }
    Ok(deleted)
}
