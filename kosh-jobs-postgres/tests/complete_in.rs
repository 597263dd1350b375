//! A handler completes its job inside its own transaction (`PostgresBackend::complete_in`):
//! the job's completion and the handler's writes commit together or not at all, and the
//! worker counts such an attempt as completed, not as a lost lease.

mod support;

use std::sync::Arc;
use std::time::Duration;

use kosh_jobs_core::{
    Backend, Backoff, CancellationToken, Client, Handler, Job, JobContext, JobError, JobOptions,
    JobState, NewJob, ReserveRequest, Worker,
};
use kosh_jobs_postgres::PostgresBackend;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

/// The application's pool and a table of its own, named after the test.
async fn app_pool(table: &str) -> PgPool {
    let pool = PgPool::connect(&support::shared_url())
        .await
        .expect("app pool");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (n bigint PRIMARY KEY, attempt int)"
    )))
    .execute(&pool)
    .await
    .expect("app table");
    pool
}

#[derive(Clone)]
struct App {
    pool: PgPool,
    jobs: PostgresBackend,
    table: &'static str,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
enum Mode {
    /// Write, complete, commit, return `Ok`.
    Commit,
    /// Write, complete, commit, then return an error anyway.
    CommitThenFail,
    /// Write, complete, roll back and fail on the first attempt; commit on the second.
    RollBackFirst,
    /// Write, complete, commit, then wait until the worker's lease renewal finds the job no
    /// longer running and cancels the attempt.
    CommitThenWaitForRenewal,
}

#[derive(Serialize, Deserialize)]
struct Credit {
    n: i64,
    mode: Mode,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Credited {
    row: i64,
}

impl Job for Credit {
    type Output = Credited;
    const NAME: &'static str = "credit";
    const QUEUE: &'static str = "ledger";
    fn options() -> JobOptions {
        JobOptions::new()
            .max_attempts(3)
            .backoff(Backoff::fixed(Duration::from_millis(10)).expect("backoff"))
    }
}

impl Handler<App> for Credit {
    async fn run(self, ctx: JobContext<App>) -> Result<Credited, JobError> {
        let app = ctx.state();
        let mut tx = app.pool.begin().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {} (n, attempt) VALUES ($1, $2)",
            app.table
        )))
        .bind(self.n)
        .bind(i32::try_from(ctx.attempt()).unwrap_or(i32::MAX))
        .execute(&mut *tx)
        .await?;
        let output = Credited { row: self.n };
        if !app.jobs.complete_in(&mut tx, &ctx, &output).await? {
            return Err(JobError::retryable("lease lost before the commit"));
        }
        if self.mode == Mode::RollBackFirst && ctx.attempt() == 1 {
            tx.rollback().await?;
            return Err(JobError::retryable("rolled back on purpose"));
        }
        tx.commit().await?;
        if self.mode == Mode::CommitThenWaitForRenewal {
            ctx.cancellation().cancelled().await;
        }
        if self.mode == Mode::CommitThenFail {
            return Err(JobError::retryable("failing after the commit"));
        }
        Ok(output)
    }
}

async fn rows(pool: &PgPool, table: &str) -> Vec<(i64, i32)> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT n, attempt FROM {table} ORDER BY n"
    )))
    .fetch_all(pool)
    .await
    .expect("app rows")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_completion_commits_with_the_handler_s_writes() {
    let b = support::backend("cin").await;
    let pool = app_pool("ledger_cin").await;
    let client = Client::new(b.clone());
    let jobs = [
        Credit {
            n: 1,
            mode: Mode::Commit,
        },
        Credit {
            n: 2,
            mode: Mode::CommitThenFail,
        },
        Credit {
            n: 3,
            mode: Mode::RollBackFirst,
        },
        Credit {
            n: 4,
            mode: Mode::CommitThenWaitForRenewal,
        },
    ];
    let mut handles = Vec::new();
    for j in jobs {
        handles.push(client.enqueue(j).await.expect("enqueue"));
    }
    let worker = Worker::builder(b.clone())
        .state(App {
            pool: pool.clone(),
            jobs: b.clone(),
            table: "ledger_cin",
        })
        .register::<Credit>()
        .concurrency(4)
        .heartbeat_interval(Duration::from_millis(50))
        .build()
        .expect("worker")
        .spawn();
    for (h, n) in handles.iter().zip(1..) {
        let out = tokio::time::timeout(Duration::from_secs(30), h.wait())
            .await
            .expect("each job ends within 30 s")
            .expect("each job completes");
        assert_eq!(
            out,
            Credited { row: n },
            "the typed result stored in the transaction"
        );
    }
    let stats = worker.shutdown().await.expect("shutdown");
    assert_eq!(
        (stats.completed, stats.lost, stats.retried, stats.failed),
        (4, 0, 1, 0),
        "four completed (none counted as a lost lease, not even the one whose renewal found \
         it completed), one retry: the rolled-back attempt"
    );
    assert_eq!(
        rows(&pool, "ledger_cin").await,
        [(1, 1), (2, 1), (3, 2), (4, 1)],
        "each credit once: the rolled-back attempt left nothing"
    );
    let two = b.get(handles[1].id()).await.expect("get").expect("job 2");
    assert_eq!(
        (two.state, two.attempts, two.errors.len()),
        (JobState::Completed, 1, 0),
        "an error after the commit does not undo the completion"
    );
    let three = b.get(handles[2].id()).await.expect("get").expect("job 3");
    assert_eq!((three.state, three.attempts), (JobState::Completed, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_no_longer_current_completes_nothing() {
    let b = support::backend("clost").await;
    let pool = app_pool("ledger_clost").await;
    let app = App {
        pool: pool.clone(),
        jobs: b.clone(),
        table: "ledger_clost",
    };
    let now = b.clock().now();
    let id = b
        .push(vec![NewJob::new(
            "credit",
            "ledger",
            r#"{"n":1,"mode":"Commit"}"#,
            now,
        )])
        .await
        .expect("push")[0]
        .id;
    let leased = b
        .reserve(&ReserveRequest {
            queues: vec!["ledger".into()],
            worker: "test".into(),
            max: 1,
            lease: Duration::from_secs(60),
        })
        .await
        .expect("reserve")
        .pop()
        .expect("the job");
    let ctx = JobContext::new(app, b.clone(), Arc::new(leased), CancellationToken::new());

    // Rolled back: the job is still running under the lease, and completes normally later.
    let mut tx = pool.begin().await.expect("begin");
    assert!(b
        .complete_in(&mut tx, &ctx, &())
        .await
        .expect("complete_in"));
    tx.rollback().await.expect("rollback");
    assert_eq!(
        b.get(id).await.expect("get").expect("job").state,
        JobState::Running
    );

    // Cancelled meanwhile: the lease is not current, nothing completes.
    b.cancel(id).await.expect("cancel");
    let mut tx = pool.begin().await.expect("begin");
    assert!(
        !b.complete_in(&mut tx, &ctx, &())
            .await
            .expect("complete_in"),
        "a cancelled job's lease completes nothing"
    );
    tx.commit().await.expect("commit");
    assert_eq!(
        b.get(id).await.expect("get").expect("job").state,
        JobState::Cancelled
    );
    assert!(rows(&pool, "ledger_clost").await.is_empty());
}
