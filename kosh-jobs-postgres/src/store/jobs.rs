//! The hot path: push, reserve, finish, heartbeat, progress, release, recovery. Each is one
//! statement whatever the size of its batch (arrays bound with `unnest`).

use std::collections::{HashMap, HashSet};

use kosh_jobs_core::admin::{minute_of, THROUGHPUT_RETENTION};
use kosh_jobs_core::backend::{
    validate_group_key, validate_job_name, validate_queue_name, validate_trace,
    MAX_UNSTARTED_EXPIRIES,
};
use kosh_jobs_core::{
    Enqueued, Finish, FinishResult, Lease, LeasedJob, NewJob, Outcome, ReserveRequest, Timestamp,
};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::row::{self, db_lease};
use super::{flow, sql_for, Db};
use crate::error::{PostgresError, Result};

/// Stores a batch: one `INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING`, which also
/// reads the live holders of the batch's unique keys and notifies the queues' workers. A
/// grouped job stored ready gives its group a turn row (the `group_ready` trigger).
const PUSH: &str = "WITH input AS ( \
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::bigint[], \
                            $6::int[], $7::text[], $10::text[], $11::text[]) WITH ORDINALITY \
         AS t(name, queue, payload, priority, run_at, max_attempts, unique_key, grp, trace, ord)), \
     ins AS ( \
       INSERT INTO __S__.jobs (name, queue, payload, state, priority, run_at, max_attempts, \
                               created_at, unique_key, grp, trace) \
       SELECT name, queue, payload, CASE WHEN run_at > $8 THEN 'scheduled' ELSE 'ready' END, \
              priority, run_at, max_attempts, $8, unique_key, grp, trace FROM input ORDER BY ord \
       ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL \
          AND state IN ('scheduled', 'ready', 'running') DO NOTHING \
       RETURNING id, unique_key, queue), \
     notified AS (SELECT count(pg_notify($9, q)) AS n FROM (SELECT DISTINCT queue AS q FROM ins) d) \
     SELECT true AS new, id, unique_key FROM ins \
     UNION ALL SELECT false, j.id, j.unique_key FROM __S__.jobs j \
       WHERE j.unique_key = ANY($7) AND j.state IN ('scheduled', 'ready', 'running') \
     UNION ALL SELECT NULL, n, NULL FROM notified";

fn check_new(job: &NewJob) -> Result<()> {
    validate_queue_name(&job.queue).map_err(PostgresError::InvalidInput)?;
    validate_job_name(&job.name).map_err(PostgresError::InvalidInput)?;
    if let Some(g) = &job.group {
        validate_group_key(g)
            .map_err(|e| PostgresError::InvalidInput(format!("job `{}`: {e}", job.name)))?;
    }
    if let Some(t) = &job.trace {
        validate_trace(t)
            .map_err(|e| PostgresError::InvalidInput(format!("job `{}`: {e}", job.name)))?;
    }
    if job.max_attempts == 0 {
        return Err(PostgresError::InvalidInput(format!(
            "job `{}`: max_attempts must be at least 1",
            job.name
        )));
    }
    i32::try_from(job.max_attempts).map_err(|_| {
        PostgresError::InvalidInput(format!(
            "job `{}`: max_attempts must be at most {}",
            job.name,
            i32::MAX
        ))
    })?;
    Ok(())
}

