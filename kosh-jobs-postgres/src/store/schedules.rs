//! Schedules: the `schedules` table, and firing a tick in the transaction that inserts its
//! job.

use kosh_jobs_core::schedule::{
    FireOutcome, Resumed, ScheduleDef, ScheduleFire, ScheduleRecord, Upserted,
};
use kosh_jobs_core::{NewJob, Timestamp};
use sqlx::postgres::PgRow;
use sqlx::Row;

use super::row::{self, db_id};
use super::{jobs, Db};
use crate::error::{PostgresError, Result};

const COLUMNS: &str = "id, def, revision, paused, next_fire, last_fire, last_job, runs";

fn decode(r: &PgRow) -> Result<ScheduleRecord> {
    let id: String = r.try_get(0)?;
    let def: String = r.try_get(1)?;
    let revision: i64 = r.try_get(2)?;
    let runs: i64 = r.try_get(7)?;
    let bad = |reason: String| PostgresError::Malformed {
        id: 0,
        reason: format!("schedule {id:?}: {reason}"),
    };
    let def: ScheduleDef =
        serde_json::from_str(&def).map_err(|e| bad(format!("unreadable definition: {e}")))?;
    let last_job: Option<i64> = r.try_get(6)?;
    Ok(ScheduleRecord {
        def,
        revision: u64::try_from(revision).map_err(|_| bad(format!("revision {revision}")))?,
        paused: r.try_get(3)?,
        next_fire: r.try_get::<Option<i64>, _>(4)?.map(Timestamp::from_millis),
        last_fire: r.try_get::<Option<i64>, _>(5)?.map(Timestamp::from_millis),
        last_job: last_job.map(row::job_id).transpose()?,
        runs: u64::try_from(runs).map_err(|_| bad(format!("runs {runs}")))?,
    })
}

fn ms(t: Option<Timestamp>) -> Option<i64> {
    t.map(Timestamp::as_millis)
}

/// Creates or replaces a schedule.
pub(crate) async fn upsert(
    db: &Db,
    def: &ScheduleDef,
    next_fire: Option<Timestamp>,
) -> Result<Upserted> {
    def.validate().map_err(PostgresError::InvalidInput)?;
    let json = def.to_json();
    let mut tx = db.pool.begin().await?;
    // Serializes upserts of one id (a row lock, or the insert's conflict).
    let stored: Option<String> =
        sqlx::query_scalar(db.sql("SELECT def FROM __S__.schedules WHERE id = $1 FOR UPDATE"))
            .bind(&def.id)
            .fetch_optional(&mut *tx)
            .await?;
    let out = match stored {
        Some(s) if s == json => Upserted::Unchanged,
        Some(_) => {
            sqlx::query(db.sql(
                "UPDATE __S__.schedules SET def = $2, revision = revision + 1, next_fire = $3 \
                 WHERE id = $1",
            ))
            .bind(&def.id)
            .bind(&json)
            .bind(ms(next_fire))
            .execute(&mut *tx)
            .await?;
            Upserted::Replaced
        }
        None => {
            let n = sqlx::query(db.sql(
                "INSERT INTO __S__.schedules (id, def, revision, next_fire) VALUES ($1, $2, 1, $3) \
                 ON CONFLICT (id) DO NOTHING",
            ))
            .bind(&def.id)
            .bind(&json)
            .bind(ms(next_fire))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 1 {
                Upserted::Created
            } else {
                Upserted::Unchanged
            }
        }
    };
    tx.commit().await?;
    Ok(out)
}

/// Removes a schedule.
pub(crate) async fn remove(db: &Db, id: &str) -> Result<bool> {
    Ok(
        sqlx::query(db.sql("DELETE FROM __S__.schedules WHERE id = $1"))
            .bind(id)
            .execute(&db.pool)
            .await?
            .rows_affected()
            > 0,
    )
}

/// Pauses a schedule.
pub(crate) async fn pause(db: &Db, id: &str) -> Result<bool> {
    Ok(
        sqlx::query(db.sql("UPDATE __S__.schedules SET paused = true WHERE id = $1"))
            .bind(id)
            .execute(&db.pool)
            .await?
            .rows_affected()
            > 0,
    )
}

/// Resumes a paused schedule at `revision` from `next_fire`.
pub(crate) async fn resume(
    db: &Db,
    id: &str,
    revision: u64,
    next_fire: Option<Timestamp>,
) -> Result<Resumed> {
    let mut tx = db.pool.begin().await?;
    let stored: Option<i64> =
        sqlx::query_scalar(db.sql("SELECT revision FROM __S__.schedules WHERE id = $1 FOR UPDATE"))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let out = match stored {
        None => Resumed::NotFound,
        Some(r) if u64::try_from(r).ok() != Some(revision) => Resumed::Conflict,
        Some(_) => {
            sqlx::query(db.sql(
                "UPDATE __S__.schedules SET paused = false, next_fire = $2 WHERE id = $1 AND paused",
            ))
            .bind(id)
            .bind(ms(next_fire))
            .execute(&mut *tx)
            .await?;
            Resumed::Resumed
        }
    };
    tx.commit().await?;
    Ok(out)
}

