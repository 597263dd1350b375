//! Recording an upload as an import and queueing its job: in one transaction when the app's
//! tables and the job store are the same Postgres database, else in two steps.
//!
//! - [`Queueing::OneTransaction`]: the import row is inserted, its job pushed
//!   ([`PostgresBackend::enqueue_in`]) and the job id noted on the row, all in one sqlx
//!   transaction of the app's pool. The row and its job exist together or not at all: an
//!   enqueue that fails leaves no import, a row that cannot be written (a constraint, checked
//!   at once or at the commit) leaves no job, and a worker is woken only at the commit.
//! - [`Queueing::TwoSteps`]: the row is committed, then the job is pushed to the job store,
//!   then its id noted on the row. A failed push marks the import failed (it can be retried
//!   from the page); a crash between the steps leaves a `queued` import without a job, which
//!   nothing runs until it is deleted (see `README.md`, "One transaction or two steps").

use kosh_jobs::postgres::PostgresBackend;
use kosh_jobs::{Client, JobId};

use crate::db::{self, Db, Inserted, NewImport};
use crate::import::ImportCsv;

/// How an upload's import and its job are created.
#[derive(Clone, Debug)]
pub enum Queueing {
    /// The app's tables and the job store share one Postgres database: one transaction.
    OneTransaction(PostgresBackend),
    /// Separate stores (or SQLite, or Redis): the row, then the job.
    TwoSteps,
}

impl Queueing {
    /// One transaction when `database_url` and `jobs_url` name the same Postgres database
    /// (see [`db::same_postgres_database`]) and `db` and `jobs` are the stores they opened;
    /// else two steps.
    pub fn choose(
        database_url: &str,
        jobs_url: &str,
        db: &Db,
        jobs: Option<&PostgresBackend>,
    ) -> Queueing {
        match (db.as_postgres(), jobs) {
            (Some(_), Some(backend)) if db::same_postgres_database(database_url, jobs_url) => {
                Queueing::OneTransaction(backend.clone())
            }
            _ => Queueing::TwoSteps,
        }
    }

    /// Whether imports and their jobs are created in one transaction.
    pub fn is_one_transaction(&self) -> bool {
        matches!(self, Queueing::OneTransaction(_))
    }

    /// Records the upload `new` and queues its import job.
    pub async fn create(
        &self,
        db: &Db,
        jobs: &Client,
        new: &NewImport<'_>,
    ) -> Result<Created, CreateError> {
        match (self, db.as_postgres()) {
            (Queueing::OneTransaction(backend), Some(pool)) => {
                one_transaction(db, pool, backend, new).await
            }
            _ => two_steps(db, jobs, new).await,
        }
    }
}

/// What [`Queueing::create`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Created {
    /// A new import, with its job.
    New {
        /// The import.
        id: i64,
        /// Its job.
        job: JobId,
    },
    /// The same content is already imported or on its way, by this import: nothing was
    /// recorded or queued.
    Duplicate(i64),
}

/// Why [`Queueing::create`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateError {
    /// The app database.
    #[error("app database")]
    Db {
        /// What it said.
        #[source]
        source: sqlx::Error,
        /// The import recorded anyway (two steps: the job was queued, its id not noted).
        kept: Option<i64>,
    },
    /// The job store.
    #[error("job store")]
    Queue {
        /// What it said.
        #[source]
        source: kosh_jobs::Error,
        /// The import recorded anyway and marked failed (two steps), to be retried.
        kept: Option<i64>,
    },
}

impl CreateError {
    /// The import left recorded despite the failure, if any: its file must stay.
    pub fn kept(&self) -> Option<i64> {
        match self {
            CreateError::Db { kept, .. } | CreateError::Queue { kept, .. } => *kept,
        }
    }

    fn db(kept: Option<i64>) -> impl FnOnce(sqlx::Error) -> CreateError {
        move |source| CreateError::Db { source, kept }
    }
}

/// The row, its job and the job's id on the row, in one transaction of the app's pool.
async fn one_transaction(
    db: &Db,
    pool: &sqlx::PgPool,
    backend: &PostgresBackend,
    new: &NewImport<'_>,
) -> Result<Created, CreateError> {
    let mut tx = pool.begin().await.map_err(CreateError::db(None))?;
    let id = match db::insert_import_in(&mut tx, new).await {
        Ok(id) => id,
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            // The violation aborted the transaction: end it, then look the holder up.
            tx.rollback().await.map_err(CreateError::db(None))?;
            let existing = db::live_import_of(db, new.sha256)
                .await
                .map_err(CreateError::db(None))?;
            return Ok(Created::Duplicate(existing));
        }
        Err(e) => return Err(CreateError::db(None)(e)),
    };
    // On any error below, `tx` is dropped unfinished and sqlx rolls it back: the row goes,
    // and so does the job pushed on the same connection.
    let job = backend
        .enqueue_in(&mut tx, ImportCsv::new(id, new.user))
        .await
        .map_err(|source| CreateError::Queue { source, kept: None })?;
    db::set_job_id_in(&mut tx, id, &job.id.to_string())
        .await
        .map_err(CreateError::db(None))?;
    tx.commit().await.map_err(CreateError::db(None))?;
    Ok(Created::New { id, job: job.id })
}

/// The row (committed), then the job, then its id on the row.
async fn two_steps(db: &Db, jobs: &Client, new: &NewImport<'_>) -> Result<Created, CreateError> {
    let id = match db::insert_import(db, new)
        .await
        .map_err(CreateError::db(None))?
    {
        Inserted::New(id) => id,
        Inserted::Duplicate(existing) => return Ok(Created::Duplicate(existing)),
    };
    let job = match jobs.enqueue(ImportCsv::new(id, new.user)).await {
        Ok(handle) => handle.id(),
        Err(source) => {
            // The row is committed: say why it will never run (the page offers Retry).
            if let Err(e) = db::fail_import(db, id, "could not queue the import").await {
                tracing::warn!(import = id, error = %e, "cannot mark the unqueued import failed");
            }
            return Err(CreateError::Queue {
                source,
                kept: Some(id),
            });
        }
    };
    db::set_job_id(db, id, &job.to_string())
        .await
        .map_err(CreateError::db(Some(id)))?;
    Ok(Created::New { id, job })
}
