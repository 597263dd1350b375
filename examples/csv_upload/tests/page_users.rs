//! Users on the page, in headless Chromium (`scripts/test.sh` installs it): the "Uploading
//! as" field is sent with the upload and remembered; each import shows its user, as text;
//! a queued import whose user has another import running says "waiting for your other
//! import" and names it.

mod support;

use std::time::Duration;

use fantoccini::{Client, Locator};
use kosh_jobs_testsupport::browser::Browser;
use serde_json::Value;
use support::users::{slow_app, statement, LONG, SHORT};
use support::{wait_text, TestApp};

/// A user name that would run script if the page put it in as HTML.
const HOSTILE: &str = "<img src=x onerror=\"document.title='owned'\">";

async fn js(b: &Client, script: &str) -> Value {
    b.execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("`{script}`: {e}"))
}

/// Uploads the file at `path` from the page's form (as whoever "Uploading as" says); the
/// new import's id, from the page's "Queued as import N.".
async fn upload_from_page(b: &Client, path: &std::path::Path) -> i64 {
    let input = b
        .find(Locator::Css("#upload input[type=file]"))
        .await
        .unwrap();
    input.send_keys(&path.display().to_string()).await.unwrap();
    // The previous upload's message is replaced: wait for this one's.
    js(
        b,
        "document.getElementById('msg').textContent = ''; return null",
    )
    .await;
    b.find(Locator::Css("#upload button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let msg = wait_text(b, "#msg", "the queued message", |t| {
        t.starts_with("Queued as import") || t.contains("user")
    })
    .await;
    msg.trim_start_matches("Queued as import ")
        .trim_end_matches('.')
        .parse()
        .unwrap_or_else(|_| panic!("{msg}"))
}

async fn page_shows_who_waits(mut app: TestApp) {
    let browser = Browser::start()
        .await
        .expect("headless Chromium (see scripts/test.sh)");
    let b = &browser.client;
    b.goto(&app.url("/")).await.unwrap();
    wait_text(b, "#live", "the live stream", |t| {
        t == "live" || t == "polling"
    })
    .await;

    // Ana types her name once: both uploads are hers, and the page remembers her.
    let files = app.dir.path();
    let (march, april) = (files.join("ana-march.csv"), files.join("ana-april.csv"));
    std::fs::write(&march, statement("ana-1", LONG)).unwrap();
    std::fs::write(&april, statement("ana-2", SHORT)).unwrap();
    b.find(Locator::Css("#user"))
        .await
        .unwrap()
        .send_keys(" ana ")
        .await
        .unwrap();
    let first = upload_from_page(b, &march).await;
    let second = upload_from_page(b, &april).await;
    let field = js(b, "return document.getElementById('user').value").await;
    assert_eq!(field, "ana", "the field keeps the user after an upload");
    b.refresh().await.unwrap();
    let field = js(b, "return document.getElementById('user').value").await;
    assert_eq!(field, "ana", "remembered in localStorage");
    // Ben, and someone whose name is markup, upload through the API.
    let (status, v) = app
        .upload_as("ben.csv", statement("ben", SHORT), None, Some("ben"))
        .await;
    assert_eq!(status, 202, "{v}");
    let ben = v["id"].as_i64().unwrap();
    let (status, v) = app
        .upload_as("h.csv", statement("hostile", SHORT), Some(HOSTILE), None)
        .await;
    assert_eq!(status, 202, "{v}");
    let hostile = v["id"].as_i64().unwrap();

    let row = |id: i64| format!("#imports tr[data-id='{id}']");
    for (id, user) in [
        (first, "ana"),
        (second, "ana"),
        (ben, "ben"),
        (hostile, HOSTILE),
    ] {
        let shown = wait_text(b, &format!("{} td.user", row(id)), "the user", |t| {
            !t.is_empty()
        })
        .await;
        assert_eq!(shown, user, "import {id}");
    }

    // Room for every import at once: only the per-user limit holds Ana's second back.
    app.start_worker_with(4).await;
    // The row's text and its link read in one script call, one snapshot: the page redraws
    // its table on every update, so an element found by one WebDriver call may be gone by
    // the next, and the wait ends once Ana's first import does.
    let snapshot = "const r = document.querySelector(arguments[0]); \
         if (!r) return ['', null]; \
         const a = r.querySelector('a.waiting-for'); \
         return [r.textContent, a && a.getAttribute('href')];";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (waiting, href) = loop {
        let v = b
            .execute(snapshot, vec![Value::from(row(second))])
            .await
            .unwrap();
        let text = v[0].as_str().unwrap_or_default().to_owned();
        if text.contains("waiting for your other import") {
            break (text, v[1].clone());
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Ana's second import never showed as waiting: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        waiting.contains(&format!("#{first}")),
        "names it: {waiting}"
    );
    assert_eq!(href, Value::from(format!("#import-{first}")));
    for id in [first, ben, hostile] {
        let text = wait_text(b, &row(id), "the row", |t| !t.is_empty()).await;
        assert!(!text.contains("waiting for"), "import {id}: {text}");
    }

    // Then it runs, and all complete.
    for id in [first, second, ben, hostile] {
        let text = wait_text(b, &row(id), "the import to complete", |t| {
            t.contains("completed")
        })
        .await;
        assert!(!text.contains("waiting for"), "import {id}: {text}");
    }
    assert_eq!(
        b.title().await.unwrap(),
        "Statement imports",
        "no script ran"
    );
    browser.close().await.unwrap();
    app.stop().await;
}

/// Cannot pass until the SQLite store implements groups (the branch's stubs ignore them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_an_import_waiting_for_its_users_other_import() {
    page_shows_who_waits(slow_app(None).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_an_import_waiting_on_the_memory_store() {
    page_shows_who_waits(slow_app(Some("memory:")).await).await;
}
