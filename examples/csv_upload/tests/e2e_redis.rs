//! The same end-to-end flow with the job store on Redis (a `redis-server` of the test's
//! own), the app's tables on SQLite.

mod support;

use support::redis::TestRedis;
use support::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_imported_rejected_or_refused_on_redis() {
    let redis = TestRedis::start();
    let prefix = format!("csv-upload-test-{}", std::process::id());
    let url = redis.url.clone();
    let app = TestApp::start_with(
        tempfile::tempdir().unwrap(),
        move |dir| {
            let mut cfg = support::config(dir, &url);
            cfg.jobs_prefix = Some(prefix);
            cfg
        },
        true,
    )
    .await;
    let counts = app.services.jobs.counts().await.unwrap();
    assert!(counts.is_empty(), "a fresh prefix: {counts:?}");
    support::flow::full_flow(&app).await;
    // The jobs went through Redis.
    let counts = app.services.jobs.counts().await.unwrap();
    let q = counts.iter().find(|c| c.queue == "csv-uploads").unwrap();
    assert_eq!((q.completed, q.failed), (2, 1), "{q:?}");
    app.stop().await;
}
