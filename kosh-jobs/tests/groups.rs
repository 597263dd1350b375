//! Groups and holds with the real worker (see `kosh_jobs::limits`): the group key from the
//! attribute, one job at a time per group with fair turns, and a handler's
//! `JobError::rate_limited` holding its whole queue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kosh_jobs::memory::MemoryBackend;
use kosh_jobs::{
    job, Backend, Client, Clock, Job, JobContext, JobError, JobId, JobRecord, JobState,
    QueueLimits, ReserveRequest, Worker,
};
use serde::{Deserialize, Serialize};

/// How long the test waits for something that should happen promptly (a guard, not a timing
/// assertion).
const PATIENCE: Duration = Duration::from_secs(20);

async fn wait_for(
    client: &Client,
    id: JobId,
    what: &str,
    check: impl Fn(&JobRecord) -> bool,
) -> JobRecord {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let rec = client.status(id).await.expect("status");
        if check(&rec) {
            return rec;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}; last seen: {rec:#?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// What the import handlers saw.
#[derive(Clone, Default)]
struct Seen {
    /// Group of each run, in start order.
    starts: Arc<Mutex<Vec<u32>>>,
    /// Runs in progress per group, and the most ever seen at once per group.
    running: Arc<Mutex<HashMap<u32, (u32, u32)>>>,
}

#[derive(Serialize, Deserialize)]
struct Import {
    user_id: u32,
}

#[job(queue = "imports", group = user_id)]
async fn import(job: Import, ctx: JobContext<Seen>) -> Result<(), JobError> {
    let seen = ctx.state();
    seen.starts.lock().unwrap().push(job.user_id);
    {
        let mut r = seen.running.lock().unwrap();
        let e = r.entry(job.user_id).or_default();
        e.0 += 1;
        e.1 = e.1.max(e.0);
    }
    // Give other jobs every chance to start alongside this one.
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    seen.running
        .lock()
        .unwrap()
        .entry(job.user_id)
        .or_default()
        .0 -= 1;
    Ok(())
}

#[tokio::test]
async fn the_group_key_comes_from_the_attribute_or_the_enqueue() {
    let backend = MemoryBackend::new();
    let client = Client::new(backend.clone());
    assert_eq!(Import { user_id: 7 }.group_key().as_deref(), Some("7"));
    let a = client.enqueue(Import { user_id: 7 }).await.unwrap().id();
    let b = client
        .enqueue(Import { user_id: 7 }.with().group("team-3"))
        .await
        .unwrap()
        .id();
    assert_eq!(client.status(a).await.unwrap().group.as_deref(), Some("7"));
    assert_eq!(
        client.status(b).await.unwrap().group.as_deref(),
        Some("team-3")
    );
    let err = client
        .enqueue(Import { user_id: 7 }.with().group(""))
        .await
        .expect_err("an empty group key is refused");
    assert!(err.to_string().contains("group key"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_import_at_a_time_per_user_and_fair_turns() {
    let backend = MemoryBackend::new();
    let client = Client::new(backend.clone());
    client
        .set_queue_limits("imports", QueueLimits::default().with_group_concurrency(1))
        .await
        .unwrap();
    // User 1 uploads twenty statements, then user 2 three.
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(client.enqueue(Import { user_id: 1 }).await.unwrap().id());
    }
    for _ in 0..3 {
        ids.push(client.enqueue(Import { user_id: 2 }).await.unwrap().id());
    }
    let seen = Seen::default();
    let worker = Worker::builder(backend.clone())
        .state(seen.clone())
        .concurrency(4)
        .register::<Import>()
        .build()
        .unwrap()
        .spawn();
    for id in &ids {
        wait_for(&client, *id, "every import completed", |r| {
            r.state == JobState::Completed
        })
        .await;
    }
    worker.shutdown().await.unwrap();
    let running = seen.running.lock().unwrap().clone();
    assert_eq!(running[&1].1, 1, "never two imports of user 1 at once");
    assert_eq!(running[&2].1, 1, "never two imports of user 2 at once");
    let starts = seen.starts.lock().unwrap().clone();
    let last_of_2 = starts.iter().rposition(|&u| u == 2).unwrap();
    assert!(
        last_of_2 < 8,
        "user 2's three imports take turns with user 1's twenty, not after them: {starts:?}"
    );
}

#[derive(Clone, Default)]
struct Api {
    runs: Arc<Mutex<Vec<u32>>>,
}

#[derive(Serialize, Deserialize)]
struct Categorise {
    n: u32,
}

#[job(queue = "categorise", max_attempts = 1)]
async fn categorise(job: Categorise, ctx: JobContext<Api>) -> Result<(), JobError> {
    let first = {
        let mut runs = ctx.state().runs.lock().unwrap();
        runs.push(job.n);
        runs.len() == 1
    };
    if first {
        // The API answered 429 for the whole account.
        return Err(JobError::rate_limited(Duration::from_secs(30)));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_handler_holds_its_whole_queue() {
    let (clock, time) = Clock::manual();
    let backend = MemoryBackend::with_clock(clock);
    let client = Client::new(backend.clone());
    let api = Api::default();
    let t0 = time.now();
    let a = client.enqueue(Categorise { n: 1 }).await.unwrap().id();
    let b = client.enqueue(Categorise { n: 2 }).await.unwrap().id();
    let worker = Worker::builder(backend.clone())
        .state(api.clone())
        .concurrency(1)
        .register::<Categorise>()
        .build()
        .unwrap()
        .spawn();
    let rec = wait_for(&client, a, "the first job was rate limited", |r| {
        r.state == JobState::Scheduled
    })
    .await;
    assert_eq!(rec.attempts, 0, "a rate-limited attempt is not counted");
    let flows = client.queue_flows().await.unwrap();
    assert_eq!(flows.len(), 1, "{flows:?}");
    assert_eq!(flows[0].held_until, Some(t0 + Duration::from_secs(30)));
    // The other job is held back too: ready, never started, and a reserve finds nothing.
    time.advance(Duration::from_secs(29));
    let got = backend
        .reserve(&ReserveRequest {
            queues: vec!["categorise".into()],
            worker: "test".into(),
            max: 10,
            lease: Duration::from_secs(60),
        })
        .await
        .unwrap();
    assert!(got.is_empty(), "held: {got:?}");
    let rec = client.status(b).await.unwrap();
    assert_eq!((rec.state, rec.attempts), (JobState::Ready, 0));
    assert_eq!(*api.runs.lock().unwrap(), vec![1]);
    time.advance(Duration::from_secs(1));
    for id in [a, b] {
        wait_for(&client, id, "both completed after the hold", |r| {
            r.state == JobState::Completed
        })
        .await;
    }
    worker.shutdown().await.unwrap();
}
