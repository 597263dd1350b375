//! Cases about flow control ([`crate::limits`]): limits kept in the store and enforced by
//! `reserve`, with held-back jobs left ready and uncounted.

use std::time::Duration;

use crate::error::BackendError;
use crate::limits::{QueueFlow, QueueLimits, RateLimit};
use crate::record::JobState;

use super::support::{done, env, secs, Env, LEASE};
use super::BackendFactory;

async fn set(t: &Env, queue: &str, limits: QueueLimits) {
    t.b.set_queue_limits(queue, limits)
        .await
        .unwrap_or_else(|e| panic!("set_queue_limits({queue}): backend error: {e:?}"));
}

async fn flows(t: &Env) -> Vec<QueueFlow> {
    t.b.queue_flows()
        .await
        .unwrap_or_else(|e| panic!("queue_flows: backend error: {e:?}"))
}

async fn flow_of(t: &Env, queue: &str) -> QueueFlow {
    flows(t)
        .await
        .into_iter()
        .find(|f| f.queue == queue)
        .unwrap_or_else(|| panic!("queue_flows: `{queue}` has limits and must be listed"))
}

fn rate(max: u32, per: Duration) -> QueueLimits {
    QueueLimits::default().with_rate(RateLimit::new(max, per))
}

fn concurrency(k: u32) -> QueueLimits {
    QueueLimits::default().with_concurrency(k)
}

/// Limits are stored per queue, listed by `queue_flows` (sorted by queue), replaced by the
/// next call and removed by `QueueLimits::NONE`; invalid limits and queue names are refused
/// with `InvalidInput` and change nothing.
pub async fn limits_are_stored_listed_and_validated<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    assert!(flows(&t).await.is_empty(), "no queue has limits at first");
    let both = concurrency(3).with_rate(RateLimit::new(10, Duration::from_millis(1500)));
    set(&t, "b-api", both).await;
    set(&t, "a-imports", concurrency(1)).await;
    let got = flows(&t).await;
    let names: Vec<&str> = got.iter().map(|f| f.queue.as_str()).collect();
    assert_eq!(names, ["a-imports", "b-api"], "listed by queue name");
    assert_eq!(got[0].limits, concurrency(1));
    assert_eq!(
        got[1].limits, both,
        "both limits kept, the window to the millisecond"
    );
    assert_eq!(
        (
            got[1].running,
            got[1].starts_in_window,
            got[1].next_start_at
        ),
        (0, 0, None),
        "nothing ran yet"
    );
    set(&t, "b-api", concurrency(5)).await;
    assert_eq!(
        flow_of(&t, "b-api").await.limits,
        concurrency(5),
        "replaced"
    );
    for bad in [concurrency(0), rate(0, secs(1)), rate(5, Duration::ZERO)] {
        match t.b.set_queue_limits("b-api", bad).await {
            Err(BackendError::InvalidInput(_)) => {}
            other => panic!("limits {bad:?}: expected InvalidInput, got {other:?}"),
        }
    }
    match t.b.set_queue_limits("", concurrency(1)).await {
        Err(BackendError::InvalidInput(_)) => {}
        other => panic!("an empty queue name: expected InvalidInput, got {other:?}"),
    }
    assert_eq!(
        flow_of(&t, "b-api").await.limits,
        concurrency(5),
        "a refused call changes nothing"
    );
    set(&t, "a-imports", QueueLimits::NONE).await;
    set(&t, "b-api", QueueLimits::NONE).await;
    assert!(flows(&t).await.is_empty(), "NONE removes the limits");
}

