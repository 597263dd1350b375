//! Schedules: the `kosh_schedules` table, and firing a tick in the transaction that inserts
//! its job.

use kosh_jobs_core::schedule::{
    FireOutcome, Resumed, ScheduleDef, ScheduleFire, ScheduleRecord, Upserted,
};
use kosh_jobs_core::{NewJob, Timestamp};
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::row::{self, db_id};
use super::{exec, jobs, sql_err, Effects};
use crate::error::{Result, SqliteError};

const COLUMNS: &str = "id, def, revision, paused, next_fire, last_fire, last_job, runs";

/// Unpaused schedules with a cursor at or before ?1, earliest first, at most ?2: a range of
/// the partial index `kosh_schedules_due`.
pub(super) const DUE: &str = "SELECT id, def, revision, paused, next_fire, last_fire, last_job, \
     runs FROM kosh_schedules WHERE NOT paused AND next_fire IS NOT NULL AND next_fire <= ?1 \
     ORDER BY next_fire, id LIMIT +?2";

/// A row of [`COLUMNS`], before decoding.
type Raw = (
    String,
    String,
    i64,
    bool,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    i64,
);

fn record(r: &Row<'_>) -> rusqlite::Result<Raw> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

fn decode(raw: Raw) -> Result<ScheduleRecord> {
    let (id, def, revision, paused, next_fire, last_fire, last_job, runs) = raw;
    let bad = |reason: String| SqliteError::Malformed {
        id: 0,
        reason: format!("schedule {id:?}: {reason}"),
    };
    let def: ScheduleDef =
        serde_json::from_str(&def).map_err(|e| bad(format!("unreadable definition: {e}")))?;
    Ok(ScheduleRecord {
        def,
        revision: u64::try_from(revision).map_err(|_| bad(format!("revision {revision}")))?,
        paused,
        next_fire: next_fire.map(Timestamp::from_millis),
        last_fire: last_fire.map(Timestamp::from_millis),
        last_job: last_job.map(row::job_id).transpose()?,
        runs: u64::try_from(runs).map_err(|_| bad(format!("runs {runs}")))?,
    })
}

fn ms(t: Option<Timestamp>) -> Option<i64> {
    t.map(Timestamp::as_millis)
}

/// Creates or replaces a schedule (see [`kosh_jobs_core::Backend::upsert_schedule`]).
pub(super) fn upsert(
    conn: &Connection,
    def: &ScheduleDef,
    next_fire: Option<Timestamp>,
) -> Result<Upserted> {
    def.validate().map_err(SqliteError::InvalidInput)?;
    let json = def.to_json();
    let stored: Option<String> = conn
        .prepare_cached("SELECT def FROM kosh_schedules WHERE id = ?1")
        .and_then(|mut s| s.query_row([&def.id], |r| r.get(0)).optional())
        .map_err(sql_err)?;
    Ok(match stored {
        Some(s) if s == json => Upserted::Unchanged,
        Some(_) => {
            exec(
                conn,
                "UPDATE kosh_schedules SET def = ?2, revision = revision + 1, next_fire = ?3 \
                 WHERE id = ?1",
                params![def.id, json, ms(next_fire)],
            )?;
            Upserted::Replaced
        }
        None => {
            exec(
                conn,
                "INSERT INTO kosh_schedules (id, def, revision, next_fire) VALUES (?1, ?2, 1, ?3)",
                params![def.id, json, ms(next_fire)],
            )?;
            Upserted::Created
        }
    })
}

/// Removes a schedule.
pub(super) fn remove(conn: &Connection, id: &str) -> Result<bool> {
    Ok(exec(conn, "DELETE FROM kosh_schedules WHERE id = ?1", [id])? > 0)
}

/// Pauses a schedule.
pub(super) fn pause(conn: &Connection, id: &str) -> Result<bool> {
    Ok(exec(
        conn,
        "UPDATE kosh_schedules SET paused = 1 WHERE id = ?1",
        [id],
    )? > 0)
}

/// Resumes a paused schedule at `revision` from `next_fire`.
pub(super) fn resume(
    conn: &Connection,
    id: &str,
    revision: u64,
    next_fire: Option<Timestamp>,
) -> Result<Resumed> {
    let stored: Option<i64> = conn
        .prepare_cached("SELECT revision FROM kosh_schedules WHERE id = ?1")
        .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
        .map_err(sql_err)?;
    Ok(match stored {
        None => Resumed::NotFound,
        Some(r) if u64::try_from(r).ok() != Some(revision) => Resumed::Conflict,
        Some(_) => {
            exec(
                conn,
                "UPDATE kosh_schedules SET paused = 0, next_fire = ?2 WHERE id = ?1 AND paused",
                params![id, ms(next_fire)],
            )?;
            Resumed::Resumed
        }
    })
}

/// Every schedule, by id.
pub(super) fn list(conn: &Connection) -> Result<Vec<ScheduleRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM kosh_schedules ORDER BY id");
    let raws = conn
        .prepare_cached(&sql)
        .and_then(|mut s| {
            s.query_map([], record)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(sql_err)?;
    raws.into_iter().map(decode).collect()
}

/// One schedule.
pub(super) fn get(conn: &Connection, id: &str) -> Result<Option<ScheduleRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM kosh_schedules WHERE id = ?1");
    conn.prepare_cached(&sql)
        .and_then(|mut s| s.query_row([id], record).optional())
        .map_err(sql_err)?
        .map(decode)
        .transpose()
}

/// Unpaused schedules due at or before `before`, earliest first, through the partial index.
pub(super) fn due(
    conn: &Connection,
    before: Timestamp,
    limit: usize,
) -> Result<Vec<ScheduleRecord>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let raws = conn
        .prepare_cached(DUE)
        .and_then(|mut s| {
            s.query_map(params![before.as_millis(), limit], record)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(sql_err)?;
    raws.into_iter().map(decode).collect()
}

/// Fires schedules (see [`kosh_jobs_core::Backend::fire_schedules`]): each compares and moves
/// its cursor and inserts its jobs in the caller's transaction.
pub(super) fn fire(
    conn: &Connection,
    fires: &[ScheduleFire],
    now: Timestamp,
    fx: &mut Effects,
) -> Result<Vec<FireOutcome>> {
    let mut out = Vec::with_capacity(fires.len());
    for f in fires {
        let stored: Option<(i64, bool, Option<i64>, Option<i64>)> = conn
            .prepare_cached(
                "SELECT revision, paused, next_fire, last_job FROM kosh_schedules WHERE id = ?1",
            )
            .and_then(|mut s| {
                s.query_row([&f.id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .optional()
            })
            .map_err(sql_err)?;
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
            Some(id) if f.skip_if_live && !f.ticks.is_empty() => conn
                .prepare_cached(
                    "SELECT 1 FROM kosh_jobs WHERE id = ?1 \
                     AND state IN ('scheduled', 'ready', 'running')",
                )
                .and_then(|mut s| s.exists([id]))
                .map_err(sql_err)?,
            _ => false,
        };
        let pushed = if live || f.ticks.is_empty() {
            Vec::new()
        } else {
            let jobs: Vec<NewJob> = f.ticks.iter().map(|t| t.job.clone()).collect();
            jobs::push(conn, &jobs, now, fx)?
        };
        let (last_fire, last) = match (f.ticks.last(), pushed.last()) {
            (Some(t), Some(e)) => (Some(t.at.as_millis()), db_id(e.id)),
            _ => (None, None),
        };
        exec(
            conn,
            "UPDATE kosh_schedules SET next_fire = ?2, runs = runs + ?3, \
             last_fire = coalesce(?4, last_fire), last_job = coalesce(?5, last_job) \
             WHERE id = ?1",
            params![
                f.id,
                ms(f.next_fire),
                i64::try_from(pushed.len()).unwrap_or(i64::MAX),
                last_fire,
                last
            ],
        )?;
        out.push(if live {
            FireOutcome::Overlapping
        } else {
            FireOutcome::Fired(pushed)
        });
    }
    Ok(out)
}
