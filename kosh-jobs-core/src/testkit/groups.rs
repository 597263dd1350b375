//! Cases about groups ([`crate::limits#groups`]): round-robin turns between the groups of a
//! queue, the per-group concurrency limit tied to leases, and holds
//! ([`crate::Backend::hold_queue`]).

use std::collections::BTreeSet;

use crate::admin::Total;
use crate::error::BackendError;
use crate::limits::{GroupPage, GroupQuery, QueueFlow, QueueLimits, RateLimit};
use crate::record::{JobId, JobState, LeasedJob, NewJob};

use super::support::{done, env, retry, secs, Env, LEASE};
use super::BackendFactory;

fn grouped(t: &Env, queue: &str, group: &str) -> NewJob {
    let mut j = t.job(group, queue);
    j.group = Some(group.to_owned());
    j
}

fn round<'a>(r: &[&'a str]) -> BTreeSet<&'a str> {
    r.iter().copied().collect()
}

/// The lane a leased job came from: its name is its group's ("none" for no group).
fn lane(j: &LeasedJob) -> &str {
    j.name.as_str()
}

async fn flow_of(t: &Env, queue: &str) -> QueueFlow {
    t.b.queue_flows()
        .await
        .unwrap_or_else(|e| panic!("queue_flows: backend error: {e:?}"))
        .into_iter()
        .find(|f| f.queue == queue)
        .unwrap_or_else(|| panic!("queue_flows: `{queue}` has limits and must be listed"))
}

/// Reserves one job at a time, finishing each, until none is left; the jobs in order.
async fn drain_one_by_one(t: &Env, queue: &str, n: usize) -> Vec<LeasedJob> {
    let mut out = Vec::new();
    for i in 0..n {
        let j = t
            .reserve_one(queue, &format!("drain one by one: job {i}"))
            .await;
        t.finish_ok(j.lease, done(), "drain one by one").await;
        out.push(j);
    }
    t.reserve_none(&[queue], "drained").await;
    out
}

/// The group key is stored and read back; an empty key, one too long or one with a control
/// character makes the whole batch `InvalidInput`, storing nothing.
pub async fn group_keys_are_stored_and_validated<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let id = t.push_one(grouped(&t, "imports", "user-42 · ü")).await;
    assert_eq!(
        t.get(id).await.group.as_deref(),
        Some("user-42 · ü"),
        "the group is stored"
    );
    let plain = t.push_one(t.job("n", "imports")).await;
    assert_eq!(t.get(plain).await.group, None, "no group");
    for bad in [String::new(), "x".repeat(129), "a\nb".to_owned()] {
        let mut j = t.job("n", "imports");
        j.group = Some(bad.clone());
        match t.b.push(vec![t.job("n", "imports"), j]).await {
            Err(BackendError::InvalidInput(_)) => {}
            other => panic!("group key {bad:?}: expected InvalidInput, got {other:?}"),
        }
    }
    let c = t.counts_of("imports").await;
    assert_eq!(c.ready, 2, "a refused batch stores nothing");
}

/// Groups take turns: one job per group with ready jobs per round, the jobs without a group
/// taking their turn together; inside a group, priority then enqueue order. Holds for jobs
/// taken one at a time and for a batch.
pub async fn groups_take_turns<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let mut jobs: Vec<NewJob> = (0..5).map(|_| grouped(&t, "q", "a")).collect();
    jobs[2].priority = 5;
    let a = t.push(jobs).await;
    let b = t
        .push(vec![grouped(&t, "q", "b"), grouped(&t, "q", "b")])
        .await;
    t.push_one(t.job("none", "q")).await;

    let got = drain_one_by_one(&t, "q", 8).await;
    let lanes: Vec<&str> = got.iter().map(lane).collect();
    assert_eq!(
        round(&lanes[0..3]),
        BTreeSet::from(["a", "b", "none"]),
        "round 1: one job of each lane, got {lanes:?}"
    );
    assert_eq!(
        round(&lanes[3..5]),
        BTreeSet::from(["a", "b"]),
        "round 2: the lanes with jobs left, got {lanes:?}"
    );
    assert_eq!(&lanes[5..], ["a", "a", "a"], "then group a alone");
    let a_order: Vec<JobId> = got
        .iter()
        .filter(|j| lane(j) == "a")
        .map(|j| j.lease.id)
        .collect();
    assert_eq!(
        a_order,
        [a[2], a[0], a[1], a[3], a[4]],
        "inside a group: priority, then enqueue order"
    );
    let b_order: Vec<JobId> = got
        .iter()
        .filter(|j| lane(j) == "b")
        .map(|j| j.lease.id)
        .collect();
    assert_eq!(b_order, b, "group b in enqueue order");

    // The same in one batch: the first three are one per lane.
    t.push((0..4).map(|_| grouped(&t, "q2", "a")).collect())
        .await;
    t.push_one(grouped(&t, "q2", "b")).await;
    t.push_one(t.job("none", "q2")).await;
    let batch = t.reserve(&["q2"], 3).await;
    let lanes: Vec<&str> = batch.iter().map(lane).collect();
    assert_eq!(
        round(&lanes),
        BTreeSet::from(["a", "b", "none"]),
        "a batch of three takes one per lane, got {lanes:?}"
    );
}

