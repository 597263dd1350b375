//! The import job: streams an uploaded statement into transactions, in batches that commit
//! with their checkpoint, reporting progress; resumes from the checkpoint when redelivered.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use kosh_jobs::{job, JobContext, JobError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;

use crate::db;
use crate::parse::{CsvFile, DateOrder, OpenError, ParsedRow, ResumePoint, Scan};

/// What the worker's handlers share.
#[derive(Clone, Debug)]
pub struct App {
    /// The app database (SQLite or Postgres).
    pub db: db::Db,
    /// Where uploads are stored.
    pub upload_dir: PathBuf,
    /// Rows per committed batch.
    pub batch_rows: usize,
    /// Test hook: pause after each row (see `CSV_UPLOAD_ROW_DELAY_MS`).
    pub row_delay: Duration,
    /// How to read `a/b/yyyy` dates when neither the file nor its bank's layout says
    /// (`DATE_ORDER`).
    pub default_date_order: DateOrder,
}

/// The payload: which import to run. One live job per import (`unique`), so enqueueing it
/// twice adds nothing; one import per user at a time (`group`, with the queue's group limit
/// set by [`Services::limit_imports_per_user`](crate::run::Services::limit_imports_per_user)).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImportCsv {
    /// The `imports` row.
    pub import_id: i64,
    /// The import's user (see [`crate::user`]): the job's group key. A payload queued before
    /// users existed has none and reads as [`DEFAULT_USER`](crate::user::DEFAULT_USER).
    #[serde(default = "default_user")]
    pub user: String,
    /// Read the file's `a/b/yyyy` dates in this order, whatever the file suggests (the
    /// user re-imports a file whose order was a guess). Without it, the order the user
    /// chose earlier for this import, if any, else the one the file shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_order: Option<DateOrder>,
}

fn default_user() -> String {
    crate::user::DEFAULT_USER.to_owned()
}

impl ImportCsv {
    /// The job for an import of `user` (as stored on the import), the date order decided as
    /// usual.
    pub fn new(import_id: i64, user: impl Into<String>) -> Self {
        ImportCsv {
            import_id,
            user: user.into(),
            date_order: None,
        }
    }

    /// The job for a stored import: its id and its user.
    pub fn of(import: &db::Import) -> Self {
        ImportCsv::new(import.id, import.user_id.clone())
    }
}

/// The job's result, stored with the job.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImportSummary {
    /// The import.
    pub import_id: i64,
    /// Data rows in the file.
    pub rows_total: Option<i64>,
    /// Transactions imported.
    pub rows_imported: i64,
    /// Rows rejected.
    pub rows_rejected: i64,
    /// Summary and footer lines skipped.
    pub summary_lines_skipped: i64,
    /// `dmy` or `mdy`; `None` when the file has no `a/b/yyyy` dates.
    pub date_order: Option<String>,
    /// Whether the date order was a guess.
    pub date_order_guessed: bool,
    /// What the user should know about how the file was read.
    pub notes: Vec<String>,
    /// Rows already done when this attempt resumed, if it did.
    pub resumed_from: Option<i64>,
}

impl From<db::Import> for ImportSummary {
    fn from(i: db::Import) -> Self {
        ImportSummary {
            import_id: i.id,
            rows_total: i.rows_total,
            rows_imported: i.rows_imported,
            rows_rejected: i.rows_rejected,
            summary_lines_skipped: i.summary_lines_skipped,
            notes: i.notes(),
            date_order: i.date_order,
            date_order_guessed: i.date_order_guessed,
            resumed_from: i.resumed_from,
        }
    }
}

/// Why an attempt failed.
///
/// It converts into a `JobError` that is **permanent** for [`ImportError::Unusable`] and
/// [`ImportError::UnknownImport`] (retrying cannot fix the file), retryable otherwise. That
/// conversion is how the `#[job]` handler tells the worker not to retry, which is why this
/// type implements `Display` but not `std::error::Error` (the blanket conversion of errors
/// would make every one retryable).
#[derive(Debug)]
pub enum ImportError {
    /// The file cannot be imported as it is: no usable header, empty, gone.
    Unusable(String),
    /// No such import.
    UnknownImport(i64),
    /// This attempt's lease was lost (another worker has the job): stop, change nothing.
    LeaseLost,
    /// Something that may pass: the database, the disk.
    Transient(anyhow::Error),
}

impl ImportError {
    /// Whether retrying cannot help.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            ImportError::Unusable(_) | ImportError::UnknownImport(_)
        )
    }
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::Unusable(m) => f.write_str(m),
            ImportError::UnknownImport(id) => write!(f, "import {id} does not exist"),
            ImportError::LeaseLost => f.write_str("lease lost: another worker has this import"),
            ImportError::Transient(e) => write!(f, "{e:#}"),
        }
    }
}

