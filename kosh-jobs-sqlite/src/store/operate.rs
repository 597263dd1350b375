//! The admin contract: search, actions, throughput, live workers, queue latency.

use std::collections::HashMap;
use std::time::Duration;

use kosh_jobs_core::admin::{
    minute_of, ActionResult, AdminAction, IdPage, LiveWorker, Order, SearchPage, SearchQuery,
    ThroughputPoint, ThroughputQuery, Total, WorkerInfo, MAX_ACTION_IDS, TOTAL_BOUND,
};
use kosh_jobs_core::backend::validate_queue_name;
use kosh_jobs_core::{BackendError, CancelOutcome, JobId, JobState, RetryOutcome, Timestamp};
use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension};

use super::admin::{cancel_job, look, raise_id_floor, retry_job};
use super::groups;
use super::row::{self, db_id};
use super::{exec, read, sql_err, Effects};
use crate::error::{Result, SqliteError};

/// An error of the core's checks as this crate's.
fn invalid(e: BackendError) -> SqliteError {
    match e {
        BackendError::InvalidInput(m) => SqliteError::InvalidInput(m),
        other => SqliteError::InvalidInput(other.to_string()),
    }
}

// ---- Search ----

/// Whether a row matches a filter, as [`kosh_jobs_core::admin::JobFilter::matches`]: ?2 the
/// states as `,a,b,` (NULL: any), ?3 now (a due scheduled job is ready), ?4 queue, ?5 name,
/// ?6/?7 created range, ?8 whether the finished range is set, ?9/?10 its ends, ?11 the search
/// text in ASCII lowercase. SQLite's `lower` folds ASCII only, as the filter does; `instr`
/// takes the text literally (no `LIKE` wildcards); errors are searched in their decoded
/// text, not in the JSON that stores them.
const MATCHES: &str = "(?2 IS NULL OR instr(?2, ',' || CASE WHEN state = 'scheduled' \
     AND run_at <= ?3 THEN 'ready' ELSE state END || ',') > 0) \
     AND (?4 IS NULL OR queue = ?4) AND (?5 IS NULL OR name = ?5) \
     AND (?6 IS NULL OR created_at >= ?6) AND (?7 IS NULL OR created_at < ?7) \
     AND (NOT ?8 OR (finished_at IS NOT NULL AND (?9 IS NULL OR finished_at >= ?9) \
          AND (?10 IS NULL OR finished_at < ?10))) \
     AND (?11 IS NULL OR instr(lower(payload), ?11) > 0 \
          OR instr(lower(coalesce(unique_key, '')), ?11) > 0 \
          OR (errors IS NOT NULL AND EXISTS (SELECT 1 FROM json_each(errors) \
              WHERE instr(lower(json_extract(value, '$.error')), ?11) > 0)))";

/// Every job past id ?1 in id order, with whether it matches.
fn scan_sql(order: Order) -> String {
    match order {
        Order::OldestFirst => {
            format!("SELECT id, {MATCHES} FROM kosh_jobs WHERE id > ?1 ORDER BY id")
        }
        Order::NewestFirst => {
            format!("SELECT id, {MATCHES} FROM kosh_jobs WHERE id < ?1 ORDER BY id DESC")
        }
    }
}

/// The parameters ?2.. of [`MATCHES`].
fn match_params(q: &SearchQuery, now: Timestamp) -> Vec<Value> {
    let f = &q.filter;
    let ms = |t: Option<Timestamp>| t.map_or(Value::Null, |t| Value::Integer(t.as_millis()));
    let text = |s: &Option<String>| s.clone().map_or(Value::Null, Value::Text);
    let states = if f.states.is_empty() {
        Value::Null
    } else {
        let mut s = String::from(",");
        for st in &f.states {
            s.push_str(st.as_str());
            s.push(',');
        }
        Value::Text(s)
    };
    vec![
        states,
        Value::Integer(now.as_millis()),
        text(&f.queue),
        text(&f.name),
        ms(f.created.from),
        ms(f.created.until),
        Value::Integer(i64::from(!f.finished.is_open())),
        ms(f.finished.from),
        ms(f.finished.until),
        text(&f.search.as_ref().map(|s| s.to_ascii_lowercase())),
    ]
}

