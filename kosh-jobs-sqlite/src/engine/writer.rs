//! The writer thread: group commit, watching other processes, retention.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use kosh_jobs_core::{Clock, Lease};
use rusqlite::Connection;
use tokio::sync::oneshot;

use super::{classify, duplicate, Nudge, Pending, Shared};
use crate::error::{Result, SqliteError};
use crate::options::{Location, Retention, SqliteOptions};
use crate::store::{self, Effects, LeasedQueues, Op, Response};

/// How long the writer looks for more work before it sleeps.
const SPIN: Duration = Duration::from_micros(50);
/// A write transaction this long is logged (at debug) with where its time went.
const SLOW_TRANSACTION: Duration = Duration::from_millis(10);

pub(super) struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
    clock: Clock,
    path: PathBuf,
    busy_timeout: Duration,
    max_batch: usize,
    /// Whether other connections may change the database (a file, not memory).
    watch_others: bool,
    poll_interval: Duration,
    data_version: Option<i64>,
    last_poll: Instant,
    retention: Retention,
    prune_interval: Duration,
    prune_chunk: usize,
    last_prune: Instant,
    prune_backlog: bool,
    nudge: Option<Nudge>,
    /// The queue of the jobs this writer leased, for finishing them.
    leased: LeasedQueues,
}

impl Drop for Writer {
    /// On the way out, copies what is left in the WAL into the database file (without waiting
    /// on other processes' readers), so a closed database is a complete file on its own.
    fn drop(&mut self) {
        if let Err(e) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        {
            tracing::debug!(error = %e, "final checkpoint failed; the WAL keeps the commits");
        }
    }
}

impl Writer {
    pub(super) fn new(
        conn: Connection,
        opts: SqliteOptions,
        shared: Arc<Shared>,
        nudge: Option<Nudge>,
    ) -> Self {
        let path = opts.display_path();
        Writer {
            conn,
            shared,
            clock: opts.clock,
            path,
            busy_timeout: opts.busy_timeout,
            max_batch: opts.max_batch,
            watch_others: matches!(opts.location, Location::File(_)),
            poll_interval: opts.poll_interval,
            data_version: None,
            last_poll: Instant::now(),
            retention: opts.retention,
            prune_interval: opts.prune_interval,
            prune_chunk: opts.prune_chunk,
            last_prune: Instant::now(),
            prune_backlog: false,
            nudge,
            leased: LeasedQueues::default(),
        }
    }

    /// Tells the checkpointer there are new commits, and how long the WAL is now.
    fn nudge(&self) {
        if let Some(n) = &self.nudge {
            let frames = crate::schema::wal_frames();
            n.frames.store(frames, Ordering::SeqCst);
            self.shared.wal_frames.store(frames, Ordering::SeqCst);
            if !n.pending.swap(true, Ordering::SeqCst) {
                let _ = n.tx.send(());
            }
        }
    }

    fn classify(&self, e: SqliteError) -> SqliteError {
        classify(e, &self.path, self.busy_timeout)
    }