/// Every schedule, by id.
pub(crate) async fn list(db: &Db) -> Result<Vec<ScheduleRecord>> {
    let rows = sqlx::query(db.sql(&format!(
        "SELECT {COLUMNS} FROM __S__.schedules ORDER BY id"
    )))
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(decode).collect()
}

/// One schedule.
pub(crate) async fn get(db: &Db, id: &str) -> Result<Option<ScheduleRecord>> {
    let r = sqlx::query(db.sql(&format!(
        "SELECT {COLUMNS} FROM __S__.schedules WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&db.pool)
    .await?;
    r.as_ref().map(decode).transpose()
}

/// Unpaused schedules due at or before `before`, earliest first.
pub(crate) async fn due(db: &Db, before: Timestamp, limit: usize) -> Result<Vec<ScheduleRecord>> {
    let rows = sqlx::query(db.sql(&format!(
        "SELECT {COLUMNS} FROM __S__.schedules WHERE NOT paused AND next_fire IS NOT NULL \
         AND next_fire <= $1 ORDER BY next_fire, id LIMIT $2"
    )))
    .bind(before.as_millis())
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(decode).collect()
}

/// Fires schedules, all in one transaction: each compares and moves its cursor (the row is
/// locked) and inserts its jobs.
pub(crate) async fn fire(db: &Db, fires: &[ScheduleFire]) -> Result<Vec<FireOutcome>> {
    let now = db.now();
    for f in fires {
        for t in &f.ticks {
            if t.job.max_attempts == 0 {
                return Err(PostgresError::InvalidInput(format!(
                    "job `{}`: max_attempts must be at least 1",
                    t.job.name
                )));
            }
        }
    }
    let mut tx = db.pool.begin().await?;
    let mut out = Vec::with_capacity(fires.len());
    let mut wake = Vec::new();
    for f in fires {
        let stored: Option<(i64, bool, Option<i64>, Option<i64>)> = sqlx::query_as(db.sql(
            "SELECT revision, paused, next_fire, last_job FROM __S__.schedules \
             WHERE id = $1 FOR UPDATE",
        ))
        .bind(&f.id)
        .fetch_optional(&mut *tx)
        .await?;
        let current = stored.is_some_and(|(rev, paused, cursor, _)| {
            !paused
                && u64::try_from(rev).ok() == Some(f.revision)
                && cursor == Some(f.cursor.as_millis())
        });
        if !current {
            out.push(FireOutcome::Stale);
            continue;
        }
        let last_job = stored.and_then(|s| s.3);
        let live = match last_job {
            Some(id) if f.skip_if_live && !f.ticks.is_empty() => {
                let found: Option<i32> = sqlx::query_scalar(db.sql(
                    "SELECT 1 FROM __S__.jobs WHERE id = $1 \
                     AND state IN ('scheduled', 'ready', 'running')",
                ))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                found.is_some()
            }
            _ => false,
        };
        let pushed = if live || f.ticks.is_empty() {
            Vec::new()
        } else {
            let batch: Vec<NewJob> = f.ticks.iter().map(|t| t.job.clone()).collect();
            wake.extend(batch.iter().map(|j| j.queue.clone()));
            jobs::push(&mut tx, &db.schema, &db.channel, &batch, now).await?
        };
        let (last_fire, last) = match (f.ticks.last(), pushed.last()) {
            (Some(t), Some(e)) => (Some(t.at.as_millis()), db_id(e.id)),
            _ => (None, None),
        };
        sqlx::query(db.sql(
            "UPDATE __S__.schedules SET next_fire = $2, runs = runs + $3, \
             last_fire = coalesce($4, last_fire), last_job = coalesce($5, last_job) \
             WHERE id = $1",
        ))
        .bind(&f.id)
        .bind(ms(f.next_fire))
        .bind(i64::try_from(pushed.len()).unwrap_or(i64::MAX))
        .bind(last_fire)
        .bind(last)
        .execute(&mut *tx)
        .await?;
        out.push(if live {
            FireOutcome::Overlapping
        } else {
            FireOutcome::Fired(pushed)
        });
    }
    tx.commit().await?;
    if !wake.is_empty() {
        db.wake_local();
    }
    Ok(out)
}