/// Stores jobs on `conn` (the backend's or the application's, inside its transaction).
pub(crate) async fn push(
    conn: &mut PgConnection,
    schema: &str,
    channel: &str,
    jobs: &[NewJob],
    now: Timestamp,
) -> Result<Vec<Enqueued>> {
    for job in jobs {
        check_new(job)?;
    }
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
    let queues: Vec<&str> = jobs.iter().map(|j| j.queue.as_str()).collect();
    let payloads: Vec<&str> = jobs.iter().map(|j| j.payload.as_str()).collect();
    let priorities: Vec<i32> = jobs.iter().map(|j| j.priority).collect();
    let run_at: Vec<i64> = jobs.iter().map(|j| j.run_at.as_millis()).collect();
    let attempts: Vec<i32> = jobs
        .iter()
        .map(|j| i32::try_from(j.max_attempts).unwrap_or(i32::MAX))
        .collect();
    let keys: Vec<Option<&str>> = jobs.iter().map(|j| j.unique_key.as_deref()).collect();
    let groups: Vec<Option<&str>> = jobs.iter().map(|j| j.group.as_deref()).collect();
    let traces: Vec<Option<&str>> = jobs.iter().map(|j| j.trace.as_deref()).collect();
    let rows = sqlx::query(sql_for(schema, PUSH))
        .bind(&names)
        .bind(&queues)
        .bind(&payloads)
        .bind(&priorities)
        .bind(&run_at)
        .bind(&attempts)
        .bind(&keys)
        .bind(now.as_millis())
        .bind(channel)
        .bind(&groups)
        .bind(&traces)
        .fetch_all(&mut *conn)
        .await?;
    let mut new_ids: Vec<i64> = Vec::with_capacity(jobs.len());
    let mut new_by_key: HashMap<String, i64> = HashMap::new();
    let mut old_by_key: HashMap<String, i64> = HashMap::new();
    for r in &rows {
        let new: Option<bool> = r.try_get(0)?;
        let id: i64 = r.try_get(1)?;
        let key: Option<String> = r.try_get(2)?;
        match (new, key) {
            (Some(true), key) => {
                new_ids.push(id);
                if let Some(k) = key {
                    new_by_key.insert(k, id);
                }
            }
            (Some(false), Some(k)) => {
                old_by_key.insert(k, id);
            }
            _ => {}
        }
    }
    // Identities are drawn in the batch's order: the new ids, sorted, are the inserted jobs'.
    new_ids.sort_unstable();
    let mut next_new = new_ids.into_iter();
    let mut claimed: HashSet<&str> = HashSet::new();
    let mut out = Vec::with_capacity(jobs.len());
    for job in jobs {
        let inserted = match job.unique_key.as_deref() {
            None => true,
            Some(k) => new_by_key.contains_key(k) && claimed.insert(k),
        };
        if inserted {
            let id = next_new.next().ok_or_else(|| {
                row::malformed(0, "push returned fewer new jobs than it inserted")
            })?;
            out.push(Enqueued {
                id: row::job_id(id)?,
                existing: false,
            });
            continue;
        }
        let key = job.unique_key.as_deref().unwrap_or_default();
        let holder = match new_by_key.get(key).or_else(|| old_by_key.get(key)) {
            Some(&id) => id,
            // The holder committed after this statement's snapshot: read it now.
            None => {
                let found: Option<i64> = sqlx::query_scalar(sql_for(
                    schema,
                    "SELECT id FROM __S__.jobs WHERE unique_key = $1 \
                     AND state IN ('scheduled', 'ready', 'running')",
                ))
                .bind(key)
                .fetch_optional(&mut *conn)
                .await?;
                found.ok_or_else(|| {
                    PostgresError::Database(sqlx::Error::Protocol(format!(
                        "unique key {key:?} was held by a job that is gone; push again"
                    )))
                })?
            }
        };
        out.push(Enqueued {
            id: row::job_id(holder)?,
            existing: true,
        });
    }
    Ok(out)
}

