//! Groups and holds on Redis: the group limit holds across clients, no path out of `running`
//! leaves a group's slot taken, a reserve reads the turns and not every group, the admin
//! views see the jobs with a group, a hold is kept with the limits, and a prefix of the
//! previous layout is upgraded with its jobs in order.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kosh_jobs_core::admin::{Total, TOTAL_BOUND};
use kosh_jobs_core::limits::{GroupQuery, QueueLimits};
use kosh_jobs_core::{
    Backend, CancelOutcome, Finish, JobId, JobState, LeasedJob, ListQuery, ManualClock, NewJob,
    Outcome, RetryOutcome,
};
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

async fn manual_backend(server: &RedisServer, prefix: &str) -> (RedisBackend, ManualClock) {
    let (clock, manual) = kosh_jobs_core::Clock::manual();
    let b = RedisBackend::connect_with(
        RedisOptions::builder(server.url())
            .prefix(prefix)
            .clock(clock)
            .build()
            .expect("options"),
    )
    .await
    .expect("connect");
    (b, manual)
}

/// A job of `queue` named after its group ("none" without one).
fn job(b: &RedisBackend, queue: &str, group: Option<&str>) -> NewJob {
    let mut j = NewJob::new(group.unwrap_or("none"), queue, "{}", b.clock().now());
    j.group = group.map(str::to_owned);
    j
}

async fn push(b: &RedisBackend, jobs: Vec<NewJob>) -> Vec<JobId> {
    b.push(jobs)
        .await
        .expect("push")
        .into_iter()
        .map(|e| e.id)
        .collect()
}

async fn finish(b: &RedisBackend, jobs: &[LeasedJob], outcome: impl Fn() -> Outcome) {
    b.finish(
        jobs.iter()
            .map(|j| Finish {
                lease: j.lease,
                outcome: outcome(),
            })
            .collect(),
    )
    .await
    .expect("finish");
}

fn completed() -> Outcome {
    Outcome::Completed { result: None }
}

fn names(jobs: &[LeasedJob]) -> Vec<&str> {
    let mut v: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
    v.sort_unstable();
    v
}

/// A raw command's reply, trimmed.
fn redis(server: &RedisServer, args: &[&str]) -> String {
    raw_command(server.port, None, args).trim().to_owned()
}

/// Two clients, four tasks each, churning on a queue whose three groups may run one job each
/// (and whose jobs without a group are not limited): a group never has two jobs held at once,
/// every job runs once, and no group slot is left taken at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_clients_never_exceed_a_group_limit_together() {
    const GROUPS: [&str; 3] = ["a", "b", "c"];
    const PER_GROUP: usize = 30;
    const UNGROUPED: usize = 20;
    let server = RedisServer::start(&[]);
    let prefix = unique_prefix("groups-two");
    let clients = [
        backend(&server, &prefix).await,
        backend(&server, &prefix).await,
    ];
    clients[0]
        .set_queue_limits("q", QueueLimits::default().with_group_concurrency(1))
        .await
        .expect("set limits");
    let mut jobs = Vec::new();
    for i in 0..PER_GROUP {
        for g in GROUPS {
            jobs.push(job(&clients[0], "q", Some(g)));
        }
        if i < UNGROUPED {
            jobs.push(job(&clients[0], "q", None));
        }
    }
    let total = jobs.len() as u64;
    push(&clients[0], jobs).await;

    let held: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
    let most: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
    let ran = Arc::new(AtomicU64::new(0));
    let tasks = clients
        .iter()
        .flat_map(|b| (0..4).map(move |_| b.clone()))
        .map(|b| {
            let (held, most, ran) = (held.clone(), most.clone(), ran.clone());
            tokio::spawn(async move {
                let mut empty = 0u32;
                while ran.load(Ordering::SeqCst) < total {
                    let got = reserve(&b, "q", 3).await;
                    if got.is_empty() {
                        empty += 1;
                        assert!(empty < 100_000, "no progress");
                        tokio::task::yield_now().await;
                        continue;
                    }
                    let slots: Vec<usize> = got
                        .iter()
                        .filter_map(|j| GROUPS.iter().position(|g| *g == j.name))
                        .collect();
                    for &s in &slots {
                        let now = held[s].fetch_add(1, Ordering::SeqCst) + 1;
                        most[s].fetch_max(now, Ordering::SeqCst);
                    }
                    tokio::task::yield_now().await;
                    // Counted out before the finish: the count never runs ahead of the store's.
                    for &s in &slots {
                        held[s].fetch_sub(1, Ordering::SeqCst);
                    }
                    ran.fetch_add(got.len() as u64, Ordering::SeqCst);
                    finish(&b, &got, completed).await;
                }
            })
        })
        .collect::<Vec<_>>();
    for t in tasks {
        t.await.expect("task");
    }
    for (g, m) in GROUPS.iter().zip(most.iter()) {
        let m = m.load(Ordering::SeqCst);
        assert_eq!(m, 1, "group {g}: at most one job held at once, saw {m}");
    }
    let c = clients[1].counts().await.expect("counts");
    assert_eq!(
        (c[0].ready, c[0].running, c[0].completed),
        (0, 0, total),
        "every job ran once"
    );
    let key = |k: &str| format!("{{{prefix}:q}}:{k}");
    assert_eq!(
        redis(&server, &["EXISTS", &key("grun")]),
        ":0",
        "no slot taken"
    );
}

