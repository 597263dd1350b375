//! The app's own database (sqlx, on SQLite or Postgres: see [`Db`]): imports, transactions,
//! rejected rows and notifications. Separate from the job framework's store, or in the same
//! Postgres database (then an import and its job are created in one transaction, see
//! [`crate::queueing`]).

mod pool;

use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use sqlx::{PgConnection, QueryBuilder};

pub use pool::{connect, is_postgres_url, same_postgres_database, with_pool, Db};

use crate::parse::{DateOrder, OrderBasis, ParsedRow, ResumePoint, Scan};
use crate::words::plural;

/// Now, as stored: RFC 3339 in UTC with milliseconds.
pub fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// An import as stored and as the API shows it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Import {
    /// Its id.
    pub id: i64,
    /// The client's file name (display only: files are stored under a generated name).
    pub file_name: String,
    /// The generated name of the stored file.
    #[serde(skip)]
    pub stored_name: String,
    /// SHA-256 of the content, hex.
    pub sha256: String,
    /// Size in bytes.
    pub size_bytes: i64,
    /// `queued`, `running`, `completed` or `failed`.
    pub state: String,
    /// The kosh-jobs job importing it.
    pub job_id: Option<String>,
    /// Data rows in the file, once counted.
    pub rows_total: Option<i64>,
    /// Rows handled so far (imported + rejected).
    pub rows_done: i64,
    /// Transactions imported.
    pub rows_imported: i64,
    /// Rows rejected.
    pub rows_rejected: i64,
    /// Attempts started.
    pub attempts: i64,
    /// Rows already done when a later attempt resumed.
    pub resumed_from: Option<i64>,
    /// Checkpoint: where the next row starts.
    #[serde(skip)]
    pub checkpoint_byte: Option<i64>,
    /// Checkpoint: its line.
    #[serde(skip)]
    pub checkpoint_line: Option<i64>,
    /// Checkpoint: its record number.
    #[serde(skip)]
    pub checkpoint_record: Option<i64>,
    /// Summary and footer lines skipped (balances, totals, notices): not transactions.
    pub summary_lines_skipped: i64,
    /// How `a/b/yyyy` dates were read: `dmy` or `mdy`; `None` when the file has none.
    pub date_order: Option<String>,
    /// Why that order: `unambiguous` (a day above 12), `posting_dates`, `file_order`,
    /// `span`, `layout`, `default`, `conflicting` or `not_needed`.
    pub date_order_basis: Option<String>,
    /// Whether the order was a guess: no date in the file settled it.
    pub date_order_guessed: bool,
    /// The bank layout recognised (`HDFC Bank`, `generic`, …).
    pub layout: Option<String>,
    /// Who uploaded it (see [`crate::user`]); `user` in the API.
    #[serde(rename = "user")]
    pub user_id: String,
    /// For a queued import, the running import of the same user it waits for (imports run
    /// one at a time per user); else `None`. Read by [`get_import`] and [`list_imports`]
    /// in the same statement as the import, so the two agree.
    #[sqlx(default)]
    pub waiting_for: Option<i64>,
    /// Why it failed (or the last attempt's error while retrying).
    pub error: Option<String>,
    /// Upload time.
    pub created_at: String,
    /// First attempt's start.
    pub started_at: Option<String>,
    /// When it completed or failed.
    pub finished_at: Option<String>,
    /// Last change.
    pub updated_at: String,
}

impl Import {
    /// The saved position to resume from, if rows were committed.
    pub fn checkpoint(&self) -> Option<ResumePoint> {
        match (
            self.checkpoint_byte,
            self.checkpoint_line,
            self.checkpoint_record,
        ) {
            (Some(b), Some(l), Some(r)) if self.rows_done > 0 => Some(ResumePoint {
                byte: b as u64,
                line: l as u64,
                record: r as u64,
            }),
            _ => None,
        }
    }

