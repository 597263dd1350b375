//! The end-to-end flow over HTTP, the same on every job store.

use std::time::Duration;

use serde_json::Value;

use super::{fixture, TestApp};

const WAIT: Duration = Duration::from_secs(30);

fn id_of(v: &Value) -> i64 {
    v["id"].as_i64().unwrap_or_else(|| panic!("no id in {v}"))
}

/// Uploads a clean file, a file with bad rows, a file with no header, a too-large file, a
/// duplicate and a non-CSV file; checks imports, transactions, rejected rows and
/// notifications.
pub async fn full_flow(app: &TestApp) {
    // A clean file.
    let (status, v) = app.upload("march.csv", fixture("clean_comma.csv")).await;
    assert_eq!(status, 202, "{v}");
    let clean = id_of(&v);
    assert_eq!(v["state"], "queued");
    assert!(v["job_id"].is_string());

    // A file with bad rows, and one without a header.
    let (status, v) = app.upload("bad.csv", fixture("bad_rows.csv")).await;
    assert_eq!(status, 202, "{v}");
    let bad = id_of(&v);
    let (status, v) = app.upload("noheader.csv", fixture("no_header.csv")).await;
    assert_eq!(status, 202, "{v}");
    let noheader = id_of(&v);

    // Too large: refused before anything is stored.
    let big = "Date,Description,Amount\n".to_owned() + &"2024-03-01,x,1.00\n".repeat(8000);
    assert!(big.len() as u64 > app.services.config.max_upload_bytes);
    let (status, v) = app.upload("big.csv", big.into_bytes()).await;
    assert_eq!(status, 413, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("larger than the limit"),
        "{v}"
    );

    // Not CSV.
    let (status, v) = {
        let part = reqwest::multipart::Part::bytes(b"\x89PNG\r\n\x1a\n\0\0".to_vec())
            .file_name("photo.png")
            .mime_str("image/png")
            .unwrap();
        let r = app
            .http
            .post(app.url("/api/imports"))
            .multipart(reqwest::multipart::Form::new().part("file", part))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(status, 415, "{v}");
    assert!(v["error"].is_string());

    // The clean file.
    let v = app.wait_final(clean, WAIT).await;
    assert_eq!(v["state"], "completed", "{v}");
    assert_eq!(
        (
            &v["rows_total"],
            &v["rows_done"],
            &v["rows_imported"],
            &v["rows_rejected"]
        ),
        (
            &Value::from(3),
            &Value::from(3),
            &Value::from(3),
            &Value::from(0)
        ),
        "{v}"
    );
    assert_eq!(v["job"]["state"], "completed", "{v}");
    assert_eq!(v["job"]["progress"]["rows_done"], 3, "{v}");
    assert_eq!(v["file_name"], "march.csv");
    assert!(v["finished_at"].is_string());
    let (_, t) = app.get(&format!("/api/imports/{clean}/transactions")).await;
    let rows: Vec<(i64, &str, &str, i64)> = t["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["line"].as_i64().unwrap(),
                r["booked_on"].as_str().unwrap(),
                r["description"].as_str().unwrap(),
                r["amount_cents"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (2, "2024-03-01", "Salary ACME Corp", 250_000),
            (3, "2024-03-02", "Coffee", -350),
            (4, "2024-03-05", "Rent", -95_000),
        ]
    );

    // Bad rows: completed, with each rejected row's line and reason.
    let v = app.wait_final(bad, WAIT).await;
    assert_eq!(v["state"], "completed", "{v}");
    assert_eq!(
        (v["rows_imported"].as_i64(), v["rows_rejected"].as_i64()),
        (Some(2), Some(5))
    );
    let (_, r) = app.get(&format!("/api/imports/{bad}/rejected")).await;
    let rejected: Vec<(i64, &str)> = r["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["line"].as_i64().unwrap(), x["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        rejected,
        [
            (3, "date `not a date` is not a date in a known format"),
            (4, "amount `twelve` is not a number"),
            (5, "row has 2 fields, the header has 3"),
            (6, "amount `1.2345` has more than two decimals"),
            (7, "date `2024-02-30` is not a date in a known format"),
        ]
    );
    assert_eq!(r["items"][0]["raw"], "not a date,Bad date,5.00");

    // No header: failed at once, for good, with a clear message.
    let v = app.wait_final(noheader, WAIT).await;
    assert_eq!(v["state"], "failed", "{v}");
    assert_eq!(v["attempts"], 1, "no retries: {v}");
    assert_eq!(v["job"]["state"], "failed", "{v}");
    assert_eq!(v["job"]["attempts"], 1, "{v}");
    let error = v["error"].as_str().unwrap();
    assert!(
        error.starts_with("no usable header row: no date column"),
        "{error}"
    );

    // The same file again: refused, nothing imported twice.
    let (status, v) = app
        .upload("march-again.csv", fixture("clean_comma.csv"))
        .await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["existing_import_id"], clean);

    // The list.
    let (_, list) = app.get("/api/imports").await;
    let ids: Vec<i64> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        ids,
        [noheader, bad, clean],
        "newest first, refused uploads absent"
    );

    // No partial or refused upload left on disk: one file per import.
    let mut stored: Vec<String> = std::fs::read_dir(app.upload_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    stored.sort();
    assert_eq!(stored.len(), 3, "{stored:?}");
    assert!(
        stored.iter().all(|n| n.len() == 36 && n.ends_with(".csv")),
        "generated names only: {stored:?}"
    );

    // Notifications: one per finished import.
    let (_, n) = app.get("/api/notifications").await;
    assert_eq!(n["unread"], 3, "{n}");
    let items = n["items"].as_array().unwrap();
    let by_import = |id: i64| {
        items
            .iter()
            .find(|x| x["import_id"] == id)
            .unwrap_or_else(|| panic!("no notification for import {id}: {n}"))
    };
    assert_eq!(by_import(clean)["kind"], "import_completed");
    assert_eq!(
        by_import(clean)["message"],
        "Imported 3 transactions from march.csv."
    );
    assert_eq!(by_import(bad)["kind"], "import_completed");
    assert_eq!(
        by_import(bad)["message"],
        "bad.csv completed with 5 rejected rows: 2 transactions imported."
    );
    assert_eq!(by_import(noheader)["kind"], "import_failed");
    let note = by_import(clean)["id"].as_i64().unwrap();
    assert_eq!(
        app.post(&format!("/api/notifications/{note}/read")).await,
        204
    );
    let (_, n) = app.get("/api/notifications?unread=true").await;
    assert_eq!(n["unread"], 2);
    assert_eq!(n["items"].as_array().unwrap().len(), 2);
    assert_eq!(app.post("/api/notifications/999999/read").await, 404);
    assert_eq!(app.post("/api/notifications/read").await, 200);
    let (_, n) = app.get("/api/notifications").await;
    assert_eq!(n["unread"], 0);

    // Errors are JSON with the right status.
    let (status, v) = app.get("/api/imports/999999").await;
    assert_eq!(
        (status, v["error"].as_str()),
        (404, Some("no import 999999"))
    );
    let (status, v) = app.get("/api/imports/abc").await;
    assert_eq!(status, 400, "{v}");
}