/// Leases up to $2 jobs of the unpaused queues of $1 at $3 until $4 for worker $5: the ready
/// jobs and the due scheduled ones of each queue (by priority, then id), locked with `SKIP
/// LOCKED` and updated in the same statement. When one of the queues has limits or a hold
/// (a probe of `queue_limits`' primary key), or groups (a probe of `turns`' primary key, and
/// one of the due grouped scheduled jobs' index), it claims nothing and returns one row whose
/// id is NULL: the caller reserves through [`flow::reserve_limited`] instead. So the jobs
/// claimed here are never grouped: a grouped job ready or due is always in a queue with turn
/// rows or with a due grouped scheduled job.
const CLAIM: &str = "WITH limited AS ( \
       SELECT EXISTS (SELECT 1 FROM __S__.queue_limits l WHERE l.name = ANY($1)) \
         OR EXISTS (SELECT 1 FROM __S__.turns t WHERE t.queue = ANY($1)) \
         OR EXISTS (SELECT 1 FROM __S__.jobs s WHERE s.state = 'scheduled' \
                    AND s.grp IS NOT NULL AND s.queue = ANY($1) AND s.run_at <= $3) AS yes), \
     q AS ( \
       SELECT DISTINCT u.name FROM unnest($1::text[]) AS u(name) \
       WHERE NOT (SELECT yes FROM limited) \
         AND NOT EXISTS (SELECT 1 FROM __S__.paused_queues p WHERE p.name = u.name)), \
     cand AS ( \
       SELECT c.id, c.priority FROM q CROSS JOIN LATERAL ( \
         SELECT id, priority FROM __S__.jobs WHERE state = 'ready' AND grp IS NULL \
         AND queue = q.name ORDER BY priority DESC, id LIMIT $2 FOR UPDATE SKIP LOCKED) c \
       UNION ALL \
       SELECT c.id, c.priority FROM q CROSS JOIN LATERAL ( \
         SELECT id, priority FROM __S__.jobs WHERE state = 'scheduled' AND grp IS NULL \
         AND queue = q.name AND run_at <= $3 ORDER BY run_at, id LIMIT $2 \
         FOR UPDATE SKIP LOCKED) c), \
     pick AS (SELECT id FROM cand ORDER BY priority DESC, id LIMIT $2), \
     upd AS ( \
       UPDATE __S__.jobs j SET state = 'running', attempts = j.attempts + 1, \
         lease_token = nextval('__S__.lease_tokens'), started_at = $3, lease_expires_at = $4, \
         worker = $5, lease_started = false \
       FROM pick WHERE j.id = pick.id \
       RETURNING j.id, j.lease_token, j.name, j.queue, j.payload, j.priority, j.attempts, \
         j.max_attempts, j.created_at, j.progress, j.trace) \
     SELECT * FROM upd \
     UNION ALL SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL \
       FROM limited WHERE yes";

/// Leases jobs (see [`kosh_jobs_core::Backend::reserve`]).
pub(crate) async fn reserve(db: &Db, req: &ReserveRequest) -> Result<Vec<LeasedJob>> {
    if req.max == 0 || req.queues.is_empty() {
        return Ok(Vec::new());
    }
    let mut queues: Vec<&str> = req.queues.iter().map(String::as_str).collect();
    queues.sort_unstable();
    queues.dedup();
    // A queue this process saw limited goes straight to the locking reserve (which is right
    // for unlimited queues too, so a stale guess costs only speed).
    if db.seen_limited(&queues) {
        return flow::reserve_limited(db, req, &queues).await;
    }
    let now = db.now();
    let expires = now.saturating_add(req.lease).as_millis();
    let max = i64::try_from(req.max).unwrap_or(i64::MAX);
    let rows = sqlx::query(db.sql(CLAIM))
        .bind(&queues)
        .bind(max)
        .bind(now.as_millis())
        .bind(expires)
        .bind(&req.worker)
        .fetch_all(&db.pool)
        .await?;
    for r in &rows {
        if r.try_get::<Option<i64>, _>(0)?.is_none() {
            return flow::reserve_limited(db, req, &queues).await;
        }
    }
    leased_jobs(&rows, expires, true)
}