/// The cursor as a stored id bound for `order`.
fn start_after(q: &SearchQuery) -> i64 {
    match (q.order, q.after) {
        (Order::OldestFirst, None) => 0,
        (Order::NewestFirst, None) => i64::MAX,
        (_, Some(a)) => db_id(a).unwrap_or(i64::MAX),
    }
}

/// One page of a search (see [`kosh_jobs_core::Backend::search`]), read from one snapshot
/// of the database: the page's ids, its total and its records agree with each other. One
/// read transaction for the whole page, not one per record: on the reader, each transaction
/// of its own takes the WAL's shared-memory locks again and, whenever the writer committed
/// since, throws away the connection's page cache.
pub(super) fn search(conn: &Connection, q: &SearchQuery, now: Timestamp) -> Result<SearchPage> {
    in_snapshot(conn, || {
        let page = search_ids_now(conn, q, now)?;
        let mut jobs = Vec::with_capacity(page.ids.len());
        for id in page.ids {
            // Read in the snapshot the ids came from: every one is there.
            if let Some(job) = read::get(conn, id, now)? {
                jobs.push(job);
            }
        }
        Ok(SearchPage {
            jobs,
            next: page.next,
            examined: page.examined,
            total: page.total,
        })
    })
}

/// The ids of one page of a search (see [`kosh_jobs_core::Backend::search_ids`]): the page
/// of [`search`] without reading a record, from one snapshot too.
pub(super) fn search_ids(conn: &Connection, q: &SearchQuery, now: Timestamp) -> Result<IdPage> {
    in_snapshot(conn, || search_ids_now(conn, q, now))
}

/// Runs `f` in one read transaction (a savepoint: a read transaction on the reader, nested
/// in the writer's transaction on an in-memory database, which has no reader).
fn in_snapshot<T>(conn: &Connection, f: impl FnOnce() -> Result<T>) -> Result<T> {
    exec(conn, "SAVEPOINT kosh_search", [])?;
    let result = f();
    let end = exec(conn, "RELEASE kosh_search", []);
    let out = result?;
    end?;
    Ok(out)
}

fn search_ids_now(conn: &Connection, q: &SearchQuery, now: Timestamp) -> Result<IdPage> {
    q.filter.validate().map_err(invalid)?;
    let total = if q.with_total {
        Some(if q.filter.is_indexed() {
            indexed_total(conn, q, now)?
        } else {
            scan_total(conn, q, now)?
        })
    } else {
        None
    };
    let (ids, next, examined) = if q.filter.is_indexed() {
        indexed_page(conn, q, now)?
    } else {
        scan_page(conn, q, now)?
    };
    Ok(IdPage {
        ids,
        next,
        examined,
        total,
    })
}

/// A filter that is not indexed: the jobs from the cursor in id order, each checked, until
/// the page is full or the budget is spent.
fn scan_page(
    conn: &Connection,
    q: &SearchQuery,
    now: Timestamp,
) -> Result<(Vec<JobId>, Option<JobId>, u64)> {
    let (limit, budget) = (q.effective_limit(), q.effective_budget());
    let mut stmt = conn.prepare_cached(&scan_sql(q.order)).map_err(sql_err)?;
    let mut p = vec![Value::Integer(start_after(q))];
    p.extend(match_params(q, now));
    let mut rows = stmt.query(rusqlite::params_from_iter(p)).map_err(sql_err)?;
    let (mut ids, mut examined, mut last, mut exhausted) = (Vec::new(), 0usize, None, true);
    while let Some(r) = rows.next().map_err(sql_err)? {
        if ids.len() >= limit || examined >= budget {
            exhausted = false;
            break;
        }
        let id: i64 = r.get(0).map_err(sql_err)?;
        let matched: bool = r.get(1).map_err(sql_err)?;
        examined += 1;
        last = Some(id);
        if matched {
            ids.push(row::job_id(id)?);
        }
    }
    let next = match (exhausted, last) {
        (false, Some(id)) => Some(row::job_id(id)?),
        _ => None,
    };
    Ok((ids, next, examined as u64))
}