    pub(super) fn run(mut self, rx: Receiver<Pending>) {
        self.check_others();
        loop {
            let polling = self.watch_others && self.shared.waiters.load(Ordering::SeqCst) > 0;
            let timeout = if self.prune_backlog {
                Some(Duration::from_millis(5))
            } else if polling {
                Some(self.poll_interval.saturating_sub(self.last_poll.elapsed()))
            } else {
                None
            };
            // Right after a batch the next operation often arrives within microseconds (a
            // caller awaiting one operation at a time): look again briefly before sleeping,
            // which saves the sleep and wake-up of this thread.
            let mut early = None;
            let spin_until = Instant::now() + SPIN;
            while Instant::now() < spin_until {
                match rx.try_recv() {
                    Ok(p) => {
                        early = Some(p);
                        break;
                    }
                    Err(TryRecvError::Empty) => thread::yield_now(),
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            // Tell the checkpointer the writer holds no lock while it waits for work.
            let idle = early.is_none() && self.nudge.is_some();
            if idle {
                self.shared.writer_idle(true);
            }
            let first = match (early, timeout) {
                (Some(p), _) => Some(p),
                (None, None) => match rx.recv() {
                    Ok(p) => Some(p),
                    Err(_) => break,
                },
                (None, Some(t)) => match rx.recv_timeout(t) {
                    Ok(p) => Some(p),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
            };
            if idle {
                self.shared.writer_idle(false);
            }
            let mut batch = Vec::new();
            if let Some(p) = first {
                let mut weight = p.op.weight();
                batch.push(p);
                while weight < self.max_batch {
                    match rx.try_recv() {
                        Ok(p) => {
                            weight += p.op.weight();
                            batch.push(p);
                        }
                        Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                    }
                }
            }
            self.shared.yield_to_checkpoint(self.busy_timeout);
            self.run_batch(batch);
            // Look for other processes' commits only while a worker waits, once per interval
            // (a look is a read transaction: cheap, but not free on every commit). A commit
            // made while nobody waited is still seen by the first look of the next wait.
            let polling = self.watch_others && self.shared.waiters.load(Ordering::SeqCst) > 0;
            if polling && self.last_poll.elapsed() >= self.poll_interval {
                self.check_others();
            }
            self.housekeeping();
        }
    }

    /// Wakes waiting workers if another connection committed since the last look.
    fn check_others(&mut self) {
        if !self.watch_others {
            return;
        }
        self.last_poll = Instant::now();
        self.shared.polls.fetch_add(1, Ordering::Relaxed);
        let version = self
            .conn
            .prepare_cached("PRAGMA data_version")
            .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)));
        match version {
            Ok(v) => {
                if self.data_version.is_some_and(|old| old != v) {
                    self.shared.any.notify_waiters();
                }
                self.data_version = Some(v);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read PRAGMA data_version");
                self.shared.any.notify_waiters();
            }
        }
    }

    fn run_batch(&mut self, batch: Vec<Pending>) {
        let mut work = Vec::with_capacity(batch.len());
        for p in batch {
            if matches!(p.op, Op::Nop) {
                let _ = p.reply.send(Ok(Response::Unit));
            } else if p.op.skippable() && p.reply.is_closed() {
                // The caller went away; skipping a read or a reserve loses nothing.
            } else {
                work.push(p);
            }
        }
        if work.is_empty() {
            return;
        }
        let (results, fx) = match self.transaction(&work) {
            Ok(done) => done,
            Err(e) => {
                for p in work {
                    let _ = p.reply.send(Err(duplicate(&e)));
                }
                return;
            }
        };
        // Wake waiters before answering: a caller that starts waiting right after its own
        // push must not be woken by that push.
        self.shared.wake(fx.wake.iter());
        let mut orphans: Vec<Lease> = Vec::new();
        for (p, result) in work.into_iter().zip(results) {
            if let Err(Ok(Response::Leased(jobs))) = p.reply.send(result) {
                orphans.extend(jobs.iter().map(|j| j.lease));
            }
        }
        if !orphans.is_empty() {
            // A reserve whose caller stopped waiting: give the jobs back at once.
            tracing::debug!(
                jobs = orphans.len(),
                "releasing jobs reserved for a caller that left"
            );
            let release = [Pending {
                op: Op::Release(orphans),
                reply: oneshot::channel().0,
            }];
            match self.transaction(&release) {
                Ok((_, fx)) => self.shared.wake(fx.wake.iter()),
                Err(e) => tracing::warn!(error = %e, "cannot release orphaned reservations"),
            }
        }
    }

