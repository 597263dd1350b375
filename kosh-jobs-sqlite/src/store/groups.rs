//! Groups (see [groups](kosh_jobs_core::limits#groups)): the turns of a queue's lanes in
//! `kosh_turns`, a group's slots under `group_concurrency` counted in the index of its
//! running jobs, and its starts under `group_rate` logged in `kosh_group_starts`.
//!
//! A lane is a group, or the jobs without a group (the row with key `''`, never a valid
//! group key). A reserve of a queue with turn rows walks them in turn order with a cursor:
//! a lane with room gives one job and moves to the back (turn = the largest + 1), so the
//! cursor meets it again after every other lane; a group at its limit is passed (it stays
//! full until this reserve ends); a lane found without a ready job loses its row. So one
//! reserve reads each full group once, each emptied lane once (deleting it, which pays for
//! it), and one row per job it leases: its cost does not grow with the number of ready jobs
//! or of waiting groups.
//!
//! Every way into `ready` (push, promotion, retry, snooze, release, recovery, the admin
//! actions) gives a group its row ([`group_ready`], [`PROMOTED_GROUPS`]; not a trigger,
//! which measured about 3 µs more per job on every hot-path statement), so a reserve never
//! misses a group. A queue without turn rows (one that never had a grouped job) is
//! reserved as before, by the ungrouped ready index alone.
//!
//! Under a group rate limit, a reserve reads a candidate group's starts in the window (one
//! seek, at most `max` index entries) and passes the group if they are `max`, as it passes a
//! full group; each job it leases of a group logs a start. The log belongs to the queue, not
//! to the group's jobs: a group with no job left keeps it, so a new job of it is limited
//! still. The first start a reserve logs deletes the queue's starts that left the window (one
//! range of an index by time, each row deleted once); setting limits without a group rate
//! deletes the queue's log. A queue without a group rate reads and writes none of it.
//!
//! The admin readers list a queue's groups by key ([`group_page`]): SQLite compares `grp`
//! (declared without a collation, so BINARY) byte by byte, which is the contract's order. A
//! page walks the groups with ready jobs, with running jobs and with starts in the window one
//! seek per group each, merging them with the due scheduled jobs' groups, and counts each
//! group's ready jobs up to the bound: its cost follows the page, not the queue.

use std::collections::{BTreeMap, BTreeSet};

use kosh_jobs_core::admin::{Total, TOTAL_BOUND};
use kosh_jobs_core::backend::validate_queue_name;
use kosh_jobs_core::limits::{GroupFlow, GroupPage, GroupQuery, QueueLimits, RateLimit};
use kosh_jobs_core::{LeasedJob, Timestamp};
use rusqlite::{params, CachedStatement, Connection, OptionalExtension};

use super::jobs::{claim_one, Claim};
use super::{exec, is_paused, sql_err, LeasedQueues};
use crate::error::{Result, SqliteError};

/// The statements of this module, built once.
pub(super) mod sql {
    /// The largest lane key of queue ?1: none without turn rows, `''` when only the jobs
    /// without a group have one. One seek of the primary key.
    pub(crate) const LAST_LANE: &str = "SELECT max(grp) FROM kosh_turns WHERE queue = ?1";

    /// Gives the jobs without a group of queue ?1 a turn (0: before every lane served) if
    /// they have none and one of them is ready.
    pub(crate) const UNGROUPED_LANE: &str = "INSERT OR IGNORE INTO kosh_turns \
         (queue, grp, turn) SELECT ?1, '', 0 WHERE EXISTS (SELECT 1 FROM kosh_jobs \
         WHERE state = 'ready' AND grp IS NULL AND queue = ?1)";

    /// The largest turn of queue ?1.
    pub(crate) const LAST_TURN: &str =
        "SELECT coalesce(max(turn), 0) FROM kosh_turns WHERE queue = ?1";

