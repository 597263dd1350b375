//! One import at a time per user (issue #18): the import queue's group limit of 1, with the
//! user as each job's group. Ana uploads two statements and Ben one, on a worker that could
//! run all three at once: Ana's second waits for her first (the API says which one), Ben's
//! runs beside Ana's first, all three complete.
//!
//! The scenario runs on SQLite (the app's default store) and on the memory store, the
//! reference implementation of groups.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::users::{imports, slow_app, statement, upload_for, LONG, SHORT};
use support::TestApp;

const LIMIT: Duration = Duration::from_secs(60);

fn state(v: &Value) -> &str {
    v["state"]
        .as_str()
        .unwrap_or_else(|| panic!("no state in {v}"))
}

/// An import's timestamp (RFC 3339 in UTC with milliseconds: they compare as text).
fn time<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
}

async fn one_import_at_a_time_per_user(mut app: TestApp) {
    let ana_1 = upload_for(&app, "ana", "ana-march.csv", statement("ana-1", LONG)).await;
    let ana_2 = upload_for(&app, "ana", "ana-april.csv", statement("ana-2", SHORT)).await;
    let ben = upload_for(&app, "ben", "ben-march.csv", statement("ben", SHORT)).await;
    let limits = app.services.limit_imports_per_user().await.unwrap();
    assert_eq!(limits.group_concurrency, Some(1));
    // Room for all three: only the per-user limit can hold Ana's second back.
    app.start_worker_with(3).await;

    // Every snapshot of the list until all three complete: while Ana's first import runs,
    // her second is queued and names it.
    let mut saw_waiting = false;
    let deadline = Instant::now() + LIMIT;
    let all = loop {
        let now = imports(&app).await;
        let (a1, a2, b) = (&now[&ana_1], &now[&ana_2], &now[&ben]);
        // Nobody waits for an import of another user, and Ana's first waits for nothing.
        assert_eq!(b["waiting_for"], Value::Null, "{b}");
        assert_eq!(a1["waiting_for"], Value::Null, "{a1}");
        if state(a1) == "running" {
            assert_eq!(
                (state(a2), &a2["waiting_for"]),
                ("queued", &Value::from(ana_1)),
                "while Ana's first import runs, her second waits for it: {a2}"
            );
            saw_waiting = true;
        }
        if [a1, a2, b].iter().all(|i| state(i) == "completed") {
            break [a1.clone(), a2.clone(), b.clone()];
        }
        assert!(
            Instant::now() < deadline,
            "the imports did not complete within {LIMIT:?}: {a1} {a2} {b}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert!(saw_waiting, "Ana's first import was never seen running");
    let [a1, a2, b] = &all;
    // Ana's second started after her first finished; Ben's started while it ran.
    assert!(
        time(a2, "started_at") >= time(a1, "finished_at"),
        "Ana's imports overlapped: {a1} {a2}"
    );
    assert!(
        time(b, "started_at") < time(a1, "finished_at"),
        "Ben's import waited for Ana's: {a1} {b}"
    );
    for (v, user, rows) in [(a1, "ana", LONG), (a2, "ana", SHORT), (b, "ben", SHORT)] {
        assert_eq!(v["user"], user, "{v}");
        assert_eq!(v["rows_imported"], rows, "{v}");
        assert_eq!(v["waiting_for"], Value::Null, "{v}");
        let job = v["job_id"].as_str().unwrap().parse().unwrap();
        let job = app.services.jobs.get(job).await.unwrap().unwrap();
        assert_eq!(
            job.group.as_deref(),
            Some(user),
            "the job's group is its user"
        );
    }
    app.stop().await;
}

/// Cannot pass until the SQLite store implements groups (the branch's stubs ignore them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_import_at_a_time_per_user_on_sqlite() {
    one_import_at_a_time_per_user(slow_app(None).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_import_at_a_time_per_user_on_the_memory_store() {
    one_import_at_a_time_per_user(slow_app(Some("memory:")).await).await;
}

/// The worker keeps the limits an operator set on the import queue, adding the per-user one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_keeps_other_limits_of_the_queue() {
    let mut app = TestApp::start(Some("memory:"), false).await;
    let operator = kosh_jobs::limits::QueueLimits::default()
        .with_concurrency(4)
        .with_rate(kosh_jobs::limits::RateLimit::new(
            10,
            Duration::from_secs(1),
        ));
    app.services
        .jobs
        .set_queue_limits("csv-uploads", operator)
        .await
        .unwrap();
    app.start_worker().await;
    let flows = app.services.jobs.queue_flows().await.unwrap();
    let flow = flows.iter().find(|f| f.queue == "csv-uploads").unwrap();
    assert_eq!(flow.limits, operator.with_group_concurrency(1));
    app.stop().await;
}
