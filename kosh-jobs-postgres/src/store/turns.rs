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
//!
//! Under a group rate limit each group's start log is a row of `group_starts` (migration
//! 0005): the walk reads the log of a group it is about to serve (one primary-key probe) and
//! skips the group if its window is full; a lease appends to it. The logs whose newest start
//! left the window are deleted by [`PROMOTE`], which every reserve of a limited queue runs.

use kosh_jobs_core::limits::RateLimit;
use kosh_jobs_core::{LeasedJob, Timestamp};
use sqlx::{PgConnection, Row};

use super::flow::millis;
use super::jobs::leased_jobs;
use super::Db;
use crate::error::Result;

/// At most so many due scheduled jobs per queue are made ready by one reserve.
const PROMOTE_BATCH: i64 = 1000;

/// Makes the due scheduled jobs of `queues` ready ($1, at $2, at most $3 per queue): the
/// grouped ones of every queue (their groups get turn rows, so a queue whose first grouped
/// jobs just came due takes turns now) and, in a queue with turns, the others too (the turns
/// read only ready jobs). Forgets the group start logs of queues $4 whose newest start is at
/// or before $5 (the queue's window start: `now - per`); $4 is empty unless a queue has a
/// group rate, and the range of `group_starts_last` it reads holds only logs to delete, so
/// each log costs one delete once. Returns each unpaused queue with whether it takes turns.
const PROMOTE: &str = "WITH forgot AS ( \
       DELETE FROM __S__.group_starts g USING unnest($4::text[], $5::bigint[]) AS f(queue, upto) \
       WHERE g.queue = f.queue AND g.last_at <= f.upto), \
     q AS ( \
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
/// their due scheduled jobs ready where the turns need it and forgetting the group start
/// logs that left the window of `group_rates` (each queue with a group rate, and it) (see
/// [`PROMOTE`]).
pub(crate) async fn promote(
    conn: &mut PgConnection,
    db: &Db,
    queues: &[&str],
    group_rates: &[(&str, RateLimit)],
    now: Timestamp,
) -> Result<Vec<(String, bool)>> {
    let (forget, upto): (Vec<&str>, Vec<i64>) = group_rates
        .iter()
        .map(|&(q, rate)| (q, now.saturating_sub(rate.per).as_millis()))
        .unzip();
    let mut rows: Vec<(String, bool)> = sqlx::query_as(db.sql(PROMOTE))
        .bind(queues)
        .bind(now.as_millis())
        .bind(PROMOTE_BATCH)
        .bind(&forget)
        .bind(&upto)
        .fetch_all(&mut *conn)
        .await?;
    rows.sort_unstable();
    Ok(rows)
}

/// Leases by the turns: `reserve_turns` ($1 queues sorted by name, $2 their rooms, $3 their
/// group caps, $8 and $9 their group rates' max and window in ms, $4 the most jobs, $5 now,
/// $6 the lease's end, $7 the worker), then one start logged per job leased in each
/// rate-limited queue's log (as the capped claim does; the group logs are written by
/// `reserve_turns` itself, as each step must see the previous ones).
const CLAIM_TURNS: &str = "WITH upd AS ( \
       SELECT * FROM __S__.reserve_turns($1::text[], $2::bigint[], $3::bigint[], \
                                         $8::int[], $9::bigint[], $4::int, $5, $6, $7) \
         WITH ORDINALITY AS r), \
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
    /// Its group rate limit.
    pub(crate) group_rate: Option<RateLimit>,
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
    let rate_maxes: Vec<Option<i32>> = queues
        .iter()
        .map(|q| {
            q.group_rate
                .map(|r| i32::try_from(r.max).unwrap_or(i32::MAX))
        })
        .collect();
    let rate_pers: Vec<Option<i64>> = queues
        .iter()
        .map(|q| q.group_rate.map(|r| millis(r.per)))
        .collect();
    let max = i32::try_from(max).unwrap_or(i32::MAX);
    let rows = sqlx::query(db.sql(CLAIM_TURNS))
        .bind(&names)
        .bind(&rooms)
        .bind(&caps)
        .bind(max)
        .bind(now.as_millis())
        .bind(expires)
        .bind(worker)
        .bind(&rate_maxes)
        .bind(&rate_pers)
        .fetch_all(&mut *conn)
        .await?;
    leased_jobs(&rows, expires, false)
}

