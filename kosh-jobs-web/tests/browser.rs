//! The dashboard in a real browser: headless Chromium driven through `chromedriver`
//! (WebDriver), against the router served on a TCP port over a SQLite file (and, for the
//! retry that a worker runs, also over a `redis-server` of the test's own).
//!
//! Needs Debian's `chromium` and `chromium-driver` (`scripts/test.sh` installs them); without
//! them these tests fail, saying what to install. Screenshots go to `target/screenshots/` of
//! the workspace; the overview's and a job page's are copied to `kosh-jobs-web/docs/` for the
//! README.
//!
//! Every wait is a WebDriver wait for an element (or a state in the store) with a deadline:
//! nothing sleeps for a fixed time.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use kosh_jobs::prelude::*;
use kosh_jobs::{AnyBackend, Finish, NewJob, Outcome, ReserveRequest};
use kosh_jobs_testsupport::browser::Browser;
use kosh_jobs_testsupport::redis_server::RedisServer;
use kosh_jobs_web::Options;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use support::{seed, Seeded, MOUNT};
use tokio::sync::Mutex;

/// How long a page may take to show what a step expects (Chromium on a busy CI machine).
const PAGE: Duration = Duration::from_secs(20);
/// How long a retried job may take to be run by the worker and shown as completed.
const RUN: Duration = Duration::from_secs(40);

/// One browser at a time: each test starts its own, and several at once on a small CI
/// machine make every wait slower.
static ONE_BROWSER: Mutex<()> = Mutex::const_new(());

/// The seeded `csv-uploads` jobs' handler: it succeeds.
#[derive(Serialize, Deserialize)]
struct ImportCsv {
    upload_id: u64,
}

#[job(queue = "csv-uploads")]
async fn import_csv(job: ImportCsv) -> Result<u64, JobError> {
    Ok(job.upload_id)
}

/// Where the dashboard's jobs are kept.
#[derive(Clone, Copy, Debug)]
enum Store {
    /// A SQLite file in a temporary folder.
    Sqlite,
    /// A `redis-server` of the test's own.
    Redis,
}

/// A store seeded by the HTTP tests' [`seed`], the dashboard served on a real port, and a
/// browser.
struct Dashboard {
    backend: AnyBackend,
    seeded: Seeded,
    /// `http://127.0.0.1:PORT/admin/jobs`
    base: String,
    browser: Browser,
    server: tokio::task::JoinHandle<()>,
    /// The SQLite file's folder, or the `redis-server`, kept until the test ends.
    _dir: Option<tempfile::TempDir>,
    _redis: Option<RedisServer>,
}

