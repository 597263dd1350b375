//! Helpers for the tests of one import at a time per user: an app whose imports take a
//! while (the row-delay test hook), statements of any length, and the imports as the API
//! lists them.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use super::{config, TestApp};

/// The pause after each row: a statement of [`LONG`] rows runs for about 3 s, long enough
/// to see the other imports of its user wait, however slow the machine.
pub const ROW_DELAY: Duration = Duration::from_millis(50);

/// Rows of the statement that keeps its user's other imports waiting.
pub const LONG: usize = 60;

/// Rows of a short statement.
pub const SHORT: usize = 3;

/// A statement of `rows` rows whose content differs with `tag` (the same content twice is
/// refused).
pub fn statement(tag: &str, rows: usize) -> Vec<u8> {
    let mut s = String::from("Date,Description,Amount\n");
    for i in 1..=rows {
        s.push_str(&format!(
            "2024-03-{:02},{tag} payment {i},-{i}.00\n",
            1 + i % 28
        ));
    }
    s.into_bytes()
}

/// An app with no worker yet (start it with [`TestApp::start_worker_with`]) whose imports
/// pause [`ROW_DELAY`] after each row; `jobs_url` of `None` is a SQLite file.
pub async fn slow_app(jobs_url: Option<&str>) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let url = jobs_url
        .map(str::to_owned)
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("jobs.db").display()));
    TestApp::start_with(
        dir,
        move |d| {
            let mut cfg = config(d, &url);
            cfg.row_delay = ROW_DELAY;
            cfg
        },
        false,
    )
    .await
}

/// The imports the API lists, by id: one snapshot (one SQL statement reads them all with
/// their `waiting_for`).
pub async fn imports(app: &TestApp) -> HashMap<i64, Value> {
    let (status, list) = app.get("/api/imports").await;
    assert_eq!(status, 200, "{list}");
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["id"].as_i64().unwrap(), i.clone()))
        .collect()
}

/// Uploads `content` for `user` (the form field); the new import's id.
pub async fn upload_for(app: &TestApp, user: &str, name: &str, content: Vec<u8>) -> i64 {
    let (status, v) = app.upload_as(name, content, Some(user), None).await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["user"], user, "{v}");
    v["id"].as_i64().unwrap()
}
