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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::{oneshot, Notify};

use crate::error::{Result, SqliteError};
use crate::options::{Location, SqliteOptions};
use crate::schema::{self, Role};
use crate::store::{self, Effects, Op, Response};

mod writer;

use writer::Writer;

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
