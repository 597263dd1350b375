//! The imports on the page, in headless Chromium (`scripts/test.sh` installs it): an upload
//! from the form says "Queued as import N." until N finishes; a failed import shows how far
//! it got and its error, and its Retry button runs it again; a guessed date order is said
//! and re-imported the other way from its button; Delete removes an import; the badge is
//! grey at zero and opens the notifications, which show their date; a long error is one
//! line with the rest behind a toggle; sizes and counts in words; the known banks listed.

mod support;

use std::time::Duration;

use fantoccini::{Client, Locator};
use kosh_jobs_testsupport::browser::Browser;
use serde_json::Value;
use support::{fixture, wait_for, wait_text, TestApp};

const LIMIT: Duration = Duration::from_secs(30);
/// A name that would run script if the page put it in as HTML.
const HOSTILE: &str = "<img src=x onerror=\"document.title='owned'\">.csv";

/// Clicks the element `css` finds. The page redraws its table on every update, so the element
/// found may be replaced before the click lands ("stale element"): then it is found again.
async fn click(b: &Client, css: &str) {
    for _ in 0..20 {
        let found = b
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("`{css}`: {e}"));
        match found.click().await {
            Ok(()) => return,
            Err(e) if e.to_string().contains("stale element") => continue,
            Err(e) => panic!("click `{css}`: {e}"),
        }
    }
    panic!("click `{css}`: the element was replaced 20 times in a row");
}

async fn js(b: &Client, script: &str) -> Value {
    b.execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("`{script}`: {e}"))
}

/// The rendered text of the element at `css`, read in one script call: the page redraws its
/// table on every update, so an element found by one WebDriver call can be gone (stale) by
/// the next.
async fn shown_text(b: &Client, css: &str) -> String {
    let script = format!(
        "return document.querySelector({}).innerText",
        Value::from(css)
    );
    js(b, &script)
        .await
        .as_str()
        .unwrap_or_else(|| panic!("no element {css}"))
        .to_owned()
}

async fn badge_colour(b: &Client) -> String {
    js(
        b,
        "return getComputedStyle(document.getElementById('badge')).backgroundColor",
    )
    .await
    .as_str()
    .unwrap()
    .to_owned()
}

const RED: &str = "rgb(239, 68, 68)";

