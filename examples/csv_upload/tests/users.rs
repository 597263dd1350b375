//! The user of an upload over HTTP: the form's `user` field, else the `X-User` header, else
//! `demo`; a bad one is a 400 that stores nothing. The user is stored on the import, shown
//! by the API and carried by the job as its group key. A database made before users existed
//! migrates, its imports belonging to `demo`.

mod support;

use std::str::FromStr;

use serde_json::Value;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::SqlitePool;
use support::TestApp;

/// A small statement whose content differs with `tag` (the same content twice is refused).
fn statement(tag: &str) -> Vec<u8> {
    format!("Date,Description,Amount\n2024-03-01,Payment {tag},-1.00\n").into_bytes()
}

async fn job_group(app: &TestApp, v: &Value) -> Option<String> {
    let id = v["job_id"]
        .as_str()
        .expect("a job id")
        .parse()
        .expect("a job id");
    let job = app.services.jobs.get(id).await.unwrap().expect("the job");
    job.group
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_comes_from_the_form_the_header_or_is_demo() {
    // The memory store keeps each job's group, as every store does once it implements
    // groups (on the branch this was written on, SQLite's did not yet).
    let app = TestApp::start(Some("memory:"), false).await;

    // None given: demo.
    let (status, v) = app.upload("a.csv", statement("a")).await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["user"], "demo", "{v}");
    assert_eq!(job_group(&app, &v).await.as_deref(), Some("demo"));

    // The form field, trimmed; it wins over the header, even a bad one.
    let (status, v) = app
        .upload_as("b.csv", statement("b"), Some("  ana "), Some("bad\tname"))
        .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["user"], "ana", "{v}");
    assert_eq!(job_group(&app, &v).await.as_deref(), Some("ana"));
    let (_, one) = app.get(&format!("/api/imports/{}", v["id"])).await;
    assert_eq!(one["user"], "ana", "{one}");
    assert_eq!(one["waiting_for"], Value::Null, "{one}");

    // The header alone.
    let (status, v) = app
        .upload_as("c.csv", statement("c"), None, Some("ben"))
        .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["user"], "ben", "{v}");

    // Sent after the file, the field still counts.
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(statement("d"))
                .file_name("d.csv")
                .mime_str("text/csv")
                .unwrap(),
        )
        .text("user", "cleo");
    let r = app
        .http
        .post(app.url("/api/imports"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["user"], "cleo", "{v}");

    let (_, list) = app.get("/api/imports").await;
    let users: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["user"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["cleo", "ben", "ana", "demo"], "newest first");
    let stored: Vec<String> = sqlx::query_scalar("SELECT user_id FROM imports ORDER BY id")
        .fetch_all(app.services.app.db.as_sqlite().unwrap())
        .await
        .unwrap();
    assert_eq!(stored, ["demo", "ana", "ben", "cleo"]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_user_is_refused_and_nothing_is_stored() {
    let app = TestApp::start(None, false).await;
    let cases: [(Option<&str>, Option<&str>, &str); 6] = [
        (Some("a\nb"), None, "control character '\\n'"),
        (Some("   "), None, "the user is empty"),
        (Some(&"x".repeat(65)), None, "at most 64 characters"),
        // 64 characters, but more bytes than a job's group key may have.
        (Some(&"🙂".repeat(64)), None, "128 bytes"),
        (None, Some(""), "the user is empty"),
        (None, Some("tab\there"), "control character '\\t'"),
    ];
    for (i, (form, header, expected)) in cases.into_iter().enumerate() {
        let (status, v) = app
            .upload_as("x.csv", statement(&format!("bad-{i}")), form, header)
            .await;
        assert_eq!(status, 400, "{form:?} {header:?}: {v}");
        let error = v["error"].as_str().unwrap();
        assert!(error.contains(expected), "{form:?} {header:?}: {error}");
    }
    // A field far too long is refused after its first kilobyte.
    let (status, v) = app
        .upload_as("x.csv", statement("huge"), Some(&"x".repeat(5000)), None)
        .await;
    assert_eq!(status, 400, "{v}");

    // Two user fields are ambiguous.
    let form = reqwest::multipart::Form::new()
        .text("user", "ana")
        .text("user", "ben")
        .part(
            "file",
            reqwest::multipart::Part::bytes(statement("two"))
                .file_name("two.csv")
                .mime_str("text/csv")
                .unwrap(),
        );
    let r = app
        .http
        .post(app.url("/api/imports"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let (_, list) = app.get("/api/imports").await;
    assert_eq!(list["items"], serde_json::json!([]), "no import recorded");
    assert!(app.stored_files().is_empty(), "{:?}", app.stored_files());
    let counts = app.services.jobs.counts().await.unwrap();
    assert!(
        counts.iter().all(|c| c.ready == 0),
        "no job queued: {counts:?}"
    );
    app.stop().await;
}

/// A database made by the previous version (migrations 0001 and 0002) gains the column, its
/// imports belonging to `demo`.
#[tokio::test]
async fn imports_made_before_users_belong_to_demo() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("migrations");
    std::fs::create_dir(&old).unwrap();
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    for name in ["0001_init.sql", "0002_statement_reading.sql"] {
        std::fs::copy(here.join(name), old.join(name)).unwrap();
    }
    let url = format!("sqlite://{}", dir.path().join("app.db").display());
    let opts = SqliteConnectOptions::from_str(&url)
        .unwrap()
        .create_if_missing(true);
    let pool = SqlitePool::connect_with(opts).await.unwrap();
    sqlx::migrate::Migrator::new(old.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO imports (file_name, stored_name, sha256, size_bytes, state, created_at,
             updated_at)
         VALUES ('old.csv', 'old', 'abc', 10, 'queued', '2026-01-01T00:00:00.000Z',
             '2026-01-01T00:00:00.000Z')",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let pool = csv_upload::db::connect(&url).await.unwrap();
    let imports = csv_upload::db::list_imports(&pool, 10).await.unwrap();
    assert_eq!(imports.len(), 1);
    assert_eq!(imports[0].user_id, "demo");
    assert_eq!(imports[0].waiting_for, None);
    // The import's job, as queued by the previous version, reads as the demo user's.
    let job: csv_upload::import::ImportCsv =
        serde_json::from_str(&format!("{{\"import_id\": {}}}", imports[0].id)).unwrap();
    assert_eq!(job.user, "demo");
}