/// The matches of a filter that is not indexed, from the first job: at most the budget
/// examined, counting stops at [`TOTAL_BOUND`].
fn scan_total(conn: &Connection, q: &SearchQuery, now: Timestamp) -> Result<Total> {
    let budget = q.effective_budget();
    let mut stmt = conn
        .prepare_cached(&scan_sql(Order::OldestFirst))
        .map_err(sql_err)?;
    let mut p = vec![Value::Integer(0)];
    p.extend(match_params(q, now));
    let mut rows = stmt.query(rusqlite::params_from_iter(p)).map_err(sql_err)?;
    let (mut count, mut examined) = (0u64, 0usize);
    while let Some(r) = rows.next().map_err(sql_err)? {
        if examined >= budget || count >= TOTAL_BOUND {
            return Ok(Total {
                count,
                exact: false,
            });
        }
        examined += 1;
        if r.get::<_, bool>(1).map_err(sql_err)? {
            count += 1;
        }
    }
    Ok(Total { count, exact: true })
}

/// Where the jobs of an effective state are stored, each in id order per queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// `ready` without a group: the ready index, one range per queue and priority.
    Ready,
    /// `ready` in a group: the grouped ready index, one range per queue, group and priority.
    ReadyGrouped,
    /// `scheduled`, with a condition on `run_at` (0: any, 1: due, 2: not due), since a due
    /// scheduled job is ready: the scheduled-ids index.
    Scheduled(i64),
    /// `running`: the few leased jobs, through the lease index.
    Running,
    /// A final state: the final index.
    Final(&'static str),
}

/// The stored kinds that hold the jobs of `states`.
fn kinds(states: &[JobState]) -> Vec<Kind> {
    let takes = |s| states.contains(&s);
    let mut out = Vec::new();
    for s in JobState::ALL.into_iter().filter(|s| takes(*s)) {
        match s {
            JobState::Ready => {
                out.push(Kind::Ready);
                out.push(Kind::ReadyGrouped);
                if !takes(JobState::Scheduled) {
                    out.push(Kind::Scheduled(1));
                }
            }
            JobState::Scheduled if takes(JobState::Ready) => out.push(Kind::Scheduled(0)),
            JobState::Scheduled => out.push(Kind::Scheduled(2)),
            JobState::Running => out.push(Kind::Running),
            other => out.push(Kind::Final(other.as_str())),
        }
    }
    out
}

/// The queue after ?1 with jobs of a kind: one seek in its index (a skip scan).
pub(super) fn next_queue_sql(kind: Kind) -> &'static str {
    match kind {
        Kind::Ready => {
            "SELECT queue FROM kosh_jobs WHERE state = 'ready' AND grp IS NULL AND queue > ?1 \
             ORDER BY queue LIMIT 1"
        }
        Kind::ReadyGrouped => {
            "SELECT queue FROM kosh_jobs WHERE state = 'ready' AND grp IS NOT NULL \
             AND queue > ?1 ORDER BY queue LIMIT 1"
        }
        Kind::Scheduled(_) => {
            "SELECT queue FROM kosh_jobs INDEXED BY kosh_jobs_scheduled_ids \
             WHERE state = 'scheduled' AND queue > ?1 ORDER BY queue LIMIT 1"
        }
        Kind::Running | Kind::Final(_) => {
            "SELECT queue FROM kosh_jobs INDEXED BY kosh_jobs_final \
             WHERE finished_at IS NOT NULL AND queue > ?1 ORDER BY queue LIMIT 1"
        }
    }
}

