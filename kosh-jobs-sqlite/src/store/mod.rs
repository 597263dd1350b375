//! The operations on the database, as data (so the writer can batch them) and as SQL.

mod admin;
pub(crate) mod events;
mod groups;
mod jobs;
mod limits;
mod operate;
mod read;
pub(crate) mod row;
mod schedules;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kosh_jobs_core::admin::{
    ActionResult, AdminAction, LiveWorker, SearchPage, SearchQuery, ThroughputPoint,
    ThroughputQuery, WorkerInfo,
};
use kosh_jobs_core::limits::{GroupPage, GroupQuery, QueueFlow, QueueLimits};
use kosh_jobs_core::{
    CancelOutcome, Enqueued, Finish, FinishResult, JobId, JobRecord, JobState, Lease, LeasedJob,
    ListQuery, NewJob, Page, QueueCounts, ReserveRequest, RetryOutcome, Timestamp,
};
use rusqlite::{Connection, OptionalExtension};

use kosh_jobs_core::schedule::{
    FireOutcome, Resumed, ScheduleDef, ScheduleFire, ScheduleRecord, Upserted,
};

use crate::error::{Result, SqliteError};

pub(crate) use admin::prune_completed;
pub(crate) use jobs::write_throughput;
pub(crate) use read::WaitInfo;

/// One operation, sent to the thread that owns the connection.
#[derive(Debug)]
pub(crate) enum Op {
    /// Does nothing; wakes the writer (e.g. so it starts polling for other processes).
    Nop,
    Push(Vec<NewJob>),
    Reserve(ReserveRequest),
    Finish(Vec<Finish>),
    Heartbeat(Vec<Lease>, Duration),
    Progress(Lease, String),
    Release(Vec<Lease>),
    Recover,
    Retry(JobId),
    Cancel(JobId),
    Purge(Vec<JobState>, Timestamp),
    Pause(String),
    Resume(String),
    SetLimits(String, QueueLimits),
    HoldQueue(String, Timestamp),
    Flows,
    /// One page of a queue's groups.
    Groups(GroupQuery),
    Get(JobId),
    Counts,
    List(ListQuery),
    WaitInfo(Vec<String>),
    Search(Box<SearchQuery>),
    SearchIds(Box<SearchQuery>),
    Apply(AdminAction, Vec<JobId>, Vec<JobState>),
    Throughput(ThroughputQuery),
    RegisterWorker(Box<WorkerInfo>, Duration),
    DeregisterWorker(String),
    Workers,
    UpsertSchedule(Box<ScheduleDef>, Option<Timestamp>),
    RemoveSchedule(String),
    PauseSchedule(String),
    ResumeSchedule(String, u64, Option<Timestamp>),
    Schedules,
    Schedule(String),
    DueSchedules(Timestamp, usize),
    FireSchedules(Vec<ScheduleFire>),
    /// Appends a batch of events (a JSON array).
    PublishEvents(String),
    /// Reads the event batches after a cursor (at most a limit).
    ReadEvents(i64, usize),
    /// Test only: runs SQL on the connection; answers the first column of its first row as a
    /// [`Response::Count`] (0 without rows).
    #[cfg(test)]
    Sql(String),
    /// Test only: sends on `arrived`, then holds the connection's thread (inside the batch's
    /// transaction) until `go` receives or its sender is dropped.
    #[cfg(test)]
    Hold {
        arrived: std::sync::mpsc::Sender<()>,
        go: std::sync::mpsc::Receiver<()>,
    },
}

impl Op {
    /// How many jobs the operation may touch: what a group-committed batch is limited by.
    pub(crate) fn weight(&self) -> usize {
        match self {
            Op::Push(v) => v.len(),
            Op::Reserve(r) => r.max,
            Op::Finish(v) => v.len(),
            Op::Heartbeat(v, _) | Op::Release(v) => v.len(),
            Op::Apply(_, ids, _) => ids.len(),
            Op::FireSchedules(f) => f.iter().map(|f| f.ticks.len().max(1)).sum(),
            _ => 1,
        }
        .max(1)
    }

