//! Cases about storing jobs: payloads, ids, queues, batches, `run_at`, `get`.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::error::BackendError;
use crate::record::{JobId, JobState, NewJob};

use super::support::{env, secs};
use super::BackendFactory;

fn parse(what: &str, text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: payload is not JSON: {e}"))
}

/// Payloads come back intact (unicode, deep nesting, 1 MiB) through `get` and `reserve`, and
/// every field of a new job is what was pushed.
pub async fn payload_round_trip<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let unicode = json!({
        "text": "Zoë · Ωμέγα · 日本語 · עברית · 🚀👩‍👩‍👧 · e\u{301} · \"quoted\" \\ back",
        "control": "tab\tnewline\nnul\u{0}",
    });
    let mut nested = json!({"leaf": [1, 2.5, null, true, "x"]});
    for depth in 0..40 {
        nested = json!({ "depth": depth, "child": [nested] });
    }
    let row = "2024-01-31;ACME Ltd;-1234.56;EUR;Überweisung";
    let large = json!({ "rows": vec![row; 1024 * 1024 / row.len() + 1] });
    let payloads = [json!({}), unicode, nested, large];

    let now = t.now();
    let mut jobs = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        let mut j = NewJob::new(format!("job-ü-{i}"), "round-trip", p.to_string(), now);
        j.priority = 7 - i as i32;
        j.max_attempts = 4 + i as u32;
        j.unique_key = Some(format!("key-ß-{i}"));
        jobs.push(j);
    }
    let ids = t.push(jobs.clone()).await;

    for (i, (id, job)) in ids.iter().zip(&jobs).enumerate() {
        let what = format!("payload_round_trip: get of job {i}");
        let r = t.get(*id).await;
        assert_eq!(r.id, *id, "{what}: id");
        assert_eq!(parse(&what, &r.payload), payloads[i], "{what}: payload");
        assert_eq!(r.name, job.name, "{what}: name");
        assert_eq!(r.queue, "round-trip", "{what}: queue");
        assert_eq!(r.priority, job.priority, "{what}: priority");
        assert_eq!(r.max_attempts, job.max_attempts, "{what}: max_attempts");
        assert_eq!(r.unique_key, job.unique_key, "{what}: unique_key");
        assert_eq!(r.run_at, now, "{what}: run_at");
        assert_eq!(r.state, JobState::Ready, "{what}: state");
        assert_eq!(r.attempts, 0, "{what}: attempts");
        assert_eq!(r.created_at, now, "{what}: created_at is the clock's now");
        assert_eq!(r.started_at, None, "{what}: started_at");
        assert_eq!(r.finished_at, None, "{what}: finished_at");
        assert!(r.errors.is_empty(), "{what}: errors");
        assert_eq!(r.progress, None, "{what}: progress");
        assert_eq!(r.result, None, "{what}: result");
        assert_eq!(r.lease_expires_at, None, "{what}: lease_expires_at");
    }

    let leased = t.reserve(&["round-trip"], 10).await;
    assert_eq!(leased.len(), 4, "payload_round_trip: all four jobs leased");
    for l in &leased {
        let i = ids
            .iter()
            .position(|id| *id == l.id())
            .unwrap_or_else(|| panic!("payload_round_trip: leased unknown job {}", l.id()));
        let what = format!("payload_round_trip: leased job {i}");
        assert_eq!(parse(&what, &l.payload), payloads[i], "{what}: payload");
        assert_eq!(l.name, jobs[i].name, "{what}: name");
        assert_eq!(l.queue, "round-trip", "{what}: queue");
        assert_eq!(l.priority, jobs[i].priority, "{what}: priority");
        assert_eq!(l.max_attempts, jobs[i].max_attempts, "{what}: max_attempts");
        assert_eq!(l.created_at, now, "{what}: created_at");
        assert_eq!(l.attempt, 1, "{what}: attempt");
        assert_eq!(l.progress, None, "{what}: progress");
    }
}

