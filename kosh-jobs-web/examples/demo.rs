//! The dashboard on a seeded in-memory store, to look at it in a browser:
//!
//! ```sh
//! cargo run -p kosh-jobs-web --example demo -- 127.0.0.1:8080
//! # then open http://127.0.0.1:8080/admin/jobs
//! ```
//!
//! The store's clock is set by hand while seeding (an hour of finished jobs, minute by minute)
//! and then left at the current time.

use std::time::Duration;

use axum::Router;
use kosh_jobs::admin::WorkerInfo;
use kosh_jobs::memory::MemoryBackend;
use kosh_jobs::{Backend, Clock, Finish, NewJob, Outcome, ReserveRequest, Timestamp};
use kosh_jobs_web::{router, Options};
use serde_json::json;

fn req(queue: &str, max: usize) -> ReserveRequest {
    ReserveRequest {
        queues: vec![queue.into()],
        worker: "demo-worker-1".into(),
        max,
        lease: Duration::from_secs(24 * 3600),
    }
}

async fn run_some(b: &MemoryBackend, queue: &str, name: &str, n: usize, fail_every: usize) {
    let now = b.clock().now();
    let jobs = (0..n)
        .map(|i| {
            let mut j = NewJob::new(
                name,
                queue,
                json!({"upload_id": i, "file": format!("statement-{i}.csv")}).to_string(),
                now,
            );
            j.max_attempts = 1;
            j
        })
        .collect();
    b.push(jobs).await.expect("push");
    let leased = b.reserve(&req(queue, n)).await.expect("reserve");
    let finishes = leased
        .iter()
        .enumerate()
        .map(|(i, j)| Finish {
            lease: j.lease,
            outcome: if fail_every > 0 && i % fail_every == 0 {
                Outcome::failed("database is locked\n  at import::write_rows (import.rs:88)\n  at import::run (import.rs:41)")
            } else {
                Outcome::Completed { result: Some(json!({"rows": 100 + i})) }
            },
        })
        .collect();
    b.finish(finishes).await.expect("finish");
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let real_now = Timestamp::now_system();
    let (clock, hand) = Clock::manual_at(real_now - Duration::from_secs(3600));
    let b = MemoryBackend::with_clock(clock);
    for minute in 0..60u64 {
        let n = 3 + (minute % 7) as usize;
        run_some(
            &b,
            "csv-uploads",
            "import_csv",
            n,
            if minute % 9 == 0 { 2 } else { 0 },
        )
        .await;
        run_some(&b, "mail", "send_mail", 2, 0).await;
        hand.advance(Duration::from_secs(60));
    }
    hand.set(real_now);
    let now = b.clock().now();
    // A hostile payload, shown as text.
    let mut hostile = NewJob::new(
        "import_csv",
        "csv-uploads",
        json!({"upload_id": 666, "note": "<script>alert('x')</script><img src=x onerror=alert(2)>"}).to_string(),
        now,
    );
    hostile.max_attempts = 1;
    hostile.unique_key = Some("upload-666".into());
    b.push(vec![hostile]).await?;
    let l = b.reserve(&req("csv-uploads", 1)).await?;
    b.finish(vec![Finish {
        lease: l[0].lease,
        outcome: Outcome::failed("bad row <img src=x onerror=alert(3)>"),
    }])
    .await?;
    // One running, some ready, some scheduled, a paused queue.
    b.push(vec![NewJob::new(
        "import_csv",
        "csv-uploads",
        r#"{"upload_id":700}"#,
        now,
    )])
    .await?;
    b.reserve(&req("csv-uploads", 1)).await?;
    b.push(
        (0..4)
            .map(|i| {
                NewJob::new(
                    "send_mail",
                    "mail",
                    json!({"to": format!("user{i}@example.com")}).to_string(),
                    now - Duration::from_secs(90),
                )
            })
            .collect(),
    )
    .await?;
    b.push(vec![NewJob::new(
        "nightly_report",
        "reports",
        "{}",
        now + Duration::from_secs(7200),
    )])
    .await?;
    b.pause("reports").await?;
    // Two schedules for the Schedules page, one of them paused.
    let client = kosh_jobs::Client::new(b.clone());
    let nightly = kosh_jobs::schedule::ScheduleDef {
        id: "reports:nightly".into(),
        every: kosh_jobs::schedule::Every::Cron {
            expr: "0 3 * * *".into(),
            tz: "Europe/Berlin".into(),
        },
        job: "nightly_report".into(),
        queue: "reports".into(),
        payload: json!({"format": "pdf"}).to_string(),
        priority: 0,
        max_attempts: 3,
        start_at: None,
        end_at: None,
        max_runs: None,
        missed: kosh_jobs::schedule::Missed::All { max: 3 },
        overlap: kosh_jobs::schedule::Overlap::Skip,
        group: None,
    };
    let poll = kosh_jobs::schedule::ScheduleDef {
        id: "mail:digest".into(),
        every: kosh_jobs::schedule::Every::Interval { ms: 15 * 60_000 },
        job: "send_mail".into(),
        queue: "mail".into(),
        payload: json!({"digest": true}).to_string(),
        missed: kosh_jobs::schedule::Missed::default(),
        overlap: kosh_jobs::schedule::Overlap::Allow,
        group: None,
        ..nightly.clone()
    };
    client.upsert_schedule_def(nightly).await?;
    client.upsert_schedule_def(poll).await?;
    client.pause_schedule("mail:digest").await?;
    b.register_worker(
        &WorkerInfo {
            id: "demo-worker-1".into(),
            host: "app-1".into(),
            pid: 4242,
            version: env!("CARGO_PKG_VERSION").into(),
            queues: vec!["csv-uploads".into(), "mail".into()],
            concurrency: 8,
            started_at: now - Duration::from_secs(5400),
        },
        Duration::from_secs(24 * 3600),
    )
    .await?;

    let options = Options::new()
        .title("Demo jobs")
        .backend_url("redis://:secret@cache.internal:6379/0?prefix=demo");
    let app = Router::new().nest("/admin/jobs", router(b, options));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("dashboard at http://{addr}/admin/jobs");
    axum::serve(listener, app).await?;
    Ok(())
}