async fn dates(app: &TestApp, id: i64) -> Vec<String> {
    let (_, t) = app.get(&format!("/api/imports/{id}/transactions")).await;
    t["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["booked_on"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_retries_reimports_and_deletes_from_the_page() {
    let mut app = TestApp::start(None, false).await;
    let browser = Browser::start()
        .await
        .expect("headless Chromium (see scripts/test.sh)");
    let b = &browser.client;
    b.goto(&app.url("/")).await.unwrap();
    wait_text(b, "#live", "the live stream", |t| t == "live").await;

    // Before anything: the badge is grey at zero, the notifications closed; a favicon
    // that needs no request; the banks the parser knows, all of them.
    wait_text(b, "#badge", "the badge", |t| t == "0").await;
    assert_ne!(badge_colour(b).await, RED, "not red at zero");
    let icon = js(b, "return document.querySelector('link[rel=icon]').href").await;
    assert!(
        icon.as_str().unwrap().starts_with("data:image/svg+xml,"),
        "{icon}"
    );
    let banks = wait_text(b, "#banks", "the known banks", |t| t.contains("HDFC Bank")).await;
    for name in csv_upload::parse::known_layouts() {
        assert!(banks.contains(name), "{name} in {banks}");
    }
    // The page's words agree with the server's.
    for n in [
        0u64,
        1,
        2,
        1023,
        1024,
        1536,
        65_536,
        1_300_000,
        104_857_600,
        3 << 30,
    ] {
        let shown = js(b, &format!("return size({n})")).await;
        assert_eq!(shown, csv_upload::words::human_size(n), "size({n})");
    }
    for n in [0i64, 1, 2] {
        let shown = js(b, &format!("return plural({n}, 'row', 'rows')")).await;
        assert_eq!(shown, csv_upload::words::plural(n, "row", "rows"));
    }

    // Upload from the form; no worker yet, so it waits, "Queued as import N." meanwhile.
    let input = b
        .find(Locator::Css("#upload input[type=file]"))
        .await
        .unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/banks/chase_card.csv");
    input.send_keys(&path.display().to_string()).await.unwrap();
    click(b, "#upload button[type=submit]").await;
    let msg = wait_text(b, "#msg", "the queued message", |t| {
        t.starts_with("Queued as import")
    })
    .await;
    let id: i64 = msg
        .trim_start_matches("Queued as import ")
        .trim_end_matches('.')
        .parse()
        .unwrap_or_else(|_| panic!("{msg}"));
    let row = format!("#imports tr[data-id='{id}']");
    let text = wait_text(b, &row, "the queued row", |t| t.contains("queued")).await;
    assert!(
        text.contains("chase_card.csv") && text.contains("392 bytes"),
        "{text}"
    );

    // Its file is gone when the job runs: failed, for good.
    let files = app.stored_files();
    assert_eq!(files.len(), 1, "{files:?}");
    let away = app.dir.path().join("away.csv");
    std::fs::rename(&files[0], &away).unwrap();
    app.start_worker().await;
    let text = wait_text(b, &row, "the failed row", |t| t.contains("failed")).await;
    assert!(text.contains("the uploaded file is gone"), "{text}");
    assert!(
        text.contains("no rows read") && !text.contains("counting"),
        "{text}"
    );
    wait_text(b, "#msg", "the queued message cleared", |t| t.is_empty()).await;

    // A notification: the badge is red and opens the notifications, dated.
    wait_text(b, "#badge", "one unread", |t| t == "1").await;
    assert_eq!(badge_colour(b).await, RED);
    assert!(!b
        .find(Locator::Css("#notes-box"))
        .await
        .unwrap()
        .is_displayed()
        .await
        .unwrap());
    click(b, "#notes-button").await;
    let (_, n) = app.get("/api/notifications").await;
    let year = &n["items"][0]["created_at"].as_str().unwrap()[..4];
    let notes = wait_text(b, "#notes", "the notification", |t| t.contains("failed")).await;
    assert!(notes.contains(year), "the date is shown: {notes}");
    click(b, "#read-all").await;
    wait_text(b, "#badge", "none unread", |t| t == "0").await;
    assert_ne!(badge_colour(b).await, RED);

    // The file is back: Retry.
    std::fs::rename(&away, &files[0]).unwrap();
    click(b, &format!("{row} button.retry")).await;
    let text = wait_text(b, &row, "the retried import", |t| t.contains("completed")).await;
    assert!(text.contains("5 / 5 rows"), "{text}");
    assert!(text.contains("dates read as month/day"), "{text}");
    assert_eq!(dates(&app, id).await[0], "2026-11-05");

    // The order was a guess: read it the other way.
    click(b, &format!("{row} button.reimport")).await;
    let text = wait_text(b, &row, "the re-import", |t| {
        t.contains("completed") && t.contains("as chosen")
    })
    .await;
    assert!(
        text.contains("dates read as day/month, as chosen"),
        "{text}"
    );
    assert!(text.contains("Read dates as month/day instead"), "{text}");
    wait_for("the stored dates to change", LIMIT, || async {
        (dates(&app, id).await.first().map(String::as_str) == Some("2026-05-11")).then_some(())
    })
    .await;
    assert_eq!(dates(&app, id).await.len(), 5);

    // A long error: one short line, the whole of it behind a toggle; all of it as text.
    let (_, v) = app.upload(HOSTILE, fixture("no_header.csv")).await;
    let bad = v["id"].as_i64().unwrap();
    let done = app.wait_final(bad, LIMIT).await;
    let error = done["error"].as_str().unwrap();
    assert!(error.len() > 80, "a long error: {error}");
    let bad_row = format!("#imports tr[data-id='{bad}']");
    wait_text(b, &bad_row, "the failed import", |t| t.contains("failed")).await;
    let summary = shown_text(b, &format!("{bad_row} details.error summary")).await;
    assert!(
        summary.chars().count() <= 80 && summary.ends_with('…'),
        "{summary}"
    );
    click(b, &format!("{bad_row} details.error summary")).await;
    let full = wait_text(
        b,
        &format!("{bad_row} details.error .full"),
        "the whole error",
        |t| !t.is_empty(),
    )
    .await;
    assert_eq!(full, error);
    // The page redraws its table on every update: the opened toggle stays open.
    let still_open = js(
        b,
        &format!(
            "return refresh().then(() => document.querySelector(\"{bad_row} details.error\").open)"
        ),
    )
    .await;
    assert_eq!(still_open, Value::Bool(true), "open after a redraw");
    let name = shown_text(b, &format!("{bad_row} td:nth-child(2)")).await;
    assert!(name.starts_with(HOSTILE), "shown as text: {name}");
    assert_eq!(
        b.title().await.unwrap(),
        "Statement imports",
        "no script ran"
    );

    // Delete, with a second click to confirm.
    click(b, &format!("{row} button.delete")).await;
    wait_text(
        b,
        &format!("{row} button.delete"),
        "the confirmation",
        |t| t == "Really delete?",
    )
    .await;
    click(b, &format!("{row} button.delete")).await;
    wait_for("the import to be deleted", LIMIT, || async {
        let (status, _) = app.get(&format!("/api/imports/{id}")).await;
        (status == 404).then_some(())
    })
    .await;
    wait_for("its row to go", LIMIT, || async {
        b.find_all(Locator::Css(&row))
            .await
            .unwrap()
            .is_empty()
            .then_some(())
    })
    .await;
    assert_eq!(
        app.stored_files().len(),
        1,
        "only the other import's file is left"
    );
    browser.close().await.unwrap();
    app.stop().await;
}