    /// The lane of queue ?1 after the cursor (turn ?2, key ?3), in turn order.
    pub(crate) const NEXT_LANE: &str = "SELECT grp, turn FROM kosh_turns \
         WHERE queue = ?1 AND (turn, grp) > (?2, ?3) ORDER BY turn, grp LIMIT 1";

    /// Moves lane ?2 of queue ?1 to turn ?3.
    pub(crate) const MOVE_LANE: &str =
        "UPDATE kosh_turns SET turn = ?3 WHERE queue = ?1 AND grp = ?2";

    /// Deletes the turn of lane ?2 of queue ?1.
    pub(crate) const DROP_LANE: &str = "DELETE FROM kosh_turns WHERE queue = ?1 AND grp = ?2";

    /// The running jobs of group ?2 of queue ?1: its slots taken (one per lease).
    pub(crate) const GROUP_RUNNING: &str = "SELECT count(*) FROM kosh_jobs \
         WHERE state = 'running' AND grp IS NOT NULL AND queue = ?1 AND grp = ?2";

    /// The groups of queue ?1 with a running job, and how many each has.
    pub(crate) const RUNNING_GROUP_COUNTS: &str = "SELECT grp, count(*) FROM kosh_jobs \
         WHERE state = 'running' AND grp IS NOT NULL AND queue = ?1 GROUP BY grp";

    /// The ?4-th (from 0) most recent start of group ?2 of queue ?1 after ?3: with a group
    /// rate of `max` starts and ?3 the window's start, the row for ?4 = `max - 1` exists when
    /// the window is full, and its window opens `per` after it. At most `max` entries of
    /// `kosh_group_starts_log`, read backwards from one seek.
    pub(crate) const GROUP_WINDOW: &str = "SELECT at FROM kosh_group_starts \
         WHERE queue = ?1 AND grp = ?2 AND at > ?3 ORDER BY at DESC LIMIT 1 OFFSET ?4";

    /// Logs a start of group ?2 of queue ?1 at ?3.
    pub(crate) const LOG_GROUP_START: &str =
        "INSERT INTO kosh_group_starts (queue, grp, at) VALUES (?1, ?2, ?3)";

    /// Forgets the starts of queue ?1 at or before ?2 (out of every window): one range of
    /// `kosh_group_starts_age`.
    pub(crate) const FORGET_OLD_STARTS: &str =
        "DELETE FROM kosh_group_starts WHERE queue = ?1 AND at <= ?2";

    /// The groups of queue ?1 with ?3 or more starts after ?2: those whose window is full.
    pub(crate) const FULL_WINDOWS: &str = "SELECT grp FROM kosh_group_starts \
         WHERE queue = ?1 AND at > ?2 GROUP BY grp HAVING count(*) >= ?3";

    /// The next group after ?2 (by key) of queue ?1 with a ready job: one seek.
    pub(crate) const NEXT_READY_GROUP: &str = "SELECT grp FROM kosh_jobs \
         WHERE state = 'ready' AND grp IS NOT NULL AND queue = ?1 AND grp > ?2 \
         ORDER BY grp LIMIT 1";

    /// The next group after ?2 (by key) of queue ?1 with a running job: one seek.
    pub(crate) const NEXT_RUNNING_GROUP: &str = "SELECT grp FROM kosh_jobs \
         WHERE state = 'running' AND grp IS NOT NULL AND queue = ?1 AND grp > ?2 \
         ORDER BY grp LIMIT 1";

    /// The next group after ?2 (by key) of queue ?1 with a start after ?3 (inside the
    /// window): one seek of `kosh_group_starts_log`, then the entries in key order up to the
    /// first inside the window, so it passes over the starts that left the window and are
    /// not deleted yet (at most about one window's, see [`super::StartLog`]).
    pub(crate) const NEXT_STARTED_GROUP: &str = "SELECT grp FROM kosh_group_starts \
         INDEXED BY kosh_group_starts_log WHERE queue = ?1 AND grp > ?2 AND at > ?3 \
         ORDER BY grp LIMIT 1";