    /// Whether the operation only reads.
    /// Whether the operation changes the database with at most one statement, run after
    /// everything else in it that can fail: if it fails, nothing of it remains (SQLite undoes
    /// a failed statement), so it needs no savepoint in a group commit. A finish of one job
    /// (reads its lease, then one `UPDATE`), a heartbeat of one lease, a progress report.
    pub(crate) fn is_one_change(&self) -> bool {
        match self {
            Op::Finish(items) => items.len() == 1,
            Op::Heartbeat(leases, _) => leases.len() == 1,
            Op::Progress(..) => true,
            _ => false,
        }
    }

    pub(crate) fn is_read(&self) -> bool {
        matches!(
            self,
            Op::Nop
                | Op::Get(_)
                | Op::Counts
                | Op::List(_)
                | Op::WaitInfo(_)
                | Op::Flows
                | Op::Groups(_)
                | Op::Search(_)
                | Op::SearchIds(_)
                | Op::Throughput(_)
                | Op::Workers
                | Op::Schedules
                | Op::Schedule(_)
                | Op::DueSchedules(..)
                | Op::ReadEvents(..)
        )
    }

    /// Whether nothing is lost by skipping the operation when its caller has gone away.
    pub(crate) fn skippable(&self) -> bool {
        self.is_read() || matches!(self, Op::Reserve(_))
    }
}

/// The answer to an [`Op`].
#[derive(Debug)]
pub(crate) enum Response {
    Unit,
    Enqueued(Vec<Enqueued>),
    Leased(Vec<LeasedJob>),
    Finished(Vec<FinishResult>),
    Leases(Vec<Lease>),
    Bool(bool),
    Count(u64),
    Retry(RetryOutcome),
    Cancel(CancelOutcome),
    Record(Option<Box<JobRecord>>),
    Counts(Vec<QueueCounts>),
    Page(Page),
    WaitInfo(WaitInfo),
    Flows(Vec<QueueFlow>),
    Groups(GroupPage),
    Search(Box<SearchPage>),
    Ids(kosh_jobs_core::admin::IdPage),
    Actions(Vec<ActionResult>),
    Throughput(Vec<ThroughputPoint>),
    Workers(Vec<LiveWorker>),
    Upserted(Upserted),
    Resumed(Resumed),
    Schedules(Vec<ScheduleRecord>),
    Schedule(Option<Box<ScheduleRecord>>),
    Fired(Vec<FireOutcome>),
    Events(events::EventRows),
}

/// The queue (and group) of jobs this connection leased, by id, so that finishing a job
/// needs no look-up of its row. An entry is never wrong (a job's queue and group never change
/// and ids are never reused), so it needs no undo when a transaction rolls back; a job
/// missing from it is looked up. Entries leave when their job is finished; the whole map is
/// cleared past [`LeasedQueues::MAX`] entries (leases lost to another process, or cancelled,
/// stay until then).
#[derive(Debug, Default)]
pub(crate) struct LeasedQueues {
    by_id: HashMap<i64, LeasedIn>,
}

/// Where a leased job belongs: its queue, and its group if it has one.
#[derive(Debug, Clone)]
pub(crate) struct LeasedIn {
    pub(crate) queue: Arc<str>,
    pub(crate) group: Option<Arc<str>>,
}

impl LeasedQueues {
    const MAX: usize = 1 << 16;

    /// Remembers jobs leased from `queue`, all in `group` (`None`: without a group).
    pub(crate) fn insert(&mut self, jobs: &[LeasedJob], queue: &str, group: Option<&str>) {
        if jobs.is_empty() {
            return;
        }
        if self.by_id.len() + jobs.len() > Self::MAX {
            self.by_id.clear();
        }
        let at = LeasedIn {
            queue: Arc::from(queue),
            group: group.map(Arc::from),
        };
        for id in jobs.iter().filter_map(|j| row::db_id(j.lease.id)) {
            self.by_id.insert(id, at.clone());
        }
    }

    /// The queue and group of job `id` if it was leased here, forgetting it.
    pub(crate) fn take(&mut self, id: i64) -> Option<LeasedIn> {
        self.by_id.remove(&id)
    }
}

/// What committed operations mean for waiting workers of this process, and what the
/// transaction still has to write once at its end.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// Queues that may have new work.
    pub(crate) wake: BTreeSet<String>,
    /// Jobs that reached `completed` or `failed`, per queue: (queue, completed, failed).
    /// Written to the throughput table once per transaction ([`write_throughput`]), so a
    /// group commit of many finishes costs one upsert per queue.
    pub(crate) finished: Vec<(String, i64, i64)>,
    /// How the jobs per queue and stored state changed: (queue, state, change), with
    /// running jobs counted as ready ([`counted_as`]). Added to `kosh_counts` once per
    /// transaction ([`write_counts`]), one statement per entry.
    pub(crate) counts: Vec<(String, JobState, i64)>,
}