    /// What the user should know about how the file was read: `2 summary lines skipped`,
    /// `dates read as month/day`.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        match self.summary_lines_skipped {
            0 => {}
            1 => notes.push("1 summary line skipped".to_owned()),
            n => notes.push(format!("{n} summary lines skipped")),
        }
        if let Some(order) = self.date_order.as_deref() {
            let words = if order == "mdy" {
                "month/day"
            } else {
                "day/month"
            };
            if self.date_order_guessed {
                notes.push(format!("dates read as {words}"));
            } else if self.chosen_date_order().is_some() {
                notes.push(format!("dates read as {words}, as chosen"));
            }
        }
        notes
    }

    /// The order of day and month the user chose for this file (re-importing it), if any.
    pub fn chosen_date_order(&self) -> Option<DateOrder> {
        if self.date_order_basis.as_deref() != Some(OrderBasis::Chosen.code()) {
            return None;
        }
        self.date_order.as_deref().and_then(|o| o.parse().ok())
    }

    /// Whether the user may choose the order of day and month: no date in the file settled
    /// it (or the user chose it before).
    pub fn date_order_choosable(&self) -> bool {
        self.date_order.is_some() && (self.date_order_guessed || self.chosen_date_order().is_some())
    }

    /// Whether it reached a final state.
    pub fn is_final(&self) -> bool {
        self.state == "completed" || self.state == "failed"
    }
}

/// `SELECT` of an import's columns and its `waiting_for` (the lowest-numbered running import
/// of its user, when it is queued; through the partial index `imports_running_by_user`),
/// followed by `$rest`. A macro, so the statement stays a `&'static str`.
macro_rules! select_import_with_wait {
    ($rest:literal) => {
        concat!(
            "SELECT imports.*,
                CASE WHEN imports.state = 'queued' THEN
                    (SELECT MIN(r.id) FROM imports AS r
                     WHERE r.user_id = imports.user_id AND r.state = 'running'
                       AND r.id != imports.id)
                END AS waiting_for
             FROM imports ",
            $rest
        )
    };
}

/// A new upload.
#[derive(Clone, Debug)]
pub struct NewImport<'a> {
    /// The client's file name.
    pub file_name: &'a str,
    /// The generated stored name.
    pub stored_name: &'a str,
    /// SHA-256, hex.
    pub sha256: &'a str,
    /// Size in bytes.
    pub size_bytes: i64,
    /// Who uploaded it, checked ([`crate::user::User`]).
    pub user: &'a str,
}

/// The outcome of [`insert_import`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// A new import with this id.
    New(i64),
    /// The same content is already imported or being imported, by this import.
    Duplicate(i64),
}

/// The statement recording an upload (binds: file name, stored name, SHA-256, size, user,
/// now), returning its id.
const INSERT_IMPORT: &str = "INSERT INTO imports (file_name, stored_name, sha256, size_bytes,
         user_id, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $6)
     RETURNING id";

/// Records an upload, unless the same content is already imported or on its way.
pub async fn insert_import(db: &Db, new: &NewImport<'_>) -> sqlx::Result<Inserted> {
    let now = now();
    let r: sqlx::Result<i64> = with_pool!(db, pool => {
        sqlx::query_scalar(INSERT_IMPORT)
            .bind(new.file_name)
            .bind(new.stored_name)
            .bind(new.sha256)
            .bind(new.size_bytes)
            .bind(new.user)
            .bind(&now)
            .fetch_one(pool)
            .await
    });
    match r {
        Ok(id) => Ok(Inserted::New(id)),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            Ok(Inserted::Duplicate(live_import_of(db, new.sha256).await?))
        }
        Err(e) => Err(e),
    }
}

/// Records an upload on a Postgres connection, inside the caller's transaction (see
/// [`crate::queueing`]); its id. The same content already imported or on its way is a
/// unique violation, which aborts that transaction: roll it back, then ask
/// [`live_import_of`] which import has it.
pub async fn insert_import_in(conn: &mut PgConnection, new: &NewImport<'_>) -> sqlx::Result<i64> {
    sqlx::query_scalar(INSERT_IMPORT)
        .bind(new.file_name)
        .bind(new.stored_name)
        .bind(new.sha256)
        .bind(new.size_bytes)
        .bind(new.user)
        .bind(now())
        .fetch_one(conn)
        .await
}

/// The import that holds content `sha256` (not failed), when a new upload of it was refused.
pub async fn live_import_of(db: &Db, sha256: &str) -> sqlx::Result<i64> {
    with_pool!(db, pool => {
        sqlx::query_scalar(
            "SELECT id FROM imports WHERE sha256 = $1 AND state != 'failed' ORDER BY id LIMIT 1",
        )
        .bind(sha256)
        .fetch_one(pool)
        .await
    })
}