/// Ids are unique and increase in push order, within a batch and across pushes.
pub async fn ids_unique_across_batches<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let mut all: Vec<JobId> = Vec::new();
    all.extend(t.push((0..500).map(|_| t.job("n", "ids")).collect()).await);
    for q in ["ids", "other"] {
        for _ in 0..10 {
            all.push(t.push_one(t.job("n", q)).await);
        }
    }
    all.extend(
        t.push((0..100).map(|_| t.job("n", "other")).collect())
            .await,
    );
    let distinct: HashSet<JobId> = all.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        all.len(),
        "ids: every pushed job has its own id"
    );
    for w in all.windows(2) {
        assert!(
            w[0] < w[1],
            "ids: ids increase in push order ({} then {})",
            w[0],
            w[1]
        );
    }
}

/// A job whose `run_at` is now or in the past is ready at once.
pub async fn run_at_in_past_is_ready<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let now = t.now();
    let past = t
        .push_one(NewJob::new("n", "q", "{}", now - secs(3600)))
        .await;
    let exactly_now = t.push_one(NewJob::new("n", "q", "{}", now)).await;
    assert_eq!(
        t.get(past).await.state,
        JobState::Ready,
        "run_at an hour ago: ready"
    );
    assert_eq!(
        t.get(exactly_now).await.state,
        JobState::Ready,
        "run_at equal to now: ready"
    );
    let got: Vec<JobId> = t.reserve(&["q"], 10).await.iter().map(|j| j.id()).collect();
    assert_eq!(
        got.len(),
        2,
        "both jobs with run_at <= now are leased at once"
    );
    assert!(got.contains(&past) && got.contains(&exactly_now));
}

/// Reserving from one queue never returns another queue's jobs.
pub async fn queues_are_isolated<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let alpha = t.push((0..3).map(|_| t.job("n", "alpha")).collect()).await;
    let beta = t.push((0..2).map(|_| t.job("n", "beta")).collect()).await;
    t.reserve_none(&["gamma"], "queue isolation: a queue without jobs")
        .await;
    let got: HashSet<JobId> = t
        .reserve(&["beta"], 10)
        .await
        .iter()
        .map(|j| j.id())
        .collect();
    assert_eq!(
        got,
        beta.iter().copied().collect(),
        "queue isolation: reserve from `beta` returns exactly beta's jobs"
    );
    let ca = t.counts_of("alpha").await;
    assert_eq!(
        (ca.ready, ca.running),
        (3, 0),
        "queue isolation: alpha untouched"
    );
    let got: HashSet<JobId> = t
        .reserve(&["alpha", "beta"], 10)
        .await
        .iter()
        .map(|j| j.id())
        .collect();
    assert_eq!(
        got,
        alpha.iter().copied().collect(),
        "queue isolation: reserve from both returns alpha's jobs (beta's are running)"
    );
}

/// A batch spanning queues, interleaved: one result per job in batch order, each job stored
/// in its own queue with its own payload, and within each queue ids growing in batch order
/// (which is what FIFO needs; across queues a Redis Cluster numbers each queue's part apart).
pub async fn batch_across_queues_keeps_order<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let queues = ["east", "west", "east", "north", "west", "east"];
    let jobs: Vec<NewJob> = queues
        .iter()
        .enumerate()
        .map(|(i, q)| NewJob::new("n", *q, json!({ "i": i }).to_string(), t.now()))
        .collect();
    let ids = t.push(jobs).await;
    assert_eq!(
        ids.len(),
        queues.len(),
        "batch across queues: one id per job"
    );
    for q in ["east", "west", "north"] {
        let of_q: Vec<JobId> = ids
            .iter()
            .zip(queues)
            .filter(|(_, x)| *x == q)
            .map(|(id, _)| *id)
            .collect();
        assert!(
            of_q.windows(2).all(|w| w[0] < w[1]),
            "batch across queues: ids of `{q}` grow in batch order: {ids:?}"
        );
    }
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        ids.len(),
        "batch across queues: distinct ids"
    );
    for (i, (id, q)) in ids.iter().zip(queues).enumerate() {
        let r = t.get(*id).await;
        assert_eq!(r.queue, q, "batch across queues: job {i} is in its queue");
        assert_eq!(
            parse("batch across queues", &r.payload),
            json!({ "i": i }),
            "batch across queues: result {i} is the id of job {i}"
        );
    }
    let west: HashSet<JobId> = t
        .reserve(&["west"], 10)
        .await
        .iter()
        .map(|j| j.id())
        .collect();
    assert_eq!(
        west,
        HashSet::from([ids[1], ids[4]]),
        "batch across queues: reserve from `west` returns west's jobs"
    );
}