impl From<ImportError> for JobError {
    fn from(e: ImportError) -> Self {
        if e.is_permanent() {
            JobError::permanent(e.to_string())
        } else {
            JobError::retryable(e.to_string())
        }
    }
}

impl From<sqlx::Error> for ImportError {
    fn from(e: sqlx::Error) -> Self {
        ImportError::Transient(anyhow::Error::new(e).context("app database"))
    }
}

impl From<OpenError> for ImportError {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Io(io) if io.kind() == std::io::ErrorKind::NotFound => {
                ImportError::Unusable("the uploaded file is gone".into())
            }
            e if e.is_permanent() => ImportError::Unusable(e.to_string()),
            e => ImportError::Transient(e.into()),
        }
    }
}

fn join_error(e: tokio::task::JoinError) -> ImportError {
    ImportError::Transient(anyhow::anyhow!("import thread failed: {e}"))
}

/// Imports one uploaded statement.
///
/// At least once: a redelivered job resumes from the checkpoint committed with the last
/// batch; rows are keyed by (import, line), so a row is never stored twice.
#[job(
    queue = "csv-uploads",
    max_attempts = 5,
    backoff = exponential(2s, max = 10m, jitter = 0.2),
    timeout = 2h,
    unique = "import-{import_id}",
    group = user
)]
pub async fn import_csv(
    job: ImportCsv,
    ctx: JobContext<App>,
) -> Result<ImportSummary, ImportError> {
    let app = ctx.state();
    let id = job.import_id;
    let Some(import) = db::begin_attempt(&app.db, id).await? else {
        // Already final (the same job delivered again), or gone.
        return match db::get_import(&app.db, id).await? {
            Some(i) if i.state == "completed" => Ok(i.into()),
            Some(i) => Err(ImportError::Unusable(
                i.error.unwrap_or_else(|| "the import failed".into()),
            )),
            None => Err(ImportError::UnknownImport(id)),
        };
    };
    if let Some(from) = import.resumed_from.filter(|_| import.rows_done > 0) {
        tracing::info!(
            import = id,
            rows_done = from,
            attempt = ctx.attempt(),
            "resuming import from its checkpoint"
        );
    }
    let forced = job.date_order.or_else(|| import.chosen_date_order());
    match run(&ctx, import, forced).await {
        Ok(summary) => Ok(summary),
        Err(ImportError::LeaseLost) => Err(ImportError::LeaseLost),
        Err(e) if e.is_permanent() || ctx.attempt() >= ctx.max_attempts() => {
            tracing::warn!(import = id, error = %e, "import failed");
            db::fail_import(&app.db, id, &e.to_string()).await?;
            Err(e)
        }
        Err(e) => {
            tracing::warn!(import = id, error = %e, attempt = ctx.attempt(), "import attempt failed; it will be retried");
            let note = format!("attempt {} failed, will retry: {e}", ctx.attempt());
            db::note_retry(&app.db, id, &note).await?;
            Err(e)
        }
    }
}

/// The shortest time between two progress reports of an import, but for its last.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

struct Batch {
    rows: Vec<ParsedRow>,
    next: ResumePoint,
}

