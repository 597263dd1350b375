//! The threads that own the connections.
//!
//! The **writer** thread owns the read-write connection. Callers send it [`Op`]s over a
//! channel; it takes whatever has queued up (up to `max_batch` jobs' worth) and applies it in
//! one `BEGIN IMMEDIATE` transaction, each operation inside its own savepoint so one failing
//! operation does not undo the others, then commits once and answers every caller (group
//! commit: one commit for many jobs). Other processes have their own writers on the same
//! file: SQLite's lock serializes them, the busy timeout makes them wait their turn, and
//! transactions stay short because batches are bounded.
//!
//! The **reader** thread owns a second, query-only connection for `get`, `counts`, `list` and
//! the waiting worker's look-ups, so reads do not queue behind writes (WAL lets them run at
//! the same time). An in-memory database has no reader: everything goes to the writer.
//!
//! The writer also watches for other processes: every `poll_interval` while a worker of this
//! process waits for work (and never otherwise), it reads `PRAGMA data_version`, which
//! changes exactly when another connection has committed; then it wakes the waiting workers.
//! The **checkpointer** thread copies the WAL into the database file in the background.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use kosh_jobs::{Clock, Lease};
use rusqlite::Connection;
use tokio::sync::{oneshot, Notify};

use crate::error::{Result, SqliteError};
use crate::options::{Location, Retention, SqliteOptions};
use crate::schema::{self, Role};
use crate::store::{self, Effects, Op, Response};

/// The answer channel of one operation.
pub(crate) type Reply = oneshot::Sender<Result<Response>>;

/// An operation and where its answer goes.
pub(crate) struct Pending {
    pub(crate) op: Op,
    pub(crate) reply: Reply,
}

/// What the async side and the threads share: the wake-ups of waiting workers.
#[derive(Default)]
pub(crate) struct Shared {
    notifiers: Mutex<HashMap<String, Arc<Notify>>>,
    /// Woken when another process changed the database.
    pub(crate) any: Notify,
    /// How many `wait_for_work` calls are in progress.
    pub(crate) waiters: AtomicUsize,
    /// How many times the writer looked at `PRAGMA data_version` (for tests).
    pub(crate) polls: std::sync::atomic::AtomicU64,
}

impl Shared {
    /// The notifier of one queue.
    pub(crate) fn notifier(&self, queue: &str) -> Arc<Notify> {
        let mut map = self.notifiers.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(queue.to_owned()).or_default().clone()
    }

    fn wake<'a>(&self, queues: impl IntoIterator<Item = &'a String>) {
        let map = self.notifiers.lock().unwrap_or_else(|e| e.into_inner());
        for q in queues {
            if let Some(n) = map.get(q) {
                n.notify_waiters();
            }
        }
    }
}

/// Starts the writer (which creates or migrates the schema) and, for a file, the reader.
pub(crate) async fn start(opts: &SqliteOptions, shared: Arc<Shared>) -> Result<Threads> {
    let file = matches!(opts.location, Location::File(_));
    let (nudge_tx, nudge_rx) = mpsc::channel::<()>();
    let nudge = file.then(|| Nudge {
        tx: nudge_tx,
        pending: Arc::new(AtomicBool::new(false)),
    });
    let pending = nudge.as_ref().map(|n| n.pending.clone());
    let (writer, writer_rx) = mpsc::channel::<Pending>();
    let writer_done = spawn(opts, Role::Writer, writer_rx, {
        let opts = opts.clone();
        move |conn, rx| Writer::new(conn, opts, shared, nudge).run(rx)
    })
    .await?;
    let mut done = vec![writer_done];
    let mut reader = None;
    if let Some(pending) = pending {
        let (tx, rx) = mpsc::channel::<Pending>();
        done.push(
            spawn(opts, Role::Reader, rx, {
                let opts = opts.clone();
                move |conn, rx| run_reader(conn, rx, opts)
            })
            .await?,
        );
        reader = Some(tx);
        done.push(
            spawn(opts, Role::Checkpointer, nudge_rx, move |conn, rx| {
                run_checkpointer(conn, rx, pending)
            })
            .await?,
        );
    }
    Ok(Threads {
        writer,
        reader,
        done,
    })
}

/// The running threads of one backend.
pub(crate) struct Threads {
    pub(crate) writer: Sender<Pending>,
    pub(crate) reader: Option<Sender<Pending>>,
    /// Each resolves (with an error: its sender is dropped) once its thread has closed its
    /// connection.
    pub(crate) done: Vec<oneshot::Receiver<()>>,
}

