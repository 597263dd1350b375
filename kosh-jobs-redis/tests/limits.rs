//! Flow control on Redis: limits hold across clients (each `RedisBackend` its own
//! connections, as separate processes would have), held-back jobs leave no wake-up tokens
//! behind, a freed slot pushes one, and what a reserve costs with and without limits.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kosh_jobs_core::limits::{QueueLimits, RateLimit};
use kosh_jobs_core::{Backend, Finish, LeasedJob, NewJob, Outcome};
use kosh_jobs_redis::{RedisBackend, RedisOptions};
use support::{command_stats, raw_command, reserve, unique_prefix, RedisServer};

async fn backend(server: &RedisServer, prefix: &str) -> RedisBackend {
    RedisBackend::connect_with(
        RedisOptions::builder(server.url())
            .prefix(prefix)
            .build()
            .expect("options"),
    )
    .await
    .expect("connect")
}

async fn push(b: &RedisBackend, queue: &str, n: usize) {
    let now = b.clock().now();
    b.push((0..n).map(|_| NewJob::new("n", queue, "{}", now)).collect())
        .await
        .expect("push");
}

async fn finish(b: &RedisBackend, jobs: &[LeasedJob]) {
    b.finish(
        jobs.iter()
            .map(|j| Finish {
                lease: j.lease,
                outcome: Outcome::Completed { result: None },
            })
            .collect(),
    )
    .await
    .expect("finish");
}

/// The "jobs are ready" tokens of a wake-up list, as `LLEN` would print them (see
/// [`support::ready_tokens`]).
fn llen(port: u16, key: &str) -> String {
    format!(":{}", support::ready_tokens(port, key))
}

/// Two clients, four tasks each, reserving at once on a queue limited to 3 running jobs: at
/// first exactly 3 jobs are leased in total; then, each task finishing what it holds and
/// reserving again, the jobs held at once never pass 3 (a task stops counting a job before it
/// finishes it, so its count never runs ahead of the store's), and every job runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_clients_never_exceed_a_concurrency_limit_together() {
    const LIMIT: u64 = 3;
    const JOBS: usize = 120;
    let server = RedisServer::start(&[]);
    let prefix = unique_prefix("limit-two");
    let clients = [
        backend(&server, &prefix).await,
        backend(&server, &prefix).await,
    ];
    clients[0]
        .set_queue_limits("q", QueueLimits::default().with_concurrency(LIMIT as u32))
        .await
        .expect("set limits");
    push(&clients[0], "q", JOBS).await;

    // A burst: eight reserves of up to 10 jobs each, from both clients at once.
    let burst = clients
        .iter()
        .flat_map(|b| (0..4).map(move |_| b.clone()))
        .map(|b| tokio::spawn(async move { reserve(&b, "q", 10).await }));
    let mut first = Vec::new();
    for t in burst {
        first.extend(t.await.expect("task"));
    }
    assert_eq!(
        first.len() as u64,
        LIMIT,
        "the burst leased the limit in total"
    );
    finish(&clients[0], &first).await;

    // Churn: hold, finish, reserve again, until every job ran.
    let held = Arc::new(AtomicU64::new(0));
    let most = Arc::new(AtomicU64::new(0));
    let ran = Arc::new(AtomicU64::new(first.len() as u64));
    let tasks = clients
        .iter()
        .flat_map(|b| (0..4).map(move |_| b.clone()))
        .map(|b| {
            let (held, most, ran) = (held.clone(), most.clone(), ran.clone());
            tokio::spawn(async move {
                let mut empty = 0u32;
                while ran.load(Ordering::SeqCst) < JOBS as u64 {
                    let got = reserve(&b, "q", 2).await;
                    if got.is_empty() {
                        empty += 1;
                        assert!(empty < 100_000, "no progress");
                        tokio::task::yield_now().await;
                        continue;
                    }
                    let n = got.len() as u64;
                    let now = held.fetch_add(n, Ordering::SeqCst) + n;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    held.fetch_sub(n, Ordering::SeqCst);
                    ran.fetch_add(n, Ordering::SeqCst);
                    finish(&b, &got).await;
                }
            })
        })
        .collect::<Vec<_>>();
    for t in tasks {
        t.await.expect("task");
    }
    let most = most.load(Ordering::SeqCst);
    assert!(
        (1..=LIMIT).contains(&most),
        "at most {LIMIT} jobs held at once, saw {most}"
    );
    let c = clients[1].counts().await.expect("counts");
    assert_eq!(
        (c[0].ready, c[0].running, c[0].completed),
        (0, 0, JOBS as u64),
        "every job ran once"
    );
}

