//! The hot path: push, reserve, finish, heartbeat, progress, release, recovery.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use kosh_jobs_core::admin::{minute_of, THROUGHPUT_RETENTION};
use kosh_jobs_core::backend::{
    validate_group_key, validate_job_name, validate_queue_name, validate_trace,
    MAX_UNSTARTED_EXPIRIES,
};
use kosh_jobs_core::{
    Enqueued, Finish, FinishResult, JobState, Lease, LeasedJob, NewJob, Outcome, QueueLimits,
    ReserveRequest, Timestamp,
};
use rusqlite::{params, CachedStatement, Connection, OptionalExtension};

use super::groups;
use super::row::{self, db_lease};
use super::{exec, live_holder, sql_err, Effects, LeasedIn, LeasedQueues};
use crate::error::{Result, SqliteError};

/// The SQL that appends an error for the current attempt, as a string literal: `$err` and
/// `$now` are the SQL of the error text and of the time (parameters or literals).
macro_rules! append_error {
    ($err:literal, $now:literal) => {
        concat!(
            "json_insert(coalesce(errors, '[]'), '$[#]', \
             json_object('attempt', attempts, 'error', ",
            $err,
            ", 'at', ",
            $now,
            "))"
        )
    };
}

/// The SQL that appends the job's latest attempt, ending at `$now` with `$outcome` and error
/// `$err` (SQL: parameters or literals), to its history, as a string literal. The attempt is
/// built from the columns the lease set (`attempts`, `started_at`, `worker`), and appended by
/// editing the text: JSON is parsed only to drop the oldest of
/// [`kosh_jobs_core::admin::MAX_HISTORY`] (25) attempts, and to count them once a job has
/// two. A job leased before schema version 2 (no `worker`) keeps no history.
macro_rules! append_attempt {
    ($now:literal, $outcome:literal, $err:literal) => {
        concat!(
            "CASE WHEN worker IS NULL THEN history \
             WHEN history IS NULL THEN '[' || ",
            $crate::store::jobs::attempt_object!($now, $outcome, $err),
            " || ']' WHEN json_array_length(history) < 25 THEN rtrim(history, ']') || ',' || ",
            $crate::store::jobs::attempt_object!($now, $outcome, $err),
            " || ']' ELSE rtrim(json_remove(history, '$[0]'), ']') || ',' || ",
            $crate::store::jobs::attempt_object!($now, $outcome, $err),
            " || ']' END"
        )
    };
}
pub(crate) use append_attempt;

/// The JSON object of the job's latest attempt (see [`append_attempt`]).
macro_rules! attempt_object {
    ($now:literal, $outcome:literal, $err:literal) => {
        concat!(
            "json_object('attempt', attempts, 'started_at', started_at, 'worker', worker, \
             'ended_at', ",
            $now,
            ", 'outcome', ",
            $outcome,
            ", 'error', ",
            $err,
            ")"
        )
    };
}
pub(crate) use attempt_object;

/// The statements of the hot path, built once: each call looks its statement up in the
/// connection's cache without building the string.
pub(super) mod sql {
    /// Due scheduled jobs of queue ?1 become ready (at ?2), unless the queue is paused.
    pub(crate) const PROMOTE: &str = "UPDATE kosh_jobs SET state = 'ready' \
         WHERE state = 'scheduled' AND queue = ?1 AND run_at <= ?2 \
         AND NOT EXISTS (SELECT 1 FROM kosh_queues WHERE name = ?1 AND paused)";

    /// Leases up to ?4 ready jobs without a group of queue ?3 (started at ?1, until ?2, by
    /// worker ?5), unless the queue is paused. The attempt is recorded by the columns alone (`attempts`,
    /// `started_at`, `worker`): no JSON is written until it ends. `LIMIT +?4`, not
    /// `LIMIT ?4`: SQLite plans with the value of a bare `LIMIT` parameter, and so prepares
    /// the statement again each time it is bound; the unary `+` keeps one plan.
    pub(crate) const CLAIM: &str = "UPDATE kosh_jobs SET state = 'running', \
         attempts = attempts + 1, lease_token = random(), started_at = ?1, \
         lease_expires_at = ?2, worker = ?5, lease_started = 0 \
         WHERE id IN (SELECT id FROM kosh_jobs WHERE state = 'ready' AND grp IS NULL \
                      AND queue = ?3 AND NOT EXISTS (SELECT 1 FROM kosh_queues WHERE name = ?3 AND paused) \
                      ORDER BY priority DESC, id LIMIT +?4) \
         RETURNING id, lease_token, name, queue, payload, priority, attempts, \
                   max_attempts, created_at, progress, trace";