/// A group with many ready jobs cannot starve a group that arrives later with a few (the
/// issue's case): with one slot per group, group a enqueues 1,000 jobs and has been served
/// for a while when group b enqueues 10; b's first job is among the next two taken (long
/// before a's 50th), and all of b's within the next twenty.
pub async fn a_big_group_cannot_starve_a_small_one<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    t.b.set_queue_limits("q", QueueLimits::default().with_group_concurrency(1))
        .await
        .unwrap_or_else(|e| panic!("set_queue_limits: backend error: {e:?}"));
    t.push((0..1000).map(|_| grouped(&t, "q", "a")).collect())
        .await;
    for _ in 0..5 {
        let j = t.reserve_one("q", "group a alone").await;
        t.finish_ok(j.lease, done(), "group a alone").await;
    }
    t.push((0..10).map(|_| grouped(&t, "q", "b")).collect())
        .await;
    let mut lanes = Vec::new();
    for _ in 0..20 {
        let j = t.reserve_one("q", "a and b").await;
        t.finish_ok(j.lease, done(), "a and b").await;
        lanes.push(j.name.clone());
    }
    let first_b = lanes.iter().position(|l| l == "b");
    assert!(
        first_b.is_some_and(|i| i < 2),
        "b's first job comes within two turns, got {lanes:?}"
    );
    assert_eq!(
        lanes.iter().filter(|l| *l == "b").count(),
        10,
        "b's ten jobs within twenty turns, got {lanes:?}"
    );
}

/// With a group concurrency limit of 1, each group runs one job at a time while the jobs
/// without a group are not limited; held-back jobs stay ready with no attempt counted. A
/// group's slot is freed when its job finishes, is released, is retried, or its expired
/// lease is recovered (a crashed worker never keeps it). `queue_flows` shows the groups
/// running and at their limit.
pub async fn group_concurrency_caps_each_group<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    t.b.set_queue_limits("q", QueueLimits::default().with_group_concurrency(1))
        .await
        .unwrap_or_else(|e| panic!("set_queue_limits: backend error: {e:?}"));
    let a = t
        .push((0..4).map(|_| grouped(&t, "q", "a")).collect())
        .await;
    t.push((0..2).map(|_| grouped(&t, "q", "b")).collect())
        .await;
    t.push((0..2).map(|_| t.job("none", "q")).collect()).await;

    let first = t.reserve(&["q"], 10).await;
    let mut lanes: Vec<&str> = first.iter().map(lane).collect();
    lanes.sort_unstable();
    assert_eq!(
        lanes,
        ["a", "b", "none", "none"],
        "one job per group, the jobs without a group unlimited"
    );
    t.reserve_none(&["q"], "both groups at their limit").await;
    let held = t.get(a[3]).await;
    assert_eq!(
        (held.state, held.attempts),
        (JobState::Ready, 0),
        "a held-back job stays ready, no attempt counted"
    );
    let f = flow_of(&t, "q").await;
    assert_eq!(
        (f.groups_running, f.groups_at_limit),
        (2, 2),
        "two groups running, both at their limit"
    );

    let by = |name: &str, jobs: &[LeasedJob]| -> LeasedJob {
        jobs.iter()
            .find(|j| j.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("a job of lane {name}"))
    };
    // A finish frees a's slot: the next job of a, and only one.
    t.finish_ok(by("a", &first).lease, done(), "finish a's job")
        .await;
    let got = t.reserve(&["q"], 10).await;
    assert_eq!(
        got.iter().map(lane).collect::<Vec<_>>(),
        ["a"],
        "a finished job frees exactly its group's slot"
    );
    // A retry frees it too (the job is ready again at once).
    t.finish_ok(
        got[0].lease,
        retry("boom", t.now()),
        "a retry ready at once",
    )
    .await;
    let got = t.reserve(&["q"], 10).await;
    assert_eq!(
        got.iter().map(lane).collect::<Vec<_>>(),
        ["a"],
        "a retried job frees its group's slot"
    );
    // A release frees b's slot.
    t.b.release(&[by("b", &first).lease])
        .await
        .unwrap_or_else(|e| panic!("release: backend error: {e:?}"));
    let again = t.reserve(&["q"], 10).await;
    assert_eq!(
        again.iter().map(lane).collect::<Vec<_>>(),
        ["b"],
        "a released job frees its group's slot"
    );
    t.reserve_none(&["q"], "both groups at their limit again")
        .await;
    // A worker that died holding both slots: they come back when its leases are recovered.
    t.advance(LEASE + secs(1));
    assert_eq!(
        t.recover().await,
        4,
        "a's, b's and the two unfinished of no group"
    );
    let mut lanes: Vec<String> = t
        .reserve(&["q"], 10)
        .await
        .iter()
        .map(|j| j.name.clone())
        .collect();
    lanes.sort_unstable();
    assert_eq!(
        lanes,
        ["a", "b", "none", "none"],
        "recovered leases free their groups' slots"
    );
}

