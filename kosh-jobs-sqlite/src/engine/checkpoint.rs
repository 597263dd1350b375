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
//!    rounds, then runs `wal_checkpoint(RESTART)` allowed to wait at most
//!    [`WalPolicy::restart_wait`]: it holds the write lock only to copy the last frames (at
//!    most [`WalPolicy::catch_up_pages`]; with more left, the round leaves it to the next);
//! 3. once the WAL holds [`WalPolicy::bound_pages`] or more (some reader kept the earlier
//!    rounds from restarting it, e.g. a read transaction left open), runs
//!    `wal_checkpoint(TRUNCATE)` allowed to wait a quarter of the busy timeout: it waits for
//!    that reader while holding the write lock, so writers wait too (back-pressure, short of
//!    their own busy timeout, so they never fail for it), which slows the WAL's growth while
//!    such a reader lasts; once the reader is gone the WAL file is cut back to nothing.
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
    /// The longest a restart waits for the write lock and for readers.
    pub(crate) restart_wait: Duration,
    /// Frames left uncopied that a restart may copy while holding the write lock; more and
    /// the round first catches up with PASSIVE checkpoints.
    pub(crate) catch_up_pages: i64,
    /// The hard bound (pages): a WAL this long is truncated, waiting up to a quarter of the
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
        restart_wait: Duration::from_millis(20),
        catch_up_pages: 1_024,
        bound_pages: 16_384,
    };
}

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
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok(Checkpointed {
            busy: r.get::<_, i64>(0)? != 0,
            log: r.get(1)?,
            copied: r.get(2)?,
        })
    })
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
    // committed meanwhile), so a restart or truncation holds the write lock briefly.
    for _ in 0..CATCH_UP_ROUNDS {
        if state.busy || state.log - state.copied <= policy.catch_up_pages {
            break;
        }
        state = checkpoint(conn, "PASSIVE")?;
        shared.checkpoints.fetch_add(1, Ordering::Relaxed);
    }
    if state.log >= policy.bound_pages {
        // Writers wait for this as long as their busy timeout: wait for readers a quarter
        // of it, so they are held back but never fail with "database is locked".
        let wait = busy_timeout / 4;
        let done = schema::with_busy_limit(wait, || checkpoint(conn, "TRUNCATE"))?;
        if !done.busy {
            shared.truncations.fetch_add(1, Ordering::Relaxed);
        }
        tracing::debug!(
            log = state.log,
            busy = done.busy,
            "wal past its bound: truncated"
        );
        return Ok(());
    }
    if state.log - state.copied > policy.catch_up_pages {
        // The writer outruns the copy: try again next round rather than make it wait.
        return Ok(());
    }
    let done = schema::with_busy_limit(policy.restart_wait, || checkpoint(conn, "RESTART"))?;
    if !done.busy {
        shared.restarts.fetch_add(1, Ordering::Relaxed);
    }
    tracing::trace!(log = done.log, busy = done.busy, "wal restarted");
    Ok(())
}
