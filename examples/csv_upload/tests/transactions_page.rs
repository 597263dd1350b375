//! The page's transactions view (issue #20): a user opens an import's transactions from its
//! row and pages through them as stored: date, description, amount. In headless Chromium
//! (`scripts/test.sh` installs it), and over HTTP.

mod support;

use std::time::Duration;

use fantoccini::Locator;
use kosh_jobs_testsupport::browser::Browser;
use support::{wait_text, TestApp};

const LIMIT: Duration = Duration::from_secs(30);
const ROWS: usize = 120;
/// A description that would run script if the page put it in as HTML.
const HOSTILE: &str = "<img src=x onerror=\"document.title='owned'\">Coffee";

/// 120 rows, day-first dates with a day above 12 (so the order is certain); row 1 carries
/// the hostile description, row `i` the amount `-i.0(i % 100)`, except every tenth, a credit.
fn statement() -> Vec<u8> {
    let mut s = String::from("Booking Date;Payee;Amount\n");
    for i in 1..=ROWS {
        let payee = if i == 1 {
            HOSTILE.to_owned()
        } else {
            format!("Payee {i}")
        };
        let sign = if i % 10 == 0 { "" } else { "-" };
        s.push_str(&format!(
            "{:02}.03.2024;{payee};{sign}{i},{:02}\n",
            13 + i % 15,
            i % 100
        ));
    }
    s.into_bytes()
}

async fn click(b: &fantoccini::Client, css: &str) {
    b.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("`{css}`: {e}"))
        .click()
        .await
        .unwrap();
}

async fn enabled(b: &fantoccini::Client, css: &str) -> bool {
    b.find(Locator::Css(css))
        .await
        .unwrap()
        .is_enabled()
        .await
        .unwrap()
}

async fn rows(b: &fantoccini::Client) -> Vec<String> {
    let mut out = Vec::new();
    for r in b.find_all(Locator::Css("#tx tr")).await.unwrap() {
        out.push(r.text().await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_pages_through_an_imports_transactions() {
    let app = TestApp::start(None, true).await;
    let (status, v) = app.upload("march.csv", statement()).await;
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_i64().unwrap();
    let done = app.wait_final(id, LIMIT).await;
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(done["rows_imported"], ROWS, "{done}");

    // Over HTTP: the stored rows, paged.
    let (code, page) = app
        .get(&format!(
            "/api/imports/{id}/transactions?limit=50&offset=100"
        ))
        .await;
    assert_eq!(code, 200, "{page}");
    assert_eq!(page["total"], ROWS, "{page}");
    assert_eq!(page["items"].as_array().map(Vec::len), Some(20), "{page}");

    let browser = Browser::start()
        .await
        .expect("headless Chromium (see scripts/test.sh)");
    let b = &browser.client;
    b.goto(&app.url("/")).await.unwrap();
    wait_text(b, "#imports tr", "the import's row", |t| {
        t.contains("march.csv") && t.contains("completed")
    })
    .await;
    assert!(b
        .find(Locator::Css("#tx-box"))
        .await
        .unwrap()
        .attr("hidden")
        .await
        .unwrap()
        .is_some());

    // The imported count opens the transactions, first page.
    click(b, "#imports tr td:nth-child(5) a").await;
    wait_text(b, "#tx-page", "the first page", |t| t == "1–50 of 120").await;
    let first = rows(b).await;
    assert_eq!(first.len(), 50);
    assert_eq!(
        first[0],
        format!("2024-03-14 {HOSTILE} -1.01"),
        "row 1, as text"
    );
    assert_eq!(first[1], "2024-03-15 Payee 2 -2.02");
    assert_eq!(first[9], "2024-03-23 Payee 10 10.10", "a credit");
    assert_eq!(
        b.title().await.unwrap(),
        "Statement imports",
        "no script ran"
    );
    assert!(!enabled(b, "#tx-prev").await, "#tx-prev is disabled");

    // Next, next: the last page, and no further.
    for (page, first_row) in [
        ("51–100 of 120", "Payee 51 -51.51"),
        ("101–120 of 120", "Payee 101 -101.01"),
    ] {
        click(b, "#tx-next").await;
        wait_text(b, "#tx-page", page, |t| t == page).await;
        let shown = rows(b).await;
        assert!(shown[0].contains(first_row), "{page}: {:?}", shown[0]);
    }
    assert_eq!(rows(b).await.len(), 20);
    assert!(!enabled(b, "#tx-next").await, "#tx-next is disabled");
    click(b, "#tx-prev").await;
    wait_text(b, "#tx-page", "back a page", |t| t == "51–100 of 120").await;
    browser.close().await.unwrap();
    app.stop().await;
}

/// The Rejected count opens the import's rejected rows where the user is (the box scrolls into
/// view): each with its line, the reason and the raw line as text, hostile text included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_opens_an_imports_rejected_rows() {
    let app = TestApp::start(None, true).await;
    let file = format!(
        "Date,Description,Amount\n2024-03-01,Good one,10.00\nnot a date,Bad date,5.00\n\
         2024-03-03,\"{}\",twelve\n2024-03-07,Good two,-7.25\n",
        HOSTILE.replace('"', "\"\"")
    );
    let (status, v) = app.upload("rejects.csv", file.into_bytes()).await;
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_i64().unwrap();
    let done = app.wait_final(id, LIMIT).await;
    assert_eq!(
        (
            done["rows_imported"].as_i64(),
            done["rows_rejected"].as_i64()
        ),
        (Some(2), Some(2)),
        "{done}"
    );

    let browser = Browser::start()
        .await
        .expect("headless Chromium (see scripts/test.sh)");
    let b = &browser.client;
    b.goto(&app.url("/")).await.unwrap();
    wait_text(b, "#imports tr", "the import's row", |t| {
        t.contains("rejects.csv") && t.contains("completed")
    })
    .await;
    // The rejected count (the sixth column) opens the rows.
    click(b, "#imports tr td:nth-child(6) a").await;
    wait_text(b, "#rejected-id", "the box names the import", |t| {
        t == id.to_string()
    })
    .await;
    let mut shown = Vec::new();
    for r in b.find_all(Locator::Css("#rejected tr")).await.unwrap() {
        shown.push(r.text().await.unwrap());
    }
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert!(
        shown[0].starts_with("3 ") && shown[0].contains("`not a date` is not a date"),
        "{shown:?}"
    );
    assert!(
        shown[1].starts_with("4 ")
            && shown[1].contains("`twelve` is not a number")
            && shown[1].contains(HOSTILE),
        "the raw line, hostile text as text: {shown:?}"
    );
    assert_eq!(
        b.title().await.unwrap(),
        "Statement imports",
        "no script ran"
    );
    let in_view: serde_json::Value = b
        .execute(
            "const r = document.getElementById('rejected-box').getBoundingClientRect(); \
             return r.top < window.innerHeight && r.bottom > 0;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(in_view, serde_json::Value::Bool(true), "the box is in view");
    browser.close().await.unwrap();
    app.stop().await;
}
