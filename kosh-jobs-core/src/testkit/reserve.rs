//! Cases about leasing: order, limits, lease fields, delayed jobs, concurrent reservers.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::record::{JobId, JobState, NewJob};

use super::support::{done, env, join, req, secs, LEASE};
use super::BackendFactory;

/// Within a queue, higher priority first, then enqueue order; a batch reserve takes the best.
pub async fn priority_then_fifo<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    // (name, priority) in push order; expected lease order: f, b, e, a, c, g, d.
    let spec = [
        ("a", 0),
        ("b", 5),
        ("c", 0),
        ("d", -3),
        ("e", 5),
        ("f", 10),
        ("g", 0),
    ];
    let expected = ["f", "b", "e", "a", "c", "g", "d"];
    for queue in ["one-by-one", "batch"] {
        let jobs: Vec<NewJob> = spec
            .iter()
            .map(|(name, p)| {
                let mut j = t.job(name, queue);
                j.priority = *p;
                j
            })
            .collect();
        // Pushed one at a time, so enqueue order is unambiguous for every backend.
        for j in jobs {
            t.push_one(j).await;
        }
    }
    let mut order = Vec::new();
    for _ in 0..spec.len() {
        order.push(t.reserve_one("one-by-one", "priority order").await.name);
    }
    assert_eq!(
        order, expected,
        "priority order: priority descending, then enqueue order"
    );

    let top3: HashSet<String> = t
        .reserve(&["batch"], 3)
        .await
        .into_iter()
        .map(|j| j.name)
        .collect();
    let want: HashSet<String> = ["f", "b", "e"].iter().map(|s| s.to_string()).collect();
    assert_eq!(
        top3, want,
        "priority order: reserve(max 3) takes the three highest-priority jobs"
    );
    let mut rest = Vec::new();
    for _ in 0..4 {
        rest.push(t.reserve_one("batch", "priority order (rest)").await.name);
    }
    assert_eq!(
        rest,
        ["a", "c", "g", "d"],
        "priority order: the rest in order"
    );
}

/// `reserve` with `max: 0` leases nothing and changes nothing.
pub async fn reserve_zero_is_empty<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let ids = t.push((0..3).map(|_| t.job("n", "q")).collect()).await;
    let got = t.reserve(&["q"], 0).await;
    assert!(
        got.is_empty(),
        "reserve max 0: expected no jobs, got {got:?}"
    );
    for id in ids {
        let r = t.get(id).await;
        assert_eq!(
            (r.state, r.attempts),
            (JobState::Ready, 0),
            "reserve max 0: job {id} untouched"
        );
    }
}

/// A leased job is running, its attempt counted, with a lease ending at now + lease, a
/// token of its own, and it is not leased again while running.
pub async fn reserve_leases_and_counts_attempt<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let ids = t.push(vec![t.job("a", "q"), t.job("b", "q")]).await;
    let mut r = req(&["q"], 10);
    r.lease = secs(45);
    let now = t.now();
    let leased = t.reserve_req(&r).await;
    assert_eq!(leased.len(), 2, "reserve: both jobs leased");
    assert_ne!(
        leased[0].lease.token, leased[1].lease.token,
        "reserve: each lease has its own token"
    );
    for l in &leased {
        assert!(ids.contains(&l.id()), "reserve: leased a pushed job");
        assert_eq!(l.attempt, 1, "reserve: first attempt is 1");
        assert_eq!(
            l.lease_expires_at,
            now + secs(45),
            "reserve: lease ends at now + lease"
        );
        let rec = t.get(l.id()).await;
        assert_eq!(rec.state, JobState::Running, "reserve: job is running");
        assert_eq!(rec.attempts, 1, "reserve: attempt counted");
        assert_eq!(rec.started_at, Some(now), "reserve: started_at is now");
        assert_eq!(
            rec.lease_expires_at,
            Some(now + secs(45)),
            "reserve: record shows the lease end"
        );
    }
    t.reserve_none(&["q"], "reserve: running jobs are not leased again")
        .await;
    let c = t.counts_of("q").await;
    assert_eq!(
        (c.ready, c.running),
        (0, 2),
        "reserve: counts show 2 running"
    );
}

/// A delayed job is scheduled, not leased before its `run_at`, and leased once the clock
/// reaches it.
pub async fn delayed_job_promoted_when_due<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let run_at = t.now() + secs(60);
    let delayed = t.push_one(NewJob::new("delayed", "q", "{}", run_at)).await;
    let ready = t.push_one(t.job("ready", "q")).await;
    let rec = t.get(delayed).await;
    assert_eq!(rec.state, JobState::Scheduled, "delayed job: scheduled");
    assert_eq!(rec.run_at, run_at, "delayed job: run_at kept");
    assert_eq!(
        t.counts_of("q").await.scheduled,
        1,
        "delayed job: counted as scheduled"
    );

    let first = t.reserve(&["q"], 10).await;
    let first_ids: Vec<JobId> = first.iter().map(|j| j.id()).collect();
    assert_eq!(
        first_ids,
        vec![ready],
        "delayed job: only the ready job is leased before run_at"
    );
    t.finish_ok(first[0].lease, done(), "delayed job: the ready job")
        .await;
    t.advance(secs(59));
    t.reserve_none(&["q"], "delayed job: one second before run_at")
        .await;
    t.advance(secs(1));
    let l = t.reserve_one("q", "delayed job: at run_at").await;
    assert_eq!(l.id(), delayed, "delayed job: leased once due");
    assert_eq!(l.attempt, 1, "delayed job: first attempt");
}

/// Eight tasks racing to reserve 3,200 jobs: every job is leased exactly once.
pub async fn concurrent_reservers_never_share_a_job<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    const N: usize = 3200;
    for chunk in 0..(N / 800) {
        let jobs = (0..800)
            .map(|i| t.job(&format!("job-{}", chunk * 800 + i), "race"))
            .collect();
        t.push(jobs).await;
    }
    let mut tasks = Vec::new();
    for task in 0..8usize {
        let b = Arc::clone(&t.b);
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut round = 0usize;
            loop {
                // Vary the batch size so reservers interleave differently.
                let mut r = req(&["race"], 1 + (task * 7 + round) % 16);
                r.worker = format!("reserver-{task}");
                r.lease = LEASE;
                let got = b
                    .reserve(&r)
                    .await
                    .unwrap_or_else(|e| panic!("reserve: backend error: {e:?}"));
                if got.is_empty() {
                    return seen;
                }
                seen.extend(got.into_iter().map(|j| (j.id(), j.lease.token, j.attempt)));
                round += 1;
            }
        }));
    }
    let mut times_leased: HashMap<JobId, usize> = HashMap::new();
    let mut tokens = HashSet::new();
    for task in tasks {
        for (id, token, attempt) in join("concurrent reservers", task).await {
            *times_leased.entry(id).or_default() += 1;
            assert!(
                tokens.insert((id, token)),
                "concurrent reservers: lease ({id}, {token}) handed out twice"
            );
            assert_eq!(
                attempt, 1,
                "concurrent reservers: job {id} leased on attempt {attempt}"
            );
        }
    }
    let twice: Vec<_> = times_leased.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "concurrent reservers: jobs leased more than once: {twice:?}"
    );
    assert_eq!(
        times_leased.len(),
        N,
        "concurrent reservers: every job leased once"
    );
    let c = t.counts_of("race").await;
    assert_eq!(
        (c.ready, c.running),
        (0, N as u64),
        "concurrent reservers: counts"
    );
}