    /// Leases the next ready job of group ?4 of queue ?3 (started at ?1, until ?2, by worker
    /// ?5), as [`CLAIM`] does. The caller has checked that the queue is not paused.
    pub(crate) const CLAIM_GROUP: &str = "UPDATE kosh_jobs SET state = 'running', \
         attempts = attempts + 1, lease_token = random(), started_at = ?1, \
         lease_expires_at = ?2, worker = ?5, lease_started = 0 \
         WHERE id = (SELECT id FROM kosh_jobs WHERE state = 'ready' AND grp IS NOT NULL \
                     AND queue = ?3 AND grp = ?4 ORDER BY priority DESC, id LIMIT 1) \
         RETURNING id, lease_token, name, queue, payload, priority, attempts, \
                   max_attempts, created_at, progress, trace";

    /// Completes job ?1 leased with token ?2 at ?3 with result ?4. The attempt that completed
    /// a job is not appended to its history: readers take it from the columns.
    pub(crate) const COMPLETE: &str = "UPDATE kosh_jobs SET state = 'completed', \
         finished_at = ?3, result = ?4, lease_expires_at = NULL \
         WHERE id = ?1 AND lease_token = ?2 AND state = 'running'";

    /// The queue and group of job ?1 if it runs under lease token ?2. Finish reads it before changing
    /// the job, rather than with `RETURNING queue`: SQLite keeps the rows an `UPDATE …
    /// RETURNING` returns in a temporary table it creates on every run, which costs more than
    /// this look-up.
    pub(crate) const LEASED_QUEUE: &str = "SELECT queue, grp FROM kosh_jobs \
         WHERE id = ?1 AND lease_token = ?2 AND state = 'running'";

    /// Schedules job ?1 leased with token ?2 again at ?4 (now ?3), recording error ?5 and
    /// the attempt's outcome ?6.
    pub(crate) const RETRY: &str = concat!(
        "UPDATE kosh_jobs SET \
         state = CASE WHEN ?4 > ?3 THEN 'scheduled' ELSE 'ready' END, \
         run_at = ?4, errors = ",
        append_error!("?5", "?3"),
        ", history = ",
        append_attempt!("?3", "?6", "?5"),
        ", lease_expires_at = NULL \
         WHERE id = ?1 AND lease_token = ?2 AND state = 'running'"
    );

    /// Snoozes job ?1 leased with token ?2 until ?4 (now ?3): back to waiting as a retry
    /// would, but the attempt is not counted (as a release) and no error is recorded.
    pub(crate) const SNOOZE: &str = concat!(
        "UPDATE kosh_jobs SET \
         state = CASE WHEN ?4 > ?3 THEN 'scheduled' ELSE 'ready' END, \
         run_at = ?4, attempts = max(attempts - 1, 0), history = ",
        append_attempt!("?3", "'snoozed'", "NULL"),
        ", lease_expires_at = NULL \
         WHERE id = ?1 AND lease_token = ?2 AND state = 'running'"
    );

    /// Fails job ?1 leased with token ?2 at ?3, recording error ?4 and the attempt's outcome
    /// ?5.
    pub(crate) const FAIL: &str = concat!(
        "UPDATE kosh_jobs SET state = 'failed', finished_at = ?3, errors = ",
        append_error!("?4", "?3"),
        ", history = ",
        append_attempt!("?3", "?5", "?4"),
        ", lease_expires_at = NULL \
         WHERE id = ?1 AND lease_token = ?2 AND state = 'running'"
    );

    /// Gives job ?1 leased with token ?2 back at ?3, without counting the attempt.
    pub(crate) const RELEASE: &str = concat!(
        "UPDATE kosh_jobs SET state = 'ready', attempts = max(attempts - 1, 0), \
         lease_expires_at = NULL, history = ",
        append_attempt!("?3", "'released'", "NULL"),
        " WHERE id = ?1 AND lease_token = ?2 AND state = 'running' RETURNING queue, grp"
    );

