//! The checkpointer thread: copies the WAL into the database file, off the writer.
//!
//! The writer's connection has SQLite's automatic checkpoint turned off
//! (`wal_autocheckpoint = 0`): with it on, the commit that takes the WAL past its bound copies
//! the WAL into the database and fsyncs it before the writer can start its next batch, and a
//! bulk action writing a thousand pages a call crossed that bound every dozen calls, holding
//! up every reserve queued behind it by 30–125 ms. Instead this thread, on its own connection,
//! a short while after the writer commits:
//!
//! 1. copies what it can without blocking anybody (`PRAGMA wal_checkpoint(PASSIVE)`), once
//!    the WAL holds [`WalPolicy::checkpoint_pages`] or more, as the writer's last commit
//!    reported it (SQLite's WAL hook); a smaller WAL waits for later commits, as each copy
//!    costs two fsyncs;
//! 2. once the WAL holds [`WalPolicy::restart_pages`] or more, makes sure the next commit
//!    writes the WAL from its beginning again. A PASSIVE checkpoint alone rarely achieves
//!    that under a steady stream of commits (the log restarts only when it was copied to its
//!    last frame before a commit starts), so the thread first catches up with more PASSIVE
//!    rounds (until the frames the writer committed meanwhile, as its last commit reported
//!    them, are few), then runs `wal_checkpoint(RESTART)`, which copies the last frames and
//!    waits for readers while holding the write lock. It does so in its *turn*
//!    (`Shared::checkpoint_turn`): this process's reads are held back and the writer waits
//!    between two transactions, so the restart gets the write lock at once and waits for no
//!    reader of this process, only (at most [`WalPolicy::restart_wait`]) for other processes'.
//!    Without the turn, a restart during a bulk action waited for a lock the writer took back
//!    between transactions, and for the reads of the next page, and gave up; the WAL then ran
//!    into its bound and the truncation there held the writer for 50–250 ms. What a restart
//!    still costs the writer is the copy of the last frames and two fsyncs (10–40 ms on this
//!    project's test VM under a bulk retry); with more than [`WalPolicy::catch_up_pages`]
//!    left, the round leaves the restart to the next one;
//! 3. once the WAL holds [`WalPolicy::bound_pages`] or more, restarts it in the turn even
//!    with more frames left (the writer waits for their copy rather than the WAL growing
//!    on). If a reader keeps it from restarting (a read transaction left open, or another
//!    process's), runs `wal_checkpoint(TRUNCATE)` in its turn, allowed to wait a quarter of
//!    the busy timeout: it waits for that reader while holding the write lock, so writers
//!    wait too (back-pressure, short of their own busy timeout, so they never fail for it),
//!    which slows the WAL's growth while such a reader lasts; once the reader is gone the
//!    WAL file is cut back to nothing by that truncation, or (if the next round's restart
//!    comes first) to `journal_size_limit` (64 MiB) by the writer's next commit.
//!
//! Several processes on one file each run their own checkpointer; SQLite lets one checkpoint
//! run at a time, and a round that finds another running (`SQLITE_BUSY`) leaves the work to
//! it or to the next round. Every step is safe to run at any time: a checkpoint never loses
//! or reorders a commit.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::Shared;
use crate::schema;

/// When the checkpointer copies the WAL, and how hard it tries to keep it short.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WalPolicy {
    /// How long it lets commits accumulate after a nudge before a round.
    pub(crate) delay: Duration,
    /// The WAL size (pages) from which a round copies it into the database.
    pub(crate) checkpoint_pages: i64,
    /// The WAL size (pages) from which a round restarts it (copying what is left under the
    /// write lock, then waiting briefly for readers).
    pub(crate) restart_pages: i64,
    /// The longest a restart waits for the write lock and for readers (other processes':
    /// this process's own are held back during the restart).
    pub(crate) restart_wait: Duration,
    /// Frames left uncopied that a restart may copy while holding the write lock; more and
    /// the round first catches up with PASSIVE checkpoints (aiming at an eighth of this, so
    /// the copy under the lock is usually small), or leaves the restart to the next round.
    pub(crate) catch_up_pages: i64,
    /// The hard bound (pages): a WAL this long is restarted however far behind the copy is,
    /// and if a reader keeps it from restarting, truncated, waiting up to a quarter of the
    /// busy timeout for readers (and holding writers back meanwhile).
    pub(crate) bound_pages: i64,
}

impl WalPolicy {
    /// The policy of every backend: checkpoint from 1,000 pages (SQLite's own default for
    /// its automatic checkpoint), restart from 4,096 pages (16 MiB of 4 KiB pages), truncate
    /// from 16,384 pages (64 MiB, the bound the writer's automatic checkpoint used to keep).
    pub(crate) const DEFAULT: WalPolicy = WalPolicy {
        delay: Duration::from_millis(100),
        checkpoint_pages: 1_000,
        restart_pages: 4_096,
        restart_wait: Duration::from_millis(10),
        catch_up_pages: 1_024,
        bound_pages: 16_384,
    };
}

/// A round's catch-up stops once the copy is within `catch_up_pages / CATCH_UP_AIM` frames of
/// the writer's last commit.
const CATCH_UP_AIM: i64 = 8;