/// A hold keeps every job of the queue from starting until it ends: jobs stay ready with no
/// attempt counted, another queue is not affected, `queue_flows` lists the queue with the
/// end of the hold, a shorter hold changes nothing, and at its end the jobs start.
pub async fn hold_queue_holds_back_until_it_ends<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let ids = t.push(vec![t.job("n", "api"), t.job("n", "api")]).await;
    t.push_one(t.job("n", "other")).await;
    let until = t.now() + secs(30);
    t.b.hold_queue("api", until)
        .await
        .unwrap_or_else(|e| panic!("hold_queue: backend error: {e:?}"));
    t.b.hold_queue("api", t.now() + secs(5))
        .await
        .unwrap_or_else(|e| panic!("hold_queue: backend error: {e:?}"));
    let got = t.reserve(&["api", "other"], 10).await;
    assert_eq!(
        got.iter().map(|j| j.queue.as_str()).collect::<Vec<_>>(),
        ["other"],
        "the held queue gives nothing, the other queue runs"
    );
    let j = t.get(ids[0]).await;
    assert_eq!((j.state, j.attempts), (JobState::Ready, 0), "held: ready");
    assert_eq!(
        flow_of(&t, "api").await.held_until,
        Some(until),
        "listed with the end of the longer hold"
    );
    match t.b.hold_queue("bad queue", until).await {
        Err(BackendError::InvalidInput(_)) => {}
        other => panic!("a bad queue name: expected InvalidInput, got {other:?}"),
    }
    t.advance(secs(30) - std::time::Duration::from_millis(1));
    t.reserve_none(&["api"], "1 ms before the hold ends").await;
    t.advance(std::time::Duration::from_millis(1));
    assert_eq!(t.reserve(&["api"], 10).await.len(), 2, "the hold ended");
    let flows =
        t.b.queue_flows()
            .await
            .unwrap_or_else(|e| panic!("queue_flows: backend error: {e:?}"));
    assert!(
        flows.iter().all(|f| f.queue != "api"),
        "an ended hold is not listed: {flows:?}"
    );
}