/// Starts a thread owning a connection of `role` that runs `body`; returns once the
/// connection is open (and, for the writer, the schema is ready).
async fn spawn<M: Send + 'static>(
    opts: &SqliteOptions,
    role: Role,
    rx: Receiver<M>,
    body: impl FnOnce(Connection, Receiver<M>) + Send + 'static,
) -> Result<oneshot::Receiver<()>> {
    let role_name = role.name();
    let (ready_tx, ready_rx) = oneshot::channel();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let thread_opts = opts.clone();
    thread::Builder::new()
        .name(format!("kosh-sqlite-{role_name}"))
        .spawn(move || {
            // Dropped last, after the connection is closed: tells `close` the thread is done.
            let _done = done_tx;
            match schema::open(&thread_opts, role) {
                Ok(conn) => {
                    let _ = ready_tx.send(Ok(()));
                    body(conn, rx);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        })
        .map_err(|source| SqliteError::Thread { source })?;
    ready_rx
        .await
        .map_err(|_| SqliteError::Closed(role_name))??;
    Ok(done_rx)
}

/// How long the writer looks for more work before it sleeps.
const SPIN: Duration = Duration::from_micros(50);

/// How long the checkpointer lets commits accumulate before copying them into the database
/// file.
const CHECKPOINT_DELAY: Duration = Duration::from_millis(100);

/// The writer's line to the checkpointer.
struct Nudge {
    tx: Sender<()>,
    /// Set by the writer when it nudges, cleared by the checkpointer when it starts a round:
    /// at most one nudge is queued.
    pending: Arc<AtomicBool>,
}

/// Copies committed WAL frames into the database file (`PRAGMA wal_checkpoint(PASSIVE)`),
/// a while after the writer commits, so the writer does not pay for the copy and its two
/// fsyncs while holding the write lock. The writer keeps a large automatic checkpoint as a
/// bound on the WAL in case this thread falls behind.
fn run_checkpointer(conn: Connection, rx: Receiver<()>, pending: Arc<AtomicBool>) {
    while rx.recv().is_ok() {
        let deadline = Instant::now() + CHECKPOINT_DELAY;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match rx.recv_timeout(left) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        pending.store(false, Ordering::SeqCst);
        let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        });
        match result {
            Ok((log, done)) => tracing::trace!(log, done, "checkpointed"),
            Err(e) => tracing::debug!(error = %e, "checkpoint failed; the next one will retry"),
        }
    }
}

/// Classifies a raw SQLite error with the path and busy timeout it happened with.
fn classify(e: SqliteError, path: &std::path::Path, timeout: Duration) -> SqliteError {
    match e {
        SqliteError::Sqlite(inner) => SqliteError::classify(inner, path, timeout),
        other => other,
    }
}

/// A copy of an error, for answering every operation of a failed batch.
fn duplicate(e: &SqliteError) -> SqliteError {
    fn raw(e: &rusqlite::Error) -> rusqlite::Error {
        match e {
            rusqlite::Error::SqliteFailure(code, msg) => {
                rusqlite::Error::SqliteFailure(*code, msg.clone())
            }
            other => rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
                Some(other.to_string()),
            ),
        }
    }
    match e {
        SqliteError::Busy { timeout, source } => SqliteError::Busy {
            timeout: *timeout,
            source: raw(source),
        },
        SqliteError::ReadOnly { path } => SqliteError::ReadOnly { path: path.clone() },
        SqliteError::NotADatabase { path } => SqliteError::NotADatabase { path: path.clone() },
        SqliteError::Corrupt { path, source } => SqliteError::Corrupt {
            path: path.clone(),
            source: raw(source),
        },
        SqliteError::Sqlite(source) => SqliteError::Sqlite(raw(source)),
        other => SqliteError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        )),
    }
}

fn run_reader(conn: Connection, rx: Receiver<Pending>, opts: SqliteOptions) {
    let path = opts.display_path();
    while let Ok(p) = rx.recv() {
        if p.reply.is_closed() {
            continue;
        }
        let now = opts.clock.now();
        let mut fx = Effects::default();
        let result = store::apply(&conn, &p.op, now, &mut fx)
            .map_err(|e| classify(e, &path, opts.busy_timeout));
        let _ = p.reply.send(result);
    }
}

struct Writer {
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
}

