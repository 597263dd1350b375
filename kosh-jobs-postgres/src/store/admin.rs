//! Administration: retry, cancel, purge, pause, resume, and retention of completed jobs.

use kosh_jobs_core::backend::validate_queue_name;
use kosh_jobs_core::{CancelOutcome, JobId, JobState, RetryOutcome, Timestamp};
use sqlx::{PgConnection, Row};

use super::jobs::attempt_object;
use super::row::{self, db_id};
use super::{sql_for, Db};
use crate::error::{PostgresError, Result};

/// (state as seen by readers, queue, unique key) of one job, locked for the transaction.
pub(crate) async fn look(
    conn: &mut PgConnection,
    schema: &str,
    id: i64,
    now: Timestamp,
) -> Result<Option<(JobState, String, Option<String>)>> {
    let r = sqlx::query(sql_for(
        schema,
        "SELECT state, run_at, queue, unique_key FROM __S__.jobs WHERE id = $1 FOR UPDATE",
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(r) = r else { return Ok(None) };
    let state: String = r.try_get(0)?;
    let run_at: i64 = r.try_get(1)?;
    let state = row::effective_state(row::state(id, &state)?, run_at, now);
    Ok(Some((state, r.try_get(2)?, r.try_get(3)?)))
}

/// The live job holding `key`, other than `except`.
async fn live_holder(
    conn: &mut PgConnection,
    schema: &str,
    key: &str,
    except: i64,
) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar(sql_for(
        schema,
        "SELECT id FROM __S__.jobs WHERE unique_key = $1 AND id <> $2 \
         AND state IN ('scheduled', 'ready', 'running')",
    ))
    .bind(key)
    .bind(except)
    .fetch_optional(&mut *conn)
    .await?)
}

/// Puts a failed or cancelled job back to ready with its attempts reset, in the caller's
/// transaction; returns the queue to wake when it did.
pub(crate) async fn retry_in(
    conn: &mut PgConnection,
    schema: &str,
    id: JobId,
    now: Timestamp,
) -> Result<(RetryOutcome, Option<String>)> {
    let Some(id) = db_id(id) else {
        return Ok((RetryOutcome::NotFound, None));
    };
    let Some((state, queue, key)) = look(conn, schema, id, now).await? else {
        return Ok((RetryOutcome::NotFound, None));
    };
    if !matches!(state, JobState::Failed | JobState::Cancelled) {
        return Ok((RetryOutcome::NotRetryable(state), None));
    }
    if let Some(key) = key {
        if let Some(holder) = live_holder(conn, schema, &key, id).await? {
            return Ok((RetryOutcome::UniqueConflict(row::job_id(holder)?), None));
        }
    }
    sqlx::query(sql_for(
        schema,
        "UPDATE __S__.jobs SET state = 'ready', attempts = 0, run_at = $2, finished_at = NULL, \
         lease_expires_at = NULL WHERE id = $1",
    ))
    .bind(id)
    .bind(now.as_millis())
    .execute(&mut *conn)
    .await?;
    Ok((RetryOutcome::Retried, Some(queue)))
}

/// Cancels a job that is not final, in the caller's transaction; returns the queue to wake
/// when the job was running (a slot under a concurrency limit is freed).
pub(crate) async fn cancel_in(
    conn: &mut PgConnection,
    schema: &str,
    id: JobId,
    now: Timestamp,
) -> Result<(CancelOutcome, Option<String>)> {
    let Some(id) = db_id(id) else {
        return Ok((CancelOutcome::NotFound, None));
    };
    let Some((state, queue, _)) = look(conn, schema, id, now).await? else {
        return Ok((CancelOutcome::NotFound, None));
    };
    if state.is_final() {
        return Ok((CancelOutcome::AlreadyFinal(state), None));
    }
    let sql = concat!(
        "UPDATE __S__.jobs j SET state = 'cancelled', finished_at = $2, lease_expires_at = NULL, \
         history = CASE WHEN j.state = 'running' AND j.worker IS NOT NULL \
           THEN __S__.append_attempt(j.history, ",
        attempt_object!("$2", "'cancelled'", "NULL"),
        ") ELSE j.history END WHERE j.id = $1"
    );
    sqlx::query(sql_for(schema, sql))
        .bind(id)
        .bind(now.as_millis())
        .execute(&mut *conn)
        .await?;
    let freed = (state == JobState::Running).then_some(queue);
    Ok((CancelOutcome::Cancelled, freed))
}