    /// Adds ?3 completed and ?4 failed jobs to queue ?1's minute ?2, if that minute has a
    /// row (no `RETURNING` and no upsert: the common case is one plain `UPDATE`).
    pub(crate) const COUNT_FINISHED: &str = "UPDATE kosh_throughput \
         SET completed = completed + ?3, failed = failed + ?4 WHERE queue = ?1 AND minute = ?2";

    /// Queue ?1's first row of minute ?2, with ?3 completed and ?4 failed jobs.
    pub(crate) const NEW_MINUTE: &str =
        "INSERT INTO kosh_throughput (queue, minute, completed, failed) VALUES (?1, ?2, ?3, ?4)";

    /// Extends the lease of job ?1 with token ?2 to ?3, and marks its attempt started.
    pub(crate) const HEARTBEAT: &str = "UPDATE kosh_jobs SET lease_expires_at = ?3, \
         lease_started = 1 \
         WHERE id = ?1 AND lease_token = ?2 AND state = 'running'";

    /// Recovers every lease expired at ?1. An attempt never marked started is given back
    /// (at most ?2 times per job): ready, one attempt fewer, nothing recorded. Every `SET`
    /// expression reads the row as it was, so each tests the same condition.
    pub(crate) const RECOVER: &str = concat!(
        "UPDATE kosh_jobs SET \
         state = CASE WHEN lease_started = 0 AND unstarted < ?2 THEN 'ready' \
                      WHEN attempts >= max_attempts THEN 'failed' ELSE 'ready' END, \
         finished_at = CASE WHEN lease_started = 0 AND unstarted < ?2 THEN NULL \
                            WHEN attempts >= max_attempts THEN ?1 ELSE NULL END, \
         attempts = CASE WHEN lease_started = 0 AND unstarted < ?2 THEN attempts - 1 \
                         ELSE attempts END, \
         unstarted = CASE WHEN lease_started = 0 AND unstarted < ?2 THEN unstarted + 1 \
                          ELSE unstarted END, \
         errors = CASE WHEN lease_started = 0 AND unstarted < ?2 THEN errors ELSE ",
        append_error!("'lease expired'", "?1"),
        " END, history = CASE WHEN lease_started = 0 AND unstarted < ?2 THEN history ELSE ",
        append_attempt!("?1", "'lease_expired'", "'lease expired'"),
        " END, lease_expires_at = NULL \
         WHERE state = 'running' AND lease_expires_at <= ?1 \
         RETURNING queue, id, state, grp"
    );
}

/// The statement in `slot`, prepared (from the cache) on first use.
fn cached<'c, 's>(
    slot: &'s mut Option<CachedStatement<'c>>,
    conn: &'c Connection,
    sql: &str,
) -> Result<&'s mut CachedStatement<'c>> {
    let stmt = match slot.take() {
        Some(stmt) => stmt,
        None => conn.prepare_cached(sql).map_err(sql_err)?,
    };
    Ok(slot.insert(stmt))
}

fn check_new(job: &NewJob) -> Result<()> {
    validate_queue_name(&job.queue).map_err(SqliteError::InvalidInput)?;
    validate_job_name(&job.name).map_err(SqliteError::InvalidInput)?;
    if let Some(group) = &job.group {
        validate_group_key(group)
            .map_err(|e| SqliteError::InvalidInput(format!("job `{}`: {e}", job.name)))?;
    }
    if let Some(trace) = &job.trace {
        validate_trace(trace)
            .map_err(|e| SqliteError::InvalidInput(format!("job `{}`: {e}", job.name)))?;
    }
    if job.max_attempts == 0 {
        return Err(SqliteError::InvalidInput(format!(
            "job `{}`: max_attempts must be at least 1",
            job.name
        )));
    }
    Ok(())
}