/// A group rate limit of 2 starts per 10 s holds for each group separately, in every window:
/// a group whose window is full is skipped while the others go on, the jobs without a group
/// are not limited, held-back jobs stay ready with no attempt counted, and a group's window
/// opens 10 s after its starts. `queue_flows` counts the groups that may start nothing.
pub async fn group_rate_limits_each_groups_starts<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let limits = QueueLimits::default().with_group_rate(RateLimit::new(2, secs(10)));
    t.b.set_queue_limits("q", limits)
        .await
        .unwrap_or_else(|e| panic!("set_queue_limits: backend error: {e:?}"));
    let a = t
        .push((0..5).map(|_| grouped(&t, "q", "a")).collect())
        .await;
    t.push((0..3).map(|_| grouped(&t, "q", "b")).collect())
        .await;
    t.push((0..3).map(|_| t.job("none", "q")).collect()).await;

    let first = t.reserve(&["q"], 20).await;
    let mut lanes: Vec<&str> = first.iter().map(lane).collect();
    lanes.sort_unstable();
    assert_eq!(
        lanes,
        ["a", "a", "b", "b", "none", "none", "none"],
        "two starts per group, the jobs without a group unlimited"
    );
    for j in &first {
        t.finish_ok(j.lease, done(), "finish the first window")
            .await;
    }
    t.reserve_none(&["q"], "both groups' windows are full, though nothing runs")
        .await;
    let held = t.get(a[4]).await;
    assert_eq!(
        (held.state, held.attempts),
        (JobState::Ready, 0),
        "held back by its group's window: ready, no attempt counted"
    );
    let f = flow_of(&t, "q").await;
    assert_eq!(f.limits, limits, "the group rate is stored");
    assert_eq!(
        (f.groups_running, f.groups_at_limit),
        (0, 2),
        "no group runs; both may start nothing"
    );

    t.advance(secs(10) - std::time::Duration::from_millis(1));
    t.reserve_none(&["q"], "1 ms before the windows open").await;
    t.advance(std::time::Duration::from_millis(1));
    let mut lanes: Vec<String> = t
        .reserve(&["q"], 20)
        .await
        .iter()
        .map(|j| j.name.clone())
        .collect();
    lanes.sort_unstable();
    assert_eq!(
        lanes,
        ["a", "a", "b"],
        "10 s later: two more of a, b's last"
    );
    t.reserve_none(&["q"], "a's window is full again").await;
    t.advance(secs(10));
    assert_eq!(
        t.reserve(&["q"], 20).await.len(),
        1,
        "a's last job once its window opens"
    );
}

async fn groups_page(t: &Env, query: &GroupQuery) -> GroupPage {
    t.b.queue_groups(query)
        .await
        .unwrap_or_else(|e| panic!("queue_groups {query:?}: backend error: {e:?}"))
}

fn exact(count: u64) -> Total {
    Total { count, exact: true }
}

/// `queue_groups` lists a queue's groups with ready or running jobs, sorted by key as bytes
/// (so "Z" before "a" and "ü" last, whatever the store's collation), each with its ready
/// jobs (a delayed job once it is due), running jobs and whether it is at its limit; a group
/// with neither ready nor running jobs is gone. Pages continue after a key, `next` is `None`
/// on the last page. `queue_flows` counts the ready jobs of the groups at their limit, and
/// [`QueueFlow::held_back`] follows.
pub async fn groups_are_listed_with_their_limit_state<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    t.b.set_queue_limits("q", QueueLimits::default().with_group_concurrency(1))
        .await
        .unwrap_or_else(|e| panic!("set_queue_limits: backend error: {e:?}"));
    t.push((0..3).map(|_| grouped(&t, "q", "a")).collect())
        .await;
    t.push(vec![grouped(&t, "q", "b"), grouped(&t, "q", "Z")])
        .await;
    let mut later: Vec<NewJob> = (0..2).map(|_| grouped(&t, "q", "ü")).collect();
    for j in &mut later {
        j.run_at = t.now() + secs(10);
    }
    t.push(later).await;
    t.push((0..2).map(|_| t.job("none", "q")).collect()).await;

    let page = groups_page(&t, &GroupQuery::new("q")).await;
    let keys: Vec<&str> = page.groups.iter().map(|g| g.group.as_str()).collect();
    assert_eq!(
        keys,
        ["Z", "a", "b"],
        "by key as bytes; a delayed group not yet"
    );
    assert_eq!(page.next, None, "one page");
    assert_eq!(
        (
            page.groups[1].ready,
            page.groups[1].running,
            page.groups[1].at_limit
        ),
        (exact(3), 0, false),
        "a: 3 ready, none running"
    );

    let first = t.reserve(&["q"], 10).await;
    assert_eq!(
        first.len(),
        5,
        "one job of each group, both without: {first:?}"
    );
    let page = groups_page(&t, &GroupQuery::new("q")).await;
    let a = &page.groups[1];
    assert_eq!(
        (
            a.group.as_str(),
            a.ready,
            a.running,
            a.at_limit,
            a.starts_in_window
        ),
        ("a", exact(2), 1, true, 0),
        "a: 2 ready, 1 running, at its limit"
    );
    assert_eq!(
        a.next_start_at, None,
        "no rate limit: no window to wait for"
    );
    let b = &page.groups[2];
    assert_eq!(
        (b.ready, b.running, b.at_limit),
        (exact(0), 1, true),
        "b: its only job running"
    );
    let f = flow_of(&t, "q").await;
    assert_eq!(
        (f.groups_running, f.groups_at_limit, f.held_in_groups),
        (3, 3, 2),
        "three groups running and full; a's 2 ready jobs wait for their group"
    );
    assert_eq!(f.held_back(t.counts_of("q").await.ready), 2, "held back");

    t.advance(secs(10));
    let page = groups_page(&t, &GroupQuery::new("q").limit(3)).await;
    let keys: Vec<&str> = page.groups.iter().map(|g| g.group.as_str()).collect();
    assert_eq!(keys, ["Z", "a", "b"], "a page of 3");
    assert_eq!(page.next.as_deref(), Some("b"), "a group is left");
    let rest = groups_page(&t, &GroupQuery::new("q").after("b").limit(3)).await;
    assert_eq!(rest.next, None, "the last page");
    let u = rest
        .groups
        .iter()
        .map(|g| (g.group.as_str(), g.ready, g.running, g.at_limit))
        .collect::<Vec<_>>();
    assert_eq!(u, [("ü", exact(2), 0, false)], "the delayed group, due now");

    for j in first.iter().filter(|j| j.name == "b" || j.name == "Z") {
        t.finish_ok(j.lease, done(), "finish b's and Z's job").await;
    }
    let keys: Vec<String> = groups_page(&t, &GroupQuery::new("q"))
        .await
        .groups
        .into_iter()
        .map(|g| g.group)
        .collect();
    assert_eq!(
        keys,
        ["a", "ü"],
        "groups with nothing ready or running are gone"
    );

    let none = groups_page(&t, &GroupQuery::new("nothing-here")).await;
    assert_eq!(none, GroupPage::default(), "an unknown queue has no groups");
    match t.b.queue_groups(&GroupQuery::new("bad queue")).await {
        Err(BackendError::InvalidInput(_)) => {}
        other => panic!("a bad queue name: expected InvalidInput, got {other:?}"),
    }
}