/// Retries one job in its own transaction, and wakes its queue.
pub(crate) async fn retry(db: &Db, id: JobId) -> Result<RetryOutcome> {
    let mut tx = db.pool.begin().await?;
    let (out, queue) = retry_in(&mut tx, &db.schema, id, db.now()).await?;
    tx.commit().await?;
    if let Some(q) = queue {
        db.notify(&[q]).await?;
    }
    Ok(out)
}

/// Cancels one job in its own transaction; wakes its queue when it was running.
pub(crate) async fn cancel(db: &Db, id: JobId) -> Result<CancelOutcome> {
    let mut tx = db.pool.begin().await?;
    let (out, freed) = cancel_in(&mut tx, &db.schema, id, db.now()).await?;
    tx.commit().await?;
    if let Some(q) = freed {
        db.notify(&[q]).await?;
    }
    Ok(out)
}

/// How many rows one retention or purge statement deletes at most.
pub(crate) const DELETE_CHUNK: i64 = 1000;

/// Deletes final jobs that finished before `before`, in chunks of [`DELETE_CHUNK`] rows
/// (one short statement each, so no long lock and no huge transaction).
pub(crate) async fn purge(db: &Db, states: &[JobState], before: Timestamp) -> Result<u64> {
    if let Some(s) = states.iter().find(|s| !s.is_final()) {
        return Err(PostgresError::InvalidInput(format!(
            "purge deletes only completed, failed or cancelled jobs, not {s} ones"
        )));
    }
    let names: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
    let mut deleted = 0;
    loop {
        let n = sqlx::query(db.sql(
            "DELETE FROM __S__.jobs WHERE id IN (SELECT id FROM __S__.jobs \
             WHERE finished_at IS NOT NULL AND state = ANY($1) AND finished_at < $2 LIMIT $3)",
        ))
        .bind(&names)
        .bind(before.as_millis())
        .bind(DELETE_CHUNK)
        .execute(&db.pool)
        .await?
        .rows_affected();
        deleted += n;
        if n < DELETE_CHUNK as u64 {
            return Ok(deleted);
        }
    }
}

/// Deletes at most one chunk of completed jobs that finished before `cutoff`; returns how
/// many.
pub(crate) async fn prune_completed(db: &Db, cutoff: Timestamp) -> Result<u64> {
    Ok(sqlx::query(db.sql(
        "DELETE FROM __S__.jobs WHERE id IN (SELECT id FROM __S__.jobs \
         WHERE finished_at IS NOT NULL AND state = 'completed' AND finished_at < $1 \
         ORDER BY finished_at LIMIT $2)",
    ))
    .bind(cutoff.as_millis())
    .bind(DELETE_CHUNK)
    .execute(&db.pool)
    .await?
    .rows_affected())
}

/// Pauses a queue.
pub(crate) async fn pause(db: &Db, queue: &str) -> Result<()> {
    validate_queue_name(queue).map_err(PostgresError::InvalidInput)?;
    sqlx::query(
        db.sql("INSERT INTO __S__.paused_queues (name) VALUES ($1) ON CONFLICT (name) DO NOTHING"),
    )
    .bind(queue)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Resumes a queue and wakes its workers.
pub(crate) async fn resume(db: &Db, queue: &str) -> Result<()> {
    validate_queue_name(queue).map_err(PostgresError::InvalidInput)?;
    sqlx::query(db.sql("DELETE FROM __S__.paused_queues WHERE name = $1"))
        .bind(queue)
        .execute(&db.pool)
        .await?;
    db.notify(&[queue.to_owned()]).await
}
