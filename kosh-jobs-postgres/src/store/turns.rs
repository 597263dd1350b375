//! Groups: the reserve of queues whose groups take turns (see [`kosh_jobs_core::limits`]).
//!
//! The turns live in the `turns` table (migration 0004 describes it): a row per group that
//! may have ready jobs, made by a trigger whenever a grouped job becomes ready, and one with
//! `grp = ''` for the jobs without a group while the queue has groups. A queue without turn
//! rows is reserved by the plain claims, as before groups existed.
//!
//! A reserve of a queue with turn rows runs the `reserve_turns` function (PL/pgSQL, in the
//! migration): step by step it takes the next job of each queue by its turns and leases the
//! best of them, all inside the server, so a batch costs one round trip and each job a few
//! index probes. Each group it serves is locked (`FOR UPDATE`) until the reserve commits, and
//! other reservers skip it (`SKIP LOCKED`): a group's running jobs are counted while holding
//! its row, so a group concurrency limit holds however many reservers race.

use kosh_jobs_core::{LeasedJob, Timestamp};
use sqlx::{PgConnection, Row};

use super::jobs::leased_jobs;
use super::Db;
use crate::error::Result;

/// At most so many due scheduled jobs per queue are made ready by one reserve.
const PROMOTE_BATCH: i64 = 1000;

/// Makes the due scheduled jobs of `queues` ready ($1, at $2, at most $3 per queue): the
/// grouped ones of every queue (their groups get turn rows, so a queue whose first grouped
/// jobs just came due takes turns now) and, in a queue with turns, the others too (the turns
/// read only ready jobs). Returns each unpaused queue with whether it takes turns.
const PROMOTE: &str = "WITH q AS ( \
       SELECT u.name, EXISTS (SELECT 1 FROM __S__.turns t WHERE t.queue = u.name) AS turned \
       FROM unnest($1::text[]) AS u(name) \
       WHERE NOT EXISTS (SELECT 1 FROM __S__.paused_queues p WHERE p.name = u.name)), \
     due AS ( \
       SELECT d.id FROM q CROSS JOIN LATERAL ( \
         SELECT id FROM __S__.jobs WHERE state = 'scheduled' AND grp IS NOT NULL \
         AND queue = q.name AND run_at <= $2 ORDER BY run_at, id LIMIT $3 \
         FOR UPDATE SKIP LOCKED) d \
       UNION ALL \
       SELECT d.id FROM q CROSS JOIN LATERAL ( \
         SELECT id FROM __S__.jobs WHERE q.turned AND state = 'scheduled' AND grp IS NULL \
         AND queue = q.name AND run_at <= $2 ORDER BY run_at, id LIMIT $3 \
         FOR UPDATE SKIP LOCKED) d), \
     promoted AS ( \
       UPDATE __S__.jobs j SET state = 'ready' FROM due WHERE j.id = due.id \
       RETURNING j.queue, j.grp) \
     SELECT q.name, q.turned OR EXISTS (SELECT 1 FROM promoted p \
                                        WHERE p.queue = q.name AND p.grp IS NOT NULL) \
     FROM q";

/// The unpaused ones of `queues` (sorted), each with whether it takes turns, after making
/// their due scheduled jobs ready where the turns need it (see [`PROMOTE`]).
pub(crate) async fn promote(
    conn: &mut PgConnection,
    db: &Db,
    queues: &[&str],
    now: Timestamp,
) -> Result<Vec<(String, bool)>> {
    let mut rows: Vec<(String, bool)> = sqlx::query_as(db.sql(PROMOTE))
        .bind(queues)
        .bind(now.as_millis())
        .bind(PROMOTE_BATCH)
        .fetch_all(&mut *conn)
        .await?;
    rows.sort_unstable();
    Ok(rows)
}