/// Under a group rate limit of 2 starts per 10 s, `queue_groups` shows each group's starts
/// in the window, a full window as at the limit with the time it opens, and a group with
/// nothing left but starts inside the window; once the window has passed, the group's
/// starts are 0 and a group with nothing left is gone.
pub async fn group_rate_windows_are_listed<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let limits = QueueLimits::default().with_group_rate(RateLimit::new(2, secs(10)));
    t.b.set_queue_limits("q", limits)
        .await
        .unwrap_or_else(|e| panic!("set_queue_limits: backend error: {e:?}"));
    t.push((0..3).map(|_| grouped(&t, "q", "a")).collect())
        .await;
    t.push_one(grouped(&t, "q", "b")).await;
    let t0 = t.now();
    let first = t.reserve(&["q"], 10).await;
    assert_eq!(first.len(), 3, "a twice, b once: {first:?}");
    for j in &first {
        t.finish_ok(j.lease, done(), "finish the first starts")
            .await;
    }
    t.advance(secs(4));

    let page = groups_page(&t, &GroupQuery::new("q")).await;
    let got: Vec<_> = page
        .groups
        .iter()
        .map(|g| {
            (
                g.group.as_str(),
                g.ready,
                g.running,
                g.starts_in_window,
                g.at_limit,
                g.next_start_at,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("a", exact(1), 0, 2, true, Some(t0 + secs(10))),
            ("b", exact(0), 0, 1, false, None),
        ],
        "a's window is full until it opens; b is listed while its start is in the window"
    );
    let f = flow_of(&t, "q").await;
    assert_eq!(
        (f.groups_at_limit, f.held_in_groups),
        (1, 1),
        "a is at its limit with one job waiting"
    );

    t.advance(secs(6));
    let page = groups_page(&t, &GroupQuery::new("q")).await;
    let got: Vec<_> = page
        .groups
        .iter()
        .map(|g| (g.group.as_str(), g.ready, g.starts_in_window, g.at_limit))
        .collect();
    assert_eq!(
        got,
        [("a", exact(1), 0, false)],
        "the window passed: a may start, b is gone"
    );
    assert_eq!(flow_of(&t, "q").await.held_in_groups, 0, "nothing held");
}
