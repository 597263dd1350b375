//! A backend on the application's own pool (`PostgresBackend::from_pool`): a job enqueued in
//! the application's transaction on that pool runs and its typed result is read; the pool
//! held whole by the application does not stop lease renewal; the pool keeps working after
//! the backend is dropped; the options taken from the pool.

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kosh_jobs_core::{
    Backend, Client, Handler, Job, JobContext, JobError, JobId, JobState, NewJob, Timestamp, Worker,
};
use kosh_jobs_postgres::{PostgresBackend, PostgresOptions};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use support::held::{held_worker, Held, HeldState};

/// The application's pool of at most `max` connections, opening none before it needs one.
fn app_pool(max: u32, acquire_timeout: Duration) -> PgPool {
    PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(acquire_timeout)
        .connect_lazy(&support::shared_url())
        .expect("app pool")
}

/// A backend on `pool`, in `schema`, with a fallback poll short enough for a test.
async fn backend_on_pool(pool: &PgPool, schema: &str, events: bool) -> PostgresBackend {
    let opts = PostgresOptions::from_pool(pool.clone())
        .schema(schema)
        .events(events)
        .poll_interval(Duration::from_millis(200))
        .build()
        .expect("options");
    PostgresBackend::connect_with(opts)
        .await
        .expect("a backend on the application's pool")
}

/// Polls `check` until it returns `Some`, failing the test past the deadline.
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[derive(Clone)]
struct App {
    pool: PgPool,
}

/// Reads its upload's row on the application's pool and returns its row count.
#[derive(Serialize, Deserialize)]
struct CountRows {
    upload: i64,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Counted {
    upload: i64,
    rows: i64,
}

impl Job for CountRows {
    type Output = Counted;
    const NAME: &'static str = "count_rows";
    const QUEUE: &'static str = "uploads";
}

impl Handler<App> for CountRows {
    async fn run(self, ctx: JobContext<App>) -> Result<Counted, JobError> {
        let rows: i64 = sqlx::query_scalar("SELECT rows FROM pool_uploads WHERE id = $1")
            .bind(self.upload)
            .fetch_one(&ctx.state().pool)
            .await?;
        Ok(Counted {
            upload: self.upload,
            rows,
        })
    }
}

/// The application's pool serves its own rows, the job enqueued with them in its
/// transaction, the worker's reserves and the job's handler; lease renewals and the listener
/// are the backend's own; the typed result comes back through a client waiting by events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_enqueued_in_the_app_transaction_runs_on_the_app_pool() {
    let pool = app_pool(4, Duration::from_secs(10));
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS pool_uploads; \
         CREATE TABLE pool_uploads (id bigint PRIMARY KEY, rows bigint NOT NULL)",
    )
    .execute(&pool)
    .await
    .expect("app table");
    let backend = backend_on_pool(&pool, &support::unique_schema("pool_run"), true).await;

    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("INSERT INTO pool_uploads (id, rows) VALUES (7, 1200)")
        .execute(&mut *tx)
        .await
        .expect("app row");
    let enqueued = backend
        .enqueue_in(&mut tx, CountRows { upload: 7 })
        .await
        .expect("enqueue_in");
    // Not visible outside the transaction before its commit.
    assert_eq!(backend.get(enqueued.id).await.expect("get"), None);
    tx.commit().await.expect("commit");

    let worker = Worker::builder(backend.clone())
        .state(App { pool: pool.clone() })
        .register::<CountRows>()
        .concurrency(2)
        .build()
        .expect("worker")
        .spawn();
    let client = Client::new(backend.clone());
    let out = client
        .handle::<CountRows>(enqueued.id)
        .wait_timeout(Duration::from_secs(30))
        .await
        .expect("the job's result");
    assert_eq!(
        out,
        Counted {
            upload: 7,
            rows: 1200
        }
    );
    let rec = client.status(enqueued.id).await.expect("status");
    assert_eq!(
        (rec.state, rec.attempts),
        (JobState::Completed, 1),
        "{rec:?}"
    );
    worker.shutdown().await.expect("worker");
}