/// With a concurrency limit of 2, reserve leases at most 2 jobs of the queue at once,
/// whatever its `max`, and another queue is not affected. Held-back jobs stay ready with no
/// attempt counted. A slot is freed when a job finishes, is released, or its expired lease is
/// recovered.
pub async fn concurrency_limit_caps_running_jobs<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    set(&t, "imports", concurrency(2)).await;
    let ids = t
        .push((0..6).map(|_| t.job("n", "imports")).collect())
        .await;
    t.push((0..3).map(|_| t.job("n", "other")).collect()).await;
    let first = t.reserve(&["imports", "other"], 10).await;
    let of = |q: &str| first.iter().filter(|j| j.queue == q).count();
    assert_eq!(
        (of("imports"), of("other")),
        (2, 3),
        "two of the limited queue, every job of the other"
    );
    t.reserve_none(&["imports"], "both slots taken").await;
    let held = t.get(ids[5]).await;
    assert_eq!(
        (held.state, held.attempts),
        (JobState::Ready, 0),
        "a held-back job stays ready, no attempt counted"
    );
    let c = t.counts_of("imports").await;
    assert_eq!((c.ready, c.running), (4, 2), "counts");
    assert_eq!(
        flow_of(&t, "imports").await.running,
        2,
        "the flow shows the running jobs"
    );

    let (mut running, others): (Vec<_>, Vec<_>) =
        first.into_iter().partition(|j| j.queue == "imports");
    for j in others {
        t.finish_ok(j.lease, done(), "finish the other queue's jobs")
            .await;
    }
    // A finish frees one slot.
    let a = running.remove(0);
    t.finish_ok(a.lease, done(), "finish a running import")
        .await;
    let got = t.reserve(&["imports"], 10).await;
    assert_eq!(got.len(), 1, "a finished job frees exactly one slot");
    running.extend(got);
    // A release frees one slot, and the released job is taken again first.
    let b = running.remove(0);
    t.b.release(&[b.lease])
        .await
        .unwrap_or_else(|e| panic!("release: backend error: {e:?}"));
    let got = t.reserve(&["imports"], 10).await;
    assert_eq!(got.len(), 1, "a released job frees exactly one slot");
    running.extend(got);
    t.reserve_none(&["imports"], "full again").await;
    // A worker that died: its slots come back when its leases are recovered.
    t.advance(LEASE + secs(1));
    assert_eq!(t.recover().await, 2, "both expired leases recovered");
    let got = t.reserve(&["imports"], 10).await;
    assert_eq!(got.len(), 2, "recovered leases free their slots");
    for j in got {
        t.finish_ok(j.lease, done(), "drain").await;
    }
    let got = t.reserve(&["imports"], 10).await;
    assert_eq!(got.len(), 2, "still two at a time");
}

/// A rate limit of 3 starts per 10 s holds in every window of 10 s, not in fixed windows: a
/// start leaves the window exactly 10 s after it happened, and only then does its slot come
/// back. `queue_flows` shows the starts in the window and when the next may start.
pub async fn rate_limit_holds_in_every_window<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    set(&t, "api", rate(3, secs(10))).await;
    t.push((0..10).map(|_| t.job("n", "api")).collect()).await;
    let t0 = t.now();
    assert_eq!(t.reserve(&["api"], 1).await.len(), 1, "t0: one start");
    t.advance(secs(4));
    let t4 = t.now();
    assert_eq!(
        t.reserve(&["api"], 10).await.len(),
        2,
        "t0+4s: two more, three in the window"
    );
    t.reserve_none(&["api"], "t0+4s: the window is full").await;
    let f = flow_of(&t, "api").await;
    assert_eq!(
        (f.starts_in_window, f.next_start_at),
        (3, Some(t0 + secs(10))),
        "t0+4s: three starts, the next when t0's start leaves the window"
    );
    t.advance(secs(6) - Duration::from_millis(1));
    t.reserve_none(&["api"], "1 ms before t0's start leaves the window")
        .await;
    t.advance(Duration::from_millis(1));
    assert_eq!(
        t.reserve(&["api"], 10).await.len(),
        1,
        "t0+10s: t0's start left the window; t0+4s's two have not"
    );
    t.reserve_none(&["api"], "t0+10s: full again").await;
    let f = flow_of(&t, "api").await;
    assert_eq!(f.next_start_at, Some(t4 + secs(10)), "next at t0+14s");
    t.advance(secs(4));
    assert_eq!(
        t.reserve(&["api"], 10).await.len(),
        2,
        "t0+14s: the two starts of t0+4s left"
    );
    let c = t.counts_of("api").await;
    assert_eq!((c.ready, c.running), (4, 6), "held-back jobs stay ready");
}

/// A limit changed at run time applies to the next reserve: raising it lets more start at
/// once, removing it lets everything start.
pub async fn limits_change_at_run_time<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    set(&t, "q", concurrency(1)).await;
    t.push((0..6).map(|_| t.job("n", "q")).collect()).await;
    assert_eq!(t.reserve(&["q"], 10).await.len(), 1, "one at a time");
    set(&t, "q", concurrency(3)).await;
    assert_eq!(t.reserve(&["q"], 10).await.len(), 2, "raised to three");
    set(&t, "q", rate(1, secs(60))).await;
    assert_eq!(
        t.reserve(&["q"], 10).await.len(),
        1,
        "a new rate limit counts starts from when it was set"
    );
    t.reserve_none(&["q"], "the rate window is full").await;
    set(&t, "q", QueueLimits::NONE).await;
    assert_eq!(t.reserve(&["q"], 10).await.len(), 2, "no limit: the rest");
}