    /// The starts of group ?2 of queue ?1 after ?3: those in its window.
    pub(crate) const GROUP_STARTS: &str = "SELECT count(*) FROM kosh_group_starts \
         WHERE queue = ?1 AND grp = ?2 AND at > ?3";

    /// The ready jobs of group ?2 of queue ?1, counting at most ?3 entries of
    /// `kosh_jobs_ready_grouped`.
    pub(crate) const GROUP_READY_UP_TO: &str = "SELECT count(*) FROM (SELECT 1 FROM kosh_jobs \
         WHERE state = 'ready' AND grp IS NOT NULL AND queue = ?1 AND grp = ?2 LIMIT ?3)";

    /// The groups after ?3 (by key) of queue ?1 with scheduled jobs due at ?2 (readers count
    /// them as ready), the first ?4, each with its due jobs. Reads the queue's due grouped
    /// jobs in `kosh_jobs_scheduled_grouped` (sorted by key in a temporary tree): a range
    /// that any reserve of the queue empties, since it promotes them first (a paused queue
    /// keeps them: the range then grows with its due jobs, as [`super::super::read::DUE_COUNT`]
    /// does).
    pub(crate) const DUE_GROUPS: &str = "SELECT grp, count(*) FROM kosh_jobs \
         WHERE state = 'scheduled' AND grp IS NOT NULL AND queue = ?1 AND run_at <= ?2 \
         AND grp > ?3 GROUP BY grp ORDER BY grp LIMIT ?4";
}

/// Gives group ?2 of queue ?1 a turn, if it has none: 0, first in line.
pub(super) const GROUP_READY: &str =
    "INSERT OR IGNORE INTO kosh_turns (queue, grp, turn) VALUES (?1, ?2, 0)";

/// Gives a turn to the groups of queue ?1 whose scheduled jobs are due at ?2 (the ones the
/// promotion that follows makes ready), unless the queue is paused. A range of
/// `kosh_jobs_scheduled_grouped`, which holds no job without a group.
pub(super) const PROMOTED_GROUPS: &str = "INSERT OR IGNORE INTO kosh_turns (queue, grp, turn) \
     SELECT queue, grp, 0 FROM kosh_jobs \
     WHERE state = 'scheduled' AND grp IS NOT NULL AND queue = ?1 AND run_at <= ?2 \
     AND NOT EXISTS (SELECT 1 FROM kosh_queues WHERE name = ?1 AND paused)";

/// Gives `group` of `queue` its turn row if it has none: a job of it became ready. Every
/// statement that makes a grouped job ready calls this (push, retry, snooze, release, lease
/// recovery, the admin retry and promote; promotion uses [`PROMOTED_GROUPS`]).
pub(super) fn group_ready(conn: &Connection, queue: &str, group: &str) -> Result<()> {
    exec(conn, GROUP_READY, params![queue, group])?;
    Ok(())
}

/// The key of the turn row of the jobs without a group.
const UNGROUPED: &str = "";

/// Whether `queue` has lanes that take turns. A queue whose only row is the ungrouped lane's
/// (its groups have all gone) loses it here and is reserved as a queue without groups again.
pub(super) fn has_turns(conn: &Connection, queue: &str) -> Result<bool> {
    let last: Option<String> = conn
        .prepare_cached(sql::LAST_LANE)
        .and_then(|mut s| s.query_row([queue], |r| r.get(0)))
        .map_err(sql_err)?;
    match last.as_deref() {
        None => Ok(false),
        Some(UNGROUPED) => {
            exec(conn, sql::DROP_LANE, params![queue, UNGROUPED])?;
            Ok(false)
        }
        Some(_) => Ok(true),
    }
}