/// Stores jobs (see [`kosh_jobs_core::Backend::push`]).
pub(super) fn push(
    conn: &Connection,
    jobs: &[NewJob],
    now: Timestamp,
    fx: &mut Effects,
) -> Result<Vec<Enqueued>> {
    for job in jobs {
        check_new(job)?;
    }
    let mut next_id: i64 = conn
        .prepare_cached(
            "SELECT max(coalesce((SELECT max(id) FROM kosh_jobs), 0), \
             (SELECT value FROM kosh_meta WHERE key = 'id_floor')) + 1",
        )
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(sql_err)?;
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO kosh_jobs (id, name, queue, payload, state, priority, run_at, \
             max_attempts, created_at, unique_key, grp, trace) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )
        .map_err(sql_err)?;
    let mut out = Vec::with_capacity(jobs.len());
    for job in jobs {
        if let Some(key) = &job.unique_key {
            if let Some(id) = live_holder(conn, key)? {
                out.push(Enqueued {
                    id: row::job_id(id)?,
                    existing: true,
                });
                continue;
            }
        }
        let state = if job.run_at > now {
            JobState::Scheduled
        } else {
            JobState::Ready
        };
        insert
            .execute(params![
                next_id,
                job.name,
                job.queue,
                job.payload,
                state.as_str(),
                job.priority,
                job.run_at.as_millis(),
                job.max_attempts,
                now.as_millis(),
                job.unique_key,
                job.group,
                job.trace,
            ])
            .map_err(sql_err)?;
        out.push(Enqueued {
            id: row::job_id(next_id)?,
            existing: false,
        });
        next_id += 1;
        if let (Some(group), JobState::Ready) = (&job.group, state) {
            groups::group_ready(conn, &job.queue, group)?;
        }
        fx.count(&job.queue, state, 1);
        fx.wake(&job.queue);
    }
    Ok(out)
}

/// Rotates the first queue reserve looks at, so one busy queue does not starve the others.
static ROTATION: AtomicUsize = AtomicUsize::new(0);

/// Leases jobs (see [`kosh_jobs_core::Backend::reserve`]).
pub(super) fn reserve(
    conn: &Connection,
    req: &ReserveRequest,
    now: Timestamp,
    fx: &mut Effects,
    known: &mut LeasedQueues,
) -> Result<Vec<LeasedJob>> {
    let mut queues: Vec<&str> = Vec::with_capacity(req.queues.len());
    for q in &req.queues {
        if !queues.contains(&q.as_str()) {
            queues.push(q);
        }
    }
    if req.max == 0 || queues.is_empty() {
        return Ok(Vec::new());
    }
    recover_expired(conn, now, fx)?;
    let claim = Claim {
        now,
        expires: (now + req.lease).as_millis(),
        worker: &req.worker,
    };
    let start = ROTATION.fetch_add(1, Ordering::Relaxed) % queues.len();
    let mut out: Vec<LeasedJob> = Vec::new();
    let mut promote = conn.prepare_cached(sql::PROMOTE).map_err(sql_err)?;
    let mut promoted_groups = conn
        .prepare_cached(groups::PROMOTED_GROUPS)
        .map_err(sql_err)?;
    for i in 0..queues.len() {
        let queue = queues[(start + i) % queues.len()];
        let want = req.max - out.len();
        if want == 0 {
            break;
        }
        // These statements skip a paused queue themselves: no separate look-up per queue.
        // The groups of due jobs get their turns first (nothing to read for a queue whose
        // scheduled jobs have no group).
        promoted_groups
            .execute(params![queue, now.as_millis()])
            .map_err(sql_err)?;
        let promoted = promote
            .execute(params![queue, now.as_millis()])
            .map_err(sql_err)?;
        fx.moved(queue, JobState::Scheduled, JobState::Ready, promoted as i64);
        // A queue's limits and hold, if it has any (one primary-key look-up), cap what it
        // may lease.
        let mut flow = super::limits::flow_of(conn, queue)?;
        if flow.is_some_and(|f| f.limits.is_none() && f.hold_at(now).is_none()) {
            // A hold that ended on a queue without limits: its row is no longer needed.
            super::limits::forget_if_idle(conn, queue, now)?;
            flow = None;
        }
        let want = match &flow {
            Some(f) => want.min(super::limits::room(conn, queue, f, now)?.0),
            None => want,
        };
        if want == 0 {
            continue;
        }
        let first = out.len();
        if groups::has_turns(conn, queue)? {
            // Grouped jobs are ready: the lanes take turns, in the order they are taken.
            let limits = flow.map_or(QueueLimits::NONE, |f| f.limits);
            groups::reserve_by_turns(conn, queue, want, &limits, &claim, &mut out, known)?;
        } else {
            let limit = i64::try_from(want).unwrap_or(i64::MAX);
            let mut claim_many = conn.prepare_cached(sql::CLAIM).map_err(sql_err)?;
            let mut rows = claim_many
                .query(params![
                    now.as_millis(),
                    claim.expires,
                    queue,
                    limit,
                    claim.worker
                ])
                .map_err(sql_err)?;
            while let Some(r) = rows.next().map_err(sql_err)? {
                out.push(leased(r, claim.expires)?);
            }
            out[first..].sort_by(|a, b| {
                b.priority
                    .cmp(&a.priority)
                    .then(a.lease.id.cmp(&b.lease.id))
            });
            known.insert(&out[first..], queue, None);
        }
        if let Some(rate) = flow.and_then(|f| f.limits.rate) {
            super::limits::log_starts(conn, queue, rate, now, out.len() - first)?;
        }
        fx.moved(
            queue,
            JobState::Ready,
            JobState::Running,
            (out.len() - first) as i64,
        );
    }
    Ok(out)
}

