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
//! The **checkpointer** thread copies the WAL into the database file in the background, so
//! the writer never does (see [`checkpoint`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::{oneshot, Notify};

use crate::error::{Result, SqliteError};
use crate::options::{Location, SqliteOptions};
use crate::schema::{self, Role};
use crate::store::{self, Effects, Op, Response};

pub(crate) mod checkpoint;
mod writer;

use checkpoint::WalPolicy;
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
    pub(crate) polls: AtomicU64,
    /// Checkpoints the checkpointer thread ran (for tests).
    pub(crate) checkpoints: AtomicU64,
    /// WAL restarts the checkpointer thread completed (for tests).
    pub(crate) restarts: AtomicU64,
    /// WAL truncations past the hard bound the checkpointer thread completed (for tests).
    pub(crate) truncations: AtomicU64,
    /// WAL restarts the checkpointer thread tried and gave up, a lock or a reader being in
    /// the way (for tests).
    pub(crate) restarts_refused: AtomicU64,
    /// Held (shared) by the reader thread for each operation, and (exclusive) by the
    /// checkpointer while it restarts or truncates the WAL: a restart must wait, holding the
    /// write lock, for every read transaction on a snapshot older than its copy, so letting
    /// this process's reads in only between restarts keeps them from making the writer wait
    /// (see `checkpoint`). Reads wait instead, for one restart.
    pub(crate) reads: RwLock<()>,
    /// The frames in the WAL after the writer's last commit (0 for a database in memory).
    pub(crate) wal_frames: AtomicI64,
    /// Notified when the checkpointer has restarted or truncated the WAL.
    pub(crate) wal_restarted: Notify,
    /// The checkpointer's turn at the write lock (see [`Shared::checkpoint_turn`]).
    turn: Mutex<Turn>,
    turn_changed: Condvar,
    /// `Turn::wanted`, read by the writer without the lock before every batch.
    turn_wanted: AtomicBool,
}

/// Who may take the write lock next: the writer, or the checkpointer for a restart.
#[derive(Default)]
struct Turn {
    /// The checkpointer waits for its turn or has it.
    wanted: bool,
    /// The writer is between transactions, waiting for the checkpointer's turn to end.
    writer_parked: bool,
    /// The writer is waiting for work (not in a transaction).
    writer_idle: bool,
}

impl Shared {
    /// Runs `f` (a checkpoint that needs the write lock) once this process's writer is out of
    /// its transaction and waits, and with this process's reads held back: a restart then
    /// takes the write lock at once (it used to wait for it while the writer took it back
    /// between transactions, and give up) and waits, holding it, for no reader of this
    /// process. The writer waits for the turn at most `limit`, and so does the checkpointer
    /// for the writer's transaction to end (then `f` runs anyway and waits for the lock as
    /// any connection would).
    pub(crate) fn checkpoint_turn<T>(&self, limit: Duration, f: impl FnOnce() -> T) -> T {
        let quiet = self.reads.write().unwrap_or_else(|e| e.into_inner());
        {
            let mut turn = self.turn.lock().unwrap_or_else(|e| e.into_inner());
            turn.wanted = true;
            self.turn_wanted.store(true, Ordering::SeqCst);
            let _ = self
                .turn_changed
                .wait_timeout_while(turn, limit, |t| !t.writer_parked && !t.writer_idle)
                .unwrap_or_else(|e| e.into_inner());
        }
        let out = f();
        self.turn_wanted.store(false, Ordering::SeqCst);
        self.turn.lock().unwrap_or_else(|e| e.into_inner()).wanted = false;
        self.turn_changed.notify_all();
        drop(quiet);
        out
    }

    /// Called by the writer before each batch: while the checkpointer wants or has its turn,
    /// waits (at most `limit`, so a stuck checkpoint cannot stop the writer for good).
    pub(crate) fn yield_to_checkpoint(&self, limit: Duration) {
        if !self.turn_wanted.load(Ordering::SeqCst) {
            return;
        }
        let mut turn = self.turn.lock().unwrap_or_else(|e| e.into_inner());
        turn.writer_parked = true;
        self.turn_changed.notify_all();
        let (mut turn, _) = self
            .turn_changed
            .wait_timeout_while(turn, limit, |t| t.wanted)
            .unwrap_or_else(|e| e.into_inner());
        turn.writer_parked = false;
    }

