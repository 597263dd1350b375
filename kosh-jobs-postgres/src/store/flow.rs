//! Flow control: per-queue limits and holds kept in `queue_limits` (a row only while a queue
//! has limits or a hold) and the reserve of queues that have them, or groups.
//!
//! A reserve whose queues have no limits, no hold and no groups stays the one claim
//! statement of [`super::jobs::reserve`], which also probes `queue_limits` and `turns` and
//! claims nothing when one of its queues has any. Those reserves come here: one transaction
//! that locks the limited queues' rows (`FOR UPDATE`, in name order), counts their running
//! jobs, computes the room each queue has (none while held; [`RateLimit::room`] on the
//! stored log) and claims at most that many, logging the starts in the same statement. Two
//! reservers of one limited queue, in any processes, take turns on the row lock, and the
//! second counts what the first leased. When a queue has groups, the claim is by their turns
//! ([`super::turns`]), which also keep each group's start log under a group rate limit.

use std::collections::HashMap;
use std::time::Duration;

use kosh_jobs_core::backend::validate_queue_name;
use kosh_jobs_core::limits::{GroupPage, GroupQuery, QueueFlow, QueueLimits, RateLimit};
use kosh_jobs_core::{LeasedJob, ReserveRequest, Timestamp};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::jobs::leased_jobs;
use super::row::malformed;
use super::turns::{self, TurnQueue, GROUP_WINDOW, GROUP_WORK};
use super::Db;
use crate::error::{PostgresError, Result};

/// The limits of one queue as stored, with its start log (oldest first).
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) name: String,
    pub(crate) limits: QueueLimits,
    pub(crate) starts: Vec<Timestamp>,
    /// The end of its hold, if it has one (perhaps past).
    pub(crate) held_until: Option<Timestamp>,
}

impl Stored {
    /// Whether the row holds nothing in force at `now`: no limit, and no hold (or an ended
    /// one). Such a row is deleted by the reserve that locks it.
    fn is_spent(&self, now: Timestamp) -> bool {
        self.limits.is_none() && self.held_until.is_none_or(|t| t <= now)
    }
}

/// The columns [`stored`] reads, in order.
const COLUMNS: &str = "name, concurrency, rate_max, rate_per_ms, starts, group_concurrency, \
     held_until, group_rate_max, group_rate_per_ms";

/// How many columns [`COLUMNS`] names: a query's own columns come after them.
const NCOL: usize = 9;

/// Reads a row selected with [`COLUMNS`].
fn stored(r: &PgRow) -> Result<Stored> {
    let name: String = r.try_get(0)?;
    let bad = |what: &str| malformed(0, &format!("the limits of queue `{name}`: {what}"));
    let concurrency: Option<i64> = r.try_get(1)?;
    let concurrency = concurrency
        .map(|k| u32::try_from(k).map_err(|_| bad(&format!("concurrency {k}"))))
        .transpose()?;
    // A rate limit from its columns `max` and `per` (ms), `what` naming it in errors.
    let rate = |max: usize, per: usize, what: &str| -> Result<Option<RateLimit>> {
        let max: Option<i32> = r.try_get(max)?;
        let per: Option<i64> = r.try_get(per)?;
        Ok(match (max, per) {
            (Some(max), Some(per)) => Some(RateLimit::new(
                u32::try_from(max).map_err(|_| bad(&format!("{what} of {max} starts")))?,
                Duration::from_millis(
                    u64::try_from(per)
                        .map_err(|_| bad(&format!("{what} with a window of {per} ms")))?,
                ),
            )),
            (None, None) => None,
            _ => return Err(bad(&format!("half a {what}"))),
        })
    };
    let group_rate = rate(7, 8, "group rate")?;
    let rate = rate(2, 3, "rate")?;
    let starts: Vec<i64> = r.try_get(4)?;
    let group_concurrency: Option<i64> = r.try_get(5)?;
    let group_concurrency = group_concurrency
        .map(|k| u32::try_from(k).map_err(|_| bad(&format!("group concurrency {k}"))))
        .transpose()?;
    let held_until: Option<i64> = r.try_get(6)?;
    Ok(Stored {
        name,
        limits: QueueLimits {
            concurrency,
            rate,
            group_concurrency,
            group_rate,
        },
        starts: starts.into_iter().map(Timestamp::from_millis).collect(),
        held_until: held_until.map(Timestamp::from_millis),
    })
}

