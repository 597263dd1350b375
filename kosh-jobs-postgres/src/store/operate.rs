//! The admin contract: search, actions, throughput, live workers.

use std::collections::HashMap;
use std::time::Duration;

use kosh_jobs_core::admin::{
    minute_of, ActionResult, AdminAction, IdPage, LiveWorker, Order, SearchPage, SearchQuery,
    ThroughputPoint, ThroughputQuery, Total, WorkerInfo, MAX_ACTION_IDS, TOTAL_BOUND,
};
use kosh_jobs_core::backend::validate_queue_name;
use kosh_jobs_core::{BackendError, CancelOutcome, JobId, JobState, RetryOutcome, Timestamp};
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{Postgres, Row};

use super::admin::{cancel_in, look, retry_in};
use super::row::{self, db_id};
use super::{read, Db};
use crate::error::{PostgresError, Result};

fn invalid(e: BackendError) -> PostgresError {
    match e {
        BackendError::InvalidInput(m) => PostgresError::InvalidInput(m),
        other => PostgresError::InvalidInput(other.to_string()),
    }
}

/// Whether a row matches the filter: $2 states (NULL: any), $3 now, $4 queue, $5 name,
/// $6/$7 created range, $8 whether the finished range is set, $9/$10 its ends, $11 the search
/// text in ASCII lowercase (taken literally; errors searched in their decoded text).
const MATCHES: &str = "(($2::text[] IS NULL OR (CASE WHEN state = 'scheduled' AND run_at <= $3 \
       THEN 'ready' ELSE state END) = ANY($2)) \
     AND ($4::text IS NULL OR queue = $4) AND ($5::text IS NULL OR name = $5) \
     AND ($6::bigint IS NULL OR created_at >= $6) AND ($7::bigint IS NULL OR created_at < $7) \
     AND (NOT $8 OR (finished_at IS NOT NULL AND ($9::bigint IS NULL OR finished_at >= $9) \
          AND ($10::bigint IS NULL OR finished_at < $10))) \
     AND ($11::text IS NULL OR strpos(lower(payload), $11) > 0 \
          OR strpos(lower(coalesce(unique_key, '')), $11) > 0 \
          OR (errors IS NOT NULL AND EXISTS (SELECT 1 FROM jsonb_array_elements(errors) e \
              WHERE strpos(lower(e->>'error'), $11) > 0))))";

type Q<'q> = Query<'q, Postgres, PgArguments>;

/// Binds $2.. of [`MATCHES`].
fn bind_matches<'q>(query: Q<'q>, q: &SearchQuery, now: Timestamp) -> Q<'q> {
    let f = &q.filter;
    let ms = |t: Option<Timestamp>| t.map(|t| t.as_millis());
    let states: Option<Vec<String>> = if f.states.is_empty() {
        None
    } else {
        Some(f.states.iter().map(|s| s.as_str().to_owned()).collect())
    };
    query
        .bind(states)
        .bind(now.as_millis())
        .bind(f.queue.clone())
        .bind(f.name.clone())
        .bind(ms(f.created.from))
        .bind(ms(f.created.until))
        .bind(!f.finished.is_open())
        .bind(ms(f.finished.from))
        .bind(ms(f.finished.until))
        .bind(f.search.as_ref().map(|s| s.to_ascii_lowercase()))
}

/// The cursor as a stored id bound for `order`.
fn start_after(order: Order, after: Option<JobId>) -> i64 {
    match (order, after) {
        (Order::OldestFirst, None) => 0,
        (Order::NewestFirst, None) => i64::MAX,
        (_, Some(a)) => db_id(a).unwrap_or(i64::MAX),
    }
}

/// Up to $12 jobs past cursor $1 in `order`, each with whether it matches.
fn scan_sql(order: Order) -> String {
    let (cmp, dir) = match order {
        Order::OldestFirst => (">", "ASC"),
        Order::NewestFirst => ("<", "DESC"),
    };
    format!("SELECT id, {MATCHES} FROM __S__.jobs WHERE id {cmp} $1 ORDER BY id {dir} LIMIT $12")
}

/// The matching jobs past cursor $1 in `order`, at most $12 (an indexed filter: the partial
/// indexes serve it).
fn page_sql(order: Order) -> String {
    let (cmp, dir) = match order {
        Order::OldestFirst => (">", "ASC"),
        Order::NewestFirst => ("<", "DESC"),
    };
    format!("SELECT id FROM __S__.jobs WHERE id {cmp} $1 AND {MATCHES} ORDER BY id {dir} LIMIT $12")
}

/// One page of a search (see [`kosh_jobs_core::Backend::search`]): the ids, then their
/// records.
pub(crate) async fn search(db: &Db, q: &SearchQuery) -> Result<SearchPage> {
    let (ids, next, examined, total) = search_raw(db, q).await?;
    let jobs = read::get_many(db, &ids).await?;
    Ok(SearchPage {
        jobs,
        next,
        examined,
        total,
    })
}