    /// Marks the writer as waiting for work (`true`, before it blocks) or not.
    pub(crate) fn writer_idle(&self, idle: bool) {
        let mut turn = self.turn.lock().unwrap_or_else(|e| e.into_inner());
        turn.writer_idle = idle;
        if idle {
            self.turn_changed.notify_all();
        }
    }

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
    start_with(opts, shared, WalPolicy::DEFAULT).await
}

/// [`start`] with a checkpoint policy of the caller's (tests use small bounds).
pub(crate) async fn start_with(
    opts: &SqliteOptions,
    shared: Arc<Shared>,
    policy: WalPolicy,
) -> Result<Threads> {
    let file = matches!(opts.location, Location::File(_));
    let (nudge_tx, nudge_rx) = mpsc::channel::<()>();
    let nudge = file.then(|| Nudge {
        tx: nudge_tx,
        pending: Arc::new(AtomicBool::new(false)),
        frames: Arc::new(AtomicI64::new(0)),
    });
    let line = nudge
        .as_ref()
        .map(|n| (n.pending.clone(), n.frames.clone()));
    let (writer, writer_rx) = mpsc::channel::<Pending>();
    let writer_done = spawn(opts, Role::Writer, writer_rx, {
        let opts = opts.clone();
        let shared = shared.clone();
        move |conn, rx| Writer::new(conn, opts, shared, nudge).run(rx)
    })
    .await?;
    let mut done = vec![writer_done];
    let mut reader = None;
    if let Some((pending, frames)) = line {
        let (tx, rx) = mpsc::channel::<Pending>();
        done.push(
            spawn(opts, Role::Reader, rx, {
                let opts = opts.clone();
                let shared = shared.clone();
                move |conn, rx| run_reader(conn, rx, opts, shared)
            })
            .await?,
        );
        reader = Some(tx);
        done.push(
            spawn(opts, Role::Checkpointer, nudge_rx, {
                let busy_timeout = opts.busy_timeout;
                move |conn, rx| {
                    checkpoint::run(conn, rx, pending, frames, shared, policy, busy_timeout)
                }
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

/// The writer's line to the checkpointer.
struct Nudge {
    tx: Sender<()>,
    /// Set by the writer when it nudges, cleared by the checkpointer when it starts a round:
    /// at most one nudge is queued.
    pending: Arc<AtomicBool>,
    /// The frames in the WAL after the writer's last commit.
    frames: Arc<AtomicI64>,
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
        SqliteError::PermissionDenied { path, reason } => SqliteError::PermissionDenied {
            path: path.clone(),
            reason: reason.clone(),
        },
        SqliteError::Open {
            path,
            reason,
            source,
        } => SqliteError::Open {
            path: path.clone(),
            reason: reason.clone(),
            source: source.as_ref().map(|s| s.to_string().into()),
        },
        SqliteError::Full { path } => SqliteError::Full { path: path.clone() },
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

fn run_reader(conn: Connection, rx: Receiver<Pending>, opts: SqliteOptions, shared: Arc<Shared>) {
    let path = opts.display_path();
    while let Ok(p) = rx.recv() {
        if p.reply.is_closed() {
            continue;
        }
        let gate = shared.reads.read().unwrap_or_else(|e| e.into_inner());
        let now = opts.clock.now();
        let mut fx = Effects::default();
        let result = store::apply(&conn, &p.op, now, &mut fx, &mut Default::default())
            .map_err(|e| classify(e, &path, opts.busy_timeout));
        drop(gate);
        let _ = p.reply.send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::time::Instant;

    /// A small checkpoint policy, so a test crosses its bounds with a few megabytes.
    const SMALL: WalPolicy = WalPolicy {
        delay: Duration::from_millis(5),
        checkpoint_pages: 32,
        restart_pages: 128,
        restart_wait: Duration::from_millis(500),
        catch_up_pages: 64,
        bound_pages: 512,
    };

    /// The size of a WAL of `pages` frames of 4 KiB pages.
    fn wal_bytes(pages: i64) -> u64 {
        32 + pages as u64 * (24 + 4096)
    }

    fn wal_len(db: &std::path::Path) -> u64 {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        std::fs::metadata(wal).map_or(0, |m| m.len())
    }

    /// Polls `cond` until it holds, for at most 20 s.
    fn wait_until(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The writer never checkpoints (its automatic checkpoint is off); the checkpointer
    /// thread does, and restarts the WAL often enough that writing far more pages than the
    /// bound leaves the WAL file short.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checkpoints_run_off_the_writer_and_keep_the_wal_short() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("wal.db");
        let opts = SqliteOptions::builder(&db).build().unwrap();
        let shared = Arc::new(Shared::default());
        let threads = start_with(&opts, shared.clone(), SMALL).await.unwrap();
        let w = &threads.writer;
        assert_eq!(writer_sql(w, "PRAGMA wal_autocheckpoint").await, 0);
        assert_eq!(writer_sql(w, "PRAGMA page_size").await, 4096);
        let now = opts.clock.now();
        // About 60 pages a push, 400 pushes: some 24,000 pages, 47 times the bound. The
        // writer runs flat out, so the WAL grows by what it writes during a round of the
        // checkpointer past the bound before that round cuts it back: bounded, but by how
        // much depends on how the two threads are scheduled (on a loaded machine a round
        // can wait long), not by the bound itself. What does not depend on it: the WAL
        // holds every page written since it last started over, so without restarts it would
        // grow past the size of the whole database; with them it stays well under.
        let mut longest = 0;
        for _ in 0..400 {
            call(w, Op::Push(big_batch(100, now))).await;
            longest = longest.max(wal_len(&db));
        }
        let checkpoints = shared.checkpoints.load(Ordering::Relaxed);
        let restarts = shared.restarts.load(Ordering::Relaxed);
        assert!(checkpoints > 0, "the checkpointer never ran");
        assert!(restarts > 0, "the checkpointer never restarted the WAL");
        let truncations = shared.truncations.load(Ordering::Relaxed);
        let pages = writer_sql(w, "PRAGMA page_count").await;
        eprintln!("{checkpoints} checkpoints, {restarts} restarts, {truncations} truncations, longest WAL {longest} bytes, database {pages} pages");
        assert!(
            pages > 20 * SMALL.bound_pages as u64,
            "the pushes wrote {pages} pages, too few to test the bound"
        );
        assert!(
            longest <= wal_bytes(pages as i64 / 2),
            "the WAL file reached {longest} bytes, past half of the database's {pages} pages \
             ({checkpoints} checkpoints, {restarts} restarts, {truncations} truncations)"
        );
    }

    /// A read transaction left open keeps every checkpoint from restarting the WAL, which
    /// grows past its bound: each round's restart gives up, and so does the truncation that
    /// follows it (after holding writers back for a while). Once the reader ends, the next
    /// round restarts the WAL, and the writer's next commit cuts the file back to
    /// `journal_size_limit`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wal_held_by_a_reader_is_cut_back_once_the_reader_ends() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("held.db");
        // While the reader holds the WAL, each round holds the writer back for up to half
        // the busy timeout (a quarter for the refused restart, a quarter for the refused
        // truncation) plus their fsyncs: 1 s leaves the writer's own wait room for a slow
        // disk (200 ms left it about 100 ms).
        let opts = SqliteOptions::builder(&db)
            .busy_timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let shared = Arc::new(Shared::default());
        let threads = start_with(&opts, shared.clone(), SMALL).await.unwrap();
        let w = &threads.writer;
        let limit = wal_bytes(SMALL.checkpoint_pages);
        let set = format!("PRAGMA journal_size_limit = {limit}");
        assert_eq!(writer_sql(w, &set).await, limit);
        let now = opts.clock.now();
        call(w, Op::Push(big_batch(1, now))).await;

        let reader = Connection::open(&db).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let jobs: i64 = reader
            .query_row("SELECT count(*) FROM kosh_jobs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(jobs, 1);
        for _ in 0..20 {
            call(w, Op::Push(big_batch(100, now))).await;
        }
        assert!(
            wal_len(&db) > wal_bytes(SMALL.bound_pages),
            "the open reader did not hold the WAL ({} bytes)",
            wal_len(&db)
        );
        // A commit tells the checkpointer the WAL's size; its next round tries and gives up.
        call(w, Op::Push(big_batch(1, now))).await;
        wait_until("a refused restart", || {
            shared.restarts_refused.load(Ordering::Relaxed) > 0
        });
        assert_eq!(shared.truncations.load(Ordering::Relaxed), 0);

        reader.execute_batch("COMMIT").unwrap();
        drop(reader);
        let restarts = shared.restarts.load(Ordering::Relaxed);
        call(w, Op::Push(big_batch(1, now))).await;
        wait_until("a restart or a truncation", || {
            shared.restarts.load(Ordering::Relaxed) > restarts
                || shared.truncations.load(Ordering::Relaxed) > 0
        });
        // No commit since: bulk actions read the WAL as empty, not as it was before.
        assert_eq!(shared.wal_frames.load(Ordering::SeqCst), 0);
        // The first commit into the restarted WAL.
        call(w, Op::Push(big_batch(1, now))).await;
        assert!(shared.wal_frames.load(Ordering::SeqCst) > 0);
        assert!(
            wal_len(&db) <= limit,
            "the WAL file is {} bytes after its restart, past journal_size_limit ({limit})",
            wal_len(&db)
        );
        let Response::Counts(_) = call(w, Op::Counts).await else {
            panic!("counts")
        };
    }

    /// This process's own reads and writes never make a restart give up: the checkpointer
    /// holds reads back and has the writer wait between transactions while it restarts, so
    /// with the writer and the reader busy all along, every restart it tries goes through.
    /// (Whether the WAL still reaches its bound depends on how fast the writer outruns the
    /// copy, so truncations are not counted here.) (Before, a restart waited for the write
    /// lock and for readers
    /// while the writer took the lock back between its transactions and reads kept starting:
    /// restarts gave up, the WAL ran into its bound, and the truncation there held the
    /// writer for 50–250 ms.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn busy_reads_and_writes_of_this_process_do_not_stop_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("busy.db");
        let opts = SqliteOptions::builder(&db).build().unwrap();
        let shared = Arc::new(Shared::default());
        let policy = WalPolicy {
            restart_wait: WalPolicy::DEFAULT.restart_wait,
            ..SMALL
        };
        let threads = start_with(&opts, shared.clone(), policy).await.unwrap();
        let reader = threads.reader.clone().unwrap();
        let now = opts.clock.now();
        call(&threads.writer, Op::Push(big_batch(100, now))).await;
        let stop = Arc::new(AtomicBool::new(false));
        // Short reads one after the other, as a dashboard or `get` calls make them.
        let reads = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let filter = JobFilter::new().state(JobState::Ready);
                    let q = SearchQuery::new(filter).limit(20).with_total(false);
                    let Response::Search(page) = call(&reader, Op::Search(Box::new(q))).await
                    else {
                        panic!("search")
                    };
                    assert!(!page.jobs.is_empty());
                    n += 1;
                }
                n
            }
        });
        // About 6 pages a push: the checkpointer keeps within `catch_up_pages` of the
        // writer, so a restart is due every few rounds.
        for _ in 0..3_000 {
            call(&threads.writer, Op::Push(big_batch(10, now))).await;
        }
        stop.store(true, Ordering::Relaxed);
        let searches = reads.await.unwrap();
        let restarts = shared.restarts.load(Ordering::Relaxed);
        let refused = shared.restarts_refused.load(Ordering::Relaxed);
        let truncations = shared.truncations.load(Ordering::Relaxed);
        eprintln!("{searches} searches, {restarts} restarts, {refused} refused, {truncations} truncations");
        assert!(
            searches > 100,
            "only {searches} searches ran beside the writes"
        );
        assert!(restarts > 0, "the checkpointer never restarted the WAL");
        assert_eq!(refused, 0, "restarts gave up {refused} times");
    }

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
    use kosh_jobs_core::{BackendError, JobFilter, JobState, NewJob, ReserveRequest, SearchQuery};

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

    /// Sends `op` without waiting; the answer comes on the returned receiver.
    fn send(tx: &Sender<Pending>, op: Op) -> oneshot::Receiver<Result<Response>> {
        let (reply, rx) = oneshot::channel();
        tx.send(Pending { op, reply }).unwrap();
        rx
    }

    /// Runs SQL on the writer's connection; the first column of its first row.
    async fn writer_sql(tx: &Sender<Pending>, sql: &str) -> u64 {
        match call(tx, Op::Sql(sql.to_owned())).await {
            Response::Count(n) => n,
            other => panic!("{sql}: {other:?}"),
        }
    }

    /// Holds the writer inside its next batch's transaction until the returned sender is
    /// used or dropped; returns once the writer is held.
    fn hold(
        tx: &Sender<Pending>,
    ) -> (
        std::sync::mpsc::Sender<()>,
        oneshot::Receiver<Result<Response>>,
    ) {
        let (arrived_tx, arrived) = mpsc::channel();
        let (go, go_rx) = mpsc::channel();
        let answer = send(
            tx,
            Op::Hold {
                arrived: arrived_tx,
                go: go_rx,
            },
        );
        arrived
            .recv_timeout(Duration::from_secs(20))
            .expect("the writer did not reach the hold");
        (go, answer)
    }

    /// Leaves room for only `pages` more pages in the database (as on a nearly full disk).
    async fn leave_room(tx: &Sender<Pending>, pages: u64) {
        let used = writer_sql(tx, "PRAGMA page_count").await;
        let max = writer_sql(tx, &format!("PRAGMA max_page_count = {}", used + pages)).await;
        assert_eq!(max, used + pages, "max_page_count was not set");
    }

    /// Room enough again.
    async fn free_room(tx: &Sender<Pending>) {
        writer_sql(tx, "PRAGMA max_page_count = 1000000").await;
    }

    fn ready_in(counts: Response, queue: &str) -> u64 {
        let Response::Counts(all) = counts else {
            panic!("counts: {counts:?}")
        };
        let c = all.iter().find(|c| c.queue == queue);
        if let Some(c) = c {
            let others = c.scheduled + c.running + c.completed + c.failed + c.cancelled;
            assert_eq!(others, 0, "{c:?}");
        }
        c.map_or(0, |c| c.ready)
    }

    /// `n` jobs of about 2 KB each: far more than a few pages.
    fn big_batch(n: usize, now: kosh_jobs_core::Timestamp) -> Vec<NewJob> {
        let payload = format!("\"{}\"", "x".repeat(2000));
        (0..n)
            .map(|i| NewJob::new(format!("big-{i}"), "q", payload.clone(), now))
            .collect()
    }

    fn assert_full(e: &SqliteError) {
        assert!(matches!(e, SqliteError::Full { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("is full") && msg.contains("rolled back"),
            "not a clear message: {msg}"
        );
        let BackendError::Storage(source) = BackendError::from(duplicate(e)) else {
            panic!("a full disk is a storage error")
        };
        assert!(source.to_string().contains("is full"), "{source}");
    }

    /// A batch push that runs out of space after some of its jobs were inserted fails with
    /// a clear error and stores none of them; the backend works on, and stores the batch
    /// once there is room.
    #[tokio::test]
    async fn a_push_that_runs_out_of_space_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let opts = SqliteOptions::builder(dir.path().join("full.db"))
            .build()
            .unwrap();
        let threads = start(&opts, Arc::new(Shared::default())).await.unwrap();
        let w = &threads.writer;
        let now = opts.clock.now();
        call(w, Op::Push(vec![NewJob::new("before", "q", "{}", now)])).await;
        leave_room(w, 4).await;

        let err = send(w, Op::Push(big_batch(200, now)))
            .await
            .unwrap()
            .expect_err("200 jobs of 2 KB fit in 4 pages");
        assert_full(&err);
        assert_eq!(
            ready_in(call(w, Op::Counts).await, "q"),
            1,
            "part of the batch was stored"
        );
        // The room left was enough for some of the batch: the push failed midway, and what
        // it had inserted was undone, freeing the room again.
        call(w, Op::Push(big_batch(1, now))).await;
        assert_eq!(ready_in(call(w, Op::Counts).await, "q"), 2);

        free_room(w).await;
        let Response::Enqueued(ids) = call(w, Op::Push(big_batch(200, now))).await else {
            panic!("push")
        };
        assert_eq!(ids.len(), 200);
        assert_eq!(ready_in(call(w, Op::Counts).await, "q"), 202);
    }

    /// A full disk in a group commit: SQLite rolls the whole transaction back, so every
    /// operation of the writer's batch fails with the error and none of them is stored (not
    /// only the push that ran out of space); the writer goes on with the next batch.
    #[tokio::test]
    async fn a_full_disk_in_a_group_commit_fails_the_whole_batch() {
        let dir = tempfile::tempdir().unwrap();
        let opts = SqliteOptions::builder(dir.path().join("group.db"))
            .build()
            .unwrap();
        let threads = start(&opts, Arc::new(Shared::default())).await.unwrap();
        let w = &threads.writer;
        let now = opts.clock.now();
        leave_room(w, 4).await;

        // Queue three pushes behind a held batch, so the writer takes them as one batch.
        let (go, held) = hold(w);
        let first = send(w, Op::Push(vec![NewJob::new("first", "q", "{}", now)]));
        let big = send(w, Op::Push(big_batch(200, now)));
        let last = send(w, Op::Push(vec![NewJob::new("last", "q", "{}", now)]));
        drop(go);
        held.await.unwrap().unwrap();

        for (what, answer) in [("first", first), ("big", big), ("last", last)] {
            match answer.await.unwrap() {
                Err(e) => assert_full(&e),
                Ok(r) => panic!("{what}: stored in a rolled-back batch: {r:?}"),
            }
        }
        assert_eq!(ready_in(call(w, Op::Counts).await, "q"), 0);
        // The writer is out of the failed transaction: what fits is stored again.
        call(w, Op::Push(vec![NewJob::new("after", "q", "{}", now)])).await;
        assert_eq!(ready_in(call(w, Op::Counts).await, "q"), 1);
    }

    /// A reserve whose caller went away while the writer was committing it: the writer
    /// gives the jobs back at once, ready and without the attempt counted.
    #[tokio::test]
    async fn a_reserve_whose_caller_left_after_the_commit_is_released() {
        let opts = SqliteOptions::in_memory().build().unwrap();
        let threads = start(&opts, Arc::new(Shared::default())).await.unwrap();
        let w = &threads.writer;
        let now = opts.clock.now();
        let Response::Enqueued(ids) = call(
            w,
            Op::Push(vec![
                NewJob::new("t", "q", "{}", now),
                NewJob::new("t", "q", "{}", now),
            ]),
        )
        .await
        else {
            panic!("push")
        };
        let reserve = || {
            Op::Reserve(ReserveRequest {
                queues: vec!["q".into()],
                worker: "w".into(),
                max: 10,
                lease: Duration::from_secs(30),
            })
        };

        // Queue the reserve and a second hold behind a first: the writer takes both in one
        // batch, so the reserve's caller is still there when the batch starts (it is not
        // skipped) and the reserve is applied before the writer stops at the second hold.
        let (go_first, first) = hold(w);
        let reserved = send(w, reserve());
        let (arrived_tx, arrived) = mpsc::channel();
        let (go_second, go_rx) = mpsc::channel();
        let second = send(
            w,
            Op::Hold {
                arrived: arrived_tx,
                go: go_rx,
            },
        );
        drop(go_first);
        first.await.unwrap().unwrap();
        arrived
            .recv_timeout(Duration::from_secs(20))
            .expect("the writer did not reach the second hold");
        // The reserve is applied, not yet committed or answered: its caller leaves now.
        drop(reserved);
        drop(go_second);
        second.await.unwrap().unwrap();

        // The writer releases the orphans before it reads its next operation.
        for id in &ids {
            let Response::Record(Some(rec)) = call(w, Op::Get(id.id)).await else {
                panic!("get")
            };
            assert_eq!(
                (rec.state, rec.attempts),
                (JobState::Ready, 0),
                "job {}: released without the attempt counted",
                id.id
            );
            assert!(
                rec.started_at.is_some(),
                "job {}: the reserve was committed before it was released",
                id.id
            );
        }
        let Response::Leased(again) = call(w, reserve()).await else {
            panic!("reserve")
        };
        assert_eq!(again.len(), 2);
        assert!(again.iter().all(|j| j.attempt == 1), "{again:?}");
    }
}
