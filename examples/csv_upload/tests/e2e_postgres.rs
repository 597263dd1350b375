//! The app on Postgres: its own tables (`DATABASE_URL`) and the job queue (`JOBS_URL`) in one
//! database of a cluster the test starts. There an upload's import row and its job are
//! created in one transaction; the tests break each half and see the other vanish too.

mod support;

use std::time::Duration;

use support::postgres::fresh_database;
use support::{fixture, TestApp};

const WAIT: Duration = Duration::from_secs(30);

/// The app, with a worker, on `database_url` for its tables and `jobs_url` for its queue.
async fn app_on(database_url: &str, jobs_url: &str) -> TestApp {
    let (database_url, jobs_url) = (database_url.to_owned(), jobs_url.to_owned());
    TestApp::start_with(
        tempfile::tempdir().unwrap(),
        move |dir| {
            let mut cfg = support::config(dir, &jobs_url);
            cfg.database_url = database_url;
            cfg
        },
        true,
    )
    .await
}

/// The app with its tables and its queue (schema `jobs`) in one new database; the URL.
async fn app_in_one_database(tag: &str) -> (TestApp, String) {
    let url = fresh_database(tag).await;
    let app = app_on(&url, &format!("{url}?schema=jobs")).await;
    assert!(
        app.services.queueing.is_one_transaction(),
        "one database: one transaction"
    );
    (app, url)
}

async fn count(app: &TestApp, sql: &'static str) -> i64 {
    let pool = app
        .services
        .app
        .db
        .as_postgres()
        .expect("the app is on postgres");
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

async fn execute(app: &TestApp, sql: &'static str) {
    let pool = app
        .services
        .app
        .db
        .as_postgres()
        .expect("the app is on postgres");
    sqlx::raw_sql(sql).execute(pool).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_imported_rejected_or_refused_on_postgres() {
    let (app, _) = app_in_one_database("flow").await;
    support::flow::full_flow(&app).await;
    // The imports are rows of the app's tables in Postgres, their jobs rows of the backend's
    // schema in the same database, each import naming its job.
    assert_eq!(count(&app, "SELECT COUNT(*) FROM imports").await, 3);
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM imports i JOIN jobs.jobs j ON j.id::text = i.job_id"
        )
        .await,
        3
    );
    let counts = app.services.jobs.counts().await.unwrap();
    let q = counts.iter().find(|c| c.queue == "csv-uploads").unwrap();
    assert_eq!((q.completed, q.failed), (2, 1), "{q:?}");
    app.stop().await;
}

/// A fault in the job store, inside the transaction: every push raises.
const REFUSE_JOBS: &str = "
    CREATE FUNCTION refuse_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'this test refuses every job'; END $$;
    CREATE TRIGGER refuse_jobs BEFORE INSERT ON jobs.jobs
        FOR EACH ROW EXECUTE FUNCTION refuse_jobs();";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueue_that_fails_leaves_no_import() {
    let (app, _) = app_in_one_database("nojob").await;
    execute(&app, REFUSE_JOBS).await;

    let (status, v) = app.upload("march.csv", fixture("clean_comma.csv")).await;
    // The database's words stay in the log: the client gets an internal error.
    assert_eq!(
        (status, v["error"].as_str()),
        (500, Some("internal error")),
        "{v}"
    );
    assert_eq!(count(&app, "SELECT COUNT(*) FROM imports").await, 0);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM jobs.jobs").await, 0);
    assert!(app.stored_files().is_empty(), "{:?}", app.stored_files());
    let (_, list) = app.get("/api/imports").await;
    assert_eq!(list["items"], serde_json::json!([]), "{list}");

    // Nothing of the refused upload holds the file's content: once the queue takes jobs, the
    // same file is imported.
    execute(&app, "DROP TRIGGER refuse_jobs ON jobs.jobs").await;
    let (status, v) = app.upload("march.csv", fixture("clean_comma.csv")).await;
    assert_eq!(status, 202, "{v}");
    let v = app.wait_final(v["id"].as_i64().unwrap(), WAIT).await;
    assert_eq!(
        (v["state"].as_str(), v["rows_imported"].as_i64()),
        (Some("completed"), Some(3))
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_row_that_cannot_be_written_leaves_no_job() {
    let (app, _) = app_in_one_database("norow").await;
    // Only known users may have imports, checked at the commit: after the job was pushed.
    // (Taken two steps, the row would fail before any job: only this order tests the
    // transaction; the second case below fails after the push in both.)
    execute(
        &app,
        "CREATE TABLE known_users (id TEXT PRIMARY KEY);
         INSERT INTO known_users VALUES ('ana');
         ALTER TABLE imports ADD CONSTRAINT imports_known_user FOREIGN KEY (user_id)
             REFERENCES known_users (id) DEFERRABLE INITIALLY DEFERRED;",
    )
    .await;

    let (status, v) = app
        .upload_as(
            "march.csv",
            fixture("clean_comma.csv"),
            Some("mallory"),
            None,
        )
        .await;
    assert_eq!(status, 500, "{v}");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM imports").await, 0);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM jobs.jobs").await, 0);
    let counts = app.services.jobs.counts().await.unwrap();
    assert!(
        counts.iter().all(|c| c.queue != "csv-uploads"),
        "no job queued: {counts:?}"
    );
    assert!(app.stored_files().is_empty(), "{:?}", app.stored_files());

    // The row's second write, noting its job after the push, refused at once (Eve's imports
    // may not name a job): the job pushed just before goes with the transaction.
    execute(
        &app,
        "INSERT INTO known_users VALUES ('eve');
         ALTER TABLE imports ADD CONSTRAINT imports_eve_unqueued
             CHECK (user_id != 'eve' OR job_id IS NULL);",
    )
    .await;
    let (status, v) = app
        .upload_as("march.csv", fixture("clean_comma.csv"), Some("eve"), None)
        .await;
    assert_eq!(status, 500, "{v}");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM imports").await, 0);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM jobs.jobs").await, 0);
    assert!(app.stored_files().is_empty(), "{:?}", app.stored_files());

    // A known user's upload goes through, and is imported.
    let (status, v) = app
        .upload_as("march.csv", fixture("clean_comma.csv"), Some("ana"), None)
        .await;
    assert_eq!(status, 202, "{v}");
    let v = app.wait_final(v["id"].as_i64().unwrap(), WAIT).await;
    assert_eq!(v["state"], "completed", "{v}");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM jobs.jobs").await, 1);
    app.stop().await;
}