/// The statement noting an import's job id (binds: job id, import id).
const SET_JOB_ID: &str = "UPDATE imports SET job_id = $1 WHERE id = $2";

/// Notes the job id of an import.
pub async fn set_job_id(db: &Db, id: i64, job_id: &str) -> sqlx::Result<()> {
    with_pool!(db, pool => {
        sqlx::query(SET_JOB_ID).bind(job_id).bind(id).execute(pool).await?;
    });
    Ok(())
}

/// Notes the job id of an import on a Postgres connection, inside the caller's transaction.
pub async fn set_job_id_in(conn: &mut PgConnection, id: i64, job_id: &str) -> sqlx::Result<()> {
    sqlx::query(SET_JOB_ID)
        .bind(job_id)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// One import, with its `waiting_for`.
pub async fn get_import(db: &Db, id: i64) -> sqlx::Result<Option<Import>> {
    with_pool!(db, pool => {
        sqlx::query_as(select_import_with_wait!("WHERE imports.id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await
    })
}

/// The latest imports, newest first, with their `waiting_for`.
pub async fn list_imports(db: &Db, limit: i64) -> sqlx::Result<Vec<Import>> {
    with_pool!(db, pool => {
        sqlx::query_as(select_import_with_wait!("ORDER BY imports.id DESC LIMIT $1"))
            .bind(limit)
            .fetch_all(pool)
            .await
    })
}

/// Starts an attempt: `running`, one more attempt, and `resumed_from` when rows are already
/// done. `None` when the import is missing or already final.
pub async fn begin_attempt(db: &Db, id: i64) -> sqlx::Result<Option<Import>> {
    let now = now();
    with_pool!(db, pool => {
        sqlx::query_as(
            "UPDATE imports SET state = 'running', attempts = attempts + 1,
                 started_at = COALESCE(started_at, $1), updated_at = $1,
                 resumed_from = CASE WHEN rows_done > 0 THEN rows_done ELSE resumed_from END
             WHERE id = $2 AND state IN ('queued', 'running')
             RETURNING *",
        )
        .bind(&now)
        .bind(id)
        .fetch_optional(pool)
        .await
    })
}

/// Stores what the first pass learnt: the number of data rows, the summary lines skipped,
/// how dates are read, and the layout.
pub async fn record_scan(db: &Db, id: i64, scan: &Scan, layout: &str) -> sqlx::Result<()> {
    let order = (scan.dates.basis != OrderBasis::NotNeeded).then(|| scan.dates.order.code());
    let now = now();
    with_pool!(db, pool => {
        sqlx::query(
            "UPDATE imports SET rows_total = $1, summary_lines_skipped = $2, date_order = $3,
                 date_order_basis = $4, date_order_guessed = $5, layout = $6, updated_at = $7
             WHERE id = $8",
        )
        .bind(scan.rows_total as i64)
        .bind(scan.summary_lines as i64)
        .bind(order)
        .bind(scan.dates.basis.code())
        .bind(scan.dates.guessed())
        .bind(layout)
        .bind(&now)
        .bind(id)
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// Notes a failed attempt that will be retried.
pub async fn note_retry(db: &Db, id: i64, error: &str) -> sqlx::Result<()> {
    let now = now();
    with_pool!(db, pool => {
        sqlx::query(
            "UPDATE imports SET error = $1, updated_at = $2 WHERE id = $3 AND state = 'running'",
        )
        .bind(error)
        .bind(&now)
        .bind(id)
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// Counts after a committed batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Rows handled.
    pub rows_done: i64,
    /// Transactions imported.
    pub rows_imported: i64,
    /// Rows rejected.
    pub rows_rejected: i64,
}

/// Commits one batch in one SQL transaction: its transactions and rejected rows (a row
/// already stored, by an earlier attempt or a concurrent stale one, is ignored) and the
/// checkpoint after it. The checkpoint only moves forward.
pub async fn commit_batch(
    db: &Db,
    id: i64,
    rows: &[ParsedRow],
    rows_done: u64,
    next: ResumePoint,
) -> sqlx::Result<Counts> {
    let ok: Vec<_> = rows
        .iter()
        .filter_map(|r| r.outcome.as_ref().ok().map(|t| (r.line, t)))
        .collect();
    let bad: Vec<_> = rows
        .iter()
        .filter_map(|r| r.outcome.as_ref().err().map(|e| (r.line, e, &r.raw)))
        .collect();
    let now = now();
    let counts: (i64, i64, i64) = with_pool!(db, pool => {
        let mut tx = pool.begin().await?;
        let mut imported = 0;
        let mut rejected = 0;
        for chunk in ok.chunks(150) {
            let mut q = QueryBuilder::new(
                "INSERT INTO transactions (import_id, line, booked_on, description, amount_cents) ",
            );
            q.push_values(chunk, |mut b, (line, t)| {
                b.push_bind(id)
                    .push_bind(*line as i64)
                    .push_bind(t.date.to_string())
                    .push_bind(t.description.as_str())
                    .push_bind(t.amount_cents);
            });
            q.push(" ON CONFLICT DO NOTHING");
            imported += q.build().execute(&mut *tx).await?.rows_affected();
        }
        for chunk in bad.chunks(150) {
            let mut q = QueryBuilder::new(
                "INSERT INTO rejected_rows (import_id, line, reason, raw) ",
            );
            q.push_values(chunk, |mut b, (line, reason, raw)| {
                b.push_bind(id)
                    .push_bind(*line as i64)
                    .push_bind(reason.as_str())
                    .push_bind(raw.as_str());
            });
            q.push(" ON CONFLICT DO NOTHING");
            rejected += q.build().execute(&mut *tx).await?.rows_affected();
        }
        sqlx::query(
            "UPDATE imports SET rows_imported = rows_imported + $1,
                 rows_rejected = rows_rejected + $2, updated_at = $3 WHERE id = $4",
        )
        .bind(imported as i64)
        .bind(rejected as i64)
        .bind(&now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE imports SET rows_done = $1, checkpoint_byte = $2, checkpoint_line = $3,
                 checkpoint_record = $4 WHERE id = $5 AND rows_done < $1",
        )
        .bind(rows_done as i64)
        .bind(next.byte as i64)
        .bind(next.line as i64)
        .bind(next.record as i64)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let counts = sqlx::query_as(
            "SELECT rows_done, rows_imported, rows_rejected FROM imports WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        counts
    });
    Ok(Counts {
        rows_done: counts.0,
        rows_imported: counts.1,
        rows_rejected: counts.2,
    })
}

/// The statement leaving a notification, at most one per import and kind (binds: import,
/// kind, message, now).
const NOTIFY: &str = "INSERT INTO notifications (import_id, kind, message, created_at)
     VALUES ($1, $2, $3, $4)
     ON CONFLICT DO NOTHING";

/// The message of a completed import's notification.
fn completed_message(i: &Import) -> String {
    let transactions = plural(i.rows_imported, "transaction", "transactions");
    let mut message = if i.rows_rejected == 0 {
        format!("Imported {transactions} from {}.", i.file_name)
    } else {
        format!(
            "{} completed with {}: {transactions} imported.",
            i.file_name,
            plural(i.rows_rejected, "rejected row", "rejected rows"),
        )
    };
    let notes = i.notes();
    if let Some((first, rest)) = notes.split_first() {
        message.push(' ');
        message.extend(first.chars().take(1).flat_map(char::to_uppercase));
        message.extend(first.chars().skip(1));
        for n in rest {
            message.push_str("; ");
            message.push_str(n);
        }
        message.push('.');
    }
    message
}

/// Marks an import completed (counts recomputed from the stored rows) and leaves a
/// notification, in one SQL transaction. Returns the import as stored.
pub async fn complete_import(db: &Db, id: i64) -> sqlx::Result<Option<Import>> {
    let now = now();
    with_pool!(db, pool => {
        let mut tx = pool.begin().await?;
        let import: Option<Import> = sqlx::query_as(
            "UPDATE imports SET state = 'completed', error = NULL, finished_at = $1,
                 updated_at = $1,
                 rows_imported = (SELECT COUNT(*) FROM transactions WHERE import_id = $2),
                 rows_rejected = (SELECT COUNT(*) FROM rejected_rows WHERE import_id = $2),
                 rows_done = (SELECT COUNT(*) FROM transactions WHERE import_id = $2)
                           + (SELECT COUNT(*) FROM rejected_rows WHERE import_id = $2)
             WHERE id = $2 AND state != 'failed'
             RETURNING *",
        )
        .bind(&now)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(i) = &import {
            sqlx::query(NOTIFY)
                .bind(id)
                .bind("import_completed")
                .bind(completed_message(i))
                .bind(&now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(import)
    })
}

/// What [`reset_import`] did.
#[derive(Clone, Debug)]
pub enum Reset {
    /// Back to `queued`, as it is now, its earlier rows gone.
    Done(Box<Import>),
    /// No such import.
    NotFound,
    /// The import is not in a state that can be reset (it is in this one).
    WrongState(String),
    /// Its content is imported by another live import, this one.
    Duplicate(i64),
}

/// Puts a finished import (in one of `from`: `failed`, `completed`) back to `queued`, to
/// run it again from the start: its transactions, rejected rows, notifications, counts,
/// checkpoint and error are dropped in the same SQL transaction, so the new run replaces
/// the old one's rows instead of adding to them. `chosen` records the order of day and
/// month the user chose for its dates (the job reads it). The job id is cleared until the
/// caller sets the new run's (so the old job's failure is not read as this run's).
pub async fn reset_import(
    db: &Db,
    id: i64,
    from: &[&str],
    chosen: Option<DateOrder>,
) -> sqlx::Result<Reset> {
    let now = now();
    let chosen = chosen.map(DateOrder::code);
    with_pool!(db, pool => {
        let mut tx = pool.begin().await?;
        let state: Option<(String, String)> =
            sqlx::query_as("SELECT state, sha256 FROM imports WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((state, sha256)) = state else {
            return Ok(Reset::NotFound);
        };
        if !from.contains(&state.as_str()) {
            return Ok(Reset::WrongState(state));
        }
        let updated = sqlx::query_as::<_, Import>(
            "UPDATE imports SET state = 'queued', job_id = NULL, rows_total = NULL,
                 rows_done = 0, rows_imported = 0, rows_rejected = 0, attempts = 0,
                 resumed_from = NULL, checkpoint_byte = NULL, checkpoint_line = NULL,
                 checkpoint_record = NULL, summary_lines_skipped = 0, error = NULL,
                 started_at = NULL, finished_at = NULL,
                 date_order = COALESCE($1, date_order),
                 date_order_basis = CASE WHEN $1 IS NULL THEN date_order_basis ELSE 'chosen' END,
                 date_order_guessed = CASE WHEN $1 IS NULL THEN date_order_guessed ELSE FALSE END,
                 updated_at = $2
             WHERE id = $3
             RETURNING *",
        )
        .bind(chosen)
        .bind(&now)
        .bind(id)
        .fetch_one(&mut *tx)
        .await;
        let import = match updated {
            Ok(i) => i,
            // A failed import leaves the unique index on its content; another upload of the
            // same file may have taken its place since.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                tx.rollback().await?;
                let other: i64 = sqlx::query_scalar(
                    "SELECT id FROM imports WHERE sha256 = $1 AND state != 'failed' AND id != $2
                     ORDER BY id LIMIT 1",
                )
                .bind(&sha256)
                .bind(id)
                .fetch_one(pool)
                .await?;
                return Ok(Reset::Duplicate(other));
            }
            Err(e) => return Err(e),
        };
        for delete in [
            "DELETE FROM transactions WHERE import_id = $1",
            "DELETE FROM rejected_rows WHERE import_id = $1",
            "DELETE FROM notifications WHERE import_id = $1",
        ] {
            sqlx::query(delete).bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(Reset::Done(Box::new(import)))
    })
}

/// Deletes an import with its transactions, rejected rows and notifications (they
/// cascade). Returns it as it was, to remove its file; `None` when there is none.
pub async fn delete_import(db: &Db, id: i64) -> sqlx::Result<Option<Import>> {
    with_pool!(db, pool => {
        sqlx::query_as("DELETE FROM imports WHERE id = $1 RETURNING *")
            .bind(id)
            .fetch_optional(pool)
            .await
    })
}

/// Marks an import failed for good with `error` and leaves a notification, in one SQL
/// transaction. Does nothing to an import already final.
pub async fn fail_import(db: &Db, id: i64, error: &str) -> sqlx::Result<bool> {
    let now = now();
    with_pool!(db, pool => {
        let mut tx = pool.begin().await?;
        let file: Option<String> = sqlx::query_scalar(
            "UPDATE imports SET state = 'failed', error = $1, finished_at = $2, updated_at = $2
             WHERE id = $3 AND state IN ('queued', 'running')
             RETURNING file_name",
        )
        .bind(error)
        .bind(&now)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(file) = &file {
            sqlx::query(NOTIFY)
                .bind(id)
                .bind("import_failed")
                .bind(format!("Import of {file} failed: {error}"))
                .bind(&now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(file.is_some())
    })
}

/// A rejected row.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct RejectedRow {
    /// Line in the file.
    pub line: i64,
    /// Why.
    pub reason: String,
    /// The record as read, shortened.
    pub raw: String,
}

/// Rejected rows of an import, by line.
pub async fn rejected_rows(
    db: &Db,
    id: i64,
    limit: i64,
    offset: i64,
) -> sqlx::Result<Vec<RejectedRow>> {
    with_pool!(db, pool => {
        sqlx::query_as(
            "SELECT line, reason, raw FROM rejected_rows WHERE import_id = $1
             ORDER BY line LIMIT $2 OFFSET $3",
        )
        .bind(id)
        .bind(limit)
        .bind(offset)
        .fetch_all(pool)
        .await
    })
}

/// An imported transaction.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct TransactionRow {
    /// Line in the file.
    pub line: i64,
    /// Booking date, `YYYY-MM-DD`.
    pub booked_on: String,
    /// Description.
    pub description: String,
    /// Signed amount in cents.
    pub amount_cents: i64,
}

/// Transactions of an import, by line.
pub async fn transactions(
    db: &Db,
    id: i64,
    limit: i64,
    offset: i64,
) -> sqlx::Result<Vec<TransactionRow>> {
    with_pool!(db, pool => {
        sqlx::query_as(
            "SELECT line, booked_on, description, amount_cents FROM transactions
             WHERE import_id = $1 ORDER BY line LIMIT $2 OFFSET $3",
        )
        .bind(id)
        .bind(limit)
        .bind(offset)
        .fetch_all(pool)
        .await
    })
}

/// A notification.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Notification {
    /// Its id.
    pub id: i64,
    /// The import it is about.
    pub import_id: Option<i64>,
    /// `import_completed` or `import_failed`.
    pub kind: String,
    /// The text.
    pub message: String,
    /// When it was written.
    pub created_at: String,
    /// When it was marked read.
    pub read_at: Option<String>,
}

/// The latest notifications, newest first.
pub async fn notifications(
    db: &Db,
    unread_only: bool,
    limit: i64,
) -> sqlx::Result<Vec<Notification>> {
    with_pool!(db, pool => {
        sqlx::query_as(
            "SELECT * FROM notifications WHERE ($1 = 0 OR read_at IS NULL)
             ORDER BY id DESC LIMIT $2",
        )
        .bind(unread_only as i64)
        .bind(limit)
        .fetch_all(pool)
        .await
    })
}

/// How many notifications are unread.
pub async fn unread_count(db: &Db) -> sqlx::Result<i64> {
    with_pool!(db, pool => {
        sqlx::query_scalar("SELECT COUNT(*) FROM notifications WHERE read_at IS NULL")
            .fetch_one(pool)
            .await
    })
}

/// Marks one notification read; `false` when there is none with that id.
pub async fn mark_read(db: &Db, id: i64) -> sqlx::Result<bool> {
    let now = now();
    let changed = with_pool!(db, pool => {
        sqlx::query("UPDATE notifications SET read_at = COALESCE(read_at, $1) WHERE id = $2")
            .bind(&now)
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected()
    });
    Ok(changed > 0)
}

/// Marks every notification read; returns how many were unread.
pub async fn mark_all_read(db: &Db) -> sqlx::Result<u64> {
    let now = now();
    Ok(with_pool!(db, pool => {
        sqlx::query("UPDATE notifications SET read_at = $1 WHERE read_at IS NULL")
            .bind(&now)
            .execute(pool)
            .await?
            .rows_affected()
    }))
}
