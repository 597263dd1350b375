//! The group rate limit on Redis: it holds across clients sharing a queue, a group's log
//! outlives its jobs and is forgotten once its starts left the window, removing the rate
//! leaves no key, and a reserve does not read the groups whose window is full.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use kosh_jobs_core::limits::{QueueLimits, RateLimit};
use kosh_jobs_core::{
    Backend, Clock, Finish, LeasedJob, ManualClock, NewJob, Outcome, ReserveRequest,
};
use kosh_jobs_redis::{RedisBackend, RedisOptions};
use support::{command_stats, raw_command, unique_prefix, RedisServer};

async fn backend(server: &RedisServer, prefix: &str, clock: Clock) -> RedisBackend {
    RedisBackend::connect_with(
        RedisOptions::builder(server.url())
            .prefix(prefix)
            .clock(clock)
            .build()
            .expect("options"),
    )
    .await
    .expect("connect")
}

/// `n` jobs of `queue` named after their group ("none" without one).
fn jobs(b: &RedisBackend, group: Option<&str>, n: usize) -> Vec<NewJob> {
    (0..n)
        .map(|_| {
            let mut j = NewJob::new(group.unwrap_or("none"), "q", "{}", b.clock().now());
            j.group = group.map(str::to_owned);
            j
        })
        .collect()
}

async fn reserve(b: &RedisBackend, max: usize) -> Vec<LeasedJob> {
    b.reserve(&ReserveRequest {
        queues: vec!["q".into()],
        worker: "test".into(),
        max,
        lease: Duration::from_secs(30),
    })
    .await
    .expect("reserve")
}

async fn complete(b: &RedisBackend, got: &[LeasedJob]) {
    b.finish(
        got.iter()
            .map(|j| Finish {
                lease: j.lease,
                outcome: Outcome::Completed { result: None },
            })
            .collect(),
    )
    .await
    .expect("finish");
}

/// Jobs taken per name (= group).
fn tally(got: &[LeasedJob]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for j in got {
        *m.entry(j.name.clone()).or_default() += 1;
    }
    m
}

/// Eight tasks over two clients (one clock) reserve and finish at once: each group starts its
/// three jobs per window between them all, never more, the jobs without a group all start,
/// and the next window lets three more of each start.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_clients_share_one_group_rate() {
    let server = RedisServer::start(&[]);
    let prefix = unique_prefix("grate-two");
    let (clock, manual): (Clock, ManualClock) = Clock::manual();
    let clients = [
        backend(&server, &prefix, clock.clone()).await,
        backend(&server, &prefix, clock).await,
    ];
    let rate = QueueLimits::default().with_group_rate(RateLimit::new(3, Duration::from_secs(10)));
    clients[0]
        .set_queue_limits("q", rate)
        .await
        .expect("set limits");
    let mut all = jobs(&clients[0], Some("a"), 10);
    all.extend(jobs(&clients[0], Some("b"), 10));
    all.extend(jobs(&clients[0], None, 5));
    clients[0].push(all).await.expect("push");

    let round = || {
        let tasks: Vec<_> = clients
            .iter()
            .flat_map(|b| (0..4).map(move |_| b.clone()))
            .map(|b| {
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    for _ in 0..4 {
                        let got = reserve(&b, 2).await;
                        complete(&b, &got).await;
                        mine.extend(got);
                    }
                    mine
                })
            })
            .collect();
        async move {
            let mut got = Vec::new();
            for t in tasks {
                got.extend(t.await.expect("task"));
            }
            tally(&got)
        }
    };
    let first = round().await;
    assert_eq!(
        (first.get("a"), first.get("b"), first.get("none")),
        (Some(&3), Some(&3), Some(&5)),
        "three starts per group in the window, all the jobs without a group: {first:?}"
    );
    manual.advance(Duration::from_secs(10));
    let second = round().await;
    assert_eq!(
        (second.get("a"), second.get("b"), second.get("none")),
        (Some(&3), Some(&3), None),
        "the next window: {second:?}"
    );
}