/// A batch of 1,500 jobs: one result per job, in order, each id holding its own payload, and
/// leased in the same order.
pub async fn batch_push_keeps_order<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    const N: usize = 1500;
    let jobs: Vec<NewJob> = (0..N)
        .map(|i| NewJob::new("n", "batch", json!({ "i": i }).to_string(), t.now()))
        .collect();
    let ids = t.push(jobs).await;
    for (i, id) in ids.iter().enumerate().step_by(37) {
        let r = t.get(*id).await;
        assert_eq!(
            parse("batch push", &r.payload),
            json!({ "i": i }),
            "batch push: result {i} is the id of job {i}"
        );
    }
    let mut leased = Vec::new();
    while leased.len() < N {
        let got = t.reserve(&["batch"], 400).await;
        assert!(
            !got.is_empty(),
            "batch push: only {} of {N} jobs leased",
            leased.len()
        );
        leased.extend(got);
    }
    leased.sort_by_key(|l| l.id());
    for (i, l) in leased.iter().enumerate() {
        assert_eq!(l.id(), ids[i], "batch push: leased ids are the pushed ids");
        assert_eq!(
            parse("batch push", &l.payload),
            json!({ "i": i }),
            "batch push: job {i} keeps its payload"
        );
    }
    assert_eq!(t.counts_of("batch").await.running, N as u64);
}

/// A batch with an invalid job (bad queue name, zero max attempts) is refused as a whole
/// with `InvalidInput`, storing nothing.
pub async fn invalid_batch_stores_nothing<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let mut zero_attempts = t.job("n", "valid");
    zero_attempts.max_attempts = 0;
    let batches = [
        (
            "bad queue name",
            vec![t.job("n", "valid"), t.job("n", "bad queue")],
        ),
        ("max_attempts 0", vec![t.job("n", "valid"), zero_attempts]),
    ];
    for (what, batch) in batches {
        match t.b.push(batch).await {
            Err(BackendError::InvalidInput(_)) => {}
            other => panic!("invalid batch ({what}): expected InvalidInput, got {other:?}"),
        }
        let c = t.counts_of("valid").await;
        assert_eq!(
            c.live(),
            0,
            "invalid batch ({what}): the valid job of the batch was not stored"
        );
    }
}

/// A batch with one valid job and one job with an empty name (see
/// [`validate_job_name`](crate::backend::validate_job_name)) is refused as a whole with
/// `InvalidInput`, storing nothing.
pub async fn empty_job_name_refuses_batch<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let batch = vec![t.job("n", "valid"), t.job("", "valid")];
    match t.b.push(batch).await {
        Err(BackendError::InvalidInput(_)) => {}
        other => panic!("batch with an empty job name: expected InvalidInput, got {other:?}"),
    }
    let c = t.counts_of("valid").await;
    assert_eq!(
        c.live(),
        0,
        "batch with an empty job name: the valid job of the batch was not stored"
    );
    let reserved = t.reserve(&["valid"], 10).await;
    assert!(
        reserved.is_empty(),
        "batch with an empty job name: reserve found {} stored job(s)",
        reserved.len()
    );
}

/// `get` of an id that was never pushed is `None`.
pub async fn get_unknown_is_none<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let id = t.push_one(t.job("n", "q")).await;
    for unknown in [JobId::new(id.get() + 1000), JobId::new(u64::MAX / 2)] {
        let got =
            t.b.get(unknown)
                .await
                .unwrap_or_else(|e| panic!("get: backend error: {e:?}"));
        assert!(got.is_none(), "get of unknown id {unknown}: expected None");
    }
}