impl Effects {
    /// Counts a job of `queue` that completed (or failed).
    pub(crate) fn count_finished(&mut self, queue: &str, completed: bool) {
        let i = match self.finished.iter().position(|(q, _, _)| q == queue) {
            Some(i) => i,
            None => {
                self.finished.push((queue.to_owned(), 0, 0));
                self.finished.len() - 1
            }
        };
        if completed {
            self.finished[i].1 += 1;
        } else {
            self.finished[i].2 += 1;
        }
    }

    /// Counts `n` jobs of `queue` that entered stored state `state` (a negative `n`: left
    /// it).
    pub(crate) fn count(&mut self, queue: &str, state: JobState, n: i64) {
        if limits::frees_a_slot(state, n) {
            self.wake(queue);
        }
        let state = counted_as(state);
        if n == 0 {
            return;
        }
        match self
            .counts
            .iter_mut()
            .find(|(q, s, _)| *s == state && q == queue)
        {
            Some(e) => e.2 += n,
            None => self.counts.push((queue.to_owned(), state, n)),
        }
    }

    /// Counts `n` jobs of `queue` that moved from stored state `from` to `to`.
    pub(crate) fn moved(&mut self, queue: &str, from: JobState, to: JobState, n: i64) {
        if from == JobState::Running && to != JobState::Running && n > 0 {
            // A freed slot may let a job held back by a concurrency limit start.
            self.wake(queue);
        }
        if counted_as(from) != counted_as(to) {
            self.count(queue, from, -n);
            self.count(queue, to, n);
        }
    }

    pub(crate) fn wake(&mut self, queue: &str) {
        if !self.wake.contains(queue) {
            self.wake.insert(queue.to_owned());
        }
    }

    pub(crate) fn merge(&mut self, other: Effects) {
        self.wake.extend(other.wake);
        for (q, c, f) in other.finished {
            match self.finished.iter_mut().find(|(mine, _, _)| *mine == q) {
                Some(e) => {
                    e.1 += c;
                    e.2 += f;
                }
                None => self.finished.push((q, c, f)),
            }
        }
        for (q, s, n) in other.counts {
            self.count(&q, s, n);
        }
    }
}

/// The row of `kosh_counts` a job in stored state `state` is counted in: running jobs are
/// counted with the ready ones, so that reserving (ready → running) changes no count and its
/// transaction writes nothing more. Readers take the running jobs, a few (one per lease),
/// from their index and subtract them.
pub(crate) fn counted_as(state: JobState) -> JobState {
    match state {
        JobState::Running => JobState::Ready,
        other => other,
    }
}

/// Adds a transaction's changes of the jobs per queue and state to `kosh_counts`, before it
/// commits. The writer calls it once per transaction. A plain `UPDATE` first, as the row
/// nearly always exists (cheaper than an upsert); the first change of a queue and state
/// inserts it.
pub(crate) fn write_counts(conn: &Connection, counts: &[(String, JobState, i64)]) -> Result<()> {
    if counts.iter().all(|(_, _, n)| *n == 0) {
        return Ok(());
    }
    let mut add = conn
        .prepare_cached("UPDATE kosh_counts SET n = n + ?3 WHERE queue = ?1 AND state = ?2")
        .map_err(sql_err)?;
    for (queue, state, n) in counts.iter().filter(|(_, _, n)| *n != 0) {
        let p = rusqlite::params![queue, state.as_str(), n];
        if add.execute(p).map_err(sql_err)? == 0 {
            exec(
                conn,
                "INSERT INTO kosh_counts (queue, state, n) VALUES (?1, ?2, ?3)",
                p,
            )?;
        }
    }
    Ok(())
}

