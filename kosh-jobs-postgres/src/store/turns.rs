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
//!
//! The admin listing of a queue's groups ([`group_page`]) walks their keys in byte order
//! through the `COLLATE "C"` indexes of migration 0006, and [`group_counts`] gives
//! `queue_flows` its group figures.

use std::collections::HashMap;

use kosh_jobs_core::admin::{Total, TOTAL_BOUND};
use kosh_jobs_core::limits::{GroupFlow, GroupPage, GroupQuery, QueueLimits, RateLimit};
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
       r_created_at, r_progress, (SELECT j.trace FROM __S__.jobs j WHERE j.id = r_id) \
     FROM upd ORDER BY ordinality";

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

/// Groups of `queue` with a running job, those that may start none at `now` (at the
/// concurrency limit `cap`, or with a full window under `rate`, with or without jobs left:
/// the logs with a start in the window are read, a range of `group_starts_last`), and the
/// ready jobs of the latter (due scheduled ones included, as `counts` counts them), counted
/// in each such group's range of `jobs_ready_grouped` and `jobs_scheduled_grouped`. A group
/// at a limit has a running job or a start in the window, so the groups read are at most
/// the running jobs plus the logs in the window, and the jobs counted are those held back.
pub(crate) async fn group_counts(
    db: &Db,
    queue: &str,
    cap: Option<u32>,
    rate: Option<RateLimit>,
    now: Timestamp,
) -> Result<(u64, u64, u64)> {
    let r = sqlx::query(db.sql(
        "SELECT count(*) FILTER (WHERE n > 0), count(*) FILTER (WHERE n >= $2 OR is_full), \
           coalesce(sum(CASE WHEN n >= $2 OR is_full THEN \
             (SELECT count(*) FROM __S__.jobs j WHERE j.state = 'ready' \
                AND j.grp IS NOT NULL AND j.queue = $1 AND j.grp = g.grp) \
             + (SELECT count(*) FROM __S__.jobs j WHERE j.state = 'scheduled' \
                AND j.grp IS NOT NULL AND j.queue = $1 AND j.run_at <= $5 AND j.grp = g.grp) \
             ELSE 0 END), 0)::bigint FROM ( \
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
    let count = |i: usize| -> Result<u64> {
        let n: i64 = r.try_get(i)?;
        Ok(u64::try_from(n).unwrap_or(0))
    };
    Ok((count(0)?, count(1)?, count(2)?))
}

/// At most so many due scheduled grouped jobs of a queue are read by one [`group_page`]
/// (the oldest due first): a reserve makes them ready (and so walked by key) in batches of
/// [`PROMOTE_BATCH`], so more wait only while the queue is paused or no worker reserves.
const DUE_SAMPLE: i64 = PROMOTE_BATCH;

/// The next key of the groups of queue `$1` with a ready or running job, or a start log
/// whose newest start is after `$3` (the window's start: `now - per`; NULL: no log counts),
/// after the key `{after}`, by bytes: one probe of `jobs_group_keys` and one of
/// `group_starts_keys` (migration 0006). NULL when there is none.
fn next_key(after: &str) -> String {
    format!(
        "least( \
           (SELECT j.grp COLLATE \"C\" FROM __S__.jobs j \
            WHERE j.grp IS NOT NULL AND j.state IN ('ready', 'running') AND j.queue = $1 \
              AND j.grp COLLATE \"C\" > {after} ORDER BY j.grp COLLATE \"C\" LIMIT 1), \
           (SELECT s.grp COLLATE \"C\" FROM __S__.group_starts s \
            WHERE s.queue = $1 AND s.grp COLLATE \"C\" > {after} AND s.last_at > $3 \
            ORDER BY s.grp COLLATE \"C\" LIMIT 1))"
    )
}

/// The keys of a page ($4 of them at most) of queue `$1`'s groups after `$2` (by bytes; ''
/// for the first page, as no group has an empty key) with a ready or running job or a start
/// in the window that begins at `$3`: a loose index scan, one [`next_key`] per key.
fn walk_sql() -> String {
    format!(
        "WITH RECURSIVE walk(grp, n) AS ( \
           SELECT {first}, 1::bigint \
           UNION ALL \
           SELECT {next}, w.n + 1 FROM walk w WHERE w.grp IS NOT NULL AND w.n < $4::bigint) \
         SELECT grp FROM walk WHERE grp IS NOT NULL ORDER BY n",
        first = next_key("$2::text COLLATE \"C\""),
        next = next_key("w.grp"),
    )
}

/// The groups of queue `$1` after `$2` (by bytes) with due scheduled jobs (at `$3`) among
/// the oldest `$5` due ones, the first `$4` of them by key, each with its due jobs there;
/// and whether the sample is whole (fewer due jobs than `$5`).
const DUE_GROUPS: &str = "WITH d AS ( \
       SELECT grp FROM __S__.jobs WHERE state = 'scheduled' AND grp IS NOT NULL \
         AND queue = $1 AND run_at <= $3 ORDER BY run_at, id LIMIT $5) \
     SELECT g.grp, g.n, (SELECT count(*) FROM d) < $5 FROM ( \
       SELECT grp, count(*) AS n FROM d WHERE grp COLLATE \"C\" > $2 \
       GROUP BY grp ORDER BY grp COLLATE \"C\" LIMIT $4) g \
     UNION ALL SELECT NULL, 0, (SELECT count(*) FROM d) < $5";

/// Each of the groups `$2` of queue `$1`, in order: its ready jobs (at most `$3` counted,
/// a range of `jobs_ready_grouped`), its running jobs (`jobs_running_grouped`) and its start
/// log (the `group_starts` primary key; NULL without one).
const GROUP_STATE: &str = "SELECT k.grp, \
       (SELECT count(*) FROM (SELECT 1 FROM __S__.jobs j WHERE j.state = 'ready' \
          AND j.grp IS NOT NULL AND j.queue = $1 AND j.grp = k.grp LIMIT $3) r), \
       (SELECT count(*) FROM __S__.jobs j WHERE j.state = 'running' AND j.grp IS NOT NULL \
          AND j.queue = $1 AND j.grp = k.grp), \
       (SELECT s.starts FROM __S__.group_starts s WHERE s.queue = $1 AND s.grp = k.grp) \
     FROM unnest($2::text[]) WITH ORDINALITY AS k(grp, i) ORDER BY k.i";

/// One page of `queue`'s groups under its group limits `cap` and `rate` at `now` (see
/// [`kosh_jobs_core::Backend::queue_groups`]), read in the caller's transaction.
///
/// Cost: the walk takes at most `limit + 1` keys, each two index probes (migration 0006),
/// passing over only logs that left the window and wait for a reserve to delete them; the
/// due scheduled grouped jobs are read up to [`DUE_SAMPLE`] (oldest first); then per group
/// of the page, its ready jobs up to [`TOTAL_BOUND`] + 1, its running jobs and its log.
pub(crate) async fn group_page(
    conn: &mut PgConnection,
    db: &Db,
    queue: &str,
    limits: &QueueLimits,
    query: &GroupQuery,
    now: Timestamp,
) -> Result<GroupPage> {
    let limit = query.effective_limit();
    // One more than the page: whether a group is left after it.
    let fetch = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
    let after = query.after.as_deref().unwrap_or("");
    let window_from = limits
        .group_rate
        .map(|r| now.saturating_sub(r.per).as_millis());
    let mut keys: Vec<String> = sqlx::query_scalar(db.sql(&walk_sql()))
        .bind(queue)
        .bind(after)
        .bind(window_from)
        .bind(fetch)
        .fetch_all(&mut *conn)
        .await?;
    let rows: Vec<(Option<String>, i64, bool)> = sqlx::query_as(db.sql(DUE_GROUPS))
        .bind(queue)
        .bind(after)
        .bind(now.as_millis())
        .bind(fetch)
        .bind(DUE_SAMPLE)
        .fetch_all(&mut *conn)
        .await?;
    let mut due: HashMap<String, u64> = HashMap::new();
    let mut due_whole = true;
    for (grp, n, whole) in rows {
        due_whole &= whole;
        if let Some(grp) = grp {
            due.insert(grp, u64::try_from(n).unwrap_or(0));
        }
    }
    keys.extend(due.keys().cloned());
    // By bytes, as Rust orders strings (the walk's order too).
    keys.sort_unstable();
    keys.dedup();
    let more = keys.len() > limit;
    keys.truncate(limit);
    let bound = i64::try_from(TOTAL_BOUND)
        .unwrap_or(i64::MAX)
        .saturating_add(1);
    let rows = sqlx::query(db.sql(GROUP_STATE))
        .bind(queue)
        .bind(&keys)
        .bind(bound)
        .fetch_all(&mut *conn)
        .await?;
    let mut groups = Vec::with_capacity(rows.len());
    for r in &rows {
        let group: String = r.try_get(0)?;
        let ready: i64 = r.try_get(1)?;
        let running: i64 = r.try_get(2)?;
        let starts: Option<Vec<i64>> = r.try_get(3)?;
        let starts: Vec<Timestamp> = starts
            .unwrap_or_default()
            .into_iter()
            .map(Timestamp::from_millis)
            .collect();
        let ready = u64::try_from(ready)
            .unwrap_or(0)
            .saturating_add(due.get(&group).copied().unwrap_or(0));
        let running = u64::try_from(running).unwrap_or(0);
        let (at_limit, next_start_at) = group_room(limits, running, &starts, now);
        let starts_in_window = limits.group_rate.map_or(0, |rate| {
            let from = now.saturating_sub(rate.per);
            starts.iter().filter(|&&t| t > from).count() as u64
        });
        groups.push(GroupFlow {
            group,
            ready: Total {
                count: ready.min(TOTAL_BOUND),
                exact: ready <= TOTAL_BOUND && due_whole,
            },
            running,
            starts_in_window,
            at_limit,
            next_start_at,
        });
    }
    let next = if more {
        groups.last().map(|g| g.group.clone())
    } else {
        None
    };
    Ok(GroupPage { groups, next })
}

/// Whether a group with `running` jobs and the start log `starts` may start none at `now`
/// under `limits`, and when its rate window opens if that holds it back (as the memory
/// backend's `group_room`).
fn group_room(
    limits: &QueueLimits,
    running: u64,
    starts: &[Timestamp],
    now: Timestamp,
) -> (bool, Option<Timestamp>) {
    if limits
        .group_concurrency
        .is_some_and(|k| running >= u64::from(k))
    {
        return (true, None);
    }
    if let Some(rate) = limits.group_rate {
        let (room, next) = rate.room(starts, now);
        if room == 0 {
            return (true, next);
        }
    }
    (false, None)
}