/// Leases by the turns: `reserve_turns` ($1 queues sorted by name, $2 their rooms, $3 their
/// group caps, $4 the most jobs, $5 now, $6 the lease's end, $7 the worker), then one start
/// logged per job leased in each rate-limited queue's log (as the capped claim does).
const CLAIM_TURNS: &str = "WITH upd AS ( \
       SELECT * FROM __S__.reserve_turns($1::text[], $2::bigint[], $3::bigint[], $4::int, \
                                         $5, $6, $7) WITH ORDINALITY AS r), \
     logged AS ( \
       UPDATE __S__.queue_limits l \
       SET starts = (l.starts || array_fill($5::bigint, ARRAY[n.n]))\
         [greatest(cardinality(l.starts) + n.n - l.rate_max + 1, 1):] \
       FROM (SELECT r_queue AS queue, count(*)::int AS n FROM upd GROUP BY r_queue) n \
       WHERE l.name = n.queue AND l.rate_max IS NOT NULL) \
     SELECT r_id, r_token, r_name, r_queue, r_payload, r_priority, r_attempts, r_max_attempts, \
       r_created_at, r_progress FROM upd ORDER BY ordinality";

/// One queue as [`claim`] takes it.
pub(crate) struct TurnQueue<'a> {
    pub(crate) name: &'a str,
    /// How many of its jobs may start (`i64::MAX`: no limit).
    pub(crate) room: i64,
    /// Its group concurrency limit.
    pub(crate) group_cap: Option<u32>,
}

/// Leases up to `max` jobs of `queues` (sorted by name, unpaused, each with room) by their
/// turns, in the caller's transaction; the jobs in the order they were taken.
pub(crate) async fn claim(
    conn: &mut PgConnection,
    db: &Db,
    queues: &[TurnQueue<'_>],
    max: i64,
    now: Timestamp,
    expires: i64,
    worker: &str,
) -> Result<Vec<LeasedJob>> {
    let names: Vec<&str> = queues.iter().map(|q| q.name).collect();
    let rooms: Vec<i64> = queues.iter().map(|q| q.room).collect();
    let caps: Vec<Option<i64>> = queues.iter().map(|q| q.group_cap.map(i64::from)).collect();
    let max = i32::try_from(max).unwrap_or(i32::MAX);
    let rows = sqlx::query(db.sql(CLAIM_TURNS))
        .bind(&names)
        .bind(&rooms)
        .bind(&caps)
        .bind(max)
        .bind(now.as_millis())
        .bind(expires)
        .bind(worker)
        .fetch_all(&mut *conn)
        .await?;
    leased_jobs(&rows, expires, false)
}

/// SQL (a boolean) for "queue `l.name` has a group with a ready job and room under its group
/// concurrency limit `l.group_concurrency`": what a waiter counts as grouped work. It stops at
/// the first such group; the groups it passes are at their limit (at most as many as running
/// jobs) or without ready jobs (rows a reserve deletes when it meets them).
pub(crate) const GROUP_WORK: &str = "EXISTS (SELECT 1 FROM __S__.turns t \
       WHERE t.queue = l.name AND t.grp <> '' \
         AND EXISTS (SELECT 1 FROM __S__.jobs j WHERE j.state = 'ready' \
                     AND j.grp IS NOT NULL AND j.queue = t.queue AND j.grp = t.grp) \
         AND (l.group_concurrency IS NULL OR (SELECT count(*) FROM ( \
               SELECT 1 FROM __S__.jobs j WHERE j.state = 'running' AND j.grp IS NOT NULL \
               AND j.queue = t.queue AND j.grp = t.grp LIMIT l.group_concurrency) r) \
             < l.group_concurrency))";

/// Groups of `queue` with a running job, and those at the limit `cap`.
pub(crate) async fn group_counts(db: &Db, queue: &str, cap: Option<u32>) -> Result<(u64, u64)> {
    let r = sqlx::query(db.sql(
        "SELECT count(*), count(*) FILTER (WHERE n >= $2) FROM ( \
           SELECT count(*) AS n FROM __S__.jobs WHERE state = 'running' AND grp IS NOT NULL \
           AND queue = $1 GROUP BY grp) g",
    ))
    .bind(queue)
    .bind(cap.map(i64::from))
    .fetch_one(&db.pool)
    .await?;
    let running: i64 = r.try_get(0)?;
    let at_limit: i64 = r.try_get(1)?;
    Ok((
        u64::try_from(running).unwrap_or(0),
        u64::try_from(at_limit).unwrap_or(0),
    ))
}