/// The leased jobs of rows returned by a claim: highest priority first, then by id, when
/// `sorted`; else in the rows' order (the order of the turns).
pub(crate) fn leased_jobs(rows: &[PgRow], expires: i64, sorted: bool) -> Result<Vec<LeasedJob>> {
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let id: i64 = r.try_get(0)?;
        let token: i64 = r.try_get(1)?;
        let progress: Option<String> = r.try_get(9)?;
        let progress = progress.map(|text| {
            serde_json::from_str(&text).unwrap_or_else(|e| {
                tracing::warn!(job = id, error = %e, "stored progress is not JSON; passing it as a string");
                serde_json::Value::String(text)
            })
        });
        out.push(LeasedJob {
            lease: Lease {
                id: row::job_id(id)?,
                token: u64::try_from(token).map_err(|_| row::malformed(id, "negative token"))?,
            },
            name: r.try_get(2)?,
            queue: r.try_get(3)?,
            payload: r.try_get(4)?,
            priority: r.try_get(5)?,
            attempt: row::count(id, "attempts", r.try_get(6)?)?,
            max_attempts: row::count(id, "max_attempts", r.try_get(7)?)?,
            created_at: Timestamp::from_millis(r.try_get(8)?),
            lease_expires_at: Timestamp::from_millis(expires),
            progress,
            trace: r.try_get(10)?,
        });
    }
    if sorted {
        out.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.lease.id.cmp(&b.lease.id))
        });
    }
    Ok(out)
}

