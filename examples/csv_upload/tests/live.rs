//! Live updates: `GET /api/events` streams the imports' job events (server-sent events), the
//! page redraws on them instead of polling, and falls back to polling when the stream is off.
//! The page's side runs in headless Chromium (`scripts/test.sh` installs it).

mod support;

use std::time::Duration;

use fantoccini::Locator;
use kosh_jobs_testsupport::browser::Browser;
use serde_json::Value;
use support::{config_for, fixture, wait_text, TestApp};

const LIMIT: Duration = Duration::from_secs(30);

/// The `job` events of an SSE body so far: (job id, kind).
fn job_events(body: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut kind = "";
    for line in body.lines() {
        if let Some(k) = line.strip_prefix("event: ") {
            kind = k;
        } else if let Some(data) = line.strip_prefix("data: ") {
            if kind == "job" {
                let v: Value = serde_json::from_str(data).expect("JSON data");
                out.push((
                    v["job_id"].as_str().unwrap().to_owned(),
                    v["kind"].as_str().unwrap().to_owned(),
                ));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_carries_an_imports_whole_lifecycle() {
    let app = TestApp::start(None, true).await;
    let mut stream = app.http.get(app.url("/api/events")).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(
        stream.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let (status, v) = app.upload("march.csv", fixture("clean_comma.csv")).await;
    assert_eq!(status, 202, "{v}");
    let job = v["job_id"].as_str().unwrap().to_owned();

    let mut body = String::new();
    let kinds = tokio::time::timeout(LIMIT, async {
        loop {
            let chunk = stream.chunk().await.unwrap().expect("the stream goes on");
            body.push_str(std::str::from_utf8(&chunk).unwrap());
            let kinds: Vec<String> = job_events(&body)
                .into_iter()
                .filter(|(id, _)| *id == job)
                .map(|(_, k)| k)
                .collect();
            if kinds.last().is_some_and(|k| k == "completed") {
                break kinds;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no `completed` event within {LIMIT:?}: {body}"));
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("enqueued"),
        "{kinds:?}"
    );
    assert_eq!(
        kinds.get(1).map(String::as_str),
        Some("started"),
        "{kinds:?}"
    );
    assert!(kinds.iter().any(|k| k == "progress"), "{kinds:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_events_off_the_stream_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?events=false",
        dir.path().join("jobs.db").display()
    );
    let app = TestApp::start_with(dir, config_for(&url), false).await;
    let (status, v) = app.get("/api/events").await;
    assert_eq!(status, 503, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("live updates are off"),
        "{v}"
    );
    app.stop().await;
}

/// Opens the page, checks how it learns of changes (`live` or `polling`), uploads a file
/// behind its back and waits for the page to show it completed.
async fn page_follows_an_import(app: &TestApp, mode: &str) {
    let browser = Browser::start()
        .await
        .expect("headless Chromium (see scripts/test.sh)");
    let b = &browser.client;
    b.goto(&app.url("/")).await.unwrap();
    wait_text(b, "#live", "the page's update mode", |t| t == mode).await;
    let (status, v) = app.upload("march.csv", fixture("clean_comma.csv")).await;
    assert_eq!(status, 202, "{v}");
    let row = wait_text(b, "#imports tr", "the import's row", |t| {
        t.contains("march.csv") && t.contains("completed")
    })
    .await;
    assert!(row.contains("3 / 3 rows"), "{row}");
    assert_eq!(
        b.find(Locator::Css("#live"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        mode
    );
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_redraws_on_events_and_polls_without_them() {
    // Live: once the stream is open the page stops polling, so the import can only reach
    // the page through its events.
    let app = TestApp::start(None, true).await;
    page_follows_an_import(&app, "live").await;
    app.stop().await;

    // Events off: the stream answers 503, and the page polls instead.
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?events=false",
        dir.path().join("jobs.db").display()
    );
    let app = TestApp::start_with(dir, config_for(&url), true).await;
    page_follows_an_import(&app, "polling").await;
    app.stop().await;
}