/// Every way out of `running` frees the group's slot exactly once: finish, retry, snooze,
/// failure, release, cancel and lease recovery. At the end no slot is counted, no turn or
/// ready entry is left, and the queue is back on the path without groups.
#[tokio::test]
async fn no_way_out_of_running_leaves_a_slot_taken() {
    let server = RedisServer::start(&[]);
    let prefix = unique_prefix("groups-slots");
    let (b, clock) = manual_backend(&server, &prefix).await;
    let key = |k: &str| format!("{{{prefix}:q}}:{k}");
    b.set_queue_limits("q", QueueLimits::default().with_group_concurrency(1))
        .await
        .expect("set limits");
    let groups = [
        "fin", "retry", "snooze", "fail", "release", "cancel", "lost",
    ];
    let mut jobs = Vec::new();
    for g in groups {
        jobs.push(job(&b, "q", Some(g)));
        jobs.push(job(&b, "q", Some(g)));
    }
    push(&b, jobs).await;
    let first = reserve(&b, "q", 100).await;
    assert_eq!(first.len(), groups.len(), "one job per group");
    assert_eq!(
        redis(&server, &["HLEN", &key("grun")]),
        format!(":{}", groups.len())
    );
    assert_eq!(
        format!(":{}", support::ready_tokens(server.port, &key("wake"))),
        ":0",
        "every group is full: no wake-up token left"
    );
    assert!(reserve(&b, "q", 100).await.is_empty(), "all groups full");

    let of = |g: &str| {
        first
            .iter()
            .find(|j| j.name == g)
            .cloned()
            .expect("a job of the group")
    };
    let now = b.clock().now();
    finish(&b, &[of("fin")], completed).await;
    assert_eq!(
        format!(":{}", support::ready_tokens(server.port, &key("wake"))),
        ":1",
        "a freed group slot wakes one waiter"
    );
    finish(&b, &[of("retry")], || Outcome::retry("again", now)).await;
    finish(&b, &[of("snooze")], || Outcome::Snooze { until: now }).await;
    finish(&b, &[of("fail")], || Outcome::failed("no")).await;
    b.release(&[of("release").lease]).await.expect("release");
    assert_eq!(
        b.cancel(of("cancel").id()).await.expect("cancel"),
        CancelOutcome::Cancelled
    );
    // The slot of "lost" comes back with its lease.
    let second = reserve(&b, "q", 100).await;
    assert_eq!(
        names(&second),
        ["cancel", "fail", "fin", "release", "retry", "snooze"],
        "each freed slot lets its group's next job start, and only one"
    );
    clock.advance(Duration::from_secs(31));
    assert_eq!(b.recover_expired().await.expect("recover"), 7);
    let rest = reserve(&b, "q", 100).await;
    assert_eq!(
        names(&rest),
        ["cancel", "fail", "fin", "lost", "release", "retry", "snooze"],
        "recovered leases free their slots"
    );
    // The rest, one job per group at a time.
    let mut batch = rest;
    while !batch.is_empty() {
        finish(&b, &batch, completed).await;
        batch = reserve(&b, "q", 100).await;
    }
    let c = b.counts().await.expect("counts");
    assert_eq!(
        (c[0].ready, c[0].running, c[0].completed, c[0].failed),
        (0, 0, 12, 1),
        "every job ran (one failed, one cancelled)"
    );
    for k in ["grun", "gturns", "gall"] {
        assert_eq!(redis(&server, &["EXISTS", &key(k)]), ":0", "{k} is gone");
    }
    let flows = b.queue_flows().await.expect("flows");
    assert_eq!((flows[0].groups_running, flows[0].groups_at_limit), (0, 0));
}