/// What the limits and hold of a queue let start at `now` (`u64::MAX` without limits), and
/// when none may, the time the hold ends or the rate window opens again (`None`: a running
/// job must end first). The group concurrency limit is the turns' business.
fn room(s: &Stored, running: u64, now: Timestamp) -> (u64, Option<Timestamp>) {
    if let Some(until) = s.held_until.filter(|&t| t > now) {
        return (0, Some(until));
    }
    let mut room = u64::MAX;
    if let Some(k) = s.limits.concurrency {
        room = u64::from(k).saturating_sub(running);
        if room == 0 {
            return (0, None);
        }
    }
    if let Some(rate) = s.limits.rate {
        let (r, next) = rate.room(&s.starts, now);
        room = room.min(u64::from(r));
        if room == 0 {
            return (0, next);
        }
    }
    (room, None)
}

/// A duration in whole milliseconds, as the schema stores windows.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Sets (or with [`QueueLimits::NONE`] removes) the limits of a queue in one statement and
/// wakes its workers. The start log is kept (trimmed to the new `max`) while a rate limit
/// stays set, starts empty when one is set where there was none, and goes with the rate.
/// The groups' start logs are kept while a group rate stays set (a lowered `max` counts only
/// their last starts, as [`RateLimit::room`] does, until the next start trims them) and go
/// with the group rate. A hold in force stays (its row too, without limits).
pub(crate) async fn set_limits(db: &Db, queue: &str, limits: QueueLimits) -> Result<()> {
    validate_queue_name(queue).map_err(PostgresError::InvalidInput)?;
    limits.validate().map_err(PostgresError::InvalidInput)?;
    if limits.is_none() {
        sqlx::query(db.sql(
            "WITH gone AS (DELETE FROM __S__.queue_limits \
               WHERE name = $1 AND (held_until IS NULL OR held_until <= $2)), \
             forgot AS (DELETE FROM __S__.group_starts WHERE queue = $1) \
             UPDATE __S__.queue_limits SET concurrency = NULL, rate_max = NULL, \
               rate_per_ms = NULL, group_concurrency = NULL, group_rate_max = NULL, \
               group_rate_per_ms = NULL, starts = '{}' \
             WHERE name = $1 AND held_until > $2",
        ))
        .bind(queue)
        .bind(db.now().as_millis())
        .execute(&db.pool)
        .await?;
    } else {
        sqlx::query(db.sql(
            "WITH forgot AS (DELETE FROM __S__.group_starts WHERE queue = $1 AND $6::int IS NULL) \
             INSERT INTO __S__.queue_limits AS l (name, concurrency, rate_max, rate_per_ms, \
               group_concurrency, group_rate_max, group_rate_per_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO UPDATE SET \
               concurrency = excluded.concurrency, rate_max = excluded.rate_max, \
               rate_per_ms = excluded.rate_per_ms, \
               group_concurrency = excluded.group_concurrency, \
               group_rate_max = excluded.group_rate_max, \
               group_rate_per_ms = excluded.group_rate_per_ms, \
               starts = CASE WHEN excluded.rate_max IS NULL OR l.rate_max IS NULL THEN '{}' \
                 ELSE l.starts[greatest(cardinality(l.starts) - excluded.rate_max + 1, 1):] END",
        ))
        .bind(queue)
        .bind(limits.concurrency.map(i64::from))
        .bind(
            limits
                .rate
                .map(|r| i32::try_from(r.max).unwrap_or(i32::MAX)),
        )
        .bind(limits.rate.map(|r| millis(r.per)))
        .bind(limits.group_concurrency.map(i64::from))
        .bind(
            limits
                .group_rate
                .map(|r| i32::try_from(r.max).unwrap_or(i32::MAX)),
        )
        .bind(limits.group_rate.map(|r| millis(r.per)))
        .execute(&db.pool)
        .await?;
    }
    db.remember_limited(queue, !limits.is_none());
    db.notify(&[queue.to_owned()]).await
}

/// Holds `queue` back until `until` (see [`kosh_jobs_core::Backend::hold_queue`]): the
/// queue's row gets the later of its hold and `until`, and its workers are woken to read
/// their new deadline. A hold already over changes nothing.
pub(crate) async fn hold(db: &Db, queue: &str, until: Timestamp) -> Result<()> {
    validate_queue_name(queue).map_err(PostgresError::InvalidInput)?;
    if until <= db.now() {
        return Ok(());
    }
    let changed = sqlx::query(db.sql(
        "INSERT INTO __S__.queue_limits AS l (name, held_until) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET held_until = excluded.held_until \
         WHERE l.held_until IS NULL OR l.held_until < excluded.held_until",
    ))
    .bind(queue)
    .bind(until.as_millis())
    .execute(&db.pool)
    .await?
    .rows_affected();
    db.remember_limited(queue, true);
    if changed > 0 {
        db.notify(&[queue.to_owned()]).await?;
    }
    Ok(())
}