/// Applies one operation on `conn` (inside the caller's transaction, if any).
pub(crate) fn apply(
    conn: &Connection,
    op: &Op,
    now: Timestamp,
    fx: &mut Effects,
    leased: &mut LeasedQueues,
) -> Result<Response> {
    Ok(match op {
        Op::Nop => Response::Unit,
        Op::Push(jobs) => Response::Enqueued(jobs::push(conn, jobs, now, fx)?),
        Op::Reserve(req) => Response::Leased(jobs::reserve(conn, req, now, fx, leased)?),
        Op::Finish(items) => Response::Finished(jobs::finish(conn, items, now, fx, leased)?),
        Op::Heartbeat(leases, extend) => {
            Response::Leases(jobs::heartbeat(conn, leases, now + *extend)?)
        }
        Op::Progress(lease, json) => Response::Bool(jobs::progress(conn, lease, json)?),
        Op::Release(leases) => {
            jobs::release(conn, leases, now, fx)?;
            Response::Unit
        }
        Op::Recover => Response::Count(jobs::recover_expired(conn, now, fx)?),
        Op::Retry(id) => Response::Retry(admin::retry(conn, *id, now, fx)?),
        Op::Cancel(id) => Response::Cancel(admin::cancel(conn, *id, now, fx)?),
        Op::Purge(states, before) => Response::Count(admin::purge(conn, states, *before, fx)?),
        Op::Pause(queue) => {
            admin::pause(conn, queue)?;
            Response::Unit
        }
        Op::Resume(queue) => {
            admin::resume(conn, queue, fx)?;
            Response::Unit
        }
        Op::Get(id) => Response::Record(read::get(conn, *id, now)?.map(Box::new)),
        Op::Counts => Response::Counts(read::counts(conn, now)?),
        Op::List(q) => Response::Page(read::list(conn, q, now)?),
        Op::WaitInfo(queues) => Response::WaitInfo(read::wait_info(conn, queues, now)?),
        Op::SetLimits(queue, l) => {
            limits::set(conn, queue, l, now, fx)?;
            Response::Unit
        }
        Op::HoldQueue(queue, until) => {
            limits::hold(conn, queue, *until, fx)?;
            Response::Unit
        }
        Op::Flows => Response::Flows(limits::flows(conn, now)?),
        Op::Groups(q) => Response::Groups(groups::group_page(conn, q, now)?),
        Op::Search(q) => Response::Search(Box::new(operate::search(conn, q, now)?)),
        Op::SearchIds(q) => Response::Ids(operate::search_ids(conn, q, now)?),
        Op::Apply(action, ids, only) => {
            Response::Actions(operate::apply(conn, *action, ids, only, now, fx)?)
        }
        Op::Throughput(q) => Response::Throughput(operate::throughput(conn, q)?),
        Op::RegisterWorker(info, ttl) => {
            operate::register_worker(conn, info, *ttl, now)?;
            Response::Unit
        }
        Op::DeregisterWorker(id) => {
            operate::deregister_worker(conn, id)?;
            Response::Unit
        }
        Op::Workers => Response::Workers(operate::workers(conn, now)?),
        Op::UpsertSchedule(def, next) => Response::Upserted(schedules::upsert(conn, def, *next)?),
        Op::RemoveSchedule(id) => Response::Bool(schedules::remove(conn, id)?),
        Op::PauseSchedule(id) => Response::Bool(schedules::pause(conn, id)?),
        Op::ResumeSchedule(id, rev, next) => {
            Response::Resumed(schedules::resume(conn, id, *rev, *next)?)
        }
        Op::Schedules => Response::Schedules(schedules::list(conn)?),
        Op::Schedule(id) => Response::Schedule(schedules::get(conn, id)?.map(Box::new)),
        Op::DueSchedules(before, limit) => {
            Response::Schedules(schedules::due(conn, *before, *limit)?)
        }
        Op::FireSchedules(fires) => Response::Fired(schedules::fire(conn, fires, now, fx)?),
        Op::PublishEvents(body) => {
            events::publish(conn, body)?;
            Response::Unit
        }
        Op::ReadEvents(after, limit) => Response::Events(events::read(conn, *after, *limit)?),
        #[cfg(test)]
        Op::Sql(sql) => {
            let first: Option<i64> = conn
                .prepare(sql)
                .and_then(|mut s| s.query_row([], |r| r.get(0)).optional())
                .map_err(sql_err)?;
            Response::Count(first.unwrap_or(0).try_into().unwrap_or(0))
        }
        #[cfg(test)]
        Op::Hold { arrived, go } => {
            let _ = arrived.send(());
            let _ = go.recv();
            Response::Unit
        }
    })
}

