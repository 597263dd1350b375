//! Schedules on a single Redis server: the cases that depend on how they are stored (see
//! `support/schedules.rs`, also run on a cluster), and what an idle worker's schedule read
//! costs in commands.

mod support;

use kosh_jobs_core::schedule::FireOutcome;
use kosh_jobs_core::{Backend, Clock, Timestamp};
use kosh_jobs_redis::{RedisBackend, RedisOptions};
use support::schedules::{def, fire_of, QUEUES};
use support::{command_stats, unique_prefix, RedisServer};

async fn backend(url: &str) -> RedisBackend {
    let options = RedisOptions::builder(url)
        .prefix(unique_prefix("schedules"))
        .clock(Clock::system())
        .build()
        .expect("options");
    RedisBackend::connect_with(options).await.expect("connect")
}

#[tokio::test]
async fn upsert_moves_a_schedule_to_its_new_queue() {
    let url = support::shared_url();
    let b = backend(&url).await;
    support::schedules::upsert_moves_a_schedule_to_its_new_queue(&b, &url).await;
}

#[tokio::test]
async fn due_schedules_merge_queues() {
    let b = backend(&support::shared_url()).await;
    support::schedules::due_schedules_merge_queues(&b).await;
}

/// Top-level calls of each command since `before` (commands that scripts run are counted
/// by Redis too, so only the ones a client sends are looked at).
fn sent(port: u16, before: &[(String, u64)]) -> (u64, u64, u64) {
    let now = command_stats(port, None);
    let delta = |name: &str| {
        let get = |s: &[(String, u64)]| s.iter().find(|(n, _)| n == name).map_or(0, |(_, c)| *c);
        get(&now) - get(before)
    };
    (delta("hgetall"), delta("evalsha"), delta("eval"))
}

/// An idle worker's schedule read: one `HGETALL` of the index without schedules, plus one
/// script per queue that holds schedules; a fire is one script.
#[tokio::test]
async fn an_idle_schedule_read_costs_one_command_per_queue_with_schedules() {
    let server = RedisServer::start(&[]);
    let b = backend(&server.url()).await;
    let soon = || b.clock().now() + std::time::Duration::from_secs(60);
    // Load the scripts (EVALSHA's first call is answered by NOSCRIPT, then EVAL).
    b.upsert_schedule(&def("warm", "alpha"), Some(Timestamp::EPOCH))
        .await
        .expect("upsert");
    b.due_schedules(soon(), 10).await.expect("due");
    let rec = b.schedule("warm").await.expect("schedule").expect("exists");
    b.fire_schedules(vec![fire_of(&rec)]).await.expect("fire");
    assert!(b.remove_schedule("warm").await.expect("remove"));

    let before = command_stats(server.port, None);
    let total = |s: &[(String, u64)]| s.iter().map(|(_, c)| c).sum::<u64>();
    assert!(b.due_schedules(soon(), 200).await.expect("due").is_empty());
    let after = command_stats(server.port, None);
    // `INFO` itself is counted once, after it ran.
    assert_eq!(
        total(&after) - total(&before) - 1,
        1,
        "no schedules: one command ({:?})",
        sent(server.port, &before)
    );

    b.upsert_schedule(&def("one", "alpha"), Some(b.clock().now()))
        .await
        .expect("upsert");
    let before = command_stats(server.port, None);
    assert_eq!(b.due_schedules(soon(), 200).await.expect("due").len(), 1);
    assert_eq!(sent(server.port, &before), (1, 1, 0), "one schedule");

    for i in 0..9 {
        let queue = QUEUES[i % 3];
        b.upsert_schedule(&def(&format!("s{i}"), queue), Some(b.clock().now()))
            .await
            .expect("upsert");
    }
    let before = command_stats(server.port, None);
    let due = b.due_schedules(soon(), 200).await.expect("due");
    assert_eq!(due.len(), 10);
    assert_eq!(
        sent(server.port, &before),
        (1, 3, 0),
        "ten schedules in three queues: the index, then a script per queue"
    );

    // The first fire in a queue looks its index up (once per process): measure the second.
    b.fire_schedules(due.iter().map(fire_of).collect())
        .await
        .expect("fire");
    let due = b
        .due_schedules(soon() + std::time::Duration::from_secs(60), 200)
        .await
        .expect("due");
    assert_eq!(due.len(), 10);
    let before = command_stats(server.port, None);
    let out = b
        .fire_schedules(due.iter().map(fire_of).collect())
        .await
        .expect("fire");
    assert!(out
        .iter()
        .all(|o| matches!(o, FireOutcome::Fired(j) if j.len() == 1)));
    assert_eq!(
        sent(server.port, &before),
        (0, 1, 0),
        "ten fires in three queues: one script"
    );
}