/// Leases up to `want` jobs of `queue` by the turns of its lanes, one per lane per turn,
/// passing the groups that the group limits of `limits` let start nothing; appends them to
/// `out` in the order taken, and remembers each one's queue and group in `known`. Logs the
/// starts of each group under a group rate.
pub(super) fn reserve_by_turns(
    conn: &Connection,
    queue: &str,
    want: usize,
    limits: &QueueLimits,
    claim: &Claim<'_>,
    out: &mut Vec<LeasedJob>,
    known: &mut LeasedQueues,
) -> Result<()> {
    if want == 0 || is_paused(conn, queue)? {
        return Ok(());
    }
    exec(conn, sql::UNGROUPED_LANE, [queue])?;
    let mut next_turn: i64 = conn
        .prepare_cached(sql::LAST_TURN)
        .and_then(|mut s| s.query_row([queue], |r| r.get(0)))
        .map_err(sql_err)?;
    let mut next_lane = conn.prepare_cached(sql::NEXT_LANE).map_err(sql_err)?;
    let mut move_lane = conn.prepare_cached(sql::MOVE_LANE).map_err(sql_err)?;
    let mut cursor: (i64, String) = (i64::MIN, String::new());
    let mut taken = 0;
    let mut log = limits
        .group_rate
        .map(|rate| StartLog::new(queue, rate, claim.now));
    while taken < want {
        let Some((lane, turn)) = next_lane
            .query_row(params![queue, cursor.0, cursor.1], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .optional()
            .map_err(sql_err)?
        else {
            break;
        };
        let group = (lane != UNGROUPED).then_some(lane.as_str());
        if let Some(g) = group {
            if !group_room(conn, queue, g, limits, claim.now)?.0 {
                // At a limit: passed for the rest of this reserve (its jobs only start
                // here, and its window does not move while the reserve's `now` stands).
                cursor = (turn, lane);
                continue;
            }
        }
        match claim_one(conn, claim, queue, group)? {
            Some(job) => {
                if let (Some(g), Some(log)) = (group, log.as_mut()) {
                    log.start(conn, g)?;
                }
                known.insert(std::slice::from_ref(&job), queue, group);
                out.push(job);
                taken += 1;
                next_turn += 1;
                move_lane
                    .execute(params![queue, lane, next_turn])
                    .map_err(sql_err)?;
            }
            None => {
                exec(conn, sql::DROP_LANE, params![queue, lane])?;
            }
        }
        cursor = (turn, lane);
    }
    Ok(())
}

/// The running jobs of group `group` of `queue`.
fn group_running(conn: &Connection, queue: &str, group: &str) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached(sql::GROUP_RUNNING)
        .and_then(|mut s| s.query_row(params![queue, group], |r| r.get(0)))
        .map_err(sql_err)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Whether group `group` of `queue` may start a job at `now` under the group limits of
/// `limits`, and if its rate window is what stops it, when the window opens. The concurrency
/// limit is checked first: a group at it waits for a running job to end, which wakes the
/// waiters, whatever its window.
fn group_room(
    conn: &Connection,
    queue: &str,
    group: &str,
    limits: &QueueLimits,
    now: Timestamp,
) -> Result<(bool, Option<Timestamp>)> {
    if let Some(k) = limits.group_concurrency {
        if group_running(conn, queue, group)? >= u64::from(k) {
            return Ok((false, None));
        }
    }
    if let Some(rate) = limits.group_rate {
        let from = now.saturating_sub(rate.per).as_millis();
        let oldest_counted: Option<i64> = conn
            .prepare_cached(sql::GROUP_WINDOW)
            .and_then(|mut s| {
                s.query_row(
                    params![queue, group, from, rate.max.saturating_sub(1)],
                    |r| r.get(0),
                )
                .optional()
            })
            .map_err(sql_err)?;
        if let Some(at) = oldest_counted {
            return Ok((
                false,
                Some(Timestamp::from_millis(at).saturating_add(rate.per)),
            ));
        }
    }
    Ok((true, None))
}

/// The starts one reserve logs for the group rate of a queue.
struct StartLog<'a> {
    queue: &'a str,
    rate: RateLimit,
    now: Timestamp,
    /// Whether the starts that left the window were deleted yet (by the first start).
    pruned: bool,
}