/// A group whose jobs all ran keeps its log while a start is in the window (a new job of it
/// waits, and `queue_flows` counts the group), the log is forgotten by a later start once it
/// left the window, and removing the group rate deletes every key it used.
#[tokio::test]
async fn a_group_log_outlives_its_jobs_and_is_forgotten() {
    let server = RedisServer::start(&[]);
    let prefix = unique_prefix("grate-log");
    let (clock, manual) = Clock::manual();
    let b = backend(&server, &prefix, clock).await;
    let key = |k: &str| format!("{{{prefix}:q}}:{k}");
    let redis = |args: &[&str]| raw_command(server.port, None, args).trim().to_owned();
    let rate = QueueLimits::default().with_group_rate(RateLimit::new(1, Duration::from_secs(60)));
    b.set_queue_limits("q", rate).await.expect("set limits");

    b.push(jobs(&b, Some("g1"), 1)).await.expect("push");
    let got = reserve(&b, 10).await;
    assert_eq!(got.len(), 1);
    complete(&b, &got).await;
    assert!(reserve(&b, 10).await.is_empty(), "no job left");
    let flows = b.queue_flows().await.expect("flows");
    assert_eq!(
        (flows[0].groups_running, flows[0].groups_at_limit),
        (0, 1),
        "g1 has no job, but its window is full"
    );

    manual.advance(Duration::from_secs(30));
    b.push(jobs(&b, Some("g1"), 1)).await.expect("push");
    assert!(
        reserve(&b, 10).await.is_empty(),
        "a new job of g1 waits for the window its last start opened"
    );
    assert_eq!(redis(&["ZCARD", &key("gpark")]), ":1", "g1 is parked");
    manual.advance(Duration::from_secs(30));
    let got = reserve(&b, 10).await;
    assert_eq!(got.len(), 1, "the window opened");
    complete(&b, &got).await;
    assert_eq!(redis(&["EXISTS", &key("glog:g1")]), ":1");

    // A start of another group, once g1's last start left the window, forgets g1's log.
    manual.advance(Duration::from_secs(60));
    b.push(jobs(&b, Some("g2"), 1)).await.expect("push");
    assert_eq!(reserve(&b, 10).await.len(), 1);
    assert_eq!(redis(&["EXISTS", &key("glog:g1")]), ":0", "g1's log");
    assert_eq!(
        redis(&["ZRANGE", &key("glogs"), "0", "-1"]),
        "g2",
        "the groups logged"
    );
    assert_eq!(
        redis(&["ZRANGE", &key("gfull"), "0", "-1"]),
        "g2",
        "the full windows"
    );

    // g2 is parked by a reserve; dropping the group rate gives it its turn back.
    b.push(jobs(&b, Some("g2"), 1)).await.expect("push");
    assert!(reserve(&b, 10).await.is_empty());
    b.set_queue_limits("q", QueueLimits::default().with_group_concurrency(5))
        .await
        .expect("set limits");
    for k in ["glog:g2", "glogs", "gfull", "gpark", "gpturn"] {
        assert_eq!(redis(&["EXISTS", &key(k)]), ":0", "{k} is gone");
    }
    assert_eq!(reserve(&b, 10).await.len(), 1, "g2 takes turns again");
}

/// A group whose window is full leaves the turns: with 500 such groups holding ready jobs, a
/// reserve reads them once (and parks them), and the next reserves do not read them at all.
#[tokio::test]
async fn a_reserve_does_not_read_the_groups_whose_window_is_full() {
    let server = RedisServer::start(&[]);
    let prefix = unique_prefix("grate-cost");
    let (clock, _manual) = Clock::manual();
    let b = backend(&server, &prefix, clock).await;
    let rate = QueueLimits::default().with_group_rate(RateLimit::new(1, Duration::from_secs(60)));
    b.set_queue_limits("q", rate).await.expect("set limits");
    let groups: Vec<String> = (0..500).map(|g| format!("g{g:03}")).collect();
    let mut all = Vec::new();
    for g in &groups {
        all.extend(jobs(&b, Some(g), 2));
    }
    b.push(all).await.expect("push");
    assert_eq!(reserve(&b, 500).await.len(), 500, "one start per group");
    assert!(reserve(&b, 10).await.is_empty(), "every window is full");
    b.push(jobs(&b, None, 20)).await.expect("push");

    let before: HashMap<_, _> = command_stats(server.port, None).into_iter().collect();
    let got = reserve(&b, 10).await;
    let spent: u64 = command_stats(server.port, None)
        .into_iter()
        .filter(|(k, _)| k != "info" && k != "evalsha")
        .map(|(k, n)| n - before.get(&k).copied().unwrap_or(0))
        .sum();
    assert_eq!(tally(&got).get("none"), Some(&10));
    assert!(
        spent < 40,
        "a reserve of 10 beside 500 parked groups ran {spent} commands"
    );
}