async fn run(
    ctx: &JobContext<App>,
    import: db::Import,
    forced: Option<DateOrder>,
) -> Result<ImportSummary, ImportError> {
    let app = ctx.state().clone();
    let id = import.id;
    let path = app.upload_dir.join(&import.stored_name);
    let file = tokio::task::spawn_blocking(move || CsvFile::open(&path))
        .await
        .map_err(join_error)??;

    // First pass: the number of rows (for progress), the summary lines, and how this file
    // writes its dates.
    let cancel = ctx.cancellation().clone();
    let f2 = file.clone();
    let default_order = app.default_date_order;
    let scan = tokio::task::spawn_blocking(move || {
        f2.scan_as(default_order, forced, || cancel.is_cancelled())
    })
    .await
    .map_err(join_error)??
    .ok_or_else(|| ImportError::Transient(anyhow::anyhow!("cancelled")))?;
    db::record_scan(&app.db, id, &scan, file.columns().layout.name).await?;
    // Dates without a year: the file's latest date, else the day of the upload (the same on
    // every attempt).
    let uploaded = import
        .created_at
        .get(..10)
        .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
    let dates = scan.dates(uploaded);
    if let Some(note) = scan.dates.note() {
        tracing::info!(import = id, basis = scan.dates.basis.code(), "{note}");
    }

    let start = import.checkpoint().unwrap_or(file.data_start());
    let mut rows_done = import.rows_done.max(0) as u64;
    let so_far = db::Counts {
        rows_done: import.rows_done,
        rows_imported: import.rows_imported,
        rows_rejected: import.rows_rejected,
    };

    // Second pass on a blocking thread, handing over batches through a small channel: the
    // file is never in memory, and the async threads only do the SQL.
    let (tx, mut rx) = mpsc::channel::<Batch>(2);
    let cancel = ctx.cancellation().clone();
    let (batch_rows, delay) = (app.batch_rows, app.row_delay);
    let producer = tokio::task::spawn_blocking(move || -> Result<(), OpenError> {
        let mut rows = file.rows(start, dates)?;
        loop {
            let mut batch = Vec::with_capacity(batch_rows);
            let mut end = false;
            while batch.len() < batch_rows {
                if cancel.is_cancelled() {
                    return Ok(());
                }
                match rows.next_row()? {
                    Some(r) => batch.push(r),
                    None => {
                        end = true;
                        break;
                    }
                }
                if !delay.is_zero() {
                    std::thread::sleep(delay);
                }
            }
            if !batch.is_empty() {
                let next = rows.position();
                if tx.blocking_send(Batch { rows: batch, next }).is_err() {
                    return Ok(()); // the async side stopped
                }
            }
            if end {
                return Ok(());
            }
        }
    });

    // Progress goes to the queue at most once a second, and after the last batch (or, with
    // no batch, once at the end): each report is a request to the job store and an event to
    // every open page, and a small file would send several within a few milliseconds. The
    // page reads the rows done from the app database, committed with each batch.
    let mut reported = tokio::time::Instant::now();
    let mut unreported = Some(so_far);
    while let Some(batch) = rx.recv().await {
        rows_done += batch.rows.len() as u64;
        let counts = db::commit_batch(&app.db, id, &batch.rows, rows_done, batch.next).await?;
        if reported.elapsed() >= PROGRESS_EVERY {
            report(ctx, rows_done, &scan, Some(counts)).await?;
            reported = tokio::time::Instant::now();
            unreported = None;
        } else {
            unreported = Some(counts);
        }
    }
    if let Some(counts) = unreported {
        report(ctx, rows_done, &scan, Some(counts)).await?;
    }
    producer.await.map_err(join_error)??;
    if ctx.is_cancelled() {
        return Err(ImportError::Transient(anyhow::anyhow!("cancelled")));
    }

    let done = db::complete_import(&app.db, id)
        .await?
        .ok_or_else(|| ImportError::Unusable("the import was marked failed meanwhile".into()))?;
    tracing::info!(
        import = id,
        imported = done.rows_imported,
        rejected = done.rows_rejected,
        summary_lines_skipped = done.summary_lines_skipped,
        "import completed"
    );
    Ok(done.into())
}

async fn report(
    ctx: &JobContext<App>,
    rows_done: u64,
    scan: &Scan,
    counts: Option<db::Counts>,
) -> Result<(), ImportError> {
    let c = counts.unwrap_or_default();
    let value = json!({
        "rows_done": rows_done,
        "rows_total": scan.rows_total,
        "rows_imported": c.rows_imported,
        "rows_rejected": c.rows_rejected,
        "summary_lines_skipped": scan.summary_lines,
    });
    match ctx.progress(value).await {
        Ok(()) => Ok(()),
        Err(kosh_jobs::Error::LeaseLost(_)) => Err(ImportError::LeaseLost),
        Err(e) => Err(ImportError::Transient(e.into())),
    }
}

#[cfg(test)]
mod tests {
    use kosh_jobs::Job;

    use super::*;

    #[test]
    fn the_user_is_the_jobs_group_key() {
        let job = ImportCsv::new(7, "ana");
        assert_eq!(job.group_key().as_deref(), Some("ana"));
        assert_eq!(job.unique_key().as_deref(), Some("import-7"));
    }

    #[test]
    fn a_payload_queued_before_users_reads_as_the_demo_user() {
        let old: ImportCsv = serde_json::from_str(r#"{"import_id": 3, "date_order": "mdy"}"#)
            .expect("an old payload deserialises");
        assert_eq!((old.import_id, old.user.as_str()), (3, "demo"));
        assert_eq!(old.date_order, Some(DateOrder::MonthFirst));
        let new = serde_json::to_value(ImportCsv::new(4, "ben")).expect("serialises");
        assert_eq!(new, json!({"import_id": 4, "user": "ben"}));
    }
}