/// The ids of one page of a search (see [`kosh_jobs_core::Backend::search_ids`]), without
/// reading a record.
pub(crate) async fn search_ids(db: &Db, q: &SearchQuery) -> Result<IdPage> {
    let (ids, next, examined, total) = search_raw(db, q).await?;
    let ids = ids
        .into_iter()
        .map(row::job_id)
        .collect::<Result<Vec<JobId>>>()?;
    Ok(IdPage {
        ids,
        next,
        examined,
        total,
    })
}

/// A search page as database ids, with its cursor, examined count and total.
async fn search_raw(
    db: &Db,
    q: &SearchQuery,
) -> Result<(Vec<i64>, Option<JobId>, u64, Option<Total>)> {
    q.filter.validate().map_err(invalid)?;
    let now = db.now();
    let (limit, budget) = (q.effective_limit(), q.effective_budget());
    let total = if !q.with_total {
        None
    } else if q.filter.is_indexed() {
        let sql = format!("SELECT count(*) FROM __S__.jobs WHERE $1::bigint IS NOT NULL AND {MATCHES} AND $12::bigint IS NOT NULL");
        let query = bind_matches(sqlx::query(db.sql(&sql)).bind(0i64), q, now).bind(0i64);
        let n: i64 = query.fetch_one(&db.pool).await?.try_get(0)?;
        Some(Total {
            count: u64::try_from(n).unwrap_or(0),
            exact: true,
        })
    } else {
        let query = bind_matches(
            sqlx::query(db.sql(&scan_sql(Order::OldestFirst))).bind(0i64),
            q,
            now,
        )
        .bind(i64::try_from(budget).unwrap_or(i64::MAX));
        let rows = query.fetch_all(&db.pool).await?;
        let mut count = 0u64;
        for r in &rows {
            if r.try_get::<bool, _>(1)? {
                count += 1;
            }
        }
        let cut = rows.len() >= budget || count >= TOTAL_BOUND;
        Some(Total {
            count: count.min(TOTAL_BOUND),
            exact: !cut,
        })
    };
    let after = start_after(q.order, q.after);
    let (ids, next, examined) = if q.filter.is_indexed() {
        let query = bind_matches(sqlx::query(db.sql(&page_sql(q.order))).bind(after), q, now)
            .bind(i64::try_from(limit + 1).unwrap_or(i64::MAX));
        let mut ids: Vec<i64> = Vec::new();
        for r in query.fetch_all(&db.pool).await? {
            ids.push(r.try_get(0)?);
        }
        let more = ids.len() > limit;
        ids.truncate(limit);
        let next = match (more, ids.last()) {
            (true, Some(&id)) => Some(row::job_id(id)?),
            _ => None,
        };
        let examined = ids.len() as u64;
        (ids, next, examined)
    } else {
        let query = bind_matches(sqlx::query(db.sql(&scan_sql(q.order))).bind(after), q, now)
            .bind(i64::try_from(budget + 1).unwrap_or(i64::MAX));
        let rows = query.fetch_all(&db.pool).await?;
        let (mut ids, mut examined, mut last, mut exhausted) = (Vec::new(), 0usize, None, true);
        for r in &rows {
            if ids.len() >= limit || examined >= budget {
                exhausted = false;
                break;
            }
            let id: i64 = r.try_get(0)?;
            examined += 1;
            last = Some(id);
            if r.try_get::<bool, _>(1)? {
                ids.push(id);
            }
        }
        let next = match (exhausted, last) {
            (false, Some(id)) => Some(row::job_id(id)?),
            _ => None,
        };
        (ids, next, examined as u64)
    };
    Ok((ids, next, examined, total))
}

/// Applies an action to jobs by id (see [`kosh_jobs_core::Backend::apply`]), all in one
/// transaction; wakes the queues of jobs made ready.
pub(crate) async fn apply(
    db: &Db,
    action: AdminAction,
    ids: &[JobId],
    only: &[JobState],
) -> Result<Vec<ActionResult>> {
    if ids.len() > MAX_ACTION_IDS {
        return Err(PostgresError::InvalidInput(format!(
            "{action}: at most {MAX_ACTION_IDS} jobs per call, not {}",
            ids.len()
        )));
    }
    let now = db.now();
    let schema = &*db.schema;
    let mut wake: Vec<String> = Vec::new();
    let mut out = Vec::with_capacity(ids.len());
    let mut tx = db.pool.begin().await?;
    for &id in ids {
        let Some(dbid) = db_id(id) else {
            out.push(ActionResult::NotFound);
            continue;
        };
        let Some((state, queue, _)) = look(&mut tx, schema, dbid, now).await? else {
            out.push(ActionResult::NotFound);
            continue;
        };
        if !action.applies_to(state) || (!only.is_empty() && !only.contains(&state)) {
            out.push(ActionResult::Skipped(state));
            continue;
        }
        out.push(match action {
            AdminAction::Retry => match retry_in(&mut tx, schema, id, now).await? {
                (RetryOutcome::Retried, q) => {
                    wake.extend(q);
                    ActionResult::Applied
                }
                (RetryOutcome::NotFound, _) => ActionResult::NotFound,
                (RetryOutcome::NotRetryable(s), _) => ActionResult::Skipped(s),
                (RetryOutcome::UniqueConflict(h), _) => ActionResult::UniqueConflict(h),
            },
            AdminAction::Cancel => match cancel_in(&mut tx, schema, id, now).await? {
                (CancelOutcome::Cancelled, freed) => {
                    wake.extend(freed);
                    ActionResult::Applied
                }
                (CancelOutcome::NotFound, _) => ActionResult::NotFound,
                (CancelOutcome::AlreadyFinal(s), _) => ActionResult::Skipped(s),
            },
            AdminAction::Delete => {
                sqlx::query(db.sql("DELETE FROM __S__.jobs WHERE id = $1"))
                    .bind(dbid)
                    .execute(&mut *tx)
                    .await?;
                ActionResult::Applied
            }
            AdminAction::Promote => {
                sqlx::query(db.sql(
                    "UPDATE __S__.jobs SET state = 'ready', run_at = $2 \
                     WHERE id = $1 AND state = 'scheduled'",
                ))
                .bind(dbid)
                .bind(now.as_millis())
                .execute(&mut *tx)
                .await?;
                wake.push(queue);
                ActionResult::Applied
            }
        });
    }
    tx.commit().await?;
    db.notify(&wake).await?;
    Ok(out)
}