/// Wraps an SQLite error (the writer and reader classify it later).
pub(crate) fn sql_err(e: rusqlite::Error) -> SqliteError {
    SqliteError::Sqlite(e)
}

/// Runs a cached statement's `execute`, mapping the error.
pub(crate) fn exec(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<usize> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute(params))
        .map_err(sql_err)
}

/// Whether `queue` is paused.
pub(crate) fn is_paused(conn: &Connection, queue: &str) -> Result<bool> {
    conn.prepare_cached("SELECT paused FROM kosh_queues WHERE name = ?1")
        .and_then(|mut s| s.query_row([queue], |r| r.get::<_, bool>(0)).optional())
        .map(|p| p.unwrap_or(false))
        .map_err(sql_err)
}

/// The live job (scheduled, ready or running) holding a unique key. The states must match
/// the partial unique index `kosh_jobs_unique`.
const LIVE_HOLDER: &str = "SELECT id FROM kosh_jobs WHERE unique_key = ?1 \
     AND state IN ('scheduled', 'ready', 'running')";

/// The id of the live job holding `key`, if any.
pub(crate) fn live_holder(conn: &Connection, key: &str) -> Result<Option<i64>> {
    conn.prepare_cached(LIVE_HOLDER)
        .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
        .map_err(sql_err)
}

#[cfg(test)]
mod plan_tests {
    use crate::options::SqliteOptions;
    use crate::schema::{self, Role};

