//! The operations on the database, as data (so the writer can batch them) and as SQL.

mod admin;
mod jobs;
mod read;
pub(crate) mod row;

use std::collections::BTreeSet;
use std::time::Duration;

use kosh_jobs_core::{
    CancelOutcome, Enqueued, Finish, FinishResult, JobId, JobRecord, JobState, Lease, LeasedJob,
    ListQuery, NewJob, Page, QueueCounts, ReserveRequest, RetryOutcome, Timestamp,
};
use rusqlite::{Connection, OptionalExtension};

use crate::error::{Result, SqliteError};

pub(crate) use admin::prune_completed;
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
    Get(JobId),
    Counts,
    List(ListQuery),
    WaitInfo(Vec<String>),
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
            _ => 1,
        }
        .max(1)
    }

    /// Whether the operation only reads.
    pub(crate) fn is_read(&self) -> bool {
        matches!(
            self,
            Op::Nop | Op::Get(_) | Op::Counts | Op::List(_) | Op::WaitInfo(_)
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
}

/// What committed operations mean for waiting workers of this process.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// Queues that may have new work.
    pub(crate) wake: BTreeSet<String>,
}

impl Effects {
    pub(crate) fn wake(&mut self, queue: &str) {
        if !self.wake.contains(queue) {
            self.wake.insert(queue.to_owned());
        }
    }

    pub(crate) fn merge(&mut self, other: Effects) {
        self.wake.extend(other.wake);
    }
}

/// Applies one operation on `conn` (inside the caller's transaction, if any).
pub(crate) fn apply(
    conn: &Connection,
    op: &Op,
    now: Timestamp,
    fx: &mut Effects,
) -> Result<Response> {
    Ok(match op {
        Op::Nop => Response::Unit,
        Op::Push(jobs) => Response::Enqueued(jobs::push(conn, jobs, now, fx)?),
        Op::Reserve(req) => Response::Leased(jobs::reserve(conn, req, now, fx)?),
        Op::Finish(items) => Response::Finished(jobs::finish(conn, items, now, fx)?),
        Op::Heartbeat(leases, extend) => {
            Response::Leases(jobs::heartbeat(conn, leases, now + *extend)?)
        }
        Op::Progress(lease, json) => Response::Bool(jobs::progress(conn, lease, json)?),
        Op::Release(leases) => {
            jobs::release(conn, leases, fx)?;
            Response::Unit
        }
        Op::Recover => Response::Count(jobs::recover_expired(conn, now, fx)?),
        Op::Retry(id) => Response::Retry(admin::retry(conn, *id, now, fx)?),
        Op::Cancel(id) => Response::Cancel(admin::cancel(conn, *id, now)?),
        Op::Purge(states, before) => Response::Count(admin::purge(conn, states, *before)?),
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
        Op::WaitInfo(queues) => Response::WaitInfo(read::wait_info(conn, queues)?),
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

    /// The hot statements use their partial indexes: reserve stays O(log n) however many
    /// jobs are stored.
    #[test]
    fn hot_statements_use_their_indexes() {
        let opts = SqliteOptions::in_memory().build().unwrap();
        let conn = schema::open(&opts, Role::Writer).unwrap();
        let cases = [
            (super::jobs::sql::CLAIM, "kosh_jobs_ready"),
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
        for (sql, index) in cases {
            let p = plan(&conn, sql);
            assert!(p.contains(index), "{sql}\nuses:\n{p}");
            assert!(!p.contains("TEMP B-TREE"), "{sql}\nsorts:\n{p}");
        }
    }
}