impl<'a> StartLog<'a> {
    fn new(queue: &'a str, rate: RateLimit, now: Timestamp) -> Self {
        StartLog {
            queue,
            rate,
            now,
            pruned: false,
        }
    }

    /// Logs a start of `group`; the first of a reserve also forgets the queue's starts that
    /// left the window, so the log holds about one window's starts.
    fn start(&mut self, conn: &Connection, group: &str) -> Result<()> {
        if !self.pruned {
            let from = self.now.saturating_sub(self.rate.per).as_millis();
            exec(conn, sql::FORGET_OLD_STARTS, params![self.queue, from])?;
            self.pruned = true;
        }
        exec(
            conn,
            sql::LOG_GROUP_START,
            params![self.queue, group, self.now.as_millis()],
        )?;
        Ok(())
    }
}

/// Deletes the group start log of `queue` (its limits no longer have a group rate).
pub(super) fn forget_group_starts(conn: &Connection, queue: &str) -> Result<()> {
    exec(
        conn,
        "DELETE FROM kosh_group_starts WHERE queue = ?1",
        [queue],
    )?;
    Ok(())
}

/// Whether a group of `queue` has a ready job that the group limits of `limits` let start at
/// `now`; if none has, the time the first rate window of a group with ready jobs opens (if
/// one is held back by its window). Visits the groups with ready jobs by key, one seek each
/// (and one more per limit), until one has room: at most one more than the groups at their
/// limits.
pub(super) fn startable_group(
    conn: &Connection,
    queue: &str,
    limits: &QueueLimits,
    now: Timestamp,
) -> Result<(bool, Option<Timestamp>)> {
    let mut next = conn
        .prepare_cached(sql::NEXT_READY_GROUP)
        .map_err(sql_err)?;
    let mut after = String::new();
    let mut opens: Option<Timestamp> = None;
    while let Some(g) = next
        .query_row(params![queue, after], |r| r.get::<_, String>(0))
        .optional()
        .map_err(sql_err)?
    {
        match group_room(conn, queue, &g, limits, now)? {
            (true, _) => return Ok((true, None)),
            (false, at) => {
                if let Some(at) = at {
                    opens = Some(opens.map_or(at, |o| o.min(at)));
                }
                after = g;
            }
        }
    }
    Ok((false, opens))
}

/// The groups of `queue` with a ready job, by key: one seek each (for the admin readers).
pub(super) fn ready_groups(conn: &Connection, queue: &str) -> Result<Vec<String>> {
    let mut next = conn
        .prepare_cached(sql::NEXT_READY_GROUP)
        .map_err(sql_err)?;
    let mut out: Vec<String> = Vec::new();
    loop {
        let after = out.last().map_or("", String::as_str);
        match next
            .query_row(params![queue, after], |r| r.get(0))
            .optional()
            .map_err(sql_err)?
        {
            Some(g) => out.push(g),
            None => return Ok(out),
        }
    }
}