/// The filter's queue, or every queue with jobs of `kind`.
fn queues(conn: &Connection, kind: Kind, queue: Option<&String>) -> Result<Vec<String>> {
    if let Some(q) = queue {
        return Ok(vec![q.clone()]);
    }
    let mut stmt = conn.prepare_cached(next_queue_sql(kind)).map_err(sql_err)?;
    let mut out: Vec<String> = Vec::new();
    loop {
        let after = out.last().map_or("", String::as_str);
        match stmt
            .query_row([after], |r| r.get(0))
            .optional()
            .map_err(sql_err)?
        {
            Some(q) => out.push(q),
            None => return Ok(out),
        }
    }
}

/// The priority levels of a queue's ready jobs without a group, highest first: one seek each.
pub(super) const NEXT_PRIORITY: &str = "SELECT priority FROM kosh_jobs \
     WHERE state = 'ready' AND grp IS NULL AND queue = ?1 AND priority < ?2 \
     ORDER BY priority DESC LIMIT 1";

/// The priority levels of the ready jobs of group ?2 of queue ?1 below ?3, highest first:
/// one seek each.
pub(super) const NEXT_GROUP_PRIORITY: &str = "SELECT priority FROM kosh_jobs \
     WHERE state = 'ready' AND grp IS NOT NULL AND queue = ?1 AND grp = ?2 AND priority < ?3 \
     ORDER BY priority DESC LIMIT 1";

/// The SQL of one id range of `kind` past the cursor, in `order`.
/// Ready: ?1 queue, ?2 priority, ?3 cursor, ?4 limit. Ready in a group: ?1 queue, ?2 group,
/// ?3 priority, ?4 cursor, ?5 limit. Scheduled: ?1 queue, ?2 cursor,
/// ?3 run_at condition, ?4 now, ?5 limit. Final: ?1 queue, ?2 state, ?3 cursor, ?4 limit.
/// Running: every running job (few), filtered in Rust.
pub(super) fn range_sql(kind: Kind, order: Order) -> String {
    let (cmp, dir) = match order {
        Order::OldestFirst => (">", "ASC"),
        Order::NewestFirst => ("<", "DESC"),
    };
    match kind {
        Kind::Ready => format!(
            "SELECT id FROM kosh_jobs WHERE state = 'ready' AND grp IS NULL AND queue = ?1 \
             AND priority = ?2 AND id {cmp} ?3 ORDER BY id {dir} LIMIT ?4"
        ),
        Kind::ReadyGrouped => format!(
            "SELECT id FROM kosh_jobs WHERE state = 'ready' AND grp IS NOT NULL AND queue = ?1 \
             AND grp = ?2 AND priority = ?3 AND id {cmp} ?4 ORDER BY id {dir} LIMIT ?5"
        ),
        Kind::Scheduled(_) => format!(
            "SELECT id FROM kosh_jobs INDEXED BY kosh_jobs_scheduled_ids \
             WHERE state = 'scheduled' AND queue = ?1 AND id {cmp} ?2 \
             AND (?3 = 0 OR (?3 = 1 AND run_at <= ?4) OR (?3 = 2 AND run_at > ?4)) \
             ORDER BY id {dir} LIMIT ?5"
        ),
        Kind::Final(_) => format!(
            "SELECT id FROM kosh_jobs INDEXED BY kosh_jobs_final \
             WHERE finished_at IS NOT NULL AND queue = ?1 AND state = ?2 AND id {cmp} ?3 \
             ORDER BY id {dir} LIMIT ?4"
        ),
        Kind::Running => "SELECT id, queue FROM kosh_jobs \
             WHERE state = 'running' AND lease_expires_at IS NOT NULL"
            .to_owned(),
    }
}