/// How a reserve leases: when, until when, for which worker.
pub(super) struct Claim<'a> {
    pub(super) now: Timestamp,
    /// The end of the lease, in ms.
    pub(super) expires: i64,
    pub(super) worker: &'a str,
}

/// Leases the next ready job of `queue` in `group` (`None`: of the jobs without a group), if
/// there is one.
pub(super) fn claim_one(
    conn: &Connection,
    claim: &Claim<'_>,
    queue: &str,
    group: Option<&str>,
) -> Result<Option<LeasedJob>> {
    let (sql, fourth) = match group {
        Some(g) => (sql::CLAIM_GROUP, rusqlite::types::Value::Text(g.to_owned())),
        None => (sql::CLAIM, rusqlite::types::Value::Integer(1)),
    };
    let mut stmt = conn.prepare_cached(sql).map_err(sql_err)?;
    let mut rows = stmt
        .query(params![
            claim.now.as_millis(),
            claim.expires,
            queue,
            fourth,
            claim.worker
        ])
        .map_err(sql_err)?;
    match rows.next().map_err(sql_err)? {
        Some(r) => Ok(Some(leased(r, claim.expires)?)),
        None => Ok(None),
    }
}

fn leased(r: &rusqlite::Row<'_>, expires: i64) -> Result<LeasedJob> {
    let id: i64 = r.get(0).map_err(sql_err)?;
    let progress: Option<String> = r.get(9).map_err(sql_err)?;
    let progress = progress.map(|text| {
        serde_json::from_str(&text).unwrap_or_else(|e| {
            tracing::warn!(job = id, error = %e, "stored progress is not JSON; passing it as a string");
            serde_json::Value::String(text)
        })
    });
    Ok(LeasedJob {
        lease: Lease {
            id: row::job_id(id)?,
            token: row::token(r.get(1).map_err(sql_err)?),
        },
        name: r.get(2).map_err(sql_err)?,
        queue: r.get(3).map_err(sql_err)?,
        payload: r.get(4).map_err(sql_err)?,
        priority: row::priority(id, r.get(5).map_err(sql_err)?)?,
        attempt: row::count(id, "attempts", r.get(6).map_err(sql_err)?)?,
        max_attempts: row::count(id, "max_attempts", r.get(7).map_err(sql_err)?)?,
        created_at: Timestamp::from_millis(r.get(8).map_err(sql_err)?),
        lease_expires_at: Timestamp::from_millis(expires),
        progress,
        trace: r.get(10).map_err(sql_err)?,
    })
}