/// The groups of `queue` with a running job, how many groups may start no job at `now` (those
/// with `group_concurrency` or more running, and those whose rate window is full, whether or
/// not they have a job left, each counted once), and the ready jobs of those groups (due
/// scheduled jobs included), each group's counted up to [`TOTAL_BOUND`]. Reads the running
/// grouped jobs, under a group rate the window's starts, and for each group at its limit at
/// most `TOTAL_BOUND + 1` entries of its ready index; the queue's due grouped jobs (see
/// [`sql::DUE_GROUPS`]) only if a group is at its limit. For the admin readers only.
pub(super) fn group_flows(
    conn: &Connection,
    queue: &str,
    limits: &QueueLimits,
    now: Timestamp,
) -> Result<(u64, u64, u64)> {
    let mut stmt = conn
        .prepare_cached(sql::RUNNING_GROUP_COUNTS)
        .map_err(sql_err)?;
    let mut rows = stmt.query([queue]).map_err(sql_err)?;
    let mut running = 0;
    let mut blocked: BTreeSet<String> = BTreeSet::new();
    while let Some(r) = rows.next().map_err(sql_err)? {
        let n: i64 = r.get(1).map_err(sql_err)?;
        running += 1;
        if limits.group_concurrency.is_some_and(|k| n >= i64::from(k)) {
            blocked.insert(r.get(0).map_err(sql_err)?);
        }
    }
    if let Some(rate) = limits.group_rate {
        let from = now.saturating_sub(rate.per).as_millis();
        let mut full = conn.prepare_cached(sql::FULL_WINDOWS).map_err(sql_err)?;
        let mut rows = full
            .query(params![queue, from, rate.max])
            .map_err(sql_err)?;
        while let Some(r) = rows.next().map_err(sql_err)? {
            blocked.insert(r.get(0).map_err(sql_err)?);
        }
    }
    let mut held = 0;
    if !blocked.is_empty() {
        let due = due_groups(conn, queue, now, "", usize::MAX)?;
        for g in &blocked {
            held += ready_in_group(conn, queue, g, due.get(g).copied().unwrap_or(0))?.count;
        }
    }
    Ok((running, blocked.len() as u64, held))
}

/// The groups of `queue` after `after` (by key) with scheduled jobs due at `now`, the first
/// `limit`, each with how many.
fn due_groups(
    conn: &Connection,
    queue: &str,
    now: Timestamp,
    after: &str,
    limit: usize,
) -> Result<BTreeMap<String, u64>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(sql::DUE_GROUPS).map_err(sql_err)?;
    let mut rows = stmt
        .query(params![queue, now.as_millis(), after, limit])
        .map_err(sql_err)?;
    let mut out = BTreeMap::new();
    while let Some(r) = rows.next().map_err(sql_err)? {
        let n: i64 = r.get(1).map_err(sql_err)?;
        out.insert(r.get(0).map_err(sql_err)?, u64::try_from(n).unwrap_or(0));
    }
    Ok(out)
}

/// The ready jobs of group `group` of `queue`, `due` of its scheduled jobs being due: exact
/// up to [`TOTAL_BOUND`], reading at most `TOTAL_BOUND + 1` entries of its ready index.
fn ready_in_group(conn: &Connection, queue: &str, group: &str, due: u64) -> Result<Total> {
    let n: i64 = conn
        .prepare_cached(sql::GROUP_READY_UP_TO)
        .and_then(|mut s| {
            s.query_row(
                params![
                    queue,
                    group,
                    i64::try_from(TOTAL_BOUND + 1).unwrap_or(i64::MAX)
                ],
                |r| r.get(0),
            )
        })
        .map_err(sql_err)?;
    let n = u64::try_from(n).unwrap_or(0).saturating_add(due);
    Ok(Total {
        count: n.min(TOTAL_BOUND),
        exact: n <= TOTAL_BOUND,
    })
}

/// The next key after `after` that the seek `stmt` (of the queue, `after`, and `from` if
/// given) finds.
fn next_key(
    stmt: &mut CachedStatement<'_>,
    queue: &str,
    after: &str,
    from: Option<i64>,
) -> Result<Option<String>> {
    let found = match from {
        Some(from) => stmt.query_row(params![queue, after, from], |r| r.get(0)),
        None => stmt.query_row(params![queue, after], |r| r.get(0)),
    };
    found.optional().map_err(sql_err)
}