/// The running jobs (of `queue`, if set), by id.
fn running(conn: &Connection, queue: Option<&String>) -> Result<Vec<i64>> {
    let mut stmt = conn
        .prepare_cached(&range_sql(Kind::Running, Order::OldestFirst))
        .map_err(sql_err)?;
    let mut rows = stmt.query([]).map_err(sql_err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(sql_err)? {
        let q: String = r.get(1).map_err(sql_err)?;
        if queue.is_none_or(|want| *want == q) {
            out.push(r.get(0).map_err(sql_err)?);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Reads rows of one id column into `out`.
fn collect_ids(
    stmt: &mut rusqlite::CachedStatement<'_>,
    params: impl rusqlite::Params,
    out: &mut Vec<i64>,
) -> Result<()> {
    let mut rows = stmt.query(params).map_err(sql_err)?;
    while let Some(r) = rows.next().map_err(sql_err)? {
        out.push(r.get(0).map_err(sql_err)?);
    }
    Ok(())
}

/// An indexed filter: for each kind and queue, the id range past the cursor (at most one
/// more than the page), merged by id; only the page's jobs are read in full.
fn indexed_page(
    conn: &Connection,
    q: &SearchQuery,
    now: Timestamp,
) -> Result<(Vec<JobId>, Option<JobId>, u64)> {
    let limit = q.effective_limit();
    let after = start_after(q);
    let take = i64::try_from(limit + 1).unwrap_or(i64::MAX);
    let queue = q.filter.queue.as_ref();
    let mut ids: Vec<i64> = Vec::new();
    for kind in kinds(&q.filter.state_list()) {
        if kind == Kind::Running {
            let mut run = running(conn, queue)?;
            if q.order == Order::NewestFirst {
                run.reverse();
            }
            ids.extend(
                run.into_iter()
                    .filter(|&id| match q.order {
                        Order::OldestFirst => id > after,
                        Order::NewestFirst => id < after,
                    })
                    .take(limit + 1),
            );
            continue;
        }
        let mut stmt = conn
            .prepare_cached(&range_sql(kind, q.order))
            .map_err(sql_err)?;
        for qn in queues(conn, kind, queue)? {
            match kind {
                Kind::Ready => {
                    let mut levels = conn.prepare_cached(NEXT_PRIORITY).map_err(sql_err)?;
                    let mut below = i64::MAX;
                    while let Some(p) = levels
                        .query_row(params![qn, below], |r| r.get::<_, i64>(0))
                        .optional()
                        .map_err(sql_err)?
                    {
                        collect_ids(&mut stmt, params![qn, p, after, take], &mut ids)?;
                        below = p;
                    }
                }
                Kind::ReadyGrouped => {
                    // One range per group and priority (see `kosh_jobs_ready_grouped`).
                    let mut levels = conn.prepare_cached(NEXT_GROUP_PRIORITY).map_err(sql_err)?;
                    for g in groups::ready_groups(conn, &qn)? {
                        let mut below = i64::MAX;
                        while let Some(p) = levels
                            .query_row(params![qn, g, below], |r| r.get::<_, i64>(0))
                            .optional()
                            .map_err(sql_err)?
                        {
                            collect_ids(&mut stmt, params![qn, g, p, after, take], &mut ids)?;
                            below = p;
                        }
                    }
                }
                Kind::Scheduled(cond) => collect_ids(
                    &mut stmt,
                    params![qn, after, cond, now.as_millis(), take],
                    &mut ids,
                )?,
                Kind::Final(state) => {
                    collect_ids(&mut stmt, params![qn, state, after, take], &mut ids)?
                }
                Kind::Running => {}
            }
        }
    }
    match q.order {
        Order::OldestFirst => ids.sort_unstable(),
        Order::NewestFirst => ids.sort_unstable_by(|a, b| b.cmp(a)),
    }
    let more = ids.len() > limit;
    ids.truncate(limit);
    let next = match (more, ids.last()) {
        (true, Some(&id)) => Some(row::job_id(id)?),
        _ => None,
    };
    let ids = ids
        .into_iter()
        .map(row::job_id)
        .collect::<Result<Vec<_>>>()?;
    let examined = ids.len() as u64;
    Ok((ids, next, examined))
}

/// The stored count (`kosh_counts`) of state ?1 in each queue, or in queue ?2 only.
pub(super) const STORED_COUNTS: &str = "SELECT queue, n FROM kosh_counts \
     WHERE state = ?1 AND n > 0 AND (?2 IS NULL OR queue = ?2)";

/// The exact count of an indexed filter, from the stored counts; due scheduled jobs (ready
/// to readers) are counted in their index.
fn indexed_total(conn: &Connection, q: &SearchQuery, now: Timestamp) -> Result<Total> {
    let queue = q.filter.queue.as_ref();
    let mut stmt = conn.prepare_cached(STORED_COUNTS).map_err(sql_err)?;
    let mut stored = |state: &str| -> Result<Vec<(String, u64)>> {
        let rows = stmt
            .query_map(params![state, queue], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .map_err(sql_err)?;
        rows.map(|r| {
            r.map(|(q, n)| (q, u64::try_from(n).unwrap_or(0)))
                .map_err(sql_err)
        })
        .collect()
    };
    let mut count = 0u64;
    for kind in kinds(&q.filter.state_list()) {
        let state = match kind {
            // Stored with the ready ones: few, one per lease.
            Kind::Running => {
                count += running(conn, queue)?.len() as u64;
                continue;
            }
            // Counted with the ready jobs without a group, in the stored counts.
            Kind::ReadyGrouped => continue,
            Kind::Ready => {
                let leased = running(conn, queue)?.len() as u64;
                let stored: u64 = stored("ready")?.iter().map(|(_, n)| n).sum();
                count += stored.saturating_sub(leased);
                continue;
            }
            Kind::Scheduled(_) => "scheduled",
            Kind::Final(state) => state,
        };
        for (qn, n) in stored(state)? {
            count += match kind {
                Kind::Scheduled(1) => read::due_count(conn, &qn, now)?.min(n),
                Kind::Scheduled(2) => n - read::due_count(conn, &qn, now)?.min(n),
                _ => n,
            };
        }
    }
    Ok(Total { count, exact: true })
}

// ---- Actions ----

/// Applies an action to jobs by id (see [`kosh_jobs_core::Backend::apply`]).
pub(super) fn apply(
    conn: &Connection,
    action: AdminAction,
    ids: &[JobId],
    only: &[JobState],
    now: Timestamp,
    fx: &mut Effects,
) -> Result<Vec<ActionResult>> {
    if ids.len() > MAX_ACTION_IDS {
        return Err(SqliteError::InvalidInput(format!(
            "{action}: at most {MAX_ACTION_IDS} jobs per call, not {}",
            ids.len()
        )));
    }
    let mut floor_raised = false;
    let mut out = Vec::with_capacity(ids.len());
    for &id in ids {
        let Some(dbid) = db_id(id) else {
            out.push(ActionResult::NotFound);
            continue;
        };
        let Some(job) = look(conn, dbid, now)? else {
            out.push(ActionResult::NotFound);
            continue;
        };
        let state = job.state;
        if !action.applies_to(state) || (!only.is_empty() && !only.contains(&state)) {
            out.push(ActionResult::Skipped(state));
            continue;
        }
        // Retry and cancel take the job as just read: one look-up per job.
        out.push(match action {
            AdminAction::Retry => match retry_job(conn, dbid, job, now, fx)? {
                RetryOutcome::Retried => ActionResult::Applied,
                RetryOutcome::NotFound => ActionResult::NotFound,
                RetryOutcome::NotRetryable(s) => ActionResult::Skipped(s),
                RetryOutcome::UniqueConflict(holder) => ActionResult::UniqueConflict(holder),
            },
            AdminAction::Cancel => match cancel_job(conn, dbid, job, now, fx)? {
                CancelOutcome::Cancelled => ActionResult::Applied,
                CancelOutcome::NotFound => ActionResult::NotFound,
                CancelOutcome::AlreadyFinal(s) => ActionResult::Skipped(s),
            },
            AdminAction::Delete => {
                if !floor_raised {
                    raise_id_floor(conn)?;
                    floor_raised = true;
                }
                exec(conn, "DELETE FROM kosh_jobs WHERE id = ?1", [dbid])?;
                fx.count(&job.queue, job.stored, -1);
                ActionResult::Applied
            }
            AdminAction::Promote => {
                let n = exec(
                    conn,
                    "UPDATE kosh_jobs SET state = 'ready', run_at = ?2 \
                     WHERE id = ?1 AND state = 'scheduled'",
                    params![dbid, now.as_millis()],
                )?;
                if let (Some(g), 1) = (&job.group, n) {
                    groups::group_ready(conn, &job.queue, g)?;
                }
                fx.moved(&job.queue, JobState::Scheduled, JobState::Ready, n as i64);
                fx.wake(&job.queue);
                ActionResult::Applied
            }
        });
    }
    Ok(out)
}

// ---- Throughput ----

/// Completed and failed jobs per queue per minute (see
/// [`kosh_jobs_core::Backend::throughput`]).
pub(super) fn throughput(conn: &Connection, q: &ThroughputQuery) -> Result<Vec<ThroughputPoint>> {
    if let Some(name) = &q.queue {
        validate_queue_name(name).map_err(SqliteError::InvalidInput)?;
    }
    let mut stmt = conn
        .prepare_cached(
            "SELECT queue, minute, completed, failed FROM kosh_throughput \
             WHERE (?1 IS NULL OR queue = ?1) AND minute >= ?2 \
             AND (completed > 0 OR failed > 0) ORDER BY queue, minute",
        )
        .map_err(sql_err)?;
    let mut rows = stmt
        .query(params![q.queue, minute_of(q.since).as_millis()])
        .map_err(sql_err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(sql_err)? {
        let n = |i: usize| -> Result<u64> {
            Ok(u64::try_from(r.get::<_, i64>(i).map_err(sql_err)?).unwrap_or(0))
        };
        out.push(ThroughputPoint {
            queue: r.get(0).map_err(sql_err)?,
            minute: Timestamp::from_millis(r.get(1).map_err(sql_err)?),
            completed: n(2)?,
            failed: n(3)?,
        });
    }
    Ok(out)
}

// ---- Workers ----

/// Registers or refreshes a worker until `now + ttl`; drops lapsed registrations.
pub(super) fn register_worker(
    conn: &Connection,
    info: &WorkerInfo,
    ttl: Duration,
    now: Timestamp,
) -> Result<()> {
    let json = serde_json::to_string(info)
        .map_err(|e| SqliteError::InvalidInput(format!("worker info: {e}")))?;
    exec(
        conn,
        "DELETE FROM kosh_workers WHERE expires_at <= ?1",
        [now.as_millis()],
    )?;
    exec(
        conn,
        "INSERT INTO kosh_workers (id, info, last_seen, expires_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (id) DO UPDATE SET info = excluded.info, last_seen = excluded.last_seen, \
         expires_at = excluded.expires_at",
        params![
            info.id,
            json,
            now.as_millis(),
            now.saturating_add(ttl).as_millis()
        ],
    )?;
    Ok(())
}

/// Removes a worker's registration.
pub(super) fn deregister_worker(conn: &Connection, id: &str) -> Result<()> {
    exec(conn, "DELETE FROM kosh_workers WHERE id = ?1", [id])?;
    Ok(())
}

/// The live workers by id, each with the running jobs whose current attempt it holds.
pub(super) fn workers(conn: &Connection, now: Timestamp) -> Result<Vec<LiveWorker>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, info, last_seen FROM kosh_workers WHERE expires_at > ?1 ORDER BY id",
        )
        .map_err(sql_err)?;
    let mut rows = stmt.query([now.as_millis()]).map_err(sql_err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(sql_err)? {
        let id: String = r.get(0).map_err(sql_err)?;
        let info: String = r.get(1).map_err(sql_err)?;
        let info: WorkerInfo = serde_json::from_str(&info).map_err(|e| {
            SqliteError::InvalidInput(format!(
                "the registration of worker `{id}` is not valid: {e}"
            ))
        })?;
        out.push(LiveWorker {
            info,
            last_seen: Timestamp::from_millis(r.get(2).map_err(sql_err)?),
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
    // Running jobs, through the partial index of leases, with the worker of their current
    // attempt (NULL for a lease taken before schema version 2).
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, worker FROM kosh_jobs \
             WHERE state = 'running' AND lease_expires_at IS NOT NULL",
        )
        .map_err(sql_err)?;
    let mut rows = stmt.query([]).map_err(sql_err)?;
    while let Some(r) = rows.next().map_err(sql_err)? {
        let worker: Option<String> = r.get(1).map_err(sql_err)?;
        if let Some(&i) = worker.as_ref().and_then(|w| index.get(w)) {
            out[i].jobs.push(row::job_id(r.get(0).map_err(sql_err)?)?);
        }
    }
    for w in &mut out {
        w.jobs.sort_unstable();
    }
    Ok(out)
}

// ---- Latency ----

/// The first ready job without a group of queue ?1 with a priority below ?2: the head of the
/// next priority level.
pub(super) const READY_HEAD: &str = "SELECT priority, run_at FROM kosh_jobs \
     WHERE state = 'ready' AND grp IS NULL AND queue = ?1 AND priority < ?2 \
     ORDER BY priority DESC, id LIMIT 1";

/// The first ready job of group ?2 of queue ?1 with a priority below ?3: the head of the
/// group's next priority level.
pub(super) const GROUP_READY_HEAD: &str = "SELECT priority, run_at FROM kosh_jobs \
     WHERE state = 'ready' AND grp IS NOT NULL AND queue = ?1 AND grp = ?2 AND priority < ?3 \
     ORDER BY priority DESC, id LIMIT 1";

/// The earliest due (at ?2) scheduled job of queue ?1.
pub(super) const DUE_HEAD: &str = "SELECT run_at FROM kosh_jobs \
     WHERE state = 'scheduled' AND queue = ?1 AND run_at <= ?2 ORDER BY run_at LIMIT 1";

/// The earliest `run_at` among the ready jobs of `queue` as
/// [`JobRecord`](kosh_jobs_core::JobRecord)s show them: the head of each priority level of
/// the ready index (one seek per level), of each group's levels (one seek per group and
/// level), and the earliest due scheduled job.
pub(super) fn oldest_ready(
    conn: &Connection,
    queue: &str,
    now: Timestamp,
) -> Result<Option<Timestamp>> {
    let mut oldest: Option<i64> = None;
    let mut head = conn.prepare_cached(READY_HEAD).map_err(sql_err)?;
    let mut below = i64::MAX;
    while let Some((p, at)) = head
        .query_row(params![queue, below], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
        })
        .optional()
        .map_err(sql_err)?
    {
        oldest = Some(oldest.map_or(at, |o| o.min(at)));
        below = p;
    }
    let mut head = conn.prepare_cached(GROUP_READY_HEAD).map_err(sql_err)?;
    for g in groups::ready_groups(conn, queue)? {
        let mut below = i64::MAX;
        while let Some((p, at)) = head
            .query_row(params![queue, g, below], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
            })
            .optional()
            .map_err(sql_err)?
        {
            oldest = Some(oldest.map_or(at, |o| o.min(at)));
            below = p;
        }
    }
    let due: Option<i64> = conn
        .prepare_cached(DUE_HEAD)
        .and_then(|mut s| {
            s.query_row(params![queue, now.as_millis()], |r| r.get(0))
                .optional()
        })
        .map_err(sql_err)?;
    if let Some(at) = due {
        oldest = Some(oldest.map_or(at, |o| o.min(at)));
    }
    Ok(oldest.map(Timestamp::from_millis))
}
