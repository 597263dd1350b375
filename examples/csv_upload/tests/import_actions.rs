//! Running an import again, and deleting one, over HTTP: a failed import retried (its file
//! was gone when the job ran, and is back), a guessed date order re-imported the other way
//! (the stored dates change, nothing is doubled), an import deleted with its rows and file.

mod support;

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use support::{fixture, TestApp};

const LIMIT: Duration = Duration::from_secs(30);

fn id_of(v: &Value) -> i64 {
    v["id"].as_i64().unwrap_or_else(|| panic!("no id in {v}"))
}

/// The stored transactions of an import: (date, amount in cents), by line.
async fn dates_and_amounts(app: &TestApp, id: i64) -> Vec<(String, i64)> {
    let (status, t) = app
        .get(&format!("/api/imports/{id}/transactions?limit=1000"))
        .await;
    assert_eq!(status, 200, "{t}");
    t["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["booked_on"].as_str().unwrap().to_owned(),
                r["amount_cents"].as_i64().unwrap(),
            )
        })
        .collect()
}

async fn count(app: &TestApp, table: &str, id: i64) -> i64 {
    let sql = match table {
        "transactions" => "SELECT COUNT(*) FROM transactions WHERE import_id = ?",
        "rejected_rows" => "SELECT COUNT(*) FROM rejected_rows WHERE import_id = ?",
        "notifications" => "SELECT COUNT(*) FROM notifications WHERE import_id = ?",
        other => panic!("no table {other}"),
    };
    sqlx::query_scalar(sql)
        .bind(id)
        .fetch_one(app.services.app.db.as_sqlite().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_import_is_retried_with_its_job() {
    // No worker yet: the file is taken away before the job runs.
    let mut app = TestApp::start(None, false).await;
    let (status, v) = app.upload("march.csv", fixture("clean_comma.csv")).await;
    assert_eq!(status, 202, "{v}");
    let id = id_of(&v);
    let job = v["job_id"].as_str().unwrap().to_owned();
    let files = app.stored_files();
    assert_eq!(files.len(), 1, "{files:?}");
    let away = app.dir.path().join("away.csv");
    std::fs::rename(&files[0], &away).unwrap();

    // Only a failed import can be retried.
    let (status, v) = app
        .send(Method::POST, &format!("/api/imports/{id}/retry"), None)
        .await;
    assert_eq!(status, 409, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("only a failed import"),
        "{v}"
    );

    app.start_worker().await;
    let failed = app.wait_final(id, LIMIT).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert_eq!(failed["error"], "the uploaded file is gone", "{failed}");
    assert_eq!(failed["rows_imported"], 0, "{failed}");

    // The file is back; retry: the same job runs again and the import completes.
    std::fs::rename(&away, &files[0]).unwrap();
    let (status, v) = app
        .send(Method::POST, &format!("/api/imports/{id}/retry"), None)
        .await;
    assert_eq!(status, 202, "{v}");
    // The worker may take the job before the answer is written.
    assert!(
        matches!(
            v["state"].as_str(),
            Some("queued" | "running" | "completed")
        ),
        "back in the queue: {v}"
    );
    assert!(v["error"].is_null(), "the old error is gone: {v}");
    assert_eq!(v["job_id"], job, "the job is retried, not replaced: {v}");
    let done = app.wait_final(id, LIMIT).await;
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(done["rows_imported"], 3, "{done}");
    assert_eq!(done["attempts"], 1, "a fresh count of attempts: {done}");
    assert_eq!(count(&app, "transactions", id).await, 3);
    // The failure's notification made way for the outcome's.
    let (_, n) = app.get("/api/notifications").await;
    let kinds: Vec<&str> = n["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["import_id"] == id)
        .map(|x| x["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["import_completed"], "{n}");

    // Unknown, bad ids.
    let (status, _) = app
        .send(Method::POST, "/api/imports/999999/retry", None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = app.send(Method::POST, "/api/imports/x/retry", None).await;
    assert_eq!(status, 400);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_import_whose_file_is_imported_again_since_is_refused() {
    let mut app = TestApp::start(None, false).await;
    let (_, v) = app.upload("march.csv", fixture("clean_comma.csv")).await;
    let first = id_of(&v);
    let files = app.stored_files();
    let away = app.dir.path().join("away.csv");
    std::fs::rename(&files[0], &away).unwrap();
    app.start_worker().await;
    assert_eq!(app.wait_final(first, LIMIT).await["state"], "failed");
    // The same file uploaded again, which a failed import allows.
    let (status, v) = app.upload("march.csv", fixture("clean_comma.csv")).await;
    assert_eq!(status, 202, "{v}");
    let second = id_of(&v);
    assert_eq!(app.wait_final(second, LIMIT).await["state"], "completed");
    let (status, v) = app
        .send(Method::POST, &format!("/api/imports/{first}/retry"), None)
        .await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["existing_import_id"], second, "{v}");
    let (_, v) = app.get(&format!("/api/imports/{first}")).await;
    assert_eq!(v["state"], "failed", "left as it was: {v}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guessed_date_order_is_reimported_the_other_way() {
    let app = TestApp::start(None, true).await;
    let (status, v) = app
        .upload("chase.csv", fixture("banks/chase_card.csv"))
        .await;
    assert_eq!(status, 202, "{v}");
    let id = id_of(&v);
    let first = app.wait_final(id, LIMIT).await;
    assert_eq!(first["state"], "completed", "{first}");
    assert_eq!(first["date_order"], "mdy", "{first}");
    assert_eq!(first["date_order_guessed"], true, "{first}");
    assert_eq!(first["date_order_choosable"], true, "{first}");
    assert_eq!(
        first["notes"],
        json!(["dates read as month/day"]),
        "{first}"
    );
    let before = dates_and_amounts(&app, id).await;
    let dates: Vec<&str> = before.iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(
        dates,
        [
            "2026-11-05",
            "2026-11-04",
            "2026-11-03",
            "2026-11-02",
            "2026-11-02"
        ]
    );

    // A wrong body.
    let (status, v) = app
        .send(
            Method::POST,
            &format!("/api/imports/{id}/reimport"),
            Some(json!({ "date_order": "ymd" })),
        )
        .await;
    assert_eq!(status, 400, "{v}");

    // Day first: the same file, its transactions replaced.
    let (status, v) = app
        .send(
            Method::POST,
            &format!("/api/imports/{id}/reimport"),
            Some(json!({ "date_order": "dmy" })),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    assert_ne!(
        v["job_id"], first["job_id"],
        "a new job, carrying the order: {v}"
    );
    let again = app.wait_final(id, LIMIT).await;
    assert_eq!(again["state"], "completed", "{again}");
    assert_eq!(again["date_order"], "dmy", "{again}");
    assert_eq!(again["date_order_basis"], "chosen", "{again}");
    assert_eq!(again["date_order_guessed"], false, "{again}");
    assert_eq!(
        again["date_order_choosable"], true,
        "it can be turned back: {again}"
    );
    assert_eq!(
        again["notes"],
        json!(["dates read as day/month, as chosen"]),
        "{again}"
    );
    assert_eq!(again["rows_imported"], 5, "{again}");
    let after = dates_and_amounts(&app, id).await;
    let dates: Vec<&str> = after.iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(
        dates,
        [
            "2026-05-11",
            "2026-04-11",
            "2026-03-11",
            "2026-02-11",
            "2026-02-11"
        ]
    );
    let amounts = |v: &[(String, i64)]| v.iter().map(|(_, a)| *a).collect::<Vec<_>>();
    assert_eq!(
        amounts(&after),
        amounts(&before),
        "the same rows, only the dates moved"
    );
    assert_eq!(count(&app, "transactions", id).await, 5, "nothing doubled");
    let (_, n) = app.get("/api/notifications").await;
    let mine: Vec<&Value> = n["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["import_id"] == id)
        .collect();
    assert_eq!(mine.len(), 1, "{n}");
    assert_eq!(
        mine[0]["message"],
        "Imported 5 transactions from chase.csv. Dates read as day/month, as chosen."
    );

    // And back, month first.
    let (status, v) = app
        .send(
            Method::POST,
            &format!("/api/imports/{id}/reimport"),
            Some(json!({ "date_order": "mdy" })),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    app.wait_final(id, LIMIT).await;
    assert_eq!(dates_and_amounts(&app, id).await, before);

    // A file whose dates settle the order offers no choice.
    let (_, v) = app.upload("march.csv", fixture("clean_comma.csv")).await;
    let iso = id_of(&v);
    let done = app.wait_final(iso, LIMIT).await;
    assert_eq!(done["date_order_choosable"], false, "{done}");
    let (status, v) = app
        .send(
            Method::POST,
            &format!("/api/imports/{iso}/reimport"),
            Some(json!({ "date_order": "mdy" })),
        )
        .await;
    assert_eq!(status, 409, "{v}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_import_takes_its_rows_notifications_and_file_along() {
    let app = TestApp::start(None, true).await;
    let (_, v) = app.upload("bad.csv", fixture("bad_rows.csv")).await;
    let id = id_of(&v);
    let (_, v) = app.upload("march.csv", fixture("clean_comma.csv")).await;
    let kept = id_of(&v);
    assert_eq!(app.wait_final(id, LIMIT).await["rows_rejected"], 5);
    assert_eq!(app.wait_final(kept, LIMIT).await["state"], "completed");
    assert_eq!(app.stored_files().len(), 2);
    assert!(count(&app, "rejected_rows", id).await > 0);

    let (status, v) = app
        .send(Method::DELETE, &format!("/api/imports/{id}"), None)
        .await;
    assert_eq!(status, 204, "{v}");
    let (status, _) = app.get(&format!("/api/imports/{id}")).await;
    assert_eq!(status, 404);
    let (status, _) = app.get(&format!("/api/imports/{id}/transactions")).await;
    assert_eq!(status, 404);
    for table in ["transactions", "rejected_rows", "notifications"] {
        assert_eq!(count(&app, table, id).await, 0, "{table}");
    }
    assert_eq!(
        app.stored_files().len(),
        1,
        "its file is gone, the other's kept"
    );
    assert_eq!(count(&app, "transactions", kept).await, 3);
    let (_, list) = app.get("/api/imports").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");

    // Twice: 404. Gone, the file can be uploaded again.
    let (status, _) = app
        .send(Method::DELETE, &format!("/api/imports/{id}"), None)
        .await;
    assert_eq!(status, 404);
    let (status, v) = app.upload("bad.csv", fixture("bad_rows.csv")).await;
    assert_eq!(status, 202, "{v}");
    app.wait_final(id_of(&v), LIMIT).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_import_is_deleted_and_its_job_cancelled() {
    let app = TestApp::start(None, false).await;
    let (_, v) = app.upload("march.csv", fixture("clean_comma.csv")).await;
    let id = id_of(&v);
    let job: kosh_jobs::JobId = v["job_id"].as_str().unwrap().parse().unwrap();
    let (status, v) = app
        .send(Method::DELETE, &format!("/api/imports/{id}"), None)
        .await;
    assert_eq!(status, 204, "{v}");
    let record = app.services.jobs.get(job).await.unwrap().unwrap();
    assert_eq!(record.state, kosh_jobs::JobState::Cancelled);
    assert!(app.stored_files().is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_row_is_one_row() {
    let app = TestApp::start(None, true).await;
    let file = b"Date,Description,Amount\n2024-03-01,Coffee,-3.50\nnot a date,Tea,-2.00\n";
    let (_, v) = app.upload("one.csv", file.to_vec()).await;
    let id = id_of(&v);
    let done = app.wait_final(id, LIMIT).await;
    assert_eq!(
        (
            done["rows_imported"].as_i64(),
            done["rows_rejected"].as_i64()
        ),
        (Some(1), Some(1))
    );
    let (_, n) = app.get("/api/notifications").await;
    assert_eq!(
        n["items"][0]["message"],
        "one.csv completed with 1 rejected row: 1 transaction imported."
    );
    // Sizes in words in the answers too.
    let big = vec![b'a'; 65 * 1024];
    let (status, v) = app.upload("big.csv", big).await;
    assert_eq!(status, 413, "{v}");
    assert_eq!(
        v["error"], "the file is larger than the limit of 64 KB",
        "{v}"
    );
    app.stop().await;
}
