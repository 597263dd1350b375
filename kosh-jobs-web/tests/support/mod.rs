//! The dashboard's HTTP tests, as functions over any backend: `tests/sqlite.rs` and
//! `tests/redis.rs` run each on a fresh store ([`scenarios!`]).

#![allow(dead_code, unreachable_pub, unused_imports)]

mod schedules;

pub use schedules::*;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use kosh_jobs::{AnyBackend, Backend, JobId, JobState};
use kosh_jobs_testsupport::seed::Seed;
pub use kosh_jobs_testsupport::seed::Seeded;
use kosh_jobs_web::{router, Action, Options};
use serde_json::{json, Value};
use tower::ServiceExt as _;

/// Where the tests nest the dashboard.
pub const MOUNT: &str = "/admin/jobs";

/// A payload and an error that would run script if a page put them in as markup.
pub const HOSTILE: &str = "<script>alert('payload')</script><img src=x onerror=alert(2)>";

/// The password of the store URL given to the options; it must appear nowhere.
pub const PASSWORD: &str = "hunter2-s3cret";

/// Stamps out one `#[tokio::test]` per scenario, each on a fresh store from `$factory`
/// (an async fn returning the backend and a guard that keeps the store alive).
#[macro_export]
macro_rules! scenarios {
    ($factory:path) => {
        scenarios!(@each $factory,
            meta_overview_and_headers, shell_and_assets, list_filter_and_paging, bad_input_is_400,
            job_detail_and_unknown_ids, hostile_payload_is_text, single_job_actions,
            bulk_by_ids, bulk_retry_by_filter_counts_first, queue_pause_resume_purge,
            read_only_refuses_actions, authorize_hook_per_action, cross_site_requests_refused,
            enqueue_by_hand, workers_and_their_jobs, schedules_list_and_actions,
            schedule_actions_refused, hostile_schedule_is_plain_json, groups_page_and_paging);
    };
    (@each $factory:path, $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (backend, _guard) = $factory().await;
                support::$name(backend).await;
            }
        )*
    };
}

/// 3 failed + 2 completed + 1 running job on `csv-uploads`, 1 ready and 1 scheduled on
/// `mail`, and a live worker `test-worker` holding the running job. Only the first two
/// failed jobs name a statement file; the third (`failed[2]`) has [`HOSTILE`] in its
/// payload, its unique key and its error.
pub async fn seed(b: &AnyBackend) -> Seeded {
    let how = Seed {
        files: 1..=2,
        hostile: Some(HOSTILE),
    };
    kosh_jobs_testsupport::seed::seed(b, &how).await
}

/// The application: the dashboard nested at [`MOUNT`].
pub fn app(b: &AnyBackend, options: Options) -> Router {
    Router::new().nest(MOUNT, router(b.clone(), options))
}

/// The options most tests use: a store URL holding [`PASSWORD`].
pub fn options() -> Options {
    Options::new()
        .title("Test <b>jobs</b>")
        .backend_url(&format!(
            "redis://:{PASSWORD}@cache.internal:6379/0?prefix=t"
        ))
}

/// An answer: status, headers, body as text.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Answer {
    /// The body as JSON (panics with the body if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}), status {}: {}", self.status, self.text))
    }

    /// Asserts the status, returning the JSON body.
    #[track_caller]
    pub fn expect(&self, status: StatusCode) -> Value {
        assert_eq!(self.status, status, "body: {}", self.text);
        self.json()
    }

    /// The `error` of a JSON error answer with this status.
    #[track_caller]
    pub fn error(&self, status: StatusCode) -> String {
        let v = self.expect(status);
        v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error in {v}"))
            .to_owned()
    }
}

/// Sends one request through the router.
pub async fn send(app: &Router, req: Request<Body>) -> Answer {
    let res = app.clone().oneshot(req).await.expect("infallible");
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), 16 * 1024 * 1024)
        .await
        .expect("body");
    Answer {
        status,
        headers,
        text: String::from_utf8(bytes.to_vec()).expect("utf-8 body"),
    }
}

/// `GET MOUNT/path`.
pub async fn get(app: &Router, path: &str) -> Answer {
    let req = Request::get(format!("{MOUNT}/{path}"))
        .header(header::HOST, "dashboard.test")
        .body(Body::empty())
        .unwrap();
    send(app, req).await
}

/// `POST MOUNT/path` as the dashboard's own page sends it (same origin), with a JSON body
/// when `body` is not null.
pub async fn post(app: &Router, path: &str, body: Value) -> Answer {
    post_with(
        app,
        path,
        body,
        &[
            ("sec-fetch-site", "same-origin"),
            ("origin", "http://dashboard.test"),
        ],
    )
    .await
}