/// Every queue with limits or a hold in force, sorted by name, with where it stands against
/// them.
pub(crate) async fn flows(db: &Db) -> Result<Vec<QueueFlow>> {
    let now = db.now();
    let rows = sqlx::query(db.sql(&format!(
        "SELECT {COLUMNS}, \
           (SELECT count(*) FROM __S__.jobs j WHERE j.state = 'running' AND j.queue = l.name) \
         FROM __S__.queue_limits l WHERE l.concurrency IS NOT NULL OR l.rate_max IS NOT NULL \
           OR l.group_concurrency IS NOT NULL OR l.group_rate_max IS NOT NULL \
           OR l.held_until > $1"
    )))
    .bind(now.as_millis())
    .fetch_all(&db.pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let s = stored(r)?;
        let running: i64 = r.try_get(NCOL)?;
        let (groups_running, groups_at_limit, held_in_groups) = turns::group_counts(
            db,
            &s.name,
            s.limits.group_concurrency,
            s.limits.group_rate,
            now,
        )
        .await?;
        let (starts_in_window, next_start_at) = match s.limits.rate {
            Some(rate) => {
                let from = now.saturating_sub(rate.per);
                let n = s.starts.iter().filter(|&&t| t > from).count() as u64;
                (n, rate.room(&s.starts, now).1)
            }
            None => (0, None),
        };
        out.push(QueueFlow {
            queue: s.name,
            limits: s.limits,
            running: u64::try_from(running).unwrap_or(0),
            starts_in_window,
            next_start_at,
            held_until: s.held_until.filter(|&t| t > now),
            groups_running,
            groups_at_limit,
            held_in_groups,
        });
    }
    // By name as Rust orders strings (bytes), whatever the database's collation.
    out.sort_by(|a, b| a.queue.cmp(&b.queue));
    Ok(out)
}

/// One page of a queue's groups with where each stands against the queue's group limits
/// (see [`kosh_jobs_core::Backend::queue_groups`] and [`turns::group_page`] for its cost):
/// the limits row and the page are read in one read-only snapshot, so a page never counts a
/// job twice or shows a group under limits it did not have.
pub(crate) async fn groups(db: &Db, query: &GroupQuery) -> Result<GroupPage> {
    validate_queue_name(&query.queue).map_err(PostgresError::InvalidInput)?;
    let mut tx = db.pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let row = sqlx::query(db.sql(&format!(
        "SELECT {COLUMNS} FROM __S__.queue_limits WHERE name = $1"
    )))
    .bind(&query.queue)
    .fetch_optional(&mut *tx)
    .await?;
    let limits = match &row {
        Some(r) => stored(r)?.limits,
        None => QueueLimits::NONE,
    };
    let page = turns::group_page(&mut tx, db, &query.queue, &limits, query, db.now()).await?;
    tx.commit().await?;
    Ok(page)
}

/// The running jobs of each of `queues`.
async fn running(
    conn: &mut PgConnection,
    db: &Db,
    queues: &[&str],
) -> Result<HashMap<String, u64>> {
    if queues.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(String, i64)> = sqlx::query_as(db.sql(
        "SELECT queue, count(*) FROM __S__.jobs WHERE state = 'running' AND queue = ANY($1) \
         GROUP BY queue",
    ))
    .bind(queues)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(q, n)| (q, u64::try_from(n).unwrap_or(0)))
        .collect())
}