/// A reserve follows the turns: with 2,000 groups ready it reads about two entries per job
/// it takes, not the groups; the groups at their limit are each read once a call.
#[tokio::test]
async fn a_reserve_reads_the_turns_not_every_group() {
    let server = RedisServer::start(&[]);
    let prefix = unique_prefix("groups-cost");
    let b = backend(&server, &prefix).await;
    b.set_queue_limits("q", QueueLimits::default().with_group_concurrency(1))
        .await
        .expect("set limits");
    let groups: Vec<String> = (0..2000).map(|g| format!("g{g:04}")).collect();
    push(
        &b,
        groups
            .iter()
            .flat_map(|g| [job(&b, "q", Some(g)), job(&b, "q", Some(g))])
            .collect(),
    )
    .await;
    // The worker's number in the queue; 50 groups at their limit (at the back of the turns).
    let warm = reserve(&b, "q", 50).await;
    assert_eq!(warm.len(), 50);

    let before: std::collections::HashMap<_, _> =
        command_stats(server.port, None).into_iter().collect();
    let got = reserve(&b, "q", 10).await;
    assert_eq!(got.len(), 10);
    let spent: u64 = command_stats(server.port, None)
        .into_iter()
        .filter(|(k, _)| k != "info" && k != "evalsha")
        .map(|(k, n)| n - before.get(&k).copied().unwrap_or(0))
        .sum();
    // About 7 commands per job taken, one per group skipped at its limit, and a fixed part.
    assert!(
        spent < 10 * 8 + 50 + 30,
        "a reserve of 10 among 2,000 groups ran {spent} commands"
    );
    let first: std::collections::BTreeSet<&str> = warm.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(first.len(), 50, "one job per group: {first:?}");
    assert!(
        got.iter().all(|j| !first.contains(j.name.as_str())),
        "groups at their limit are skipped"
    );
}

/// The admin views see the ready jobs with a group: counts, listing by state, a job's record;
/// a cancelled one is never leased, and a retried one goes back to its group (under its
/// group's limit).
#[tokio::test]
async fn admin_sees_jobs_with_a_group() {
    let server = RedisServer::start(&[]);
    let prefix = unique_prefix("groups-admin");
    let b = backend(&server, &prefix).await;
    let ids = push(
        &b,
        vec![
            job(&b, "q", Some("a")),
            job(&b, "q", None),
            job(&b, "q", Some("b")),
            job(&b, "q", Some("a")),
        ],
    )
    .await;
    let c = b.counts().await.expect("counts");
    assert_eq!(c[0].ready, 4, "ready with a group or without");
    let page = b
        .list(&ListQuery::new(JobState::Ready).queue("q"))
        .await
        .expect("list");
    let listed: Vec<JobId> = page.jobs.iter().map(|j| j.id).collect();
    assert_eq!(listed, ids, "every ready job, in id order");
    let rec = b.get(ids[2]).await.expect("get").expect("job");
    assert_eq!(
        (rec.state, rec.group.as_deref()),
        (JobState::Ready, Some("b"))
    );
    assert_eq!(
        b.cancel(ids[2]).await.expect("cancel"),
        CancelOutcome::Cancelled
    );
    assert_eq!(
        b.get(ids[2]).await.expect("get").expect("job").state,
        JobState::Cancelled
    );

    b.set_queue_limits("q", QueueLimits::default().with_group_concurrency(1))
        .await
        .expect("set limits");
    let got = reserve(&b, "q", 10).await;
    assert_eq!(
        names(&got),
        ["a", "none"],
        "b's job was cancelled, a is full"
    );
    // A retried job goes back to its group: it waits for a's slot.
    assert_eq!(b.retry(ids[2]).await.expect("retry"), RetryOutcome::Retried);
    let a = got.iter().find(|j| j.name == "a").cloned().expect("a");
    finish(&b, &[a], || Outcome::failed("boom")).await;
    let next = reserve(&b, "q", 10).await;
    assert_eq!(names(&next), ["a", "b"]);
    assert_eq!(b.retry(ids[0]).await.expect("retry"), RetryOutcome::Retried);
    assert!(
        reserve(&b, "q", 10).await.is_empty(),
        "a retried job of a full group waits"
    );
}