/// Completed and failed jobs per queue per minute.
pub(crate) async fn throughput(db: &Db, q: &ThroughputQuery) -> Result<Vec<ThroughputPoint>> {
    if let Some(name) = &q.queue {
        validate_queue_name(name).map_err(PostgresError::InvalidInput)?;
    }
    let rows = sqlx::query(db.sql(
        "SELECT queue, minute, completed, failed FROM __S__.throughput \
         WHERE ($1::text IS NULL OR queue = $1) AND minute >= $2 \
         AND (completed > 0 OR failed > 0) ORDER BY queue, minute",
    ))
    .bind(q.queue.as_deref())
    .bind(minute_of(q.since).as_millis())
    .fetch_all(&db.pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let n =
            |i: usize| -> Result<u64> { Ok(u64::try_from(r.try_get::<i64, _>(i)?).unwrap_or(0)) };
        out.push(ThroughputPoint {
            queue: r.try_get(0)?,
            minute: Timestamp::from_millis(r.try_get(1)?),
            completed: n(2)?,
            failed: n(3)?,
        });
    }
    Ok(out)
}

/// Registers or refreshes a worker until now + `ttl`; drops lapsed registrations.
pub(crate) async fn register_worker(db: &Db, info: &WorkerInfo, ttl: Duration) -> Result<()> {
    let now = db.now();
    let json = serde_json::to_string(info)
        .map_err(|e| PostgresError::InvalidInput(format!("worker info: {e}")))?;
    sqlx::query(db.sql(
        "WITH gone AS (DELETE FROM __S__.workers WHERE expires_at <= $3 AND id <> $1) \
         INSERT INTO __S__.workers (id, info, last_seen, expires_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (id) DO UPDATE SET info = excluded.info, last_seen = excluded.last_seen, \
         expires_at = excluded.expires_at",
    ))
    .bind(&info.id)
    .bind(json)
    .bind(now.as_millis())
    .bind(now.saturating_add(ttl).as_millis())
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Removes a worker's registration.
pub(crate) async fn deregister_worker(db: &Db, id: &str) -> Result<()> {
    sqlx::query(db.sql("DELETE FROM __S__.workers WHERE id = $1"))
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// The live workers by id, each with the running jobs whose current attempt it holds.
pub(crate) async fn workers(db: &Db) -> Result<Vec<LiveWorker>> {
    let now = db.now();
    let rows = sqlx::query(
        db.sql("SELECT id, info, last_seen FROM __S__.workers WHERE expires_at > $1 ORDER BY id"),
    )
    .bind(now.as_millis())
    .fetch_all(&db.pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let id: String = r.try_get(0)?;
        let info: String = r.try_get(1)?;
        let info: WorkerInfo = serde_json::from_str(&info).map_err(|e| {
            PostgresError::InvalidInput(format!(
                "the registration of worker `{id}` is not valid: {e}"
            ))
        })?;
        out.push(LiveWorker {
            info,
            last_seen: Timestamp::from_millis(r.try_get(2)?),
            jobs: Vec::new(),
        });
    }
    if out.is_empty() {
        return Ok(out);
    }
    let index: HashMap<String, usize> = out
        .iter()
        .enumerate()
        .map(|(i, w)| (w.info.id.clone(), i))
        .collect();
    let running: Vec<(i64, Option<String>)> = sqlx::query_as(
        db.sql("SELECT id, worker FROM __S__.jobs WHERE state = 'running' ORDER BY id"),
    )
    .fetch_all(&db.pool)
    .await?;
    for (id, worker) in running {
        if let Some(&i) = worker.as_ref().and_then(|w| index.get(w)) {
            out[i].jobs.push(row::job_id(id)?);
        }
    }
    Ok(out)
}
