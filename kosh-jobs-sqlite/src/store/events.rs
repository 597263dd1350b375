//! Lifecycle events: a bounded table that publishers append to and subscribers read from
//! (only while someone subscribes), so events cross processes through the file.
//!
//! `seq` only grows (`AUTOINCREMENT`) and SQLite has one writer at a time, so events are read
//! in the order they were committed. The table keeps the last [`KEEP`] events; a subscriber
//! that falls further behind than that learns of the gap from the oldest `seq` left.

use rusqlite::{Connection, OptionalExtension};

use super::{exec, sql_err};
use crate::error::Result;

/// How many events the table keeps.
pub(crate) const KEEP: i64 = 10_000;

/// Creates the table if missing (events are opt-in: files without them never get it).
pub(crate) fn enable(conn: &Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS kosh_events (
             seq  INTEGER PRIMARY KEY AUTOINCREMENT,
             body TEXT NOT NULL
         )",
    )
    .map_err(sql_err)
}

/// Appends one batch (a JSON array of events) and drops what is past [`KEEP`].
pub(crate) fn publish(conn: &Connection, body: &str) -> Result<()> {
    exec(conn, "INSERT INTO kosh_events (body) VALUES (?1)", [body])?;
    let last = conn.last_insert_rowid();
    if last % 64 == 0 {
        exec(
            conn,
            "DELETE FROM kosh_events WHERE seq <= ?1",
            [last - KEEP],
        )?;
    }
    Ok(())
}

/// What a subscriber reads.
#[derive(Debug)]
pub(crate) struct EventRows {
    /// Batches after the cursor, oldest first: `(seq, JSON array)`.
    pub(crate) rows: Vec<(i64, String)>,
    /// The oldest `seq` kept (`None`: the table is empty).
    pub(crate) oldest: Option<i64>,
    /// The newest `seq` ever written (the starting cursor of a new subscriber).
    pub(crate) newest: i64,
}

/// The batches after `after` (at most `limit`), and the bounds of the table.
pub(crate) fn read(conn: &Connection, after: i64, limit: usize) -> Result<EventRows> {
    let mut stmt = conn
        .prepare_cached("SELECT seq, body FROM kosh_events WHERE seq > ?1 ORDER BY seq LIMIT ?2")
        .map_err(sql_err)?;
    let rows = stmt
        .query_map(rusqlite::params![after, limit as i64], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(sql_err)?
        .collect::<std::result::Result<Vec<(i64, String)>, _>>()
        .map_err(sql_err)?;
    let oldest: Option<i64> = conn
        .query_row("SELECT MIN(seq) FROM kosh_events", [], |r| r.get(0))
        .map_err(sql_err)?;
    let newest: i64 = conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'kosh_events'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql_err)?
        .unwrap_or(0);
    Ok(EventRows {
        rows,
        oldest,
        newest,
    })
}