/// `POST MOUNT/path` with these extra headers.
pub async fn post_with(app: &Router, path: &str, body: Value, headers: &[(&str, &str)]) -> Answer {
    let mut b = Request::builder()
        .method(Method::POST)
        .uri(format!("{MOUNT}/{path}"))
        .header(header::HOST, "dashboard.test");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = if body.is_null() {
        b.body(Body::empty()).unwrap()
    } else {
        b.header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    send(app, req).await
}

fn queue<'a>(overview: &'a Value, name: &str) -> &'a Value {
    overview["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .find(|q| q["queue"] == name)
        .unwrap_or_else(|| panic!("no queue {name} in {overview}"))
}

fn ids(v: &Value) -> Vec<u64> {
    v["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["id"].as_u64().expect("id"))
        .collect()
}

async fn state_of(b: &AnyBackend, id: JobId) -> Option<JobState> {
    b.get(id).await.unwrap().map(|j| j.state)
}

// ---------------------------------------------------------------- scenarios

pub async fn meta_overview_and_headers(b: AnyBackend) {
    let s = seed(&b).await;
    let app = app(&b, options());

    let meta = get(&app, "api/meta").await;
    let m = meta.expect(StatusCode::OK);
    assert_eq!(m["title"], "Test <b>jobs</b>");
    assert_eq!(m["read_only"], false);
    assert_eq!(m["backend"], "redis://cache.internal:6379/0?prefix=t");
    let all: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
    assert_eq!(m["allowed"], json!(all));
    assert!(!meta.text.contains(PASSWORD));
    let csp = meta.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(meta.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(meta.headers[header::CACHE_CONTROL], "no-store");
    assert!(meta.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("application/json"));

    let o = get(&app, "api/overview").await.expect(StatusCode::OK);
    let csv = queue(&o, "csv-uploads");
    assert_eq!(
        csv["counts"],
        json!({"scheduled": 0, "ready": 0, "running": 1, "completed": 2, "failed": 3, "cancelled": 0})
    );
    assert_eq!(csv["paused"], false);
    assert_eq!(csv["oldest_ready_age_ms"], Value::Null);
    assert_eq!(csv["last_hour"]["completed"], 2);
    assert_eq!(csv["last_hour"]["failed"], 3);
    assert_eq!(csv["last_hour"]["failure_ratio"], 0.6);
    let minutes = csv["per_minute"].as_array().unwrap();
    assert_eq!(minutes.len(), 60);
    let last = &minutes[59];
    assert_eq!(
        (last["completed"].as_u64(), last["failed"].as_u64()),
        (Some(2), Some(3))
    );
    assert_eq!(
        minutes[59]["minute"].as_i64().unwrap() - minutes[0]["minute"].as_i64().unwrap(),
        59 * 60_000
    );
    let mail = queue(&o, "mail");
    assert_eq!(mail["counts"]["ready"], 1);
    assert_eq!(mail["counts"]["scheduled"], 1);
    assert!(mail["oldest_ready_age_ms"].is_u64(), "{mail}");
    assert_eq!(mail["last_hour"]["failure_ratio"], Value::Null);
    assert_eq!(o["workers"], json!({"live": 1, "running": 1}));
    let _ = s;
}

pub async fn shell_and_assets(b: AnyBackend) {
    seed(&b).await;
    let app = app(&b, options());
    // Nested at /admin/jobs, the page is /admin/jobs: its links go through `jobs/`.
    let page = send(&app, Request::get(MOUNT).body(Body::empty()).unwrap()).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(
        page.text.contains(r#"src="./jobs/assets/app.js""#),
        "{}",
        page.text
    );
    assert!(page.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    // The shell is static: no job data, no title, no store, no inline script.
    for absent in [
        "statement-",
        "upload_id",
        "onerror",
        "alert(",
        PASSWORD,
        "cache.internal",
        "Test <b>",
    ] {
        assert!(!page.text.contains(absent), "the shell holds {absent:?}");
    }
    assert!(
        !page.text.contains("<script>"),
        "inline script in the shell"
    );
    assert_eq!(page.text.matches("<script").count(), 1);

    // At a path ending in `/` (the router at the root of an app) the links are plain.
    let root: Router = router(b.clone(), options());
    let top = send(&root, Request::get("/").body(Body::empty()).unwrap()).await;
    assert!(top.text.contains(r#"src="assets/app.js""#), "{}", top.text);

    for (file, kind) in [
        ("app.js", "text/javascript"),
        ("app.css", "text/css"),
        ("icon.svg", "image/svg+xml"),
    ] {
        let a = get(&app, &format!("assets/{file}")).await;
        assert_eq!(a.status, StatusCode::OK, "{file}");
        assert!(a.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with(kind));
        assert_eq!(a.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
    // The script never writes markup from data.
    let js = get(&app, "assets/app.js").await.text;
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
    ] {
        assert!(!js.contains(sink), "app.js uses {sink}");
    }
    assert_eq!(
        get(&app, "assets/nope.js").await.status,
        StatusCode::NOT_FOUND
    );
    let missing = get(&app, "api/nothing-here").await;
    assert!(missing.error(StatusCode::NOT_FOUND).contains("no such"));
    assert_eq!(
        get(&app, "api/bulk").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

pub async fn list_filter_and_paging(b: AnyBackend) {
    let s = seed(&b).await;
    let app = app(&b, options());
    let n = |id: JobId| id.get();

    let failed = get(&app, "api/jobs?queue=csv-uploads&states=failed")
        .await
        .expect(StatusCode::OK);
    let mut newest_first: Vec<u64> = s.failed.iter().map(|i| i.get()).collect();
    newest_first.reverse();
    assert_eq!(ids(&failed), newest_first);
    assert_eq!(failed["total"], json!({"count": 3, "exact": true}));
    assert_eq!(failed["next"], Value::Null);
    let first = &failed["jobs"][2];
    assert_eq!(first["state"], "failed");
    assert_eq!(first["name"], "import_csv");
    assert_eq!(first["last_error"], "database is locked");
    assert!(first.get("payload").is_none(), "lists carry no payload");

    // Pages by cursor, oldest first.
    let p1 = get(&app, "api/jobs?states=failed&order=oldest&limit=2")
        .await
        .expect(StatusCode::OK);
    assert_eq!(ids(&p1), vec![n(s.failed[0]), n(s.failed[1])]);
    let next = p1["next"].as_u64().expect("a next cursor");
    let p2 = get(
        &app,
        &format!("api/jobs?states=failed&order=oldest&limit=2&after={next}"),
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(ids(&p2), vec![n(s.failed[2])]);
    assert_eq!(p2["next"], Value::Null);
    assert_eq!(
        p2["total"],
        Value::Null,
        "the total comes with the first page"
    );

    // Several states, text search ignoring ASCII case, name, time ranges.
    let two = get(&app, "api/jobs?states=ready,scheduled")
        .await
        .expect(StatusCode::OK);
    assert_eq!(ids(&two), vec![n(s.scheduled), n(s.ready)]);
    let locked = get(&app, "api/jobs?search=IS%20LOCKED")
        .await
        .expect(StatusCode::OK);
    assert_eq!(ids(&locked).len(), 3);
    let file = get(&app, "api/jobs?search=statement-2")
        .await
        .expect(StatusCode::OK);
    assert_eq!(ids(&file), vec![n(s.failed[1])]);
    let mail = get(&app, "api/jobs?name=send_mail")
        .await
        .expect(StatusCode::OK);
    assert_eq!(ids(&mail).len(), 2);
    let old = get(&app, "api/jobs?created_until=1000")
        .await
        .expect(StatusCode::OK);
    assert_eq!(ids(&old), Vec::<u64>::new());
    assert_eq!(old["total"]["count"], 0);
    let since = get(
        &app,
        "api/jobs?created_from=2000-01-01T00:00:00Z&finished_from=0",
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(
        ids(&since).len(),
        5,
        "only finished jobs match a finished range"
    );
    // Empty parameters are unset, as a form sends them.
    let all = get(&app, "api/jobs?states=&queue=&search=&name=&after=")
        .await
        .expect(StatusCode::OK);
    assert_eq!(all["total"]["count"], 8);
}

pub async fn bad_input_is_400(b: AnyBackend) {
    let s = seed(&b).await;
    let app = app(&b, options());
    let bad = StatusCode::BAD_REQUEST;
    for (path, says) in [
        ("api/jobs?states=done", "unknown job state `done`"),
        ("api/jobs?after=abc", "cursor `abc` is not a job id"),
        (
            "api/jobs?created_from=yesterday",
            "created_from `yesterday` is not a time",
        ),
        (
            "api/jobs?created_from=20&created_until=10",
            "created_until is before created_from",
        ),
        (
            "api/jobs?limit=0",
            "limit `0` must be a number from 1 to 200",
        ),
        ("api/jobs?limit=5000", "limit"),
        ("api/jobs?order=random", "order `random`"),
        ("api/jobs?queue=no%20spaces", "queue name"),
        ("api/count?action=explode", "unknown action `explode`"),
        (
            "api/count?action=promote&states=failed",
            "promote applies to scheduled",
        ),
        ("api/jobs/abc", "job id `abc`"),
    ] {
        let e = get(&app, path).await.error(bad);
        assert!(e.contains(says), "{path}: {e}");
    }
    let long = "x".repeat(300);
    let e = get(&app, &format!("api/jobs?search={long}"))
        .await
        .error(bad);
    assert!(e.contains("1 to 256 bytes"), "{e}");

    let too_many: Vec<u64> = (1..=1001).collect();
    for (body, says) in [
        (
            json!({"action": "retry", "ids": too_many}),
            "too many ids: 1001",
        ),
        (json!({"action": "retry", "ids": []}), "`ids` is empty"),
        (json!({"action": "retry"}), "either `ids`"),
        (
            json!({"action": "retry", "ids": [1], "filter": {}}),
            "either `ids`",
        ),
        (
            json!({"action": "retry", "filter": {"states": "nope"}}),
            "unknown job state",
        ),
        (json!({"action": "fly", "ids": [1]}), "unknown action `fly`"),
        (
            json!({"action": "retry", "idz": [1]}),
            "unknown field `idz`",
        ),
        (
            json!({"action": "promote", "filter": {"states": "failed"}}),
            "promote applies to",
        ),
    ] {
        let e = post(&app, "api/bulk", body.clone()).await.error(bad);
        assert!(e.contains(says), "{body}: {e}");
    }
    let not_json = post_with(
        &app,
        "api/bulk",
        Value::Null,
        &[("content-type", "application/json")],
    )
    .await;
    assert!(not_json.error(bad).contains("bad JSON body"));
    let form = post_with(
        &app,
        "api/bulk",
        Value::Null,
        &[("content-type", "application/x-www-form-urlencoded")],
    )
    .await;
    assert!(form
        .error(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        .contains("application/json"));
    let e = post(&app, "api/queues/bad%20name/pause", Value::Null)
        .await
        .error(bad);
    assert!(e.contains("queue name"), "{e}");
    let e = post(&app, "api/queues/mail/explode", Value::Null)
        .await
        .error(bad);
    assert!(e.contains("unknown queue action"), "{e}");
    let e = post(
        &app,
        "api/queues/mail/purge",
        json!({"states": "ready", "older_than_secs": 1}),
    )
    .await
    .error(bad);
    assert!(e.contains("finished jobs"), "{e}");
    let e = post(&app, "api/queues/mail/purge", json!({}))
        .await
        .error(bad);
    assert!(e.contains("finished_before"), "{e}");
    let e = post(
        &app,
        &format!("api/jobs/{}/explode", s.failed[0]),
        Value::Null,
    )
    .await
    .error(bad);
    assert!(e.contains("unknown action"), "{e}");
    // Nothing changed.
    assert_eq!(state_of(&b, s.failed[0]).await, Some(JobState::Failed));
}

pub async fn job_detail_and_unknown_ids(b: AnyBackend) {
    let s = seed(&b).await;
    let app = app(&b, options());
    let j = get(&app, &format!("api/jobs/{}", s.failed[0]))
        .await
        .expect(StatusCode::OK);
    assert_eq!(j["id"], s.failed[0].get());
    assert_eq!(j["state"], "failed");
    assert_eq!(j["queue"], "csv-uploads");
    assert_eq!(j["attempts"], 1);
    assert_eq!(j["max_attempts"], 1);
    let payload: Value = serde_json::from_str(j["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload, json!({"upload_id": 1, "file": "statement-1.csv"}));
    assert!(j["payload_pretty"]
        .as_str()
        .unwrap()
        .contains("\n  \"file\": \"statement-1.csv\""));
    assert_eq!(j["payload_is_json"], true);
    let h = j["history"].as_array().unwrap();
    assert_eq!(h.len(), 1, "{j}");
    assert_eq!(h[0]["worker"], "test-worker");
    assert_eq!(h[0]["outcome"], "failed");
    assert_eq!(h[0]["error"], "database is locked");
    assert!(h[0]["duration_ms"].is_u64());
    assert!(j["finished_at"].is_i64());
    assert_eq!(j["actions"], json!(["retry", "delete"]));
    assert_eq!(j["applicable_actions"], json!(["retry", "delete"]));

    let done = get(&app, &format!("api/jobs/{}", s.completed[0]))
        .await
        .expect(StatusCode::OK);
    assert_eq!(done["result"], json!({"rows": 120}));
    assert_eq!(done["actions"], json!(["delete"]));
    let running = get(&app, &format!("api/jobs/{}", s.running))
        .await
        .expect(StatusCode::OK);
    assert_eq!(running["history"][0]["outcome"], Value::Null);
    assert!(running["lease_expires_at"].is_i64());
    assert_eq!(running["actions"], json!(["cancel"]));
    let sched = get(&app, &format!("api/jobs/{}", s.scheduled))
        .await
        .expect(StatusCode::OK);
    assert_eq!(sched["actions"], json!(["cancel", "promote"]));

    let e = get(&app, "api/jobs/987654321")
        .await
        .error(StatusCode::NOT_FOUND);
    assert_eq!(e, "job 987654321 not found");
    for action in ["retry", "cancel", "delete", "promote"] {
        let e = post(&app, &format!("api/jobs/987654321/{action}"), Value::Null)
            .await
            .error(StatusCode::NOT_FOUND);
        assert_eq!(e, "job 987654321 not found");
    }
}

pub async fn hostile_payload_is_text(b: AnyBackend) {
    let s = seed(&b).await;
    let app = app(&b, options());
    let id = s.failed[2];
    let a = get(&app, &format!("api/jobs/{id}")).await;
    assert!(a.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(a.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    let j = a.expect(StatusCode::OK);
    // Returned as the text it is, inside JSON strings.
    let payload: Value = serde_json::from_str(j["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["note"], HOSTILE);
    assert_eq!(j["unique_key"], format!("upload-3-{HOSTILE}"));
    assert_eq!(
        j["history"][0]["error"],
        format!("database is locked {HOSTILE}")
    );
    let list = get(&app, "api/jobs?search=onerror")
        .await
        .expect(StatusCode::OK);
    assert_eq!(ids(&list), vec![id.get()]);
    assert_eq!(
        list["jobs"][0]["last_error"],
        format!("database is locked {HOSTILE}")
    );
    // No answer of the dashboard is HTML with the payload in it.
    let page = send(&app, Request::get(MOUNT).body(Body::empty()).unwrap()).await;
    assert!(!page.text.contains("onerror") && !page.text.contains("alert("));
}

pub async fn single_job_actions(b: AnyBackend) {
    let s = seed(&b).await;
    let app = app(&b, options());
    let r = post(
        &app,
        &format!("api/jobs/{}/retry", s.failed[0]),
        Value::Null,
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(
        r,
        json!({"id": s.failed[0].get(), "action": "retry", "result": "applied", "state": "ready"})
    );
    assert_eq!(state_of(&b, s.failed[0]).await, Some(JobState::Ready));
    let e = post(
        &app,
        &format!("api/jobs/{}/retry", s.failed[0]),
        Value::Null,
    )
    .await
    .error(StatusCode::CONFLICT);
    assert_eq!(e, "retry does not apply to a ready job");

    let r = post(&app, &format!("api/jobs/{}/cancel", s.ready), Value::Null)
        .await
        .expect(StatusCode::OK);
    assert_eq!(r["state"], "cancelled");
    let r = post(
        &app,
        &format!("api/jobs/{}/promote", s.scheduled),
        Value::Null,
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(r["state"], "ready");
    let e = post(&app, &format!("api/jobs/{}/delete", s.running), Value::Null)
        .await
        .error(StatusCode::CONFLICT);
    assert_eq!(e, "delete does not apply to a running job");
    let r = post(
        &app,
        &format!("api/jobs/{}/delete", s.completed[0]),
        Value::Null,
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(
        (r["result"].as_str(), &r["state"]),
        (Some("applied"), &Value::Null)
    );
    assert_eq!(state_of(&b, s.completed[0]).await, None);
    get(&app, &format!("api/jobs/{}", s.completed[0]))
        .await
        .error(StatusCode::NOT_FOUND);
}

pub async fn bulk_by_ids(b: AnyBackend) {
    let s = seed(&b).await;
    let app = app(&b, options());
    let ids = vec![
        s.failed[0].get(),
        s.failed[1].get(),
        s.ready.get(),
        987_654_321,
    ];
    let r = post(&app, "api/bulk", json!({"action": "retry", "ids": ids}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        (
            r["applied"].as_u64(),
            r["skipped"].as_u64(),
            r["not_found"].as_u64()
        ),
        (Some(2), Some(1), Some(1))
    );
    let results = r["results"].as_array().unwrap();
    assert_eq!(results[0]["result"], "applied");
    assert_eq!(
        results[2],
        json!({"id": s.ready.get(), "result": "skipped", "state": "ready", "held_by": null})
    );
    assert_eq!(results[3]["result"], "not_found");
    assert_eq!(state_of(&b, s.failed[1]).await, Some(JobState::Ready));
    assert_eq!(state_of(&b, s.failed[2]).await, Some(JobState::Failed));
}

pub async fn bulk_retry_by_filter_counts_first(b: AnyBackend) {
    let s = seed(&b).await;
    let app = app(&b, options());
    // The count first: the filter narrowed to the states retry applies to.
    let c = get(
        &app,
        "api/count?action=retry&queue=csv-uploads&search=LOCKED",
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(
        c,
        json!({"count": 3, "action": "retry", "states": ["failed", "cancelled"]})
    );
    let plain = get(&app, "api/count?queue=csv-uploads")
        .await
        .expect(StatusCode::OK);
    assert_eq!(plain["count"], 6);
    let narrow = get(&app, "api/count?action=retry&search=statement-1")
        .await
        .expect(StatusCode::OK);
    assert_eq!(narrow["count"], 1);

    let r = post(
        &app,
        "api/bulk",
        json!({"action": "retry", "filter": {"queue": "csv-uploads", "search": "LOCKED"}}),
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(r["applied"], 3);
    assert_eq!(r["skipped"], 0);
    for id in &s.failed {
        assert_eq!(state_of(&b, *id).await, Some(JobState::Ready));
    }
    let after = get(
        &app,
        "api/count?action=retry&queue=csv-uploads&search=LOCKED",
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(after["count"], 0);
    // The running and completed jobs of the queue were not touched.
    assert_eq!(state_of(&b, s.running).await, Some(JobState::Running));
    assert_eq!(
        state_of(&b, s.completed[0]).await,
        Some(JobState::Completed)
    );
}

pub async fn queue_pause_resume_purge(b: AnyBackend) {
    let s = seed(&b).await;
    let app = app(&b, options());
    let r = post(&app, "api/queues/mail/pause", Value::Null)
        .await
        .expect(StatusCode::OK);
    assert_eq!(r, json!({"queue": "mail", "paused": true}));
    let o = get(&app, "api/overview").await.expect(StatusCode::OK);
    assert_eq!(queue(&o, "mail")["paused"], true);
    post(&app, "api/queues/mail/resume", Value::Null)
        .await
        .expect(StatusCode::OK);
    let o = get(&app, "api/overview").await.expect(StatusCode::OK);
    assert_eq!(queue(&o, "mail")["paused"], false);

    // Nothing finished before an hour ago.
    let hour_ago = b.clock().now().as_millis() - 3_600_000;
    let c = get(
        &app,
        &format!("api/count?action=delete&queue=csv-uploads&finished_until={hour_ago}"),
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(c["count"], 0);
    let r = post(
        &app,
        "api/queues/csv-uploads/purge",
        json!({"finished_before": hour_ago}),
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(r["deleted"], 0);

    // Everything finished so far, counted first, then only completed ones purged.
    let soon = b.clock().now().as_millis() + 1000;
    let c = get(&app, &format!("api/count?action=delete&queue=csv-uploads&states=completed,failed,cancelled&finished_until={soon}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(c["count"], 5);
    let r = post(
        &app,
        "api/queues/csv-uploads/purge",
        json!({"finished_before": soon.to_string(), "states": "completed"}),
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(r["deleted"], 2);
    assert_eq!(state_of(&b, s.completed[1]).await, None);
    assert_eq!(state_of(&b, s.failed[0]).await, Some(JobState::Failed));
    // Another queue is never touched by a queue's purge.
    let r = post(&app, "api/queues/mail/purge", json!({"older_than_secs": 0}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(r["deleted"], 0);
    assert_eq!(state_of(&b, s.ready).await, Some(JobState::Ready));
}

/// Every state-changing route with a body that would succeed.
fn every_action(s: &Seeded) -> Vec<(String, Value)> {
    vec![
        (format!("api/jobs/{}/retry", s.failed[0]), Value::Null),
        (format!("api/jobs/{}/cancel", s.ready), Value::Null),
        (format!("api/jobs/{}/delete", s.completed[0]), Value::Null),
        (format!("api/jobs/{}/promote", s.scheduled), Value::Null),
        (
            "api/bulk".into(),
            json!({"action": "retry", "ids": [s.failed[1].get()]}),
        ),
        (
            "api/bulk".into(),
            json!({"action": "delete", "filter": {"states": "completed"}}),
        ),
        ("api/queues/mail/pause".into(), Value::Null),
        ("api/queues/mail/resume".into(), Value::Null),
        (
            "api/queues/csv-uploads/purge".into(),
            json!({"older_than_secs": 0}),
        ),
        (
            "api/jobs".into(),
            json!({"name": "send_mail", "queue": "mail"}),
        ),
    ]
}

async fn unchanged(b: &AnyBackend, s: &Seeded) {
    assert_eq!(state_of(b, s.failed[0]).await, Some(JobState::Failed));
    assert_eq!(state_of(b, s.failed[1]).await, Some(JobState::Failed));
    assert_eq!(state_of(b, s.ready).await, Some(JobState::Ready));
    assert_eq!(state_of(b, s.completed[0]).await, Some(JobState::Completed));
    assert_eq!(state_of(b, s.completed[1]).await, Some(JobState::Completed));
    assert_eq!(state_of(b, s.scheduled).await, Some(JobState::Scheduled));
    let counts = b.counts().await.unwrap();
    let mail = counts.iter().find(|c| c.queue == "mail").unwrap();
    assert_eq!((mail.paused, mail.live()), (false, 2));
}

pub async fn read_only_refuses_actions(b: AnyBackend) {
    let s = seed(&b).await;
    let app = app(&b, options().read_only(true));
    let m = get(&app, "api/meta").await.expect(StatusCode::OK);
    assert_eq!(
        (m["read_only"].as_bool(), &m["allowed"]),
        (Some(true), &json!([]))
    );
    let j = get(&app, &format!("api/jobs/{}", s.failed[0]))
        .await
        .expect(StatusCode::OK);
    assert_eq!(j["actions"], json!([]));
    assert_eq!(j["applicable_actions"], json!(["retry", "delete"]));
    for (path, body) in every_action(&s) {
        let e = post(&app, &path, body).await.error(StatusCode::FORBIDDEN);
        assert!(e.contains("read-only"), "{path}: {e}");
    }
    unchanged(&b, &s).await;
    // Reading still works.
    get(&app, "api/overview").await.expect(StatusCode::OK);
    get(&app, "api/count?action=retry")
        .await
        .expect(StatusCode::OK);
}

pub async fn authorize_hook_per_action(b: AnyBackend) {
    let s = seed(&b).await;
    // Retry for everyone; cancel only for requests the app's auth marked as an engineer's.
    let app = app(
        &b,
        options().authorize(|parts, action| match action {
            Action::Retry => true,
            Action::Cancel => parts.headers.get("x-role").is_some_and(|r| r == "engineer"),
            _ => false,
        }),
    );
    let m = get(&app, "api/meta").await.expect(StatusCode::OK);
    assert_eq!(m["allowed"], json!(["retry"]));
    let j = get(&app, &format!("api/jobs/{}", s.ready))
        .await
        .expect(StatusCode::OK);
    assert_eq!(j["actions"], json!([]), "cancel applies but is not allowed");

    post(
        &app,
        &format!("api/jobs/{}/retry", s.failed[0]),
        Value::Null,
    )
    .await
    .expect(StatusCode::OK);
    let e = post(&app, &format!("api/jobs/{}/cancel", s.ready), Value::Null)
        .await
        .error(StatusCode::FORBIDDEN);
    assert_eq!(e, "you are not allowed to cancel here");
    let e = post(
        &app,
        "api/bulk",
        json!({"action": "cancel", "ids": [s.ready.get()]}),
    )
    .await
    .error(StatusCode::FORBIDDEN);
    assert!(e.contains("cancel"));
    let e = post(&app, "api/queues/mail/purge", json!({"older_than_secs": 0}))
        .await
        .error(StatusCode::FORBIDDEN);
    assert_eq!(e, "you are not allowed to purge here");
    assert_eq!(state_of(&b, s.ready).await, Some(JobState::Ready));
    // The hook sees the request: with the header, cancel goes through.
    post_with(
        &app,
        &format!("api/jobs/{}/cancel", s.ready),
        Value::Null,
        &[("sec-fetch-site", "same-origin"), ("x-role", "engineer")],
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(state_of(&b, s.ready).await, Some(JobState::Cancelled));
    assert_eq!(state_of(&b, s.failed[0]).await, Some(JobState::Ready));
}

pub async fn cross_site_requests_refused(b: AnyBackend) {
    let s = seed(&b).await;
    let app = app(&b, options());
    for (path, body) in every_action(&s) {
        let e = post_with(
            &app,
            &path,
            body.clone(),
            &[("sec-fetch-site", "cross-site")],
        )
        .await
        .error(StatusCode::FORBIDDEN);
        assert!(e.contains("cross-site request refused"), "{path}: {e}");
        let e = post_with(
            &app,
            &path,
            body.clone(),
            &[("sec-fetch-site", "same-site")],
        )
        .await
        .error(StatusCode::FORBIDDEN);
        assert!(e.contains("cross-site"), "{path}: {e}");
        let e = post_with(
            &app,
            &path,
            body.clone(),
            &[("origin", "http://evil.example")],
        )
        .await
        .error(StatusCode::FORBIDDEN);
        assert!(e.contains("Origin"), "{path}: {e}");
        let e = post_with(&app, &path, body, &[("origin", "null")])
            .await
            .error(StatusCode::FORBIDDEN);
        assert!(e.contains("Origin"), "{path}: {e}");
    }
    unchanged(&b, &s).await;
    // The same requests from the page itself go through.
    post_with(
        &app,
        &format!("api/jobs/{}/retry", s.failed[0]),
        Value::Null,
        &[
            ("sec-fetch-site", "same-origin"),
            ("origin", "http://dashboard.test"),
        ],
    )
    .await
    .expect(StatusCode::OK);
    // A non-browser client (no Origin, no Sec-Fetch-Site) is not a cross-site request.
    post_with(
        &app,
        &format!("api/jobs/{}/retry", s.failed[1]),
        Value::Null,
        &[],
    )
    .await
    .expect(StatusCode::OK);
    // Behind a proxy that rewrites Host and sets X-Forwarded-Host.
    post_with(
        &app,
        "api/queues/mail/pause",
        Value::Null,
        &[
            ("origin", "https://jobs.example.com"),
            ("x-forwarded-host", "jobs.example.com"),
        ],
    )
    .await
    .expect(StatusCode::OK);
    // Reading is never refused: a cross-site GET cannot read the answer anyway.
    let r = send(
        &app,
        Request::get(format!("{MOUNT}/api/overview"))
            .header("sec-fetch-site", "cross-site")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

pub async fn enqueue_by_hand(b: AnyBackend) {
    seed(&b).await;
    let app = app(&b, options());
    let r = post(
        &app,
        "api/jobs",
        json!({"name": "send_mail", "queue": "mail", "payload": {"to": "c@example.com"}, "priority": 5, "unique_key": "mail-c"}),
    )
    .await
    .expect(StatusCode::CREATED);
    let id = JobId::new(r["id"].as_u64().unwrap());
    assert_eq!(r["existing"], false);
    let job = b.get(id).await.unwrap().unwrap();
    assert_eq!(
        (job.state, job.priority, job.unique_key.as_deref()),
        (JobState::Ready, 5, Some("mail-c"))
    );
    assert_eq!(
        serde_json::from_str::<Value>(&job.payload).unwrap(),
        json!({"to": "c@example.com"})
    );
    let again = post(
        &app,
        "api/jobs",
        json!({"name": "send_mail", "queue": "mail", "unique_key": "mail-c"}),
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(
        (again["id"].as_u64(), again["existing"].as_bool()),
        (Some(id.get()), Some(true))
    );
    let later = post(
        &app,
        "api/jobs",
        json!({"name": "send_mail", "queue": "mail", "delay_secs": 600}),
    )
    .await
    .expect(StatusCode::CREATED);
    let later = b
        .get(JobId::new(later["id"].as_u64().unwrap()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(later.state, JobState::Scheduled);
    let e = post(&app, "api/jobs", json!({"name": "x", "queue": "bad queue"}))
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(e.contains("queue name"), "{e}");
    let e = post(
        &app,
        "api/jobs",
        json!({"name": "x", "queue": "q", "max_attempts": 0}),
    )
    .await
    .error(StatusCode::BAD_REQUEST);
    assert!(e.contains("attempts"), "{e}");
    let e = post(&app, "api/jobs", json!({"queue": "q"}))
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(e.contains("missing field `name`"), "{e}");
}

pub async fn workers_and_their_jobs(b: AnyBackend) {
    let s = seed(&b).await;
    let app = app(&b, options());
    let w = get(&app, "api/workers").await.expect(StatusCode::OK);
    let workers = w["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 1, "{w}");
    let t = &workers[0];
    assert_eq!(t["id"], "test-worker");
    assert_eq!(t["host"], "test-host");
    assert_eq!(t["queues"], json!(["csv-uploads"]));
    assert_eq!(t["concurrency"], 4);
    assert_eq!(t["jobs"].as_array().unwrap().len(), 1);
    let j = &t["jobs"][0];
    assert_eq!(j["id"], s.running.get());
    assert_eq!(j["name"], "import_csv");
    assert_eq!(j["queue"], "csv-uploads");
    assert_eq!(j["state"], "running");
    assert!(j["started_at"].is_i64());
    assert!(w["now"].is_i64());
}

/// `GET api/queues/{queue}/groups`: a page of groups by key with where each stands, the
/// queue's group limits, paging by key, and a `400` for a bad page or queue name.
pub async fn groups_page_and_paging(b: AnyBackend) {
    kosh_jobs_testsupport::seed::seed_groups(&b).await;
    let app = app(&b, options());
    let page = get(&app, "api/queues/per-user/groups")
        .await
        .expect(StatusCode::OK);
    let groups: Vec<(&str, &Value, &Value, &Value)> = page["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| {
            (
                g["group"].as_str().expect("key"),
                &g["ready"]["count"],
                &g["running"],
                &g["at_limit"],
            )
        })
        .collect();
    assert_eq!(
        groups,
        [
            ("ann", &json!(2), &json!(1), &json!(true)),
            ("bob", &json!(0), &json!(1), &json!(true)),
            ("it's me", &json!(2), &json!(0), &json!(false)),
        ],
        "{page}"
    );
    assert_eq!(page["next"], Value::Null);
    assert_eq!(page["limits"]["group_concurrency"], 1, "{page}");
    assert_eq!(page["limits"]["held_in_groups"], 2, "{page}");
    let first = get(&app, "api/queues/per-user/groups?limit=2")
        .await
        .expect(StatusCode::OK);
    assert_eq!(first["next"], "bob", "{first}");
    let rest = get(&app, "api/queues/per-user/groups?limit=2&after=bob")
        .await
        .expect(StatusCode::OK);
    assert_eq!(rest["groups"][0]["group"], "it's me", "{rest}");
    assert_eq!(rest["next"], Value::Null, "{rest}");
    let none = get(&app, "api/queues/nothing/groups")
        .await
        .expect(StatusCode::OK);
    assert_eq!(none["groups"], json!([]), "{none}");
    assert_eq!(none["limits"], Value::Null, "{none}");
    for bad in [
        "api/queues/per-user/groups?limit=0",
        "api/queues/per-user/groups?limit=501",
        "api/queues/per-user/groups?limit=x",
        "api/queues/per-user/groups?bogus=1",
        "api/queues/bad%20queue/groups",
    ] {
        get(&app, bad).await.error(StatusCode::BAD_REQUEST);
    }
    let o = get(&app, "api/overview").await.expect(StatusCode::OK);
    let q = o["queues"]
        .as_array()
        .and_then(|qs| qs.iter().find(|q| q["queue"] == "per-user"))
        .unwrap_or_else(|| panic!("per-user in {o}"));
    assert_eq!(q["limits"]["held_in_groups"], 2, "{q}");
}