/// The most PASSIVE checkpoints a round runs to catch up with the writer.
const CATCH_UP_ROUNDS: usize = 8;

/// What one `PRAGMA wal_checkpoint` reported: whether it was stopped short by a lock, the
/// frames in the WAL, and how many of them are now in the database file.
#[derive(Clone, Copy, Debug)]
struct Checkpointed {
    busy: bool,
    log: i64,
    copied: i64,
}

fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<Checkpointed> {
    let started = Instant::now();
    let done = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok(Checkpointed {
            busy: r.get::<_, i64>(0)? != 0,
            log: r.get(1)?,
            copied: r.get(2)?,
        })
    })?;
    tracing::trace!(
        mode,
        busy = done.busy,
        log = done.log,
        copied = done.copied,
        took_ms = started.elapsed().as_secs_f64() * 1000.0,
        "checkpoint"
    );
    Ok(done)
}

/// The checkpointer's loop: a round after each burst of nudges, until the writer is gone.
pub(super) fn run(
    conn: Connection,
    rx: Receiver<()>,
    pending: Arc<AtomicBool>,
    frames: Arc<AtomicI64>,
    shared: Arc<Shared>,
    policy: WalPolicy,
    busy_timeout: Duration,
) {
    while rx.recv().is_ok() {
        let deadline = Instant::now() + policy.delay;
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
        if let Err(e) = round(&conn, &frames, &shared, &policy, busy_timeout) {
            tracing::debug!(error = %e, "checkpoint failed; the next round will retry");
        }
    }
}

/// Tells bulk actions waiting for it that the WAL starts over. Its length as the writer's
/// last commit left it is now stale: it reads 0 until the next commit, so a bulk action
/// that looks after this notice does not wait for one that already came.
fn restarted(shared: &Shared) {
    shared.wal_frames.store(0, Ordering::SeqCst);
    shared.wal_restarted.notify_waiters();
}

/// One round of the policy (see the module documentation).
fn round(
    conn: &Connection,
    frames: &AtomicI64,
    shared: &Shared,
    policy: &WalPolicy,
    busy_timeout: Duration,
) -> rusqlite::Result<()> {
    if frames.load(Ordering::SeqCst) < policy.checkpoint_pages {
        return Ok(());
    }
    let mut state = checkpoint(conn, "PASSIVE")?;
    shared.checkpoints.fetch_add(1, Ordering::Relaxed);
    if state.log < policy.restart_pages {
        return Ok(());
    }
    // Catch up without blocking anybody, a few rounds at most (each copies only the frames
    // committed meanwhile), so a restart or truncation holds the write lock briefly. How far
    // behind the copy is comes from the writer's last commit, not from the checkpoint's own
    // report: the writer goes on committing while a round copies and syncs, and a restart
    // started on that report alone once found 1,100 new frames to copy under the lock.
    let behind = |state: &Checkpointed| frames.load(Ordering::SeqCst).max(state.log) - state.copied;
    for _ in 0..CATCH_UP_ROUNDS {
        if state.busy
            || behind(&state) <= policy.catch_up_pages / CATCH_UP_AIM
            || state.log >= policy.bound_pages
        {
            break;
        }
        state = checkpoint(conn, "PASSIVE")?;
        shared.checkpoints.fetch_add(1, Ordering::Relaxed);
    }
    if frames.load(Ordering::SeqCst) < state.copied {
        // The writer has started the WAL over by itself: nothing is left to restart.
        return Ok(());
    }
    let past_bound = state.log >= policy.bound_pages;
    if behind(&state) <= policy.catch_up_pages || past_bound {
        // Past the bound, whatever is left is copied under the lock: the writer waits for
        // that copy rather than the WAL growing on.
        // Writers wait for the restart, as for the truncation below, up to their busy
        // timeout: never let it wait for readers longer than a quarter of that.
        let wait = policy.restart_wait.min(busy_timeout / 4);
        let done = shared.checkpoint_turn(busy_timeout / 4, || {
            schema::with_busy_limit(wait, || checkpoint(conn, "RESTART"))
        })?;
        tracing::trace!(log = done.log, busy = done.busy, "wal restart");
        if done.busy {
            shared.restarts_refused.fetch_add(1, Ordering::Relaxed);
        } else {
            restarted(shared);
            shared.restarts.fetch_add(1, Ordering::Relaxed);
            // A file grown past `journal_size_limit` is cut back to it by the writer's next
            // commit.
            return Ok(());
        }
    }
    if past_bound {
        // Some reader keeps the WAL from restarting (a read transaction left open, or
        // another process's).
        // Writers wait for this as long as their busy timeout: wait for readers a quarter
        // of it, so they are held back but never fail with "database is locked".
        let wait = busy_timeout / 4;
        let done = shared.checkpoint_turn(wait, || {
            schema::with_busy_limit(wait, || checkpoint(conn, "TRUNCATE"))
        })?;
        if !done.busy {
            restarted(shared);
            shared.truncations.fetch_add(1, Ordering::Relaxed);
        }
        tracing::debug!(
            log = state.log,
            busy = done.busy,
            "wal past its bound: truncation"
        );
    }
    Ok(())
}
