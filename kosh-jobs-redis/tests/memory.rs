//! Memory per completed job (run by hand: `cargo test -p kosh-jobs-redis --test memory -- --ignored --nocapture`).

mod support;

use std::time::Duration;

use kosh_jobs_core::{Backend, Finish, NewJob, Outcome, ReserveRequest};
use kosh_jobs_redis::{RedisBackend, RedisOptions};
use support::{raw_command, RedisServer};

fn used(port: u16) -> i64 {
    let info = raw_command(port, None, &["INFO", "memory"]);
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory")
}

/// Bytes of Redis memory per completed job kept (10,000 jobs, payload `{}`).
#[tokio::test]
#[ignore = "a measurement: run by hand"]
async fn memory_per_completed_job() {
    let server = RedisServer::start(&[]);
    let b = RedisBackend::connect_with(
        RedisOptions::builder(server.url())
            .prefix("mem")
            .keep_completed_max(None)
            .keep_completed_for(None)
            .build()
            .expect("options"),
    )
    .await
    .expect("connect");
    // Warm up: the queue's keys exist, the scripts are loaded.
    let n = 10_000usize;
    b.push(vec![NewJob::new("n", "q", "{}", b.clock().now())])
        .await
        .expect("push");
    let req = ReserveRequest {
        queues: vec!["q".into()],
        worker: "host-1-4242-0123456789abcdef".into(),
        max: 1000,
        lease: Duration::from_secs(60),
    };
    let drain = |b: RedisBackend, req: ReserveRequest| async move {
        loop {
            let l = b.reserve(&req).await.expect("reserve");
            if l.is_empty() {
                break;
            }
            b.finish(
                l.iter()
                    .map(|j| Finish {
                        lease: j.lease,
                        outcome: Outcome::Completed { result: None },
                    })
                    .collect(),
            )
            .await
            .expect("finish");
        }
    };
    drain(b.clone(), req.clone()).await;
    let before = used(server.port);
    for _ in 0..n / 1000 {
        let now = b.clock().now();
        b.push(
            (0..1000)
                .map(|_| NewJob::new("n", "q", "{}", now))
                .collect(),
        )
        .await
        .expect("push");
    }
    drain(b.clone(), req).await;
    let after = used(server.port);
    println!(
        "MEMORY: {} bytes per completed job ({} jobs, used_memory {} -> {})",
        (after - before) as f64 / n as f64,
        n,
        before,
        after
    );
    for k in ["spec", "run", "fin", "cb", "cn", "hist", "tp"] {
        let key = format!("{{mem:q}}:{k}");
        let u = raw_command(
            server.port,
            None,
            &["MEMORY", "USAGE", &key, "SAMPLES", "0"],
        );
        println!("MEMORY USAGE {key}: {u}");
    }
}
