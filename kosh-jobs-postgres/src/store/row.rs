//! Converting between rows and the contract's records.

use kosh_jobs_core::admin::{Attempt, AttemptOutcome, MAX_HISTORY};
use kosh_jobs_core::{AttemptError, JobId, JobRecord, JobState, Lease, Timestamp};
use sqlx::postgres::PgRow;
use sqlx::Row;

use crate::error::{PostgresError, Result};

/// The columns [`record`] reads, in order.
pub(crate) const RECORD_COLUMNS: &str = "id, name, queue, payload, state, priority, run_at, \
     attempts, max_attempts, created_at, started_at, finished_at, errors::text, progress, \
     result, unique_key, lease_expires_at, history::text, worker, grp, trace";

/// A job id as stored; `None` if it cannot be a stored id.
pub(crate) fn db_id(id: JobId) -> Option<i64> {
    i64::try_from(id.get()).ok()
}

/// A lease as stored (id, token); `None` if it cannot be a stored lease.
pub(crate) fn db_lease(lease: &Lease) -> Option<(i64, i64)> {
    Some((db_id(lease.id)?, i64::try_from(lease.token).ok()?))
}

/// A stored id as a [`JobId`].
pub(crate) fn job_id(id: i64) -> Result<JobId> {
    u64::try_from(id)
        .map(JobId::new)
        .map_err(|_| malformed(id, "negative id"))
}

/// A stored count (attempts) as `u32`.
pub(crate) fn count(id: i64, what: &str, n: i32) -> Result<u32> {
    u32::try_from(n).map_err(|_| malformed(id, &format!("{what} is {n}")))
}

pub(crate) fn malformed(id: i64, reason: &str) -> PostgresError {
    PostgresError::Malformed {
        id,
        reason: reason.to_owned(),
    }
}

/// Parses a stored state.
pub(crate) fn state(id: i64, s: &str) -> Result<JobState> {
    s.parse()
        .map_err(|_| malformed(id, &format!("unknown state `{s}`")))
}

/// The state a reader sees: a scheduled job whose time has come is ready (reserve takes it as
/// such).
pub(crate) fn effective_state(stored: JobState, run_at: i64, now: Timestamp) -> JobState {
    if stored == JobState::Scheduled && run_at <= now.as_millis() {
        JobState::Ready
    } else {
        stored
    }
}

/// Parses a stored JSON value (progress, result).
pub(crate) fn json(id: i64, what: &str, text: Option<String>) -> Result<Option<serde_json::Value>> {
    text.map(|t| serde_json::from_str(&t))
        .transpose()
        .map_err(|e| malformed(id, &format!("{what} is not JSON: {e}")))
}

/// Reads a [`JobRecord`] from a row selected with [`RECORD_COLUMNS`].
pub(crate) fn record(row: &PgRow, now: Timestamp) -> Result<JobRecord> {
    let id: i64 = row.try_get(0)?;
    let stored_state: String = row.try_get(4)?;
    let stored_state = state(id, &stored_state)?;
    let run_at: i64 = row.try_get(6)?;
    let errors: Option<String> = row.try_get(12)?;
    let errors: Vec<AttemptError> = match errors {
        Some(t) => serde_json::from_str(&t)
            .map_err(|e| malformed(id, &format!("error history is not valid: {e}")))?,
        None => Vec::new(),
    };
    let ts = |v: Option<i64>| v.map(Timestamp::from_millis);
    let lease_expires_at: Option<i64> = row.try_get(16)?;
    let started_at: Option<i64> = row.try_get(10)?;
    let finished_at: Option<i64> = row.try_get(11)?;
    let attempts = count(id, "attempts", row.try_get(7)?)?;
    let history = history(
        id,
        row.try_get(17)?,
        row.try_get(18)?,
        stored_state,
        attempts,
        started_at,
        finished_at,
    )?;
    Ok(JobRecord {
        id: job_id(id)?,
        name: row.try_get(1)?,
        queue: row.try_get(2)?,
        payload: row.try_get(3)?,
        state: effective_state(stored_state, run_at, now),
        priority: row.try_get(5)?,
        run_at: Timestamp::from_millis(run_at),
        attempts,
        max_attempts: count(id, "max_attempts", row.try_get(8)?)?,
        created_at: Timestamp::from_millis(row.try_get(9)?),
        started_at: ts(started_at),
        finished_at: ts(finished_at),
        errors,
        progress: json(id, "progress", row.try_get(13)?)?,
        result: json(id, "result", row.try_get(14)?)?,
        unique_key: row.try_get(15)?,
        group: row.try_get(19)?,
        trace: row.try_get(20)?,
        lease_expires_at: if stored_state == JobState::Running {
            ts(lease_expires_at)
        } else {
            None
        },
        history,
    })
}

/// A job's attempt history: the attempts that ended, as stored, then its latest attempt when
/// the columns hold it (still running, or the one that completed the job).
fn history(
    id: i64,
    stored: Option<String>,
    worker: Option<String>,
    state: JobState,
    attempts: u32,
    started_at: Option<i64>,
    finished_at: Option<i64>,
) -> Result<Vec<Attempt>> {
    let mut history: Vec<Attempt> = match stored {
        Some(t) => serde_json::from_str(&t)
            .map_err(|e| malformed(id, &format!("attempt history is not valid: {e}")))?,
        None => Vec::new(),
    };
    let latest = match (worker, started_at, state) {
        (Some(worker), Some(started), JobState::Running) => Some((worker, started, None)),
        (Some(worker), Some(started), JobState::Completed) => {
            Some((worker, started, finished_at.map(Timestamp::from_millis)))
        }
        _ => None,
    };
    if let Some((worker, started, ended_at)) = latest {
        history.push(Attempt {
            attempt: attempts,
            started_at: Timestamp::from_millis(started),
            worker,
            outcome: ended_at.map(|_| AttemptOutcome::Completed),
            ended_at,
            error: None,
        });
        if history.len() > MAX_HISTORY {
            history.drain(..history.len() - MAX_HISTORY);
        }
    }
    Ok(history)
}