/// One page of the groups of `query.queue` (see [`kosh_jobs_core::Backend::queue_groups`]),
/// read from one snapshot.
///
/// The page's keys merge four sources, each walked by key from `query.after`: the groups with
/// a ready job, with a running job, with a start inside the group rate window (one seek per
/// group each), and with a due scheduled job ([`sql::DUE_GROUPS`], one read). It stops at one
/// group past the page, so each source gives at most `limit + 1` keys. Then for each group of
/// the page: its ready jobs (at most `TOTAL_BOUND + 1` index entries), its running jobs, its
/// starts in the window, and its room as a reserve sees it ([`group_room`]).
pub(super) fn group_page(
    conn: &Connection,
    query: &GroupQuery,
    now: Timestamp,
) -> Result<GroupPage> {
    validate_queue_name(&query.queue).map_err(SqliteError::InvalidInput)?;
    // A savepoint is a read transaction on the reader, and nests in the writer's
    // transaction (an in-memory database has no reader).
    conn.execute_batch("SAVEPOINT kosh_groups")
        .map_err(sql_err)?;
    let result = group_page_now(conn, query, now);
    let end = conn.execute_batch("RELEASE kosh_groups").map_err(sql_err);
    let page = result?;
    end?;
    Ok(page)
}

fn group_page_now(conn: &Connection, query: &GroupQuery, now: Timestamp) -> Result<GroupPage> {
    let queue = query.queue.as_str();
    let limits = super::limits::flow_of(conn, queue)?.map_or(QueueLimits::NONE, |f| f.limits);
    let window_from = limits
        .group_rate
        .map(|rate| now.saturating_sub(rate.per).as_millis());
    let limit = query.effective_limit();
    let after = query.after.as_deref().unwrap_or("");

    let due = due_groups(conn, queue, now, after, limit + 1)?;
    let mut next_ready = conn
        .prepare_cached(sql::NEXT_READY_GROUP)
        .map_err(sql_err)?;
    let mut next_running = conn
        .prepare_cached(sql::NEXT_RUNNING_GROUP)
        .map_err(sql_err)?;
    let mut next_started = conn
        .prepare_cached(sql::NEXT_STARTED_GROUP)
        .map_err(sql_err)?;
    let mut ready = next_key(&mut next_ready, queue, after, None)?;
    let mut running = next_key(&mut next_running, queue, after, None)?;
    let mut started = match window_from {
        Some(from) => next_key(&mut next_started, queue, after, Some(from))?,
        None => None,
    };
    let mut due_keys = due.keys().peekable();
    let mut keys: Vec<String> = Vec::new();
    while keys.len() <= limit {
        let Some(key) = [
            ready.as_deref(),
            running.as_deref(),
            started.as_deref(),
            due_keys.peek().map(|k| k.as_str()),
        ]
        .into_iter()
        .flatten()
        .min()
        .map(str::to_owned) else {
            break;
        };
        if ready.as_deref() == Some(key.as_str()) {
            ready = next_key(&mut next_ready, queue, &key, None)?;
        }
        if running.as_deref() == Some(key.as_str()) {
            running = next_key(&mut next_running, queue, &key, None)?;
        }
        if started.as_deref() == Some(key.as_str()) {
            started = next_key(&mut next_started, queue, &key, window_from)?;
        }
        if due_keys.peek().is_some_and(|k| **k == key) {
            due_keys.next();
        }
        keys.push(key);
    }
    let more = keys.len() > limit;
    keys.truncate(limit);

    let mut starts = conn.prepare_cached(sql::GROUP_STARTS).map_err(sql_err)?;
    let mut groups = Vec::with_capacity(keys.len());
    for group in keys {
        let starts_in_window = match window_from {
            Some(from) => {
                let n: i64 = starts
                    .query_row(params![queue, group, from], |r| r.get(0))
                    .map_err(sql_err)?;
                u64::try_from(n).unwrap_or(0)
            }
            None => 0,
        };
        let (room, next_start_at) = group_room(conn, queue, &group, &limits, now)?;
        groups.push(GroupFlow {
            ready: ready_in_group(conn, queue, &group, due.get(&group).copied().unwrap_or(0))?,
            running: group_running(conn, queue, &group)?,
            starts_in_window,
            at_limit: !room,
            next_start_at,
            group,
        });
    }
    let next = if more {
        groups.last().map(|g| g.group.clone())
    } else {
        None
    };
    Ok(GroupPage { groups, next })
}