impl Dashboard {
    async fn start(store: Store) -> Dashboard {
        let (backend, shown, dir, redis) = match store {
            Store::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let url = format!("sqlite://{}", dir.path().join("jobs.db").display());
                let backend = kosh_jobs::connect(&url).await.expect("open SQLite");
                // Not the temporary path: the README's screenshots stay the same from run to
                // run.
                (backend, "sqlite://jobs.db".to_owned(), Some(dir), None)
            }
            Store::Redis => {
                let server = tokio::task::spawn_blocking(RedisServer::start)
                    .await
                    .expect("start redis-server")
                    .unwrap_or_else(|e| panic!("a redis-server for the test: {e:#}"));
                let url = format!("{}?prefix=browser", server.url());
                let backend = kosh_jobs::connect(&url).await.expect("connect to redis");
                (backend, url, None, Some(server))
            }
        };
        let seeded = seed(&backend).await;
        let options = Options::new()
            .title("Acme jobs")
            .backend_url(&shown)
            .poll_interval(Duration::from_secs(1));
        let app = support::app(&backend, options);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        let browser = Browser::start()
            .await
            .unwrap_or_else(|e| panic!("no browser: {e:#}"));
        Dashboard {
            backend,
            seeded,
            base: format!("http://127.0.0.1:{}{MOUNT}", addr.port()),
            browser,
            server,
            _dir: dir,
            _redis: redis,
        }
    }

    fn client(&self) -> &Client {
        &self.browser.client
    }

    /// Opens a page of the dashboard (`route` is its fragment, e.g. `/jobs/3`).
    async fn open(&self, route: &str) {
        let url = format!("{}#{route}", self.base);
        self.client()
            .goto(&url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// Waits for an element, failing with what the page shows instead.
    async fn wait(&self, locator: Locator<'_>, within: Duration) -> fantoccini::elements::Element {
        match self
            .client()
            .wait()
            .at_most(within)
            .every(Duration::from_millis(100))
            .for_element(locator)
            .await
        {
            Ok(e) => e,
            Err(e) => panic!(
                "waited {within:?} for {locator:?}: {e}\nthe page shows:\n{}",
                self.page_text().await
            ),
        }
    }

    /// Waits for the element with this `data-testid` whose text is `text`.
    async fn wait_text(&self, testid: &str, text: &str) -> fantoccini::elements::Element {
        let xpath = format!("//*[@data-testid='{testid}' and normalize-space(.)='{text}']");
        self.wait(Locator::XPath(&xpath), PAGE).await
    }

    /// The element with this `data-testid`, waiting for it.
    async fn testid(&self, testid: &str) -> fantoccini::elements::Element {
        let css = format!(r#"[data-testid="{testid}"]"#);
        self.wait(Locator::Css(&css), PAGE).await
    }

    async fn page_text(&self) -> String {
        match self
            .client()
            .execute("return document.body.innerText;", vec![])
            .await
        {
            Ok(Value::String(s)) => s,
            other => format!("(cannot read the page: {other:?})"),
        }
    }

    /// Saves a screenshot as `target/screenshots/NAME.png` of the workspace, and also as
    /// `kosh-jobs-web/docs/NAME.png` when `for_readme`.
    async fn screenshot(&self, name: &str, for_readme: bool) {
        let png = self.client().screenshot().await.expect("screenshot");
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let dir = crate_dir.join("../target/screenshots");
        std::fs::create_dir_all(&dir).expect("create target/screenshots");
        std::fs::write(dir.join(format!("{name}.png")), &png).expect("write the screenshot");
        if for_readme {
            let docs = crate_dir.join("docs");
            std::fs::create_dir_all(&docs).expect("create docs");
            std::fs::write(docs.join(format!("{name}.png")), &png).expect("write the screenshot");
        }
    }

    /// Presses a button; if the page asks to confirm, returns the question after confirming.
    async fn press_and_confirm(&self, testid: &str) -> Option<String> {
        self.testid(testid).await.click().await.expect("click");
        // Either the dialog opens or the action's answer shows in the banner.
        let shown = self
            .wait(
                Locator::Css(
                    r#"dialog[open][data-testid="confirm-dialog"], #banner:not([hidden])"#,
                ),
                PAGE,
            )
            .await;
        if shown
            .tag_name()
            .await
            .unwrap()
            .eq_ignore_ascii_case("dialog")
        {
            let question = self.testid("confirm-text").await.text().await.unwrap();
            self.testid("confirm-yes")
                .await
                .click()
                .await
                .expect("confirm");
            Some(question)
        } else {
            None
        }
    }

    async fn payload_of(&self, id: JobId) -> Value {
        let job = self.backend.get(id).await.unwrap().expect("job");
        serde_json::from_str(&job.payload).expect("JSON payload")
    }

    async fn state_of(&self, id: JobId) -> JobState {
        self.backend.get(id).await.unwrap().expect("job").state
    }

    async fn finish(self) {
        self.browser
            .close()
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        self.server.abort();
    }
}

async fn dashboard() -> (tokio::sync::MutexGuard<'static, ()>, Dashboard) {
    dashboard_on(Store::Sqlite).await
}

async fn dashboard_on(store: Store) -> (tokio::sync::MutexGuard<'static, ()>, Dashboard) {
    let guard = ONE_BROWSER.lock().await;
    (guard, Dashboard::start(store).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overview_shows_the_counts() {
    let started = Instant::now();
    let (_one, d) = dashboard().await;
    // Limits are shown on their queue's card; a queue without any shows none.
    let limits = kosh_jobs::QueueLimits::default()
        .with_concurrency(2)
        .with_rate(kosh_jobs::RateLimit::new(100, Duration::from_secs(1)))
        .with_group_concurrency(1);
    d.backend
        .set_queue_limits("csv-uploads", limits)
        .await
        .expect("set limits");
    d.open("/").await;
    d.wait_text("title", "Acme jobs").await;
    d.wait_text(
        "limits-csv-uploads",
        "Limits: 1 of 2 running · 0 of 100 starts per 1 s · 1 running per group, 0 groups full",
    )
    .await;
    assert!(
        !d.testid("limits-mail")
            .await
            .is_displayed()
            .await
            .expect("displayed?"),
        "a queue without limits shows none"
    );
    for (state, n) in [
        ("scheduled", "0"),
        ("ready", "0"),
        ("running", "1"),
        ("completed", "2"),
        ("failed", "3"),
        ("cancelled", "0"),
    ] {
        d.wait_text(&format!("count-csv-uploads-{state}"), n).await;
    }
    d.wait_text("count-mail-ready", "1").await;
    d.wait_text("count-mail-scheduled", "1").await;
    d.wait_text("hour-csv-uploads", "2 / 3").await;
    d.wait_text("ratio-csv-uploads", "60.0%").await;
    d.wait_text("workers-summary", "1 live worker").await;
    // The store is shown without anything secret, and the chart is drawn.
    d.wait_text("backend", "sqlite://jobs.db").await;
    d.wait(
        Locator::Css(r#"[data-testid="chart-csv-uploads"] svg rect"#),
        PAGE,
    )
    .await;
    d.screenshot("overview", true).await;
    d.finish().await;
    eprintln!("overview_shows_the_counts: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_job_shows_its_error() {
    let started = Instant::now();
    let (_one, d) = dashboard().await;
    let id = d.seeded.failed[0];
    // From the overview's failed count to the queue's failed list to the job.
    d.open("/").await;
    d.wait_text("count-csv-uploads-failed", "3").await;
    d.testid("count-csv-uploads-failed")
        .await
        .click()
        .await
        .expect("click the failed count");
    d.testid(&format!("job-link-{id}"))
        .await
        .click()
        .await
        .expect("click the job");
    d.wait_text("job-title", &format!("Job {id}")).await;
    d.wait(
        Locator::Css(r#"[data-testid="job-state"] [data-state="failed"]"#),
        PAGE,
    )
    .await;
    let error = d.testid("attempt-error-1").await.text().await.unwrap();
    assert_eq!(error, "database is locked");
    d.wait_text("attempt-outcome-1", "failed").await;
    d.wait_text("job-attempts", "1 of 1").await;
    d.wait_text("job-trace", kosh_jobs_testsupport::seed::TRACE)
        .await;
    let payload = d.testid("payload").await.text().await.unwrap();
    let payload: Value = serde_json::from_str(&payload).expect("pretty JSON payload");
    assert_eq!(payload, d.payload_of(id).await);
    assert!(payload["file"].as_str().unwrap().starts_with("statement-"));
    d.testid("action-retry").await;
    d.testid("action-delete").await;
    d.screenshot("job", true).await;
    d.finish().await;
    eprintln!("failed_job_shows_its_error: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_runs_the_job_and_the_page_shows_it_completed() {
    retry_runs_the_job(Store::Sqlite).await;
}

/// The same on Redis: the worker wakes on Redis's signal, the page polls the Redis backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_runs_the_job_and_the_page_shows_it_completed_on_redis() {
    retry_runs_the_job(Store::Redis).await;
}

async fn retry_runs_the_job(store: Store) {
    let started = Instant::now();
    let (_one, d) = dashboard_on(store).await;
    let id = d.seeded.failed[1];
    let worker = Worker::builder(d.backend.clone())
        .register::<ImportCsv>()
        .idle_wait(Duration::from_millis(200))
        .build()
        .expect("worker")
        .spawn();

    d.open(&format!("/jobs/{id}")).await;
    d.wait(
        Locator::Css(r#"[data-testid="job-state"] [data-state="failed"]"#),
        PAGE,
    )
    .await;
    let question = d.press_and_confirm("action-retry").await;
    if let Some(q) = question {
        assert!(q.contains(&id.to_string()), "{q}");
    }
    // The page's own polling shows the worker's run: no reload, no sleep.
    d.wait(
        Locator::Css(r#"[data-testid="job-state"] [data-state="completed"]"#),
        RUN,
    )
    .await;
    d.wait_text("attempt-outcome-2", "completed").await;
    let result = d.testid("result").await.text().await.unwrap();
    assert_eq!(
        result.trim(),
        d.payload_of(id).await["upload_id"].to_string()
    );
    assert_eq!(d.state_of(id).await, JobState::Completed);
    // The other failed jobs were left alone.
    assert_eq!(d.state_of(d.seeded.failed[0]).await, JobState::Failed);
    let name = match store {
        Store::Sqlite => "job-retried",
        Store::Redis => "job-retried-redis",
    };
    d.screenshot(name, false).await;
    worker.shutdown().await.expect("worker shutdown");
    d.finish().await;
    eprintln!(
        "retry_runs_the_job_and_the_page_shows_it_completed ({store:?}): {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_by_text_and_bulk_retry_after_the_count() {
    let started = Instant::now();
    let (_one, d) = dashboard().await;
    let [one, two, hostile] = [d.seeded.failed[0], d.seeded.failed[1], d.seeded.failed[2]];
    d.open("/queues/csv-uploads").await;
    d.wait(Locator::Css(r#"[data-testid="list-summary"]"#), PAGE)
        .await;
    let search = d.testid("filter-search").await;
    search.send_keys("statement").await.expect("type");
    d.testid("filter-apply").await.click().await.expect("apply");
    // Only the two jobs whose payload names a statement file.
    d.wait(
        Locator::XPath(
            "//*[@data-testid='list-summary' and starts-with(normalize-space(.), '2 jobs shown')]",
        ),
        PAGE,
    )
    .await;
    d.testid(&format!("job-row-{one}")).await;
    d.testid(&format!("job-row-{two}")).await;
    let hidden = d
        .client()
        .find_all(Locator::Css(&format!(
            r#"[data-testid="job-row-{hostile}"]"#
        )))
        .await
        .unwrap();
    assert!(
        hidden.is_empty(),
        "the filter shows a job it does not match"
    );

    d.testid("bulk-filter-action")
        .await
        .select_by_value("retry")
        .await
        .expect("choose retry");
    let question = d
        .press_and_confirm("bulk-filter-go")
        .await
        .expect("the page asks to confirm a bulk action");
    assert!(
        question.starts_with("Retry 2 jobs matching queue csv-uploads, text “statement”"),
        "{question}"
    );
    d.wait_text("banner-text", "Retried 2 jobs.").await;
    for id in [one, two] {
        d.wait(
            Locator::Css(&format!(
                r#"[data-testid="job-row-{id}"] [data-state="ready"]"#
            )),
            PAGE,
        )
        .await;
        assert_eq!(d.state_of(id).await, JobState::Ready);
    }
    assert_eq!(d.state_of(hostile).await, JobState::Failed);
    d.screenshot("queue-bulk-retried", false).await;
    d.finish().await;
    eprintln!(
        "filter_by_text_and_bulk_retry_after_the_count: {:?}",
        started.elapsed()
    );
}

/// Markup that runs script if a page ever parses it.
const SCRIPT: &str = "<script>window.__pwned=1</script>";
const IMG: &str = r#"<img src=x onerror="window.__pwned=1">"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_payload_is_shown_as_text_and_runs_nothing() {
    let started = Instant::now();
    let (_one, d) = dashboard().await;
    let b = &d.backend;
    let now = b.clock().now();
    let mut job = NewJob::new(
        "import_csv",
        "hostile",
        json!({"note": format!("{SCRIPT}{IMG}")}).to_string(),
        now,
    );
    job.max_attempts = 1;
    job.unique_key = Some(format!("key-{IMG}"));
    b.push(vec![job]).await.unwrap();
    let leased = b
        .reserve(&ReserveRequest {
            queues: vec!["hostile".into()],
            worker: "browser-test".into(),
            max: 1,
            lease: Duration::from_secs(60),
        })
        .await
        .unwrap();
    let id = leased[0].id();
    b.finish(vec![Finish {
        lease: leased[0].lease,
        outcome: Outcome::failed(format!("bad row {SCRIPT} {IMG}")),
    }])
    .await
    .unwrap();

    d.open(&format!("/jobs/{id}")).await;
    d.wait_text("job-title", &format!("Job {id}")).await;
    let error = d.testid("attempt-error-1").await.text().await.unwrap();
    assert_eq!(error, format!("bad row {SCRIPT} {IMG}"));
    let payload = d.testid("payload").await.text().await.unwrap();
    let payload: Value = serde_json::from_str(&payload).expect("pretty JSON payload");
    assert_eq!(payload, json!({"note": format!("{SCRIPT}{IMG}")}));
    let key = d.testid("job-unique-key").await.text().await.unwrap();
    assert_eq!(key, format!("key-{IMG}"));
    // The queue's list shows the error as text too.
    d.open("/queues/hostile?state=failed").await;
    let row = d.testid(&format!("job-row-{id}")).await;
    let text = row.text().await.unwrap();
    assert!(text.contains(SCRIPT) && text.contains(IMG), "{text}");

    // No markup from the job made it into the page, and nothing ran.
    let ran = d
        .client()
        .execute(
            "return [typeof window.__pwned, \
             document.querySelectorAll('main img, main script, [onerror]').length];",
            vec![],
        )
        .await
        .expect("execute");
    assert_eq!(ran, json!(["undefined", 0]));
    d.screenshot("hostile", false).await;
    d.finish().await;
    eprintln!(
        "hostile_payload_is_shown_as_text_and_runs_nothing: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_tab_pauses_and_deletes_a_schedule() {
    use kosh_jobs::schedule::{Every, Missed, Overlap, ScheduleDef};
    let started = Instant::now();
    let (_one, d) = dashboard().await;
    const ID: &str = "nightly:report";
    let def = ScheduleDef {
        id: ID.into(),
        every: Every::Cron {
            expr: "0 3 * * *".into(),
            tz: "Europe/Berlin".into(),
        },
        job: "import_csv".into(),
        queue: "csv-uploads".into(),
        payload: json!({"note": format!("{SCRIPT}{IMG}")}).to_string(),
        priority: 0,
        max_attempts: 3,
        start_at: None,
        end_at: None,
        max_runs: None,
        missed: Missed::default(),
        overlap: Overlap::Skip,
        group: None,
    };
    kosh_jobs::Client::new(d.backend.clone())
        .upsert_schedule_def(def)
        .await
        .unwrap();

    d.open("/").await;
    d.wait_text("title", "Acme jobs").await;
    d.testid("nav-schedules")
        .await
        .click()
        .await
        .expect("click");
    d.testid(&format!("schedule-{ID}")).await;
    d.wait_text(&format!("schedule-active-{ID}"), "active")
        .await;
    let row = d
        .testid(&format!("schedule-{ID}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        row.contains("0 3 * * * (Europe/Berlin)") && row.contains("missed: latest, overlap: skip"),
        "{row}"
    );

    assert_eq!(
        d.press_and_confirm(&format!("schedule-pause-{ID}")).await,
        None
    );
    d.wait_text(&format!("schedule-paused-{ID}"), "paused")
        .await;
    let paused = d.backend.schedule(ID).await.unwrap().expect("schedule");
    assert!(paused.paused);
    d.screenshot("schedules", false).await;

    // The payload is text: nothing from it ran or became markup.
    let ran = d
        .client()
        .execute(
            "return [typeof window.__pwned, \
             document.querySelectorAll('main img, main script, [onerror]').length];",
            vec![],
        )
        .await
        .expect("execute");
    assert_eq!(ran, json!(["undefined", 0]));

    // Dismiss the pause's message, so the next press waits for the dialog, not for it.
    d.wait(Locator::Id("banner-close"), PAGE)
        .await
        .click()
        .await
        .expect("close");
    let question = d
        .press_and_confirm(&format!("schedule-delete-{ID}"))
        .await
        .expect("delete asks to confirm");
    assert!(
        question.contains(&format!("Remove schedule {ID}")),
        "{question}"
    );
    d.testid("schedules-empty").await;
    assert!(d.backend.schedule(ID).await.unwrap().is_none());
    d.finish().await;
    eprintln!(
        "schedules_tab_pauses_and_deletes_a_schedule: {:?}",
        started.elapsed()
    );
}

/// The groups page of a queue: reached from the queue's page, one row per group by key with
/// where it stands, the queue's group limits in words, a hostile group key shown as text,
/// and paging by key past 50 groups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_page_lists_each_group_and_pages() {
    let (_one, d) = dashboard().await;
    let b = &d.backend;
    kosh_jobs_testsupport::seed::seed_groups(b).await;
    let now = b.clock().now();
    let jobs: Vec<NewJob> = std::iter::once(IMG.to_owned())
        .chain((0..50).map(|i| format!("g-{i:02}")))
        .map(|g| {
            let mut j = NewJob::new("import", "per-user", "{}", now);
            j.group = Some(g);
            j
        })
        .collect();
    b.push(jobs).await.unwrap();

    d.open("/queues/per-user").await;
    d.testid("groups-link").await.click().await.expect("click");
    d.wait_text("groups-queue", "per-user").await;
    let limits = d.testid("groups-limits").await.text().await.unwrap();
    assert!(
        limits.contains("1 running per group, 2 groups full, 2 jobs waiting for their group"),
        "{limits}"
    );
    let rows_js = "return [...document.querySelectorAll('[data-testid=group-rows] tr')]\
                   .map(r => [...r.cells].map(c => c.innerText.trim()));";
    let rows = d.client().execute(rows_js, vec![]).await.expect("rows");
    let rows = rows.as_array().expect("an array of rows");
    assert_eq!(rows.len(), 50, "a page of 50 groups: {rows:?}");
    assert_eq!(
        rows[..3],
        [
            json!([IMG, "1", "0", "–", "may start"]),
            json!(["ann", "2", "1", "–", "full until a running job ends"]),
            json!(["bob", "0", "1", "–", "full until a running job ends"]),
        ],
        "by key as bytes, the hostile key as text"
    );
    assert_eq!(rows[49][0], "g-46", "{rows:?}");

    d.testid("groups-next").await.click().await.expect("click");
    d.wait_text("groups-summary", "4 groups shown, 0 at the limit")
        .await;
    let rows = d.client().execute(rows_js, vec![]).await.expect("rows");
    let keys: Vec<&str> = rows
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r[0].as_str().expect("a key"))
        .collect();
    assert_eq!(keys, ["g-47", "g-48", "g-49", "it's me"]);
    let next = d
        .client()
        .execute(
            "return [document.querySelectorAll('[data-testid=groups-next]').length, \
             document.querySelectorAll('[data-testid=groups-first]').length, \
             typeof window.__pwned, document.querySelectorAll('main img, [onerror]').length];",
            vec![],
        )
        .await
        .expect("execute");
    assert_eq!(
        next,
        json!([0, 1, "undefined", 0]),
        "the last page: no next, a first-page link; nothing of the key ran"
    );
    d.screenshot("groups", false).await;
    d.finish().await;
}