/// Leases up to $2 jobs of the unpaused queues $1 at $3 until $4 for worker $5, at most
/// $6 (the queue's room) of each queue, and logs a start at $3 per job leased in the rate
/// log of each rate-limited queue (keeping the last `rate_max`). As the plain claim, but
/// capped per queue; for queues without turns (so without ready or due grouped jobs).
const CLAIM_LIMITED: &str = "WITH q AS ( \
       SELECT u.name, u.room FROM unnest($1::text[], $6::bigint[]) AS u(name, room) \
       WHERE u.room > 0 \
         AND NOT EXISTS (SELECT 1 FROM __S__.paused_queues p WHERE p.name = u.name)), \
     cand AS ( \
       SELECT q.name AS queue, q.room, c.id, c.priority FROM q CROSS JOIN LATERAL ( \
         SELECT id, priority FROM __S__.jobs WHERE state = 'ready' AND grp IS NULL \
         AND queue = q.name ORDER BY priority DESC, id LIMIT least($2, q.room) \
         FOR UPDATE SKIP LOCKED) c \
       UNION ALL \
       SELECT q.name, q.room, c.id, c.priority FROM q CROSS JOIN LATERAL ( \
         SELECT id, priority FROM __S__.jobs WHERE state = 'scheduled' AND grp IS NULL \
         AND queue = q.name AND run_at <= $3 ORDER BY run_at, id LIMIT least($2, q.room) \
         FOR UPDATE SKIP LOCKED) c), \
     ranked AS ( \
       SELECT id, priority, room, \
         row_number() OVER (PARTITION BY queue ORDER BY priority DESC, id) AS rn FROM cand), \
     pick AS (SELECT id FROM ranked WHERE rn <= room ORDER BY priority DESC, id LIMIT $2), \
     upd AS ( \
       UPDATE __S__.jobs j SET state = 'running', attempts = j.attempts + 1, \
         lease_token = nextval('__S__.lease_tokens'), started_at = $3, lease_expires_at = $4, \
         worker = $5, lease_started = false \
       FROM pick WHERE j.id = pick.id \
       RETURNING j.id, j.lease_token, j.name, j.queue, j.payload, j.priority, j.attempts, \
         j.max_attempts, j.created_at, j.progress, j.trace), \
     logged AS ( \
       UPDATE __S__.queue_limits l \
       SET starts = (l.starts || array_fill($3::bigint, ARRAY[n.n]))\
         [greatest(cardinality(l.starts) + n.n - l.rate_max + 1, 1):] \
       FROM (SELECT queue, count(*)::int AS n FROM upd GROUP BY queue) n \
       WHERE l.name = n.queue AND l.rate_max IS NOT NULL) \
     SELECT * FROM upd";

/// Leases jobs of `queues` (deduplicated, sorted) when some of them may have limits, a hold
/// or groups: see the [module docs](self).
pub(crate) async fn reserve_limited(
    db: &Db,
    req: &ReserveRequest,
    queues: &[&str],
) -> Result<Vec<LeasedJob>> {
    let mut tx = db.pool.begin().await?;
    // Locked in name order, so reservers of overlapping queue sets cannot deadlock.
    let rows = sqlx::query(db.sql(&format!(
        "SELECT {COLUMNS} FROM __S__.queue_limits WHERE name = ANY($1) ORDER BY name FOR UPDATE"
    )))
    .bind(queues)
    .fetch_all(&mut *tx)
    .await?;
    let now = db.now();
    let limited = rows.iter().map(stored).collect::<Result<Vec<_>>>()?;
    let spent: Vec<&str> = limited
        .iter()
        .filter(|s| s.is_spent(now))
        .map(|s| s.name.as_str())
        .collect();
    if !spent.is_empty() {
        // Rows kept only for a hold that ended: the queue is plain again.
        sqlx::query(db.sql("DELETE FROM __S__.queue_limits WHERE name = ANY($1)"))
            .bind(&spent)
            .execute(&mut *tx)
            .await?;
    }
    // Counted after the lock, in a statement of its own: under READ COMMITTED it sees every
    // lease committed by the reserver that held the lock before.
    let concurrent: Vec<&str> = limited
        .iter()
        .filter(|s| s.limits.concurrency.is_some())
        .map(|s| s.name.as_str())
        .collect();
    let running = running(&mut tx, db, &concurrent).await?;
    let by_name: HashMap<&str, &Stored> = limited
        .iter()
        .filter(|s| !s.is_spent(now))
        .map(|s| (s.name.as_str(), s))
        .collect();
    let room_of = |q: &str| match by_name.get(q) {
        Some(s) => {
            let n = running.get(q).copied().unwrap_or(0);
            i64::try_from(room(s, n, now).0).unwrap_or(i64::MAX)
        }
        None => i64::MAX,
    };
    let open: Vec<&str> = queues.iter().copied().filter(|q| room_of(q) > 0).collect();
    let group_rates: Vec<(&str, RateLimit)> = open
        .iter()
        .filter_map(|q| Some((*q, by_name.get(q)?.limits.group_rate?)))
        .collect();
    let turned = turns::promote(&mut tx, db, &open, &group_rates, now).await?;
    for q in queues {
        let has_turns = turned.iter().any(|(t, yes)| *yes && t == q);
        db.remember_limited(q, by_name.contains_key(q) || has_turns);
    }
    if turned.is_empty() {
        tx.commit().await?;
        return Ok(Vec::new());
    }
    let expires = now.saturating_add(req.lease).as_millis();
    let max = i64::try_from(req.max).unwrap_or(i64::MAX);
    let jobs = if turned.iter().any(|(_, yes)| *yes) {
        let lanes: Vec<TurnQueue<'_>> = turned
            .iter()
            .map(|(q, _)| TurnQueue {
                name: q,
                room: room_of(q),
                group_cap: by_name
                    .get(q.as_str())
                    .and_then(|s| s.limits.group_concurrency),
                group_rate: by_name.get(q.as_str()).and_then(|s| s.limits.group_rate),
            })
            .collect();
        turns::claim(&mut tx, db, &lanes, max, now, expires, &req.worker).await?
    } else {
        let rooms: Vec<i64> = queues.iter().map(|q| room_of(q)).collect();
        let rows = sqlx::query(db.sql(CLAIM_LIMITED))
            .bind(queues)
            .bind(max)
            .bind(now.as_millis())
            .bind(expires)
            .bind(&req.worker)
            .bind(&rooms)
            .fetch_all(&mut *tx)
            .await?;
        leased_jobs(&rows, expires, true)?
    };
    tx.commit().await?;
    Ok(jobs)
}

