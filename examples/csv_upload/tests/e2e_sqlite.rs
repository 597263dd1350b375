//! End to end over HTTP on SQLite: the app and a worker in this test, uploads through the
//! API, outcomes checked through the API and the app database.

mod support;

use std::time::Duration;

use csv_upload::import::ImportCsv;
use support::{fixture, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_imported_rejected_or_refused() {
    let app = TestApp::start(None, true).await;
    support::flow::full_flow(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_job_run_twice_adds_nothing() {
    let app = TestApp::start(None, true).await;
    let (status, v) = app.upload("a.csv", fixture("debit_credit.csv")).await;
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_i64().unwrap();
    let first = app.wait_final(id, Duration::from_secs(30)).await;
    assert_eq!(first["rows_imported"], 3, "{first}");

    // Deliver the same job again (its unique key is free once the first completed).
    let again = app
        .services
        .jobs
        .enqueue(ImportCsv::new(id, "demo"))
        .await
        .unwrap();
    assert!(!again.existing());
    support::wait_for("the second run", Duration::from_secs(30), || async {
        let r = app.services.jobs.status(again.id()).await.unwrap();
        (r.state == kosh_jobs::JobState::Completed).then_some(())
    })
    .await;
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM transactions WHERE import_id = ?")
        .bind(id)
        .fetch_one(app.services.app.db.as_sqlite().unwrap())
        .await
        .unwrap();
    assert_eq!(count, 3);
    let (_, v) = app.get(&format!("/api/imports/{id}")).await;
    assert_eq!(
        (v["rows_imported"].as_i64(), v["attempts"].as_i64()),
        (Some(3), Some(1))
    );
    let (_, n) = app.get("/api/notifications").await;
    assert_eq!(
        n["items"].as_array().unwrap().len(),
        1,
        "one notification: {n}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served() {
    let app = TestApp::start(Some("memory:"), false).await;
    let r = app.http.get(app.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("<form id=\"upload\"") && html.contains("/api/imports"));
    app.stop().await;
}

/// The jobs dashboard is mounted at /admin/jobs behind the configured password, and shows
/// the import's job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jobs_dashboard_needs_the_admin_password() {
    let app = TestApp::start(None, true).await;
    let (status, v) = app.upload("d.csv", fixture("debit_credit.csv")).await;
    assert_eq!(status, 202, "{v}");
    app.wait_final(v["id"].as_i64().unwrap(), Duration::from_secs(60))
        .await;
    let overview = app.url("/admin/jobs/api/overview");
    let r = app.http.get(&overview).send().await.unwrap();
    assert_eq!(r.status(), 401, "no password");
    let r = app
        .http
        .get(&overview)
        .basic_auth("admin", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a wrong password");
    let r = app
        .http
        .get(&overview)
        .basic_auth("admin", Some("test-admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(body.contains("csv-uploads"), "the import queue: {body}");
    let r = app
        .http
        .get(app.url("/admin/jobs"))
        .basic_auth("admin", Some("test-admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the dashboard page");
    // The app's own routes need no password.
    assert_eq!(
        app.http.get(app.url("/")).send().await.unwrap().status(),
        200
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_for_prometheus() {
    let app = TestApp::start(None, true).await;
    let (status, v) = app.upload("m.csv", fixture("debit_credit.csv")).await;
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_i64().unwrap();
    app.wait_final(id, Duration::from_secs(30)).await;
    // The sampler runs every second in tests: wait for its gauge, not for time.
    let body = support::wait_for("the sampled gauges", Duration::from_secs(30), || async {
        let r = app.http.get(app.url("/metrics")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with("text/plain"), "{ct}");
        let body = r.text().await.unwrap();
        body.contains("kosh_jobs_oldest_ready_age_seconds")
            .then_some(body)
    })
    .await;
    let value = |line_start: &str| -> f64 {
        body.lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no `{line_start}` in:\n{body}"))
    };
    // Other tests of this process may import too: at least this one counts.
    assert!(value(r#"kosh_jobs_enqueued_total{queue="csv-uploads",job="import_csv"}"#) >= 1.0);
    assert!(value(r#"kosh_jobs_started_total{queue="csv-uploads",job="import_csv"}"#) >= 1.0);
    assert!(
        value(
            r#"kosh_jobs_attempts_total{queue="csv-uploads",job="import_csv",outcome="completed"}"#
        ) >= 1.0
    );
    assert!(
        body.contains("# TYPE kosh_jobs_attempt_duration_seconds summary"),
        "{body}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_as_banks_export_them_say_how_they_were_read() {
    let app = TestApp::start(None, true).await;
    // HDFC: a preamble, a summary block below (batches of 4 rows, so it spans a batch).
    let (status, v) = app.upload("hdfc.csv", fixture("banks/hdfc.csv")).await;
    assert_eq!(status, 202, "{v}");
    let hdfc = v["id"].as_i64().unwrap();
    // Chase: only the span of the dates shows they are month first.
    let (status, v) = app
        .upload("chase.csv", fixture("banks/chase_card.csv"))
        .await;
    assert_eq!(status, 202, "{v}");
    let chase = v["id"].as_i64().unwrap();
    // UTF-16 is text, not a binary file.
    let (status, v) = app.upload("u16.csv", fixture("utf16be_nobom.csv")).await;
    assert_eq!(status, 202, "{v}");
    let utf16 = v["id"].as_i64().unwrap();

    let v = app.wait_final(hdfc, Duration::from_secs(30)).await;
    assert_eq!(v["state"], "completed", "{v}");
    assert_eq!(
        (
            v["rows_total"].as_i64(),
            v["rows_imported"].as_i64(),
            v["rows_rejected"].as_i64(),
            v["summary_lines_skipped"].as_i64(),
        ),
        (Some(4), Some(4), Some(0), Some(7)),
        "{v}"
    );
    assert_eq!(v["layout"], "HDFC Bank");
    assert_eq!(
        (
            &v["date_order"],
            &v["date_order_basis"],
            &v["date_order_guessed"]
        ),
        (&"dmy".into(), &"unambiguous".into(), &false.into())
    );
    assert_eq!(v["notes"], serde_json::json!(["7 summary lines skipped"]));
    let (_, r) = app.get(&format!("/api/imports/{hdfc}/rejected")).await;
    assert_eq!(
        r["items"],
        serde_json::json!([]),
        "summary lines are not bad rows"
    );

    let v = app.wait_final(chase, Duration::from_secs(30)).await;
    assert_eq!(v["state"], "completed", "{v}");
    assert_eq!(
        (
            &v["date_order"],
            &v["date_order_basis"],
            &v["date_order_guessed"]
        ),
        (&"mdy".into(), &"span".into(), &true.into()),
        "{v}"
    );
    assert_eq!(v["notes"], serde_json::json!(["dates read as month/day"]));
    let (_, t) = app.get(&format!("/api/imports/{chase}/transactions")).await;
    let dates: Vec<&str> = t["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["booked_on"].as_str().unwrap())
        .collect();
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
    let (_, n) = app.get("/api/notifications").await;
    let note = n["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["import_id"] == chase)
        .unwrap();
    assert_eq!(
        note["message"],
        "Imported 5 transactions from chase.csv. Dates read as month/day."
    );

    let v = app.wait_final(utf16, Duration::from_secs(30)).await;
    assert_eq!(
        (v["state"].as_str(), v["rows_imported"].as_i64()),
        (Some("completed"), Some(2)),
        "{v}"
    );
    app.stop().await;
}
