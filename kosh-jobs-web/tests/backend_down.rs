//! The dashboard when its store goes away: a `redis-server` of this test's own, with a
//! password, stopped while the dashboard serves. Every API request that needs the store
//! answers `503 Service Unavailable` with a JSON error that names the problem and holds
//! nothing secret; the page itself still loads.

mod support;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use kosh_jobs_testsupport::redis_server::RedisServer;
use kosh_jobs_web::Options;
use serde_json::{json, Value};
use support::{get, post, seed, send, Answer, MOUNT};

/// The store's password: no answer may show it.
const SECRET: &str = "s3cret-redis-pass";

/// Asserts a 503 with a JSON `error` saying the store is unavailable, and nothing secret.
#[track_caller]
fn unavailable(what: &str, a: &Answer) {
    assert_eq!(
        a.headers
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or_default()),
        Some("application/json"),
        "{what}: a JSON answer"
    );
    let error = a.error(StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        error.contains("job store unavailable"),
        "{what}: the error names the problem: {error}"
    );
    assert!(
        !a.text.contains(SECRET),
        "{what}: the password shows: {}",
        a.text
    );
    assert!(
        !a.text.contains("127.0.0.1"),
        "{what}: the store's address shows: {}",
        a.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_answers_503_with_a_json_error_when_redis_is_gone() {
    let mut server = tokio::task::spawn_blocking(|| RedisServer::start_with_password(SECRET))
        .await
        .expect("start redis-server")
        .unwrap_or_else(|e| panic!("a redis-server for the test: {e:#}"));
    // A short timeout: each call fails within it while the store is gone.
    let url = format!("{}?prefix=gone&timeout=500ms", server.url());
    assert!(url.contains(SECRET), "the URL carries the password");
    let backend = kosh_jobs::connect(&url).await.expect("connect to redis");
    let seeded = seed(&backend).await;
    let app = support::app(&backend, Options::new().backend_url(&url));
    let job = seeded.failed[0];

    let up = get(&app, "api/overview").await.expect(StatusCode::OK);
    assert!(!up.to_string().contains(SECRET));
    get(&app, &format!("api/jobs/{job}"))
        .await
        .expect(StatusCode::OK);

    tokio::task::spawn_blocking(move || server.stop())
        .await
        .expect("stop redis-server");

    for path in [
        "api/overview".to_owned(),
        "api/jobs".to_owned(),
        "api/jobs?search=locked&states=failed".to_owned(),
        format!("api/jobs/{job}"),
        "api/count?action=retry".to_owned(),
        "api/workers".to_owned(),
        "api/queues/csv-uploads/groups".to_owned(),
    ] {
        unavailable(&format!("GET {path}"), &get(&app, &path).await);
    }
    let posts: [(String, Value); 5] = [
        (format!("api/jobs/{job}/retry"), Value::Null),
        (
            "api/bulk".into(),
            json!({"action": "retry", "ids": [job.get()]}),
        ),
        ("api/queues/csv-uploads/pause".into(), Value::Null),
        (
            "api/queues/csv-uploads/purge".into(),
            json!({"older_than_secs": 60}),
        ),
        (
            "api/jobs".into(),
            json!({"name": "send_mail", "queue": "mail", "payload": {"to": "c@example.com"}}),
        ),
    ];
    for (path, body) in posts {
        unavailable(&format!("POST {path}"), &post(&app, &path, body).await);
    }

    // The page and what it needs first come without the store.
    let meta = get(&app, "api/meta").await.expect(StatusCode::OK);
    assert!(!meta.to_string().contains(SECRET), "{meta}");
    let page = send(&app, Request::get(MOUNT).body(Body::empty()).unwrap()).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(!page.text.contains(SECRET));
}