/// What a waiter learns about its limited queues.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LimitedWait {
    /// A limited queue has a job ready (or due) that its limits let start now.
    pub(crate) ready: bool,
    /// The earliest time a limited queue may have work without a wake-up: a scheduled job
    /// becoming due, or a full rate window opening on held-back jobs.
    pub(crate) next: Option<Timestamp>,
}

/// Whether the limited ones of `queues` (unpaused) have work their limits let start now,
/// and if not when they may. Jobs held back by a full concurrency limit, or in groups at
/// their group concurrency limit, are not work: a job of the queue leaving `running` wakes
/// the waiter. Jobs in groups with a full rate window are not work either: the waiter
/// sleeps until the first such window opens. Held queues have work when their hold ends.
pub(crate) async fn wait_limited(db: &Db, queues: &[String]) -> Result<LimitedWait> {
    let now = db.now();
    let rows = sqlx::query(db.sql(&format!(
        "SELECT {COLUMNS}, \
           EXISTS (SELECT 1 FROM __S__.jobs j WHERE j.state = 'ready' AND j.grp IS NULL \
                   AND j.queue = l.name) \
           OR EXISTS (SELECT 1 FROM __S__.jobs j WHERE j.state = 'scheduled' \
                      AND j.queue = l.name AND j.run_at <= $2) \
           OR {GROUP_WORK}, \
           (SELECT min(j.run_at) FROM __S__.jobs j WHERE j.state = 'scheduled' \
            AND j.queue = l.name AND j.run_at > $2), \
           CASE WHEN l.concurrency IS NULL THEN 0 ELSE (SELECT count(*) FROM __S__.jobs j \
             WHERE j.state = 'running' AND j.queue = l.name) END, \
           {GROUP_WINDOW} \
         FROM __S__.queue_limits l WHERE l.name = ANY($1) \
           AND NOT EXISTS (SELECT 1 FROM __S__.paused_queues p WHERE p.name = l.name)"
    )))
    .bind(queues)
    .bind(now.as_millis())
    .fetch_all(&db.pool)
    .await?;
    let mut out = LimitedWait::default();
    let mut sooner = |at: Timestamp| out.next = Some(out.next.map_or(at, |n| n.min(at)));
    let mut ready = false;
    for r in &rows {
        let s = stored(r)?;
        let has_work: bool = r.try_get(NCOL)?;
        let next_run_at: Option<i64> = r.try_get(NCOL + 1)?;
        let running: i64 = r.try_get(NCOL + 2)?;
        let group_window: Option<i64> = r.try_get(NCOL + 3)?;
        if let Some(at) = next_run_at {
            sooner(Timestamp::from_millis(at));
        }
        if !has_work {
            // Held back by group rate windows: work when the first opens, unless the queue's
            // own limits still hold it then (the waiter looks again and learns so).
            if let Some(at) = group_window {
                sooner(Timestamp::from_millis(at));
            }
            continue;
        }
        match room(&s, u64::try_from(running).unwrap_or(0), now) {
            (0, Some(at)) => sooner(at),
            (0, None) => {}
            _ => ready = true,
        }
    }
    out.ready = ready;
    Ok(out)
}