/// With the queue in another database the two writes are separate: the same fault leaves
/// the import behind, failed, and its file, for a retry (as the README says).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_two_databases_a_failed_enqueue_leaves_a_failed_import() {
    let app_url = fresh_database("apptables").await;
    let jobs_url = fresh_database("queue").await;
    let app = app_on(&app_url, &format!("{jobs_url}?schema=jobs")).await;
    assert!(!app.services.queueing.is_one_transaction());
    let mut queue = <sqlx::PgConnection as sqlx::Connection>::connect(&jobs_url)
        .await
        .unwrap();
    sqlx::raw_sql(REFUSE_JOBS)
        .execute(&mut queue)
        .await
        .unwrap();

    let (status, v) = app.upload("march.csv", fixture("clean_comma.csv")).await;
    assert_eq!(status, 500, "{v}");
    let (_, list) = app.get("/api/imports").await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!(
        (items[0]["state"].as_str(), items[0]["error"].as_str()),
        (Some("failed"), Some("could not queue the import"))
    );
    assert_eq!(app.stored_files().len(), 1);
    app.stop().await;
}

/// On a Postgres queue the page's live updates stream too: the app asks the job store for
/// events (`events=true`), and `GET /api/events` carries an import's lifecycle, while the
/// import and its job are still created in one transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_carries_an_imports_lifecycle_on_postgres() {
    let (app, _) = app_in_one_database("live").await;
    let mut stream = app.http.get(app.url("/api/events")).send().await.unwrap();
    assert_eq!(stream.status(), 200, "live updates are on");
    let (status, v) = app.upload("march.csv", fixture("clean_comma.csv")).await;
    assert_eq!(status, 202, "{v}");
    let job = v["job_id"].as_str().unwrap().to_owned();
    let mut body = String::new();
    let kinds = tokio::time::timeout(WAIT, async {
        loop {
            let chunk = stream.chunk().await.unwrap().expect("the stream goes on");
            body.push_str(std::str::from_utf8(&chunk).unwrap());
            let kinds: Vec<String> = body
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
                .filter(|v| v["job_id"].as_str() == Some(&job))
                .filter_map(|v| v["kind"].as_str().map(str::to_owned))
                .collect();
            if kinds.last().is_some_and(|k| k == "completed") {
                break kinds;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no `completed` event within {WAIT:?}: {body}"));
    assert_eq!(kinds[..2], ["enqueued", "started"], "{kinds:?}");
    assert!(kinds.iter().any(|k| k == "progress"), "{kinds:?}");
    app.stop().await;
}