/// A hold is a field of the queue's limits: setting or removing limits keeps it, another
/// client obeys it and lists it, and it ends by itself.
#[tokio::test]
async fn a_hold_is_kept_with_the_limits_and_obeyed_by_every_client() {
    let server = RedisServer::start(&[]);
    let prefix = unique_prefix("groups-hold");
    let (a, clock) = manual_backend(&server, &prefix).await;
    let b = backend(&server, &prefix).await;
    push(&a, vec![job(&a, "q", None), job(&a, "q", Some("g"))]).await;
    let until = a.clock().now().saturating_add(Duration::from_secs(60));
    a.hold_queue("q", until).await.expect("hold");
    a.set_queue_limits("q", QueueLimits::default().with_concurrency(5))
        .await
        .expect("set limits");
    a.set_queue_limits("q", QueueLimits::NONE)
        .await
        .expect("remove limits");
    assert!(
        reserve(&b, "q", 10).await.is_empty(),
        "another client obeys the hold"
    );
    let flows = b.queue_flows().await.expect("flows");
    assert_eq!(flows.len(), 1, "listed while held: {flows:?}");
    assert_eq!(flows[0].held_until, Some(until));
    assert!(flows[0].limits.is_none());
    clock.advance(Duration::from_secs(60));
    assert_eq!(reserve(&a, "q", 10).await.len(), 2, "the hold ended");
    assert!(a.queue_flows().await.expect("flows").is_empty());
}

/// A prefix written by the previous layout (5: no groups) is upgraded in place at connect:
/// its waiting jobs keep their order (priority, then enqueue order), and jobs with a group
/// then take turns with them.
#[tokio::test]
async fn a_layout_5_prefix_is_upgraded_with_its_jobs_in_order() {
    let server = RedisServer::start(&[]);
    let prefix = unique_prefix("groups-layout");
    let b = backend(&server, &prefix).await;
    let mut old = Vec::new();
    for p in [0, 5, 0, 5] {
        let mut j = job(&b, "q", None);
        j.priority = p;
        old.push(j);
    }
    let ids = push(&b, old).await;
    drop(b);
    // What layout 5 stored for these jobs is what this version stores: only the marker says 5.
    let layout = format!("{{{prefix}}}:layout");
    redis(&server, &["SET", &layout, "5"]);
    let b = backend(&server, &prefix).await;
    assert_eq!(
        redis(&server, &["GET", &layout]),
        kosh_jobs_redis::LAYOUT.to_string()
    );
    push(&b, vec![job(&b, "q", Some("g")), job(&b, "q", Some("g"))]).await;
    let mut order = Vec::new();
    for _ in 0..6 {
        let j = reserve(&b, "q", 1).await;
        finish(&b, &j, completed).await;
        order.extend(j);
    }
    let plain: Vec<JobId> = order
        .iter()
        .filter(|j| j.name == "none")
        .map(|j| j.id())
        .collect();
    assert_eq!(plain, [ids[1], ids[3], ids[0], ids[2]], "priority, then id");
    let lanes: Vec<&str> = order.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(
        lanes[..4],
        ["none", "g", "none", "g"],
        "the lanes take turns"
    );
}