impl Writer {
    fn new(
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
        }
    }

    /// Tells the checkpointer there are new commits.
    fn nudge(&self) {
        if let Some(n) = &self.nudge {
            if !n.pending.swap(true, Ordering::SeqCst) {
                let _ = n.tx.send(());
            }
        }
    }

    fn classify(&self, e: SqliteError) -> SqliteError {
        classify(e, &self.path, self.busy_timeout)
    }

    fn run(mut self, rx: Receiver<Pending>) {
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
        store::exec(&self.conn, "BEGIN IMMEDIATE", []).map_err(|e| self.classify(e))?;
        // A lone operation needs no savepoint: on error the whole transaction is undone.
        let alone = work.len() == 1;
        let mut results = Vec::with_capacity(work.len());
        let mut fx = Effects::default();
        for p in work {
            let now = self.clock.now();
            if p.op.is_read() {
                results.push(
                    store::apply(&self.conn, &p.op, now, &mut fx).map_err(|e| self.classify(e)),
                );
                continue;
            }
            if !alone {
                if let Err(e) = store::exec(&self.conn, "SAVEPOINT op", []) {
                    return Err(self.abort(e));
                }
            }
            let mut op_fx = Effects::default();
            match store::apply(&self.conn, &p.op, now, &mut op_fx) {
                Ok(r) => {
                    if !alone {
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
                    let undo = store::exec(&self.conn, "ROLLBACK TO op", [])
                        .and_then(|_| store::exec(&self.conn, "RELEASE op", []));
                    if let Err(u) = undo {
                        return Err(self.abort(u));
                    }
                    results.push(Err(self.classify(e)));
                }
            }
        }
        if let Err(e) = store::exec(&self.conn, "COMMIT", []) {
            return Err(self.abort(e));
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
                store::prune_completed(&self.conn, &self.retention, now, self.prune_chunk)
            })
            .and_then(|n| {
                self.conn
                    .execute_batch("COMMIT")
                    .map(|_| n)
                    .map_err(SqliteError::Sqlite)
            });
        match result {
            Ok(n) => {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// While a worker waits and nothing happens, the writer looks for other processes'
    /// changes once per poll interval, not in a loop.
    #[tokio::test]
    async fn an_idle_wait_polls_at_the_interval() {
        let dir = tempfile::tempdir().unwrap();
        let opts = SqliteOptions::builder(dir.path().join("idle.db"))
            .poll_interval(Duration::from_millis(100))
            .build()
            .unwrap();
        let shared = Arc::new(Shared::default());
        let threads = start(&opts, shared.clone()).await.unwrap();
        let before = shared.polls.load(Ordering::Relaxed);
        // What `wait_for_work` does: count itself as waiting and wake the writer.
        shared.waiters.fetch_add(1, Ordering::SeqCst);
        call(&threads.writer, Op::Nop).await;
        let start = Instant::now();
        std::thread::sleep(Duration::from_millis(1000));
        let elapsed = start.elapsed();
        let polls = shared.polls.load(Ordering::Relaxed) - before;
        let most = elapsed.as_millis() as u64 / 100 + 3;
        assert!(
            (1..=most).contains(&polls),
            "{polls} polls in {elapsed:?} at a 100 ms interval"
        );
        // Nobody waiting: no polls at all.
        shared.waiters.fetch_sub(1, Ordering::SeqCst);
        call(&threads.writer, Op::Nop).await;
        let settled = shared.polls.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(300));
        // At most the one look that follows the Nop's batch.
        assert!(shared.polls.load(Ordering::Relaxed) <= settled + 1);
    }
    use kosh_jobs::{JobState, NewJob, ReserveRequest};

    async fn call(tx: &Sender<Pending>, op: Op) -> Response {
        let (reply, rx) = oneshot::channel();
        tx.send(Pending { op, reply }).unwrap();
        rx.await.unwrap().unwrap()
    }

    /// A reserve whose caller has gone away by the time the writer gets to it leases nothing.
    #[tokio::test]
    async fn a_reserve_nobody_waits_for_is_skipped() {
        let opts = SqliteOptions::in_memory().build().unwrap();
        let threads = start(&opts, Arc::new(Shared::default())).await.unwrap();
        let now = opts.clock.now();
        let Response::Enqueued(ids) = call(
            &threads.writer,
            Op::Push(vec![NewJob::new("t", "q", "{}", now)]),
        )
        .await
        else {
            panic!("push")
        };
        let (reply, rx) = oneshot::channel();
        drop(rx);
        threads
            .writer
            .send(Pending {
                op: Op::Reserve(ReserveRequest {
                    queues: vec!["q".into()],
                    worker: "gone".into(),
                    max: 1,
                    lease: Duration::from_secs(30),
                }),
                reply,
            })
            .unwrap();
        let Response::Record(Some(rec)) = call(&threads.writer, Op::Get(ids[0].id)).await else {
            panic!("get")
        };
        assert_eq!((rec.state, rec.attempts), (JobState::Ready, 0));
    }
}