/// The JSON of the job's latest attempt, ending at `$now` with `$outcome` and error `$err`.
macro_rules! attempt_object {
    ($now:literal, $outcome:literal, $err:literal) => {
        concat!(
            "jsonb_build_object('attempt', j.attempts, 'started_at', j.started_at, \
             'worker', j.worker, 'ended_at', ",
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

/// Ends a batch of attempts in one statement: $1 ids, $2 tokens, $3 kinds (`completed`,
/// `retry`, `failed`, `snooze`: waits again like a retry, but the attempt is not counted and
/// no error is kept), $4 results, $5 errors, $6 retry (or snooze) times, $7 attempt outcomes; $8 now,
/// $9 the minute, $10 the throughput's cut-off, $11 the channel. Counts finished jobs per
/// queue and minute, and notifies the queues of jobs made ready and the queues with a
/// concurrency or group concurrency limit (a slot was freed); returns the ids applied with
/// how many notifications were sent.
const FINISH: &str = concat!(
    "WITH f AS (SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], \
                $5::text[], $6::bigint[], $7::text[]) \
                AS f(id, token, kind, result, error, retry_at, outcome)), \
     upd AS ( \
       UPDATE __S__.jobs j SET \
         state = CASE WHEN f.kind IN ('retry', 'snooze') THEN \
                   CASE WHEN f.retry_at > $8 THEN 'scheduled' ELSE 'ready' END \
                 ELSE f.kind END, \
         finished_at = CASE WHEN f.kind IN ('retry', 'snooze') THEN NULL ELSE $8 END, \
         result = CASE WHEN f.kind = 'completed' THEN f.result ELSE j.result END, \
         run_at = CASE WHEN f.kind IN ('retry', 'snooze') THEN f.retry_at ELSE j.run_at END, \
         attempts = CASE WHEN f.kind = 'snooze' THEN greatest(j.attempts - 1, 0) \
                    ELSE j.attempts END, \
         errors = CASE WHEN f.kind IN ('completed', 'snooze') THEN j.errors ELSE \
           coalesce(j.errors, '[]'::jsonb) || jsonb_build_array(jsonb_build_object( \
             'attempt', j.attempts, 'error', f.error, 'at', $8)) END, \
         history = CASE WHEN f.kind = 'completed' OR j.worker IS NULL THEN j.history ELSE \
           __S__.append_attempt(j.history, ",
    attempt_object!("$8", "f.outcome", "f.error"),
    ") END, \
         lease_expires_at = NULL \
       FROM f WHERE j.id = f.id AND j.lease_token = f.token AND j.state = 'running' \
       RETURNING j.id, j.queue, j.state), \
     counted AS ( \
       INSERT INTO __S__.throughput AS t (queue, minute, completed, failed) \
       SELECT queue, $9, count(*) FILTER (WHERE state = 'completed'), \
              count(*) FILTER (WHERE state = 'failed') \
       FROM upd WHERE state IN ('completed', 'failed') GROUP BY queue \
       ON CONFLICT (queue, minute) DO UPDATE \
         SET completed = t.completed + excluded.completed, failed = t.failed + excluded.failed \
       RETURNING queue), \
     dropped AS ( \
       DELETE FROM __S__.throughput t USING counted \
       WHERE t.queue = counted.queue AND t.minute < $10 RETURNING 1), \
     notified AS ( \
       SELECT count(pg_notify($11, q)) AS n \
       FROM (SELECT DISTINCT queue AS q FROM upd WHERE state = 'ready' \
             OR EXISTS (SELECT 1 FROM __S__.queue_limits l WHERE l.name = upd.queue \
                        AND (l.concurrency IS NOT NULL OR l.group_concurrency IS NOT NULL))) d) \
     SELECT id, (SELECT n FROM notified) FROM upd"
);

/// Ends attempts (see [`kosh_jobs_core::Backend::finish`]).
pub(crate) async fn finish(db: &Db, items: &[Finish]) -> Result<Vec<FinishResult>> {
    // On the lease pool: the application cannot starve it (see `Db::leases`).
    finish_on(db, &db.leases, items).await
}

/// Ends attempts on `exec`: the backend's pool, or an application's transaction
/// ([`crate::PostgresBackend::complete_in`]).
pub(crate) async fn finish_on<'c, E>(
    db: &Db,
    exec: E,
    items: &[Finish],
) -> Result<Vec<FinishResult>>
where
    E: sqlx::Executor<'c, Database = sqlx::Postgres>,
{
    let now = db.now();
    let mut ids = Vec::with_capacity(items.len());
    let mut tokens = Vec::with_capacity(items.len());
    let mut kinds = Vec::with_capacity(items.len());
    let mut results: Vec<Option<String>> = Vec::with_capacity(items.len());
    let mut errors: Vec<Option<&str>> = Vec::with_capacity(items.len());
    let mut retry_at: Vec<Option<i64>> = Vec::with_capacity(items.len());
    let mut outcomes = Vec::with_capacity(items.len());
    // A job named twice in one batch: only its first item can apply.
    let mut first: HashMap<i64, usize> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let Some((id, token)) = db_lease(&item.lease) else {
            continue;
        };
        if first.contains_key(&id) {
            continue;
        }
        first.insert(id, i);
        ids.push(id);
        tokens.push(token);
        outcomes.push(item.outcome.attempt_outcome().as_str());
        match &item.outcome {
            Outcome::Completed { result } => {
                kinds.push("completed");
                results.push(result.as_ref().map(|v| v.to_string()));
                errors.push(None);
                retry_at.push(None);
            }
            Outcome::Retry {
                error,
                retry_at: at,
                ..
            } => {
                kinds.push("retry");
                results.push(None);
                errors.push(Some(error.as_str()));
                retry_at.push(Some(at.as_millis()));
            }
            Outcome::Failed { error, .. } => {
                kinds.push("failed");
                results.push(None);
                errors.push(Some(error.as_str()));
                retry_at.push(None);
            }
            Outcome::Snooze { until } => {
                kinds.push("snooze");
                results.push(None);
                errors.push(None);
                retry_at.push(Some(until.as_millis()));
            }
        }
    }
    let mut out = vec![FinishResult::LeaseLost; items.len()];
    if ids.is_empty() {
        return Ok(out);
    }
    let applied: Vec<(i64, i64)> = sqlx::query_as(db.sql(FINISH))
        .bind(&ids)
        .bind(&tokens)
        .bind(&kinds)
        .bind(&results)
        .bind(&errors)
        .bind(&retry_at)
        .bind(&outcomes)
        .bind(now.as_millis())
        .bind(minute_of(now).as_millis())
        .bind(now.saturating_sub(THROUGHPUT_RETENTION).as_millis())
        .bind(&*db.channel)
        .fetch_all(exec)
        .await?;
    let mut notified = false;
    for (id, n) in applied {
        notified |= n > 0;
        if let Some(&i) = first.get(&id) {
            out[i] = FinishResult::Applied;
        }
    }
    // A retry to a later time notifies nobody, but this process's waiters may sleep past it.
    if notified || kinds.contains(&"retry") || kinds.contains(&"snooze") {
        db.wake_local();
    }
    Ok(out)
}

/// Extends current leases to `until` and marks their attempts started; returns the ones that
/// are not current.
pub(crate) async fn heartbeat(db: &Db, leases: &[Lease], until: Timestamp) -> Result<Vec<Lease>> {
    let (ids, tokens): (Vec<i64>, Vec<i64>) = leases.iter().filter_map(db_lease).unzip();
    let extended: Vec<(i64, i64)> = if ids.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as(db.sql(
            "UPDATE __S__.jobs j SET lease_expires_at = $3, lease_started = true \
             FROM unnest($1::bigint[], $2::bigint[]) AS l(id, token) \
             WHERE j.id = l.id AND j.lease_token = l.token AND j.state = 'running' \
             RETURNING j.id, j.lease_token",
        ))
        .bind(&ids)
        .bind(&tokens)
        .bind(until.as_millis())
        .fetch_all(&db.leases)
        .await?
    };
    let extended: HashSet<(i64, i64)> = extended.into_iter().collect();
    Ok(leases
        .iter()
        .filter(|l| db_lease(l).is_none_or(|k| !extended.contains(&k)))
        .copied()
        .collect())
}