    /// The query plan of `sql`, one line per step.
    fn plan(conn: &rusqlite::Connection, sql: &str) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let n = stmt.parameter_count();
        let params: Vec<rusqlite::types::Value> =
            (0..n).map(|_| rusqlite::types::Value::Integer(0)).collect();
        let rows = stmt
            .query_map(rusqlite::params_from_iter(params), |r| {
                r.get::<_, String>(3)
            })
            .unwrap();
        rows.map(|r| r.unwrap()).collect::<Vec<_>>().join("\n")
    }

    /// Appending an attempt keeps at most `MAX_HISTORY` of them (a literal in its SQL).
    #[test]
    fn appending_bounds_history_at_max_history() {
        assert_eq!(kosh_jobs_core::admin::MAX_HISTORY, 25);
        for sql in [
            super::jobs::sql::RETRY,
            super::jobs::sql::FAIL,
            super::jobs::sql::RELEASE,
            super::jobs::sql::RECOVER,
        ] {
            assert!(sql.contains("json_array_length(history) < 25"), "{sql}");
        }
    }

    /// The hot statements use their partial indexes: reserve stays O(log n) however many
    /// jobs are stored.
    #[test]
    fn hot_statements_use_their_indexes() {
        let opts = SqliteOptions::in_memory().build().unwrap();
        let conn = schema::open(&opts, Role::Writer).unwrap();
        let cases = [
            (super::jobs::sql::CLAIM, "kosh_jobs_ready"),
            (super::jobs::sql::CLAIM_GROUP, "kosh_jobs_ready_grouped"),
            (super::read::READY_UNGROUPED, "kosh_jobs_ready"),
            (super::read::READY_GROUPED, "kosh_jobs_ready_grouped"),
            (super::groups::PROMOTED_GROUPS, "kosh_jobs_scheduled_grouped"),
            (super::groups::sql::LAST_LANE, "PRIMARY KEY"),
            (super::groups::sql::UNGROUPED_LANE, "kosh_jobs_ready"),
            (super::groups::sql::LAST_TURN, "kosh_turns_order"),
            (super::groups::sql::NEXT_LANE, "kosh_turns_order"),
            (super::groups::sql::MOVE_LANE, "PRIMARY KEY"),
            (super::groups::sql::DROP_LANE, "PRIMARY KEY"),
            (super::groups::sql::GROUP_RUNNING, "kosh_jobs_running_grouped"),
            (super::groups::sql::RUNNING_GROUP_COUNTS, "kosh_jobs_running_grouped"),
            (super::groups::sql::GROUP_WINDOW, "kosh_group_starts_log"),
            (super::groups::sql::FORGET_OLD_STARTS, "kosh_group_starts_age"),
            (super::groups::sql::FULL_WINDOWS, "kosh_group_starts_log"),
            (super::groups::sql::NEXT_READY_GROUP, "kosh_jobs_ready_grouped"),
            (super::groups::sql::NEXT_RUNNING_GROUP, "kosh_jobs_running_grouped"),
            (super::groups::sql::NEXT_STARTED_GROUP, "kosh_group_starts_log"),
            (super::groups::sql::GROUP_STARTS, "kosh_group_starts_log"),
            (super::groups::sql::GROUP_READY_UP_TO, "kosh_jobs_ready_grouped"),
            (super::jobs::sql::PROMOTE, "kosh_jobs_scheduled"),
            (
                "SELECT min(run_at) FROM kosh_jobs WHERE state = 'scheduled' AND queue = ?1",
                "kosh_jobs_scheduled",
            ),
            (
                "SELECT id FROM kosh_jobs WHERE state = 'running' AND lease_expires_at <= ?1 LIMIT 1",
                "kosh_jobs_running",
            ),
            (super::LIVE_HOLDER, "kosh_jobs_unique"),
            (
                "SELECT id FROM kosh_jobs WHERE state = 'completed' AND finished_at < ?1 \
                 ORDER BY finished_at LIMIT ?2",
                "kosh_jobs_finished",
            ),
            (
                "DELETE FROM kosh_jobs WHERE state = ?1 AND finished_at < ?2",
                "kosh_jobs_finished",
            ),
        ];
        use super::operate::{next_queue_sql, range_sql, Kind};
        use kosh_jobs_core::admin::Order;
        let mut extra: Vec<(String, &str)> = Vec::new();
        for (kind, index) in [
            (Kind::Ready, "kosh_jobs_ready"),
            (Kind::ReadyGrouped, "kosh_jobs_ready_grouped"),
            (Kind::Scheduled(1), "kosh_jobs_scheduled_ids"),
            (Kind::Final("failed"), "kosh_jobs_final"),
        ] {
            for order in [Order::OldestFirst, Order::NewestFirst] {
                extra.push((range_sql(kind, order), index));
            }
            extra.push((next_queue_sql(kind).to_owned(), index));
        }
        extra.push((
            range_sql(Kind::Running, Order::OldestFirst),
            "kosh_jobs_running",
        ));
        extra.push((super::operate::STORED_COUNTS.to_owned(), "kosh_counts"));
        extra.push((super::operate::NEXT_PRIORITY.to_owned(), "kosh_jobs_ready"));
        extra.push((super::operate::READY_HEAD.to_owned(), "kosh_jobs_ready"));
        extra.push((
            super::operate::NEXT_GROUP_PRIORITY.to_owned(),
            "kosh_jobs_ready_grouped",
        ));
        extra.push((
            super::operate::GROUP_READY_HEAD.to_owned(),
            "kosh_jobs_ready_grouped",
        ));
        extra.push((super::operate::DUE_HEAD.to_owned(), "kosh_jobs_scheduled"));
        extra.push((super::schedules::DUE.to_owned(), "kosh_schedules_due"));
        extra.push((super::read::DUE_COUNT.to_owned(), "kosh_jobs_scheduled"));
        extra.push((super::read::RUNNING.to_owned(), "kosh_jobs_running"));
        extra.push((
            "DELETE FROM kosh_throughput WHERE queue = ?1 AND minute < ?2".to_owned(),
            "PRIMARY KEY",
        ));
        let cases = cases
            .into_iter()
            .chain(extra.iter().map(|(s, i)| (s.as_str(), *i)));
        for (sql, index) in cases {
            let p = plan(&conn, sql);
            assert!(p.contains(index), "{sql}\nuses:\n{p}");
            assert!(!p.contains("TEMP B-TREE"), "{sql}\nsorts:\n{p}");
        }
        // The due grouped jobs are few (a reserve promotes them): read from their range of
        // `kosh_jobs_scheduled_grouped` and sorted by group, the one sort allowed.
        let p = plan(&conn, super::groups::sql::DUE_GROUPS);
        assert!(
            p.contains("kosh_jobs_scheduled_grouped"),
            "{}\nuses:\n{p}",
            super::groups::sql::DUE_GROUPS
        );
        // Counting a store of millions reads the stored counts, never the jobs.
        let p = plan(&conn, super::read::COUNTS);
        assert!(
            p.contains("kosh_counts") && !p.contains("kosh_jobs"),
            "counts reads the jobs:\n{p}"
        );
    }
}
