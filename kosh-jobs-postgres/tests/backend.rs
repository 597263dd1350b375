//! The Postgres backend beyond the conformance suite: enqueue inside the application's
//! transaction, concurrent migration, and passwords kept out of errors and `Debug`.

mod support;

use std::sync::Arc;
use std::time::Duration;

use kosh_jobs_core::{Backend, JobState, NewJob};
use kosh_jobs_postgres::{PostgresBackend, PostgresOptions};
use kosh_jobs_testsupport::postgres_server::PASSWORD;
use serde::{Deserialize, Serialize};
use sqlx::{Connection, PgConnection};

/// The application's own connection, and a table of its own.
async fn app_connection(table: &str) -> PgConnection {
    let mut conn = PgConnection::connect(&support::shared_url())
        .await
        .expect("app connection");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {table} (id bigint PRIMARY KEY)"
    )))
    .execute(&mut conn)
    .await
    .expect("app table");
    conn
}

async fn app_rows(conn: &mut PgConnection, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(conn)
        .await
        .expect("count app rows")
}

/// A waiter that reports when `wait_for_work` on `queue` returns.
fn waiter(b: &PostgresBackend, queue: &str) -> tokio::task::JoinHandle<()> {
    let b = b.clone();
    let queues = vec![queue.to_owned()];
    tokio::spawn(async move {
        let until = b.clock().now() + Duration::from_secs(3600);
        b.wait_for_work(&queues, until).await.expect("wait");
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_transaction_leaves_no_job_and_wakes_nobody() {
    let b = support::backend("rb").await;
    let mut conn = app_connection("imports_rb").await;
    let wait = waiter(&b, "csv");
    let mut tx = conn.begin().await.expect("begin");
    sqlx::query("INSERT INTO imports_rb (id) VALUES (1)")
        .execute(&mut *tx)
        .await
        .expect("app row");
    let now = b.clock().now();
    let ids = b
        .push_in(&mut tx, vec![NewJob::new("import_csv", "csv", "{}", now)])
        .await
        .expect("push_in");
    tx.rollback().await.expect("rollback");
    assert_eq!(
        b.get(ids[0].id).await.expect("get"),
        None,
        "no job after rollback"
    );
    assert_eq!(app_rows(&mut conn, "imports_rb").await, 0);
    assert!(b.counts().await.expect("counts").is_empty());
    // Nothing woke the waiter: it is still waiting after a round trip through the database
    // (a notification sent now would have reached the listener by then).
    b.get(ids[0].id).await.expect("get");
    assert!(!wait.is_finished(), "a rolled-back enqueue woke a worker");
    wait.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_transaction_stores_the_job_and_wakes_a_worker() {
    let b = support::backend("commit").await;
    let mut conn = app_connection("imports_commit").await;
    let wait = waiter(&b, "csv");
    let mut tx = conn.begin().await.expect("begin");
    sqlx::query("INSERT INTO imports_commit (id) VALUES (1)")
        .execute(&mut *tx)
        .await
        .expect("app row");
    let now = b.clock().now();
    let ids = b
        .push_in(&mut tx, vec![NewJob::new("import_csv", "csv", "{}", now)])
        .await
        .expect("push_in");
    // Not visible to the backend before the commit.
    assert_eq!(b.get(ids[0].id).await.expect("get"), None);
    tx.commit().await.expect("commit");
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("the commit woke the waiting worker")
        .expect("waiter");
    let job = b.get(ids[0].id).await.expect("get").expect("stored");
    assert_eq!(job.state, JobState::Ready);
    assert_eq!(app_rows(&mut conn, "imports_commit").await, 1);
}

#[derive(Serialize, Deserialize)]
struct ImportCsv {
    upload_id: i64,
}

impl kosh_jobs_core::Job for ImportCsv {
    const NAME: &'static str = "import_csv";
    const QUEUE: &'static str = "csv-uploads";
    type Output = ();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_in_takes_the_type_s_queue_and_options() {
    let b = support::backend("typed").await;
    let mut conn = app_connection("imports_typed").await;
    let mut tx = conn.begin().await.expect("begin");
    let e = b
        .enqueue_in(&mut tx, ImportCsv { upload_id: 7 })
        .await
        .expect("enqueue_in");
    tx.commit().await.expect("commit");
    let job = b.get(e.id).await.expect("get").expect("stored");
    assert_eq!(
        (job.name.as_str(), job.queue.as_str()),
        ("import_csv", "csv-uploads")
    );
    assert_eq!(job.payload, r#"{"upload_id":7}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_backends_starting_at_once_migrate_once() {
    let url = support::shared_url();
    let schema = support::unique_schema("race");
    let mut tasks = Vec::new();
    let start = Arc::new(tokio::sync::Barrier::new(10));
    for _ in 0..10 {
        let (url, schema, start) = (url.clone(), schema.clone(), Arc::clone(&start));
        tasks.push(tokio::spawn(async move {
            let opts = PostgresOptions::from_url(&url)
                .expect("url")
                .schema(schema)
                .max_connections(2)
                .build()
                .expect("options");
            start.wait().await;
            PostgresBackend::connect_with(opts).await
        }));
    }
    let mut backends = Vec::new();
    for t in tasks {
        backends.push(t.await.expect("task").expect("every backend connects"));
    }
    let mut conn = PgConnection::connect(&url).await.expect("connect");
    let version: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT value FROM \"{schema}\".meta WHERE key = 'schema_version'"
    )))
    .fetch_one(&mut conn)
    .await
    .expect("version");
    assert_eq!(version, kosh_jobs_postgres::SCHEMA_VERSION);
    // One set of tables: a job pushed by one backend is seen by the others.
    let now = backends[0].clock().now();
    let id = backends[0]
        .push(vec![NewJob::new("n", "q", "{}", now)])
        .await
        .expect("push")[0]
        .id;
    assert!(backends[9].get(id).await.expect("get").is_some());
}

/// An error with its sources, each shown and debug-printed.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = format!("{e} / {e:?}");
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(&format!(" / {c} / {c:?}"));
        cur = c.source();
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_never_shows_in_errors_or_debug() {
    let url = support::shared_url();
    assert!(url.contains(PASSWORD), "the test URL carries the password");
    let opts = PostgresOptions::from_url(&url)
        .expect("url")
        .build()
        .expect("options");
    assert!(!format!("{opts:?}").contains(PASSWORD), "{opts:?}");
    let b = support::backend("pw").await;
    assert!(!format!("{b:?}").contains(PASSWORD), "{b:?}");
    // A database that does not exist, and a wrong password: errors name neither password.
    let missing = url.replace("/postgres", "/no_such_db");
    let e = PostgresBackend::connect(&missing)
        .await
        .expect_err("no such database");
    assert!(!chain(&e).contains(PASSWORD), "{}", chain(&e));
    let wrong = url.replace(PASSWORD, "not-the-password-but-secret");
    let e = PostgresBackend::connect(&wrong)
        .await
        .expect_err("wrong password");
    let text = chain(&e);
    assert!(!text.contains("not-the-password-but-secret"), "{text}");
    let be = kosh_jobs_core::BackendError::from(e);
    assert!(
        matches!(be, kosh_jobs_core::BackendError::PermissionDenied(_)),
        "{be:?}"
    );
    let bad = format!("{url}?schema=Not-Valid");
    let e = PostgresBackend::connect(&bad)
        .await
        .expect_err("bad schema");
    assert!(!chain(&e).contains(PASSWORD), "{}", chain(&e));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_completed_jobs_in_chunks() {
    use kosh_jobs_core::{Clock, Finish, Outcome, ReserveRequest};
    let (clock, manual) = Clock::manual();
    let options = PostgresOptions::from_url(&support::shared_url())
        .expect("url")
        .schema(support::unique_schema("prune"))
        .clock(clock)
        .build()
        .expect("options");
    let b = PostgresBackend::connect_with(options)
        .await
        .expect("connect");
    let now = b.clock().now();
    let jobs: Vec<NewJob> = (0..2500)
        .map(|_| NewJob::new("n", "q", "{}", now))
        .collect();
    b.push(jobs).await.expect("push");
    let leased = b
        .reserve(&ReserveRequest {
            queues: vec!["q".into()],
            worker: "t".into(),
            max: 2400,
            lease: Duration::from_secs(60),
        })
        .await
        .expect("reserve");
    assert_eq!(leased.len(), 2400);
    let done: Vec<Finish> = leased
        .iter()
        .map(|l| Finish {
            lease: l.lease,
            outcome: Outcome::Completed { result: None },
        })
        .collect();
    b.finish(done).await.expect("finish");
    manual.advance(Duration::from_secs(3600));
    // Nothing finished before the cut-off: nothing goes.
    let early = b.clock().now() - Duration::from_secs(7200);
    assert_eq!(b.prune_completed(early).await.expect("prune"), 0);
    // All 2,400 completed jobs go, over three statements; the 100 ready ones stay.
    assert_eq!(
        b.prune_completed(b.clock().now()).await.expect("prune"),
        2400
    );
    let counts = b.counts().await.expect("counts");
    assert_eq!((counts[0].completed, counts[0].ready), (0, 100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_server_down_push_fails_as_unavailable_within_the_timeout() {
    use kosh_jobs_testsupport::postgres_server::PostgresServer;
    // A cluster of its own, to stop.
    let mut server = PostgresServer::start().expect("test postgres");
    let options = PostgresOptions::from_url(&server.url())
        .expect("url")
        .schema("outage")
        .acquire_timeout(Duration::from_secs(2))
        .build()
        .expect("options");
    let b = PostgresBackend::connect_with(options)
        .await
        .expect("connect");
    let now = b.clock().now();
    b.push(vec![NewJob::new("n", "q", "{}", now)])
        .await
        .expect("push while up");
    server.stop();
    let started = std::time::Instant::now();
    let e = b
        .push(vec![NewJob::new("n", "q", "{}", now)])
        .await
        .expect_err("push while down");
    assert!(e.is_unavailable(), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "push hung for {:?} with the server down",
        started.elapsed()
    );
    assert!(!chain(&e).contains(PASSWORD), "{}", chain(&e));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_server_restart_producers_and_the_listener_reconnect() {
    use kosh_jobs_testsupport::postgres_server::PostgresServer;
    let mut server = PostgresServer::start().expect("test postgres");
    // A fallback poll longer than the test: only a notification can end the wait below.
    let options = PostgresOptions::from_url(&server.url())
        .expect("url")
        .schema("restart")
        .poll_interval(Duration::from_secs(600))
        .build()
        .expect("options");
    let b = PostgresBackend::connect_with(options)
        .await
        .expect("connect");
    let now = b.clock().now();
    b.push(vec![NewJob::new("n", "other", "{}", now)])
        .await
        .expect("push before the restart");
    server.restart().expect("restart");
    let wait = waiter(&b, "q");
    // Producers reconnect: pushes succeed again (the pool replaces its dead connections).
    // The listener reconnects too: a push after it did ends the wait. Pushes go on every
    // 200 ms until then, within a real-time bound.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut pushed = 0;
    while !wait.is_finished() {
        assert!(
            std::time::Instant::now() < deadline,
            "no notification reached the waiting worker after the restart ({pushed} pushes)"
        );
        match b.push(vec![NewJob::new("n", "q", "{}", now)]).await {
            Ok(_) => pushed += 1,
            Err(e) => assert!(e.is_unavailable(), "{e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait.await.expect("waiter");
    assert!(pushed > 0, "no push succeeded after the restart");
}