/// Stores progress of a running job; `false` if the lease is not current.
pub(crate) async fn progress(db: &Db, lease: &Lease, json: &str) -> Result<bool> {
    let Some((id, token)) = db_lease(lease) else {
        return Ok(false);
    };
    let n = sqlx::query(db.sql(
        "UPDATE __S__.jobs SET progress = $3 \
         WHERE id = $1 AND lease_token = $2 AND state = 'running'",
    ))
    .bind(id)
    .bind(token)
    .bind(json)
    .execute(&db.pool)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Gives leased jobs back without counting the attempt; notifies their queues.
pub(crate) async fn release(db: &Db, leases: &[Lease]) -> Result<()> {
    let (ids, tokens): (Vec<i64>, Vec<i64>) = leases.iter().filter_map(db_lease).unzip();
    if ids.is_empty() {
        return Ok(());
    }
    let sql = concat!(
        "WITH upd AS (UPDATE __S__.jobs j SET state = 'ready', \
           attempts = greatest(j.attempts - 1, 0), lease_expires_at = NULL, \
           history = CASE WHEN j.worker IS NULL THEN j.history ELSE __S__.append_attempt(j.history, ",
        attempt_object!("$3", "'released'", "NULL"),
        ") END \
         FROM unnest($1::bigint[], $2::bigint[]) AS l(id, token) \
         WHERE j.id = l.id AND j.lease_token = l.token AND j.state = 'running' \
         RETURNING j.queue) \
         SELECT count(pg_notify($4, q)) FROM (SELECT DISTINCT queue AS q FROM upd) d"
    );
    sqlx::query(db.sql(sql))
        .bind(&ids)
        .bind(&tokens)
        .bind(db.now().as_millis())
        .bind(&*db.channel)
        .execute(&db.leases)
        .await?;
    db.wake_local();
    Ok(())
}

/// Recovers every lease expired at $1: back to ready, or failed when out of attempts; counts
/// the failed ones ($2 the minute, $3 the throughput's cut-off) and notifies the queues ($4).
/// An attempt never marked started is given back (at most $5 times per job): ready, one
/// attempt fewer, nothing recorded. Every `SET` expression reads the row as it was.
///
/// The expired rows are locked first, in id order, skipping those another transaction holds
/// (another recoverer, or a renewal or finish of that very job): two recoverers never wait
/// for each other, so they cannot deadlock (two plain `UPDATE`s could lock the same rows in
/// different orders), and each expired lease is recovered by one of them.
const RECOVER: &str = concat!(
    "WITH due AS ( \
       SELECT id FROM __S__.jobs \
        WHERE state = 'running' AND lease_expires_at <= $1 \
        ORDER BY id FOR UPDATE SKIP LOCKED), \
     upd AS ( \
       UPDATE __S__.jobs j SET \
         state = CASE WHEN NOT j.lease_started AND j.unstarted < $5 THEN 'ready' \
                      WHEN j.attempts >= j.max_attempts THEN 'failed' ELSE 'ready' END, \
         finished_at = CASE WHEN NOT j.lease_started AND j.unstarted < $5 THEN NULL \
                            WHEN j.attempts >= j.max_attempts THEN $1 ELSE NULL END, \
         attempts = CASE WHEN NOT j.lease_started AND j.unstarted < $5 THEN j.attempts - 1 \
                         ELSE j.attempts END, \
         unstarted = CASE WHEN NOT j.lease_started AND j.unstarted < $5 THEN j.unstarted + 1 \
                          ELSE j.unstarted END, \
         errors = CASE WHEN NOT j.lease_started AND j.unstarted < $5 THEN j.errors \
           ELSE coalesce(j.errors, '[]'::jsonb) || jsonb_build_array(jsonb_build_object( \
           'attempt', j.attempts, 'error', 'lease expired', 'at', $1)) END, \
         history = CASE WHEN j.worker IS NULL OR (NOT j.lease_started AND j.unstarted < $5) \
           THEN j.history ELSE __S__.append_attempt(j.history, ",
    attempt_object!("$1", "'lease_expired'", "'lease expired'"),
    ") END, \
         lease_expires_at = NULL \
       FROM due WHERE j.id = due.id AND j.state = 'running' AND j.lease_expires_at <= $1 \
       RETURNING j.id, j.queue, j.state), \
     counted AS ( \
       INSERT INTO __S__.throughput AS t (queue, minute, completed, failed) \
       SELECT queue, $2, 0, count(*) FROM upd WHERE state = 'failed' GROUP BY queue \
       ON CONFLICT (queue, minute) DO UPDATE SET failed = t.failed + excluded.failed \
       RETURNING queue), \
     dropped AS ( \
       DELETE FROM __S__.throughput t USING counted \
       WHERE t.queue = counted.queue AND t.minute < $3 RETURNING 1), \
     notified AS ( \
       SELECT count(pg_notify($4, q)) AS n FROM (SELECT DISTINCT queue AS q FROM upd) d) \
     SELECT count(*) FROM upd WHERE (SELECT n FROM notified) >= 0"
);

/// Recovers every expired lease (see [`kosh_jobs_core::Backend::recover_expired`]).
pub(crate) async fn recover_expired(db: &Db) -> Result<u64> {
    let now = db.now();
    let n: i64 = sqlx::query_scalar(db.sql(RECOVER))
        .bind(now.as_millis())
        .bind(minute_of(now).as_millis())
        .bind(now.saturating_sub(THROUGHPUT_RETENTION).as_millis())
        .bind(&*db.channel)
        .bind(i32::try_from(MAX_UNSTARTED_EXPIRIES).unwrap_or(i32::MAX))
        .fetch_one(&db.pool)
        .await?;
    if n > 0 {
        tracing::debug!(recovered = n, "recovered expired leases");
        db.wake_local();
    }
    Ok(u64::try_from(n).unwrap_or(0))
}