/// The application's pool has one connection, and the application takes it and keeps it
/// while a job of the backend on that pool runs with a 1-second lease: the lease is renewed
/// on the backend's own connections for several lease lengths, so a second backend's
/// worker, ready to recover it, never runs the job again; it completes on its first
/// attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_pool_held_by_the_application_does_not_starve_lease_renewal() {
    const LEASE: Duration = Duration::from_secs(1);
    let schema = support::unique_schema("pool_held");
    let pool = app_pool(1, Duration::from_millis(500));
    let backend = backend_on_pool(&pool, &schema, false).await;
    let rescue_backend = support::backend_on(&schema, None).await;
    let now = Timestamp::now_system();
    let id: JobId = backend
        .push(vec![NewJob::new(Held::NAME, Held::QUEUE, "{}", now)])
        .await
        .expect("push")[0]
        .id;

    let (finish_tx, finish_rx) = tokio::sync::watch::channel(false);
    let state = HeldState {
        starts: Arc::default(),
        finish: finish_rx,
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker = held_worker(&backend, state.clone(), stop_rx.clone());
    eventually("the job started", Duration::from_secs(30), || {
        let n = state.starts.load(Ordering::SeqCst);
        async move { (n == 1).then_some(()) }
    })
    .await;
    // A second backend's worker, which would run the job again if its lease expired.
    let rescuer = held_worker(&rescue_backend, state.clone(), stop_rx);

    // The application takes its pool's only connection (between the worker's looks) and
    // keeps it.
    let held = eventually(
        "the application holds its pool's connection",
        Duration::from_secs(30),
        || async { pool.acquire().await.ok() },
    )
    .await;
    let e = backend.counts().await.expect_err("the pool is held");
    assert!(e.is_unavailable(), "{e:?}");

    // Renewed past several lease lengths while the pool stays held, never run twice.
    let held_at = Timestamp::now_system();
    eventually(
        "the lease renewed past 4 lease lengths",
        Duration::from_secs(30),
        || {
            let (rescue_backend, state) = (&rescue_backend, &state);
            async move {
                assert_eq!(state.starts.load(Ordering::SeqCst), 1, "the job ran again");
                let rec = rescue_backend.get(id).await.expect("get").expect("the job");
                assert_eq!((rec.state, rec.attempts), (JobState::Running, 1), "{rec:?}");
                let until = rec.lease_expires_at.expect("a running job has a lease");
                (until >= held_at + LEASE * 4).then_some(())
            }
        },
    )
    .await;
    assert_eq!(
        (pool.size(), pool.num_idle()),
        (1, 0),
        "the pool stayed held"
    );

    drop(held);
    finish_tx.send(true).expect("let the job finish");
    let rec = eventually("the job completed", Duration::from_secs(30), || async {
        let rec = rescue_backend.get(id).await.expect("get")?;
        (rec.state == JobState::Completed).then_some(rec)
    })
    .await;
    assert_eq!(rec.attempts, 1, "{rec:?}");
    assert!(rec.errors.is_empty(), "{rec:?}");
    assert_eq!(state.starts.load(Ordering::SeqCst), 1);
    stop_tx.send(true).expect("stop the workers");
    worker.await.expect("worker");
    rescuer.await.expect("rescuer");
}

/// The backend opens the application pool's connections on the caller's runtime, as the
/// application would: the pool's only connection, opened by the backend to migrate, is still
/// the pool's and still works once the backend's thread and its own connections are gone.
/// Opened on that thread instead, it is driven by the backend's runtime, and the
/// application's queries fail once the backend is dropped ("A Tokio 1.x context was found,
/// but it is being shutdown"), or the pool replaces the connection: seen when this test was
/// written, with the backend's operations on the application's pool moved to its thread.
/// The pool does not test connections before handing them out here, so nothing hides it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_pool_outlives_the_backend() {
    let app_name = format!("kosh_outlives_{}", std::process::id());
    let connect = support::shared_url()
        .parse::<PgConnectOptions>()
        .expect("url")
        .application_name(&app_name);
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        .connect_lazy_with(connect);
    assert_eq!(pool.size(), 0, "a lazy pool opens no connection by itself");
    let backend = backend_on_pool(&pool, &support::unique_schema("pool_drop"), false).await;
    let now = backend.clock().now();
    let id = backend
        .push(vec![NewJob::new("noop", "q", "{}", now)])
        .await
        .expect("push")[0]
        .id;
    assert!(backend.get(id).await.expect("get").is_some());
    assert_eq!(pool.size(), 1, "the backend used the application's pool");
    let pid = || async {
        tokio::time::timeout(
            Duration::from_secs(10),
            sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()").fetch_one(&pool),
        )
        .await
        .expect("a query of the application's pool hung")
        .expect("a query of the application's pool")
    };
    let before = pid().await;

    let watcher = PgPool::connect(&support::shared_url())
        .await
        .expect("connections of the test");
    let connections = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
        )
        .bind(&app_name)
        .fetch_one(&watcher)
        .await
        .expect("pg_stat_activity")
    };
    assert_eq!(
        connections().await,
        3,
        "the pool's, the listener's and a lease connection"
    );
    drop(backend);
    // The backend's runtime is gone with its listener's and lease connections.
    eventually(
        "the backend's own connections closed",
        Duration::from_secs(30),
        || async { (connections().await == 1).then_some(()) },
    )
    .await;
    // A query may still go through on a connection of a runtime that is gone (on readiness
    // seen before), after which the pool drops it: a few in a row, all on the same one.
    for _ in 0..3 {
        assert_eq!(pid().await, before, "the same connection, still working");
    }
    assert_eq!(pool.size(), 1);
}

/// Options from a pool take its connection options and acquire timeout, keep its password
/// out of `Debug`, and refuse a size of their own.
#[tokio::test]
async fn options_from_a_pool_take_the_pool_s_settings() {
    let pool = PgPoolOptions::new()
        .max_connections(3)
        .acquire_timeout(Duration::from_millis(1500))
        .connect_lazy("postgres://app:s3cret@db.internal:5433/app")
        .expect("lazy pool");
    let opts = PostgresOptions::from_pool(pool.clone())
        .build()
        .expect("options");
    assert_eq!(opts.schema(), "kosh");
    assert_eq!(opts.max_connections(), 3);
    assert_eq!(opts.display_url(), "postgres://app@db.internal:5433/app");
    let debug = format!("{opts:?}");
    assert!(!debug.contains("s3cret"), "{debug}");
    assert!(debug.contains("application_pool: true"), "{debug}");
    assert!(debug.contains("1.5s"), "{debug}");
    let err = PostgresOptions::from_pool(pool)
        .max_connections(8)
        .build()
        .expect_err("a size for the application's pool");
    assert!(err.to_string().contains("that pool's size"), "{err}");
}