/// `queue_groups` pages through a queue's 1,200 groups in byte order (upper case before
/// lower case, "é" and "ü" last), 500 at a time, each group once; the 300 groups whose only
/// job ran and finished keep their entry in the turns (a reserve drops it once it finds it
/// empty) but are not listed. The scratch set the script sorts in is gone after each call.
#[tokio::test]
async fn groups_are_paged_in_byte_order_past_the_emptied_ones() {
    let server = RedisServer::start(&[]);
    let prefix = unique_prefix("groups-page");
    let b = backend(&server, &prefix).await;
    b.set_queue_limits("q", QueueLimits::default().with_group_concurrency(1))
        .await
        .expect("set limits");
    let numbered: Vec<String> = (0..1196).map(|g| format!("g{g:04}")).collect();
    for chunk in numbered.chunks(400) {
        push(&b, chunk.iter().map(|g| job(&b, "q", Some(g))).collect()).await;
    }
    // The first 300 groups (by their equal turns, then by key) run their only job.
    let ran = reserve(&b, "q", 300).await;
    assert_eq!(ran.len(), 300);
    finish(&b, &ran, completed).await;
    let special = ["ü", "zed", "é", "Zed"];
    push(&b, special.iter().map(|g| job(&b, "q", Some(g))).collect()).await;
    let turns = redis(&server, &["ZCARD", &format!("{{{prefix}:q}}:gturns")]);
    assert_eq!(turns, ":1200", "the emptied groups keep their turn");

    let gone: std::collections::HashSet<&str> = ran.iter().map(|j| j.name.as_str()).collect();
    let mut expected: Vec<&str> = numbered
        .iter()
        .map(String::as_str)
        .chain(special)
        .filter(|g| !gone.contains(g))
        .collect();
    expected.sort_unstable();
    assert_eq!(expected.len(), 900);
    let mut listed: Vec<String> = Vec::new();
    let mut query = GroupQuery::new("q").limit(500);
    let mut pages = 0;
    loop {
        let page = b.queue_groups(&query).await.expect("queue_groups");
        pages += 1;
        assert_eq!(
            redis(&server, &["EXISTS", &format!("{{{prefix}:q}}:gsort")]),
            ":0",
            "no scratch set left"
        );
        let one = Total {
            count: 1,
            exact: true,
        };
        assert!(
            page.groups
                .iter()
                .all(|g| (g.ready, g.running, g.at_limit) == (one, 0, false)),
            "one ready job each: {:?}",
            page.groups.first()
        );
        listed.extend(page.groups.into_iter().map(|g| g.group));
        match page.next {
            Some(next) => {
                assert_eq!(Some(&next), listed.last(), "next is the last group listed");
                query = query.after(next);
            }
            None => break,
        }
    }
    assert_eq!(pages, 2, "900 groups: a full page, then the last");
    assert_eq!(listed, expected, "each group once, by bytes");
    assert_eq!(listed[0], "Zed");
    assert_eq!(listed[listed.len() - 3..], ["zed", "é", "ü"]);
}

/// A group's ready count is exact up to `TOTAL_BOUND`, then bounded; due scheduled jobs count
/// once promoted, and while more than one call's promotion (1,000) are left, the counts say
/// they are lower bounds.
#[tokio::test]
async fn ready_counts_are_bounded_and_count_the_due_jobs() {
    let server = RedisServer::start(&[]);
    let prefix = unique_prefix("groups-bound");
    let (b, clock) = manual_backend(&server, &prefix).await;
    let big = usize::try_from(TOTAL_BOUND).expect("bound") + 1;
    let mut pushed = 0;
    while pushed < big {
        let n = 1000.min(big - pushed);
        push(&b, (0..n).map(|_| job(&b, "q", Some("big"))).collect()).await;
        pushed += n;
    }
    let got = ready_of(&b, "big").await;
    assert_eq!(
        got,
        Total {
            count: TOTAL_BOUND,
            exact: false
        },
        "past the bound"
    );

    let later: Vec<NewJob> = (0..1001)
        .map(|_| {
            let mut j = job(&b, "q", Some("later"));
            j.run_at = b.clock().now().saturating_add(Duration::from_secs(1));
            j
        })
        .collect();
    push(&b, later).await;
    assert_eq!(
        b.queue_groups(&GroupQuery::new("q"))
            .await
            .expect("queue_groups")
            .groups
            .len(),
        1,
        "the delayed group is not listed before its jobs are due"
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        ready_of(&b, "later").await,
        Total {
            count: 1000,
            exact: false
        },
        "one due job is left to promote"
    );
    assert_eq!(
        ready_of(&b, "later").await,
        Total {
            count: 1001,
            exact: true
        },
        "all promoted"
    );
}

/// The ready count of `group` in queue "q" (zero when not listed).
async fn ready_of(b: &RedisBackend, group: &str) -> Total {
    b.queue_groups(&GroupQuery::new("q"))
        .await
        .expect("queue_groups")
        .groups
        .into_iter()
        .find(|g| g.group == group)
        .map_or(
            Total {
                count: 0,
                exact: true,
            },
            |g| g.ready,
        )
}