/// Ends attempts (see [`kosh_jobs_core::Backend::finish`]).
pub(super) fn finish(
    conn: &Connection,
    items: &[Finish],
    now: Timestamp,
    fx: &mut Effects,
    leased: &mut LeasedQueues,
) -> Result<Vec<FinishResult>> {
    let mut out = Vec::with_capacity(items.len());
    // Each statement is taken from the cache once per batch, on first use.
    let (mut lookup, mut complete, mut retry, mut fail, mut snooze) =
        (None, None, None, None, None);
    for item in items {
        let Some((id, token)) = db_lease(&item.lease) else {
            out.push(FinishResult::LeaseLost);
            continue;
        };
        // The queue of the job: known if this connection leased it, else read with the
        // lease (a lease that is not current changes nothing: no need to go on). Either way
        // the change below is the item's last fallible step: a grouped job made ready again
        // has its group's turn row written before it (a row too many, if the lease turns out
        // lost, is harmless: the next reserve that finds the group empty deletes it).
        let LeasedIn { queue, group } = match leased.take(id) {
            Some(at) => at,
            None => {
                let at: Option<(String, Option<String>)> =
                    cached(&mut lookup, conn, sql::LEASED_QUEUE)?
                        .query_row(params![id, token], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()
                        .map_err(sql_err)?;
                match at {
                    Some((q, g)) => LeasedIn {
                        queue: Arc::from(q),
                        group: g.map(Arc::from),
                    },
                    None => {
                        out.push(FinishResult::LeaseLost);
                        continue;
                    }
                }
            }
        };
        let outcome = item.outcome.attempt_outcome().as_str();
        let changed = match &item.outcome {
            Outcome::Completed { result } => {
                let result = result.as_ref().map(|v| v.to_string());
                let n = cached(&mut complete, conn, sql::COMPLETE)?
                    .execute(params![id, token, now.as_millis(), result])
                    .map_err(sql_err)?;
                if n == 1 {
                    fx.count_finished(&queue, true);
                    fx.moved(&queue, JobState::Running, JobState::Completed, 1);
                }
                n
            }
            Outcome::Retry {
                error, retry_at, ..
            } => {
                if let (Some(g), true) = (&group, *retry_at <= now) {
                    groups::group_ready(conn, &queue, g)?;
                }
                let n = cached(&mut retry, conn, sql::RETRY)?
                    .execute(params![
                        id,
                        token,
                        now.as_millis(),
                        retry_at.as_millis(),
                        error,
                        outcome
                    ])
                    .map_err(sql_err)?;
                if n == 1 {
                    // As the statement decides: scheduled only if the retry is later.
                    let to = if *retry_at > now {
                        JobState::Scheduled
                    } else {
                        JobState::Ready
                    };
                    fx.moved(&queue, JobState::Running, to, 1);
                    fx.wake(&queue);
                }
                n
            }
            Outcome::Snooze { until } => {
                if let (Some(g), true) = (&group, *until <= now) {
                    groups::group_ready(conn, &queue, g)?;
                }
                let n = cached(&mut snooze, conn, sql::SNOOZE)?
                    .execute(params![id, token, now.as_millis(), until.as_millis()])
                    .map_err(sql_err)?;
                if n == 1 {
                    // As the statement decides: scheduled only if `until` is later.
                    let to = if *until > now {
                        JobState::Scheduled
                    } else {
                        JobState::Ready
                    };
                    fx.moved(&queue, JobState::Running, to, 1);
                    fx.wake(&queue);
                }
                n
            }
            Outcome::Failed { error, .. } => {
                let n = cached(&mut fail, conn, sql::FAIL)?
                    .execute(params![id, token, now.as_millis(), error, outcome])
                    .map_err(sql_err)?;
                if n == 1 {
                    fx.count_finished(&queue, false);
                    fx.moved(&queue, JobState::Running, JobState::Failed, 1);
                }
                n
            }
        };
        out.push(if changed == 1 {
            FinishResult::Applied
        } else {
            FinishResult::LeaseLost
        });
    }
    Ok(out)
}

/// Adds jobs that reached `completed` or `failed` (per queue: completed, failed) to the
/// minute of `now`; when that is a queue's first write in this minute, drops its minutes
/// older than the retention. The writer calls it once per transaction.
pub(crate) fn write_throughput(
    conn: &Connection,
    finished: &[(String, i64, i64)],
    now: Timestamp,
) -> Result<()> {
    if finished.is_empty() {
        return Ok(());
    }
    let minute = minute_of(now).as_millis();
    let mut add = conn.prepare_cached(sql::COUNT_FINISHED).map_err(sql_err)?;
    for (queue, completed, failed) in finished {
        let p = params![queue, minute, completed, failed];
        if add.execute(p).map_err(sql_err)? == 0 {
            exec(conn, sql::NEW_MINUTE, p)?;
            let keep_from = now.saturating_sub(THROUGHPUT_RETENTION).as_millis();
            exec(
                conn,
                "DELETE FROM kosh_throughput WHERE queue = ?1 AND minute < ?2",
                params![queue, keep_from],
            )?;
        }
    }
    Ok(())
}

/// Extends current leases to `until`; returns the ones that are not current.
pub(super) fn heartbeat(
    conn: &Connection,
    leases: &[Lease],
    until: Timestamp,
) -> Result<Vec<Lease>> {
    let mut lost = Vec::new();
    let mut stmt = conn.prepare_cached(sql::HEARTBEAT).map_err(sql_err)?;
    for lease in leases {
        let extended = match db_lease(lease) {
            Some((id, token)) => {
                stmt.execute(params![id, token, until.as_millis()])
                    .map_err(sql_err)?
                    == 1
            }
            None => false,
        };
        if !extended {
            lost.push(*lease);
        }
    }
    Ok(lost)
}

/// Stores progress of a running job; `false` if the lease is not current.
pub(super) fn progress(conn: &Connection, lease: &Lease, json: &str) -> Result<bool> {
    let Some((id, token)) = db_lease(lease) else {
        return Ok(false);
    };
    Ok(exec(
        conn,
        "UPDATE kosh_jobs SET progress = ?3 \
         WHERE id = ?1 AND lease_token = ?2 AND state = 'running'",
        params![id, token, json],
    )? == 1)
}

/// Gives leased jobs back without counting the attempt.
pub(super) fn release(
    conn: &Connection,
    leases: &[Lease],
    now: Timestamp,
    fx: &mut Effects,
) -> Result<()> {
    let mut stmt = conn.prepare_cached(sql::RELEASE).map_err(sql_err)?;
    for lease in leases {
        if let Some((id, token)) = db_lease(lease) {
            let released: Option<(String, Option<String>)> = stmt
                .query_row(params![id, token, now.as_millis()], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
                .map_err(sql_err)?;
            if let Some((q, group)) = released {
                if let Some(g) = group {
                    groups::group_ready(conn, &q, &g)?;
                }
                fx.moved(&q, JobState::Running, JobState::Ready, 1);
                fx.wake(&q);
            }
        }
    }
    Ok(())
}

/// Recovers every expired lease: back to ready, or failed when out of attempts.
pub(super) fn recover_expired(conn: &Connection, now: Timestamp, fx: &mut Effects) -> Result<u64> {
    // Cheap check first: the partial index makes this one seek.
    let any: Option<i64> = conn
        .prepare_cached(
            "SELECT id FROM kosh_jobs WHERE state = 'running' AND lease_expires_at <= ?1 LIMIT 1",
        )
        .and_then(|mut s| s.query_row([now.as_millis()], |r| r.get(0)).optional())
        .map_err(sql_err)?;
    if any.is_none() {
        return Ok(0);
    }
    let mut stmt = conn.prepare_cached(sql::RECOVER).map_err(sql_err)?;
    let mut rows = stmt
        .query(params![now.as_millis(), MAX_UNSTARTED_EXPIRIES])
        .map_err(sql_err)?;
    let mut n = 0;
    while let Some(r) = rows.next().map_err(sql_err)? {
        let queue: String = r.get(0).map_err(sql_err)?;
        let id: i64 = r.get(1).map_err(sql_err)?;
        let state: String = r.get(2).map_err(sql_err)?;
        let group: Option<String> = r.get(3).map_err(sql_err)?;
        tracing::debug!(job = id, queue, "recovered an expired lease");
        let state = row::state(id, &state)?;
        if let (Some(g), JobState::Ready) = (&group, state) {
            groups::group_ready(conn, &queue, g)?;
        }
        if state == JobState::Failed {
            fx.count_finished(&queue, false);
        }
        fx.moved(&queue, JobState::Running, state, 1);
        fx.wake(&queue);
        n += 1;
    }
    Ok(n)
}
