//! Reads: get, counts, list, and what a waiting worker needs to know.

use std::collections::BTreeMap;

use kosh_jobs_core::{JobId, JobRecord, JobState, ListQuery, Page, QueueCounts, Timestamp};
use sqlx::Row;

use super::row::{self, db_id, RECORD_COLUMNS};
use super::{flow, Db};
use crate::error::Result;

/// One job, in full.
pub(crate) async fn get(db: &Db, id: JobId) -> Result<Option<JobRecord>> {
    let Some(id) = db_id(id) else {
        return Ok(None);
    };
    let now = db.now();
    let r = sqlx::query(db.sql(&format!(
        "SELECT {RECORD_COLUMNS} FROM __S__.jobs WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&db.pool)
    .await?;
    r.map(|r| row::record(&r, now)).transpose()
}

/// Jobs by id, in full, in the order of `ids` (missing ones left out).
pub(crate) async fn get_many(db: &Db, ids: &[i64]) -> Result<Vec<JobRecord>> {
    let now = db.now();
    let rows = sqlx::query(db.sql(&format!(
        "SELECT {RECORD_COLUMNS} FROM __S__.jobs j \
         JOIN unnest($1::bigint[]) WITH ORDINALITY AS w(wid, ord) ON j.id = w.wid ORDER BY w.ord"
    )))
    .bind(ids)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(|r| row::record(r, now)).collect()
}

/// The counts per queue and state, each part from its partial index (the ready jobs from
/// two: without a group, and grouped). A due scheduled job counts as ready.
const COUNTS: &str = "SELECT queue, state, count(*) FROM __S__.jobs \
     WHERE finished_at IS NOT NULL GROUP BY queue, state \
     UNION ALL SELECT queue, 'ready', count(*) FROM __S__.jobs WHERE state = 'ready' \
       AND grp IS NULL GROUP BY queue \
     UNION ALL SELECT queue, 'ready', count(*) FROM __S__.jobs WHERE state = 'ready' \
       AND grp IS NOT NULL GROUP BY queue \
     UNION ALL SELECT queue, CASE WHEN run_at <= $1 THEN 'ready' ELSE 'scheduled' END AS s, \
       count(*) FROM __S__.jobs WHERE state = 'scheduled' GROUP BY queue, s \
     UNION ALL SELECT queue, 'running', count(*) FROM __S__.jobs WHERE state = 'running' \
       GROUP BY queue";

/// Counts per queue and state (due scheduled jobs count as ready), plus paused queues.
pub(crate) async fn counts(db: &Db) -> Result<Vec<QueueCounts>> {
    let now = db.now();
    let mut by_queue: BTreeMap<String, QueueCounts> = BTreeMap::new();
    let rows = sqlx::query(db.sql(COUNTS))
        .bind(now.as_millis())
        .fetch_all(&db.pool)
        .await?;
    for r in &rows {
        let queue: String = r.try_get(0)?;
        let state: String = r.try_get(1)?;
        let n: i64 = r.try_get(2)?;
        let state = row::state(0, &state)?;
        let entry = by_queue
            .entry(queue.clone())
            .or_insert_with(|| QueueCounts::empty(queue));
        *entry.get_mut(state) += u64::try_from(n).unwrap_or(0);
    }
    let paused: Vec<String> = sqlx::query_scalar(db.sql("SELECT name FROM __S__.paused_queues"))
        .fetch_all(&db.pool)
        .await?;
    for queue in paused {
        by_queue
            .entry(queue.clone())
            .or_insert_with(|| QueueCounts::empty(queue))
            .paused = true;
    }
    for c in by_queue.values_mut() {
        if c.ready > 0 {
            c.oldest_ready_at = oldest_ready(db, &c.queue, now).await?;
        }
    }
    Ok(by_queue.into_values().collect())
}

/// The earliest `run_at` among the heads of the ready jobs of `queue` and its due scheduled
/// jobs. The heads: the first job (by id) of each priority level of the jobs without a
/// group, and of each (group, priority) pair of the grouped ones, each level found by a
/// recursive skip over the ready indexes (so the cost grows with the levels and groups, not
/// with the jobs).
const OLDEST_READY: &str = "WITH RECURSIVE levels(p) AS ( \
       (SELECT priority FROM __S__.jobs WHERE state = 'ready' AND grp IS NULL AND queue = $1 \
        ORDER BY priority DESC LIMIT 1) \
       UNION ALL \
       SELECT (SELECT priority FROM __S__.jobs WHERE state = 'ready' AND grp IS NULL \
               AND queue = $1 AND priority < levels.p ORDER BY priority DESC LIMIT 1) \
       FROM levels WHERE levels.p IS NOT NULL), \
     glevels(g, p) AS ( \
       (SELECT grp, priority FROM __S__.jobs WHERE state = 'ready' AND grp IS NOT NULL \
        AND queue = $1 ORDER BY grp, priority DESC LIMIT 1) \
       UNION ALL \
       SELECT n.grp, n.priority FROM glevels CROSS JOIN LATERAL ( \
         (SELECT grp, priority FROM __S__.jobs WHERE state = 'ready' AND grp IS NOT NULL \
          AND queue = $1 AND grp = glevels.g AND priority < glevels.p \
          ORDER BY priority DESC LIMIT 1) \
         UNION ALL \
         (SELECT grp, priority FROM __S__.jobs WHERE state = 'ready' AND grp IS NOT NULL \
          AND queue = $1 AND grp > glevels.g ORDER BY grp, priority DESC LIMIT 1) \
         LIMIT 1) n) \
     SELECT min(at) FROM ( \
       SELECT (SELECT run_at FROM __S__.jobs WHERE state = 'ready' AND grp IS NULL \
               AND queue = $1 AND priority = levels.p ORDER BY id LIMIT 1) AS at \
       FROM levels WHERE levels.p IS NOT NULL \
       UNION ALL \
       SELECT (SELECT run_at FROM __S__.jobs WHERE state = 'ready' AND grp IS NOT NULL \
               AND queue = $1 AND grp = glevels.g AND priority = glevels.p \
               ORDER BY id LIMIT 1) \
       FROM glevels \
       UNION ALL \
       SELECT min(run_at) FROM __S__.jobs WHERE state = 'scheduled' AND queue = $1 \
         AND run_at <= $2) heads";

/// See [`OLDEST_READY`].
async fn oldest_ready(db: &Db, queue: &str, now: Timestamp) -> Result<Option<Timestamp>> {
    let at: Option<i64> = sqlx::query_scalar(db.sql(OLDEST_READY))
        .bind(queue)
        .bind(now.as_millis())
        .fetch_one(&db.pool)
        .await?;
    Ok(at.map(Timestamp::from_millis))
}

/// One page of the jobs in a state, by id.
pub(crate) async fn list(db: &Db, q: &ListQuery) -> Result<Page> {
    let now = db.now();
    let limit = q.effective_limit();
    let filter = match q.state {
        JobState::Ready => "(state = 'ready' OR (state = 'scheduled' AND run_at <= $1))",
        JobState::Scheduled => "state = 'scheduled' AND run_at > $1",
        _ => "state = $2",
    };
    let sql = format!(
        "SELECT {RECORD_COLUMNS} FROM __S__.jobs WHERE {filter} \
         AND ($3::text IS NULL OR queue = $3) AND id > $4 AND $2::text IS NOT NULL \
         ORDER BY id LIMIT $5"
    );
    let after = match q.after {
        Some(a) => db_id(a).unwrap_or(i64::MAX),
        None => 0,
    };
    let rows = sqlx::query(db.sql(&sql))
        .bind(now.as_millis())
        .bind(q.state.as_str())
        .bind(q.queue.as_deref())
        .bind(after)
        .bind(i64::try_from(limit + 1).unwrap_or(i64::MAX))
        .fetch_all(&db.pool)
        .await?;
    let more = rows.len() > limit;
    let jobs = rows
        .iter()
        .take(limit)
        .map(|r| row::record(r, now))
        .collect::<Result<Vec<_>>>()?;
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
    /// A job is ready now (or due) in one of the unpaused queues, and its queue's limits let
    /// it start.
    pub(crate) ready: bool,
    /// The earliest time an unpaused queue may have work without a wake-up: a scheduled job
    /// becoming due, or a full rate window opening on held-back jobs.
    pub(crate) next_run_at: Option<Timestamp>,
    /// The earliest lease expiry of any running job: its recovery may bring work.
    pub(crate) next_expiry: Option<Timestamp>,
}

/// One statement for the queues without limits: whether a job is ready (with a group or
/// without: no group is ever full without a group concurrency limit), the next scheduled
/// time, the next lease expiry, and whether some queue has limits or a hold; those are
/// looked at by [`flow::wait_limited`], a second statement only then.
pub(crate) async fn wait_info(db: &Db, queues: &[String]) -> Result<WaitInfo> {
    let r = sqlx::query(db.sql(
        "WITH u AS (SELECT DISTINCT u.name FROM unnest($1::text[]) AS u(name) \
           WHERE NOT EXISTS (SELECT 1 FROM __S__.paused_queues p WHERE p.name = u.name)), \
         q AS (SELECT u.name FROM u \
           WHERE NOT EXISTS (SELECT 1 FROM __S__.queue_limits l WHERE l.name = u.name)) \
         SELECT EXISTS (SELECT 1 FROM q, __S__.jobs j WHERE j.state = 'ready' AND j.grp IS NULL \
                        AND j.queue = q.name) \
           OR EXISTS (SELECT 1 FROM q, __S__.jobs j WHERE j.state = 'ready' \
                      AND j.grp IS NOT NULL AND j.queue = q.name), \
           (SELECT min(j.run_at) FROM q, __S__.jobs j WHERE j.state = 'scheduled' AND j.queue = q.name), \
           (SELECT min(lease_expires_at) FROM __S__.jobs WHERE state = 'running'), \
           (SELECT count(*) FROM u) > (SELECT count(*) FROM q)",
    ))
    .bind(queues)
    .fetch_one(&db.pool)
    .await?;
    let now = db.now();
    let ready: bool = r.try_get(0)?;
    let next_run_at: Option<i64> = r.try_get(1)?;
    let next_expiry: Option<i64> = r.try_get(2)?;
    let some_limited: bool = r.try_get(3)?;
    let mut info = WaitInfo {
        ready: ready || next_run_at.is_some_and(|t| t <= now.as_millis()),
        next_run_at: next_run_at.map(Timestamp::from_millis),
        next_expiry: next_expiry.map(Timestamp::from_millis),
    };
    if some_limited && !info.ready {
        let limited = flow::wait_limited(db, queues).await?;
        info.ready = limited.ready;
        if let Some(at) = limited.next {
            info.next_run_at = Some(info.next_run_at.map_or(at, |n| n.min(at)));
        }
    }
    Ok(info)
}