/// SQL (a boolean) for "queue `l.name` has a group with a ready job and room under its group
/// limits at `$2` (now): below `l.group_concurrency` running jobs, and without a full window
/// of `l.group_rate_max` starts": what a waiter counts as grouped work. It stops at the first
/// such group; the groups it passes are at a limit (at most as many as running jobs or
/// starts in the window) or without ready jobs (rows a reserve deletes when it meets them).
pub(crate) const GROUP_WORK: &str = "EXISTS (SELECT 1 FROM __S__.turns t \
       WHERE t.queue = l.name AND t.grp <> '' \
         AND EXISTS (SELECT 1 FROM __S__.jobs j WHERE j.state = 'ready' \
                     AND j.grp IS NOT NULL AND j.queue = t.queue AND j.grp = t.grp) \
         AND (l.group_concurrency IS NULL OR (SELECT count(*) FROM ( \
               SELECT 1 FROM __S__.jobs j WHERE j.state = 'running' AND j.grp IS NOT NULL \
               AND j.queue = t.queue AND j.grp = t.grp LIMIT l.group_concurrency) r) \
             < l.group_concurrency) \
         AND (l.group_rate_max IS NULL OR NOT EXISTS (SELECT 1 FROM __S__.group_starts s \
               WHERE s.queue = t.queue AND s.grp = t.grp \
               AND __S__.rate_full(s.starts, l.group_rate_max, l.group_rate_per_ms, $2))))";

/// SQL (a time in ms, or NULL) for "when the first group of queue `l.name` held back only by
/// its full rate window (it has a ready job, and room under its concurrency limit) may start
/// one, at `$2` (now)". It walks the logs with a start inside the window (a range of
/// `group_starts_last`), so its cost is in the groups that started lately, not in all groups.
pub(crate) const GROUP_WINDOW: &str = "CASE WHEN l.group_rate_max IS NULL THEN NULL ELSE ( \
       SELECT min(__S__.rate_opens(s.starts, l.group_rate_max, l.group_rate_per_ms)) \
       FROM __S__.group_starts s \
       WHERE s.queue = l.name AND s.last_at > $2 - l.group_rate_per_ms \
         AND __S__.rate_full(s.starts, l.group_rate_max, l.group_rate_per_ms, $2) \
         AND EXISTS (SELECT 1 FROM __S__.jobs j WHERE j.state = 'ready' \
                     AND j.grp IS NOT NULL AND j.queue = s.queue AND j.grp = s.grp) \
         AND (l.group_concurrency IS NULL OR (SELECT count(*) FROM ( \
               SELECT 1 FROM __S__.jobs j WHERE j.state = 'running' AND j.grp IS NOT NULL \
               AND j.queue = s.queue AND j.grp = s.grp LIMIT l.group_concurrency) r) \
             < l.group_concurrency)) END";

/// Groups of `queue` with a running job, and those that may start none at `now`: at the
/// concurrency limit `cap`, or with a full window under `rate` (with or without jobs left:
/// the logs with a start in the window are read, a range of `group_starts_last`).
pub(crate) async fn group_counts(
    db: &Db,
    queue: &str,
    cap: Option<u32>,
    rate: Option<RateLimit>,
    now: Timestamp,
) -> Result<(u64, u64)> {
    let r = sqlx::query(db.sql(
        "SELECT count(*) FILTER (WHERE n > 0), count(*) FILTER (WHERE n >= $2 OR is_full) FROM ( \
           SELECT grp, sum(n) AS n, bool_or(is_full) AS is_full FROM ( \
             SELECT grp, count(*) AS n, false AS is_full FROM __S__.jobs \
             WHERE state = 'running' AND grp IS NOT NULL AND queue = $1 GROUP BY grp \
             UNION ALL \
             SELECT grp, 0, __S__.rate_full(starts, $3, $4, $5) FROM __S__.group_starts \
             WHERE $3::int IS NOT NULL AND queue = $1 AND last_at > $5 - $4) x \
           GROUP BY grp) g",
    ))
    .bind(queue)
    .bind(cap.map(i64::from))
    .bind(rate.map(|r| i32::try_from(r.max).unwrap_or(i32::MAX)))
    .bind(rate.map(|r| millis(r.per)))
    .bind(now.as_millis())
    .fetch_one(&db.pool)
    .await?;
    let running: i64 = r.try_get(0)?;
    let at_limit: i64 = r.try_get(1)?;
    Ok((
        u64::try_from(running).unwrap_or(0),
        u64::try_from(at_limit).unwrap_or(0),
    ))
}