/// A reserve that leaves ready jobs held back by a full limit drops the queue's wake-up
/// tokens (each would only wake a waiter into an empty reserve); a job leaving `running`
/// under a concurrency limit pushes one, and without a limit it pushes none.
#[tokio::test]
async fn held_back_jobs_leave_no_tokens_and_a_freed_slot_pushes_one() {
    let server = RedisServer::start(&[]);
    let prefix = unique_prefix("limit-wake");
    let b = backend(&server, &prefix).await;
    let wake = |q: &str| format!("{{{prefix}:{q}}}:wake");

    b.set_queue_limits("c", QueueLimits::default().with_concurrency(1))
        .await
        .expect("set limits");
    push(&b, "c", 5).await;
    assert_eq!(
        llen(server.port, &wake("c")),
        ":5",
        "a token per job pushed"
    );
    let one = reserve(&b, "c", 1).await;
    assert_eq!(one.len(), 1);
    assert_eq!(llen(server.port, &wake("c")), ":0", "the limit is full");
    assert!(reserve(&b, "c", 10).await.is_empty());
    finish(&b, &one).await;
    assert_eq!(
        llen(server.port, &wake("c")),
        ":1",
        "the freed slot wakes one waiter"
    );

    let rate = QueueLimits::default().with_rate(RateLimit::new(2, Duration::from_secs(3600)));
    b.set_queue_limits("r", rate).await.expect("set limits");
    push(&b, "r", 5).await;
    let two = reserve(&b, "r", 1).await;
    assert_eq!(
        llen(server.port, &wake("r")),
        ":5",
        "room left: tokens kept"
    );
    let more = reserve(&b, "r", 10).await;
    assert_eq!((two.len(), more.len()), (1, 1));
    assert_eq!(llen(server.port, &wake("r")), ":0", "the window is full");
    finish(&b, &more).await;
    assert_eq!(
        llen(server.port, &wake("r")),
        ":0",
        "no concurrency limit: a finish frees nothing to wake for"
    );

    push(&b, "u", 3).await;
    let all = reserve(&b, "u", 1).await;
    finish(&b, &all).await;
    assert_eq!(
        llen(server.port, &wake("u")),
        ":3",
        "without limits a finish pushes no token"
    );
}

/// Removing a queue's limits deletes them and its start log, and takes the queue off the set
/// `queue_flows` reads.
#[tokio::test]
async fn removed_limits_leave_no_keys() {
    let server = RedisServer::start(&[]);
    let prefix = unique_prefix("limit-keys");
    let b = backend(&server, &prefix).await;
    let both = QueueLimits::default()
        .with_concurrency(2)
        .with_rate(RateLimit::new(3, Duration::from_secs(60)));
    b.set_queue_limits("q", both).await.expect("set limits");
    push(&b, "q", 2).await;
    assert_eq!(reserve(&b, "q", 10).await.len(), 2);
    let key = |k: &str| format!("{{{prefix}:q}}:{k}");
    let registry = format!("{{{prefix}}}:limited");
    assert_eq!(
        raw_command(server.port, None, &["ZCARD", &key("starts")]).trim(),
        ":2"
    );
    assert_eq!(
        raw_command(server.port, None, &["SMEMBERS", &registry]).trim(),
        "q"
    );
    b.set_queue_limits("q", QueueLimits::NONE)
        .await
        .expect("remove limits");
    for k in ["lim", "starts"] {
        assert_eq!(
            raw_command(server.port, None, &["EXISTS", &key(k)]).trim(),
            ":0",
            "{k}"
        );
    }
    assert_eq!(
        raw_command(server.port, None, &["SCARD", &registry]).trim(),
        ":0"
    );
    assert!(b.queue_flows().await.expect("flows").is_empty());
}

/// The commands Redis runs (inside the script too) for one reserve of 10 jobs: for a queue
/// without limits, one `EXISTS` asks at once whether it is paused, has limits, groups with
/// ready jobs or jobs that ran before (the reserve's usual path: each was a command of its
/// own, fewer commands are fewer instructions per reserve); a limited queue takes the general
/// path after that `EXISTS`: it reads its limits, counts its running jobs and its starts,
/// and logs the starts.
#[tokio::test]
async fn what_a_reserve_costs_with_and_without_limits() {
    let server = RedisServer::start(&[]);
    let b = backend(&server, &unique_prefix("limit-cost")).await;
    let both = QueueLimits::default()
        .with_concurrency(100)
        .with_rate(RateLimit::new(100, Duration::from_secs(60)));
    b.set_queue_limits("lim", both).await.expect("set limits");
    push(&b, "free", 20).await;
    push(&b, "lim", 20).await;
    // First reserves register the worker's number in each queue.
    reserve(&b, "free", 1).await;
    reserve(&b, "lim", 1).await;

    let cost = |queue: &'static str| {
        let b = b.clone();
        let port = server.port;
        async move {
            let before: std::collections::HashMap<_, _> =
                command_stats(port, None).into_iter().collect();
            assert_eq!(reserve(&b, queue, 10).await.len(), 10);
            let after = command_stats(port, None);
            let mut d: Vec<(String, u64)> = after
                .into_iter()
                .map(|(k, n)| {
                    let was = before.get(&k).copied().unwrap_or(0);
                    (k, n - was)
                })
                .filter(|(k, n)| *n > 0 && k != "info" && k != "evalsha")
                .collect();
            d.sort();
            d
        }
    };
    let free = cost("free").await;
    let names = |d: &[(String, u64)]| -> Vec<String> {
        d.iter().map(|(k, n)| format!("{k} {n}")).collect()
    };
    assert_eq!(
        names(&free),
        [
            // Paused? Limits? Groups with ready jobs? Jobs that ran before? Ready jobs other
            // than those of the default list? Then: is that list left with jobs?
            "exists 2",
            "hmget 1",         // specs
            "hset 1",          // runs
            "incr 1",          // token
            "lpop 1",          // the default ready list's first 10 jobs
            "zadd 1",          // leases
            "zcount 1",        // leases ending first (is this one the earliest?)
            "zrangebyscore 2", // expired leases, due scheduled jobs
        ]
    );
    let limited = cost("lim").await;
    assert_eq!(
        names(&limited),
        [
            // The usual path's two (it has limits), the general path's, ready list left?
            "exists 4",
            "hmget 2", // limits, specs
            "hset 1",
            "incr 1",
            "lpop 1",
            "zadd 2",   // leases, starts
            "zcount 3", // running jobs, starts in the window, leases ending first
            "zrange 2",
            "zrangebyscore 2",
            "zremrangebyrank 1", // the start log past its `max`
        ]
    );
}