    /// Applies operations in one transaction; each in a savepoint. On `Err` nothing was
    /// committed.
    #[allow(clippy::type_complexity)]
    fn transaction(&mut self, work: &[Pending]) -> Result<(Vec<Result<Response>>, Effects)> {
        let started = Instant::now();
        store::exec(&self.conn, "BEGIN IMMEDIATE", []).map_err(|e| self.classify(e))?;
        let locked = started.elapsed();
        // A lone operation needs no savepoint: on error the whole transaction is undone.
        let alone = work.len() == 1;
        let mut results = Vec::with_capacity(work.len());
        let mut fx = Effects::default();
        for p in work {
            let now = self.clock.now();
            if p.op.is_read() {
                results.push(
                    store::apply(&self.conn, &p.op, now, &mut fx, &mut self.leased)
                        .map_err(|e| self.classify(e)),
                );
                continue;
            }
            // An operation whose only change is its last statement needs no savepoint: if it
            // fails, SQLite has already undone that statement. A savepoint costs a copy of
            // every page the operation touches, more than the change itself.
            let savepoint = !alone && !p.op.is_one_change();
            if savepoint {
                if let Err(e) = store::exec(&self.conn, "SAVEPOINT op", []) {
                    return Err(self.abort(e));
                }
            }
            let mut op_fx = Effects::default();
            match store::apply(&self.conn, &p.op, now, &mut op_fx, &mut self.leased) {
                Ok(r) => {
                    if savepoint {
                        if let Err(e) = store::exec(&self.conn, "RELEASE op", []) {
                            return Err(self.abort(e));
                        }
                    }
                    fx.merge(op_fx);
                    results.push(Ok(r));
                }
                Err(e) if alone => {
                    let e = self.abort(e);
                    return Ok((vec![Err(e)], Effects::default()));
                }
                Err(e) => {
                    if self.conn.is_autocommit() {
                        // SQLite rolled the whole transaction back (I/O error, disk full).
                        return Err(self.classify(e));
                    }
                    if savepoint {
                        let undo = store::exec(&self.conn, "ROLLBACK TO op", [])
                            .and_then(|_| store::exec(&self.conn, "RELEASE op", []));
                        if let Err(u) = undo {
                            return Err(self.abort(u));
                        }
                    }
                    results.push(Err(self.classify(e)));
                }
            }
        }
        // Throughput of the jobs this transaction ended, and the changed counts per queue
        // and state: one upsert per queue (and state), not per job.
        if let Err(e) = store::write_throughput(&self.conn, &fx.finished, self.clock.now())
            .and_then(|_| store::write_counts(&self.conn, &fx.counts))
        {
            return Err(self.abort(e));
        }
        let worked = started.elapsed();
        if let Err(e) = store::exec(&self.conn, "COMMIT", []) {
            return Err(self.abort(e));
        }
        let took = started.elapsed();
        if took >= SLOW_TRANSACTION {
            // What held the writer (and every caller queued behind it) up: waiting for the
            // write lock (another process, or a checkpoint that copies the WAL's last frames),
            // the operations, or the commit (which syncs the WAL when it starts it over).
            tracing::debug!(
                ops = work.len(),
                lock_ms = locked.as_secs_f64() * 1000.0,
                work_ms = (worked - locked).as_secs_f64() * 1000.0,
                commit_ms = (took - worked).as_secs_f64() * 1000.0,
                "slow write transaction"
            );
        }
        self.nudge();
        Ok((results, fx))
    }

    /// Rolls back the open transaction after `e`.
    fn abort(&self, e: SqliteError) -> SqliteError {
        if !self.conn.is_autocommit() {
            if let Err(rb) = self.conn.execute_batch("ROLLBACK") {
                tracing::warn!(error = %rb, "rollback failed");
            }
        }
        self.classify(e)
    }

    /// Retention of completed jobs, a chunk at a time so transactions stay short.
    fn housekeeping(&mut self) {
        if !self.retention.is_active()
            || (!self.prune_backlog && self.last_prune.elapsed() < self.prune_interval)
        {
            return;
        }
        self.last_prune = Instant::now();
        let now = self.clock.now();
        let result = self
            .conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(SqliteError::Sqlite)
            .and_then(|_| {
                let mut fx = Effects::default();
                let n = store::prune_completed(
                    &self.conn,
                    &self.retention,
                    now,
                    self.prune_chunk,
                    &mut fx,
                )?;
                store::write_counts(&self.conn, &fx.counts)?;
                Ok(n)
            })
            .and_then(|n| {
                self.conn
                    .execute_batch("COMMIT")
                    .map(|_| n)
                    .map_err(SqliteError::Sqlite)
            });
        match result {
            Ok(n) => {
                self.nudge();
                if n > 0 {
                    tracing::debug!(deleted = n, "pruned completed jobs past retention");
                }
                self.prune_backlog = n >= self.prune_chunk;
            }
            Err(e) => {
                let e = self.abort(e);
                self.prune_backlog = false;
                tracing::warn!(error = %e, "cannot prune completed jobs");
            }
        }
    }
}
