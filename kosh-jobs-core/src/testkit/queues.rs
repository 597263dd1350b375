//! Cases about queue administration: counts, listing, pause and resume, purge.

use std::collections::BTreeSet;

use crate::error::BackendError;
use crate::record::{JobId, JobState, ListQuery, Outcome, QueueCounts};

use super::support::{done, env, secs, Env};
use super::BackendFactory;

async fn list(t: &Env, q: &ListQuery) -> crate::record::Page {
    t.b.list(q)
        .await
        .unwrap_or_else(|e| panic!("list: backend error: {e:?}"))
}

/// Counts per queue and state, for every queue with jobs or paused, sorted by name.
pub async fn counts_by_queue_and_state<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let mut later = t.job("n", "b-queue");
    later.run_at = t.now() + secs(60);
    t.push(vec![later.clone(), later]).await;
    t.push((0..6).map(|_| t.job("n", "b-queue")).collect())
        .await;
    let leased = t.reserve(&["b-queue"], 4).await;
    assert_eq!(leased.len(), 4);
    t.finish_ok(leased[0].lease, done(), "counts").await;
    t.finish_ok(leased[1].lease, Outcome::failed("x"), "counts")
        .await;
    let cancelled = t.push_one(t.job("n", "b-queue")).await;
    t.b.cancel(cancelled)
        .await
        .unwrap_or_else(|e| panic!("cancel: backend error: {e:?}"));
    t.push_one(t.job("n", "a-queue")).await;
    t.b.pause("c-paused-empty")
        .await
        .unwrap_or_else(|e| panic!("pause: backend error: {e:?}"));

    let counts =
        t.b.counts()
            .await
            .unwrap_or_else(|e| panic!("counts: backend error: {e:?}"));
    let expected = vec![
        QueueCounts {
            ready: 1,
            oldest_ready_at: Some(t.now()),
            ..QueueCounts::empty("a-queue")
        },
        QueueCounts {
            queue: "b-queue".into(),
            scheduled: 2,
            ready: 2,
            running: 2,
            completed: 1,
            failed: 1,
            cancelled: 1,
            paused: false,
            oldest_ready_at: Some(t.now()),
        },
        QueueCounts {
            paused: true,
            ..QueueCounts::empty("c-paused-empty")
        },
    ];
    assert_eq!(counts, expected, "counts: per queue and state, by name");
}

/// Listing a state pages through its jobs by id: `limit` per page, `next` to continue,
/// `None` after the last job; the queue filter and `after` apply.
pub async fn list_pages_by_id<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let mut in_a = Vec::new();
    let mut in_b = Vec::new();
    for i in 0..30 {
        let q = if i % 6 == 5 { "b" } else { "a" };
        let id = t.push_one(t.job("n", q)).await;
        if q == "a" {
            in_a.push(id)
        } else {
            in_b.push(id)
        }
    }
    // Some jobs in other states, which must not be listed as ready.
    let running = t.reserve(&["a"], 2).await;
    let running: Vec<JobId> = running.iter().map(|l| l.id()).collect();
    let mut ready: Vec<JobId> = in_a
        .iter()
        .chain(&in_b)
        .copied()
        .filter(|id| !running.contains(id))
        .collect();
    ready.sort();
    assert_eq!(ready.len(), 28);

    let mut seen = Vec::new();
    let mut q = ListQuery::new(JobState::Ready).limit(7);
    for page_no in 1..=4 {
        let page = list(&t, &q).await;
        assert_eq!(page.jobs.len(), 7, "list: page {page_no} is full");
        for j in &page.jobs {
            assert_eq!(
                j.state,
                JobState::Ready,
                "list: page {page_no} holds ready jobs only"
            );
        }
        seen.extend(page.jobs.iter().map(|j| j.id));
        match page.next {
            Some(next) => {
                assert!(page_no < 4, "list: `next` after the last job");
                assert_eq!(
                    Some(&next),
                    seen.last(),
                    "list: `next` is the page's last id"
                );
                q = q.after(next);
            }
            None => assert_eq!(page_no, 4, "list: `next` missing on page {page_no}"),
        }
    }
    assert_eq!(seen, ready, "list: every ready job once, by id ascending");

    let page = list(&t, &ListQuery::new(JobState::Ready).queue("b").limit(100)).await;
    assert_eq!(
        page.jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        in_b,
        "list: the queue filter"
    );
    assert_eq!(page.next, None, "list: one page holds all of b");

    let page = list(
        &t,
        &ListQuery::new(JobState::Ready).after(ready[20]).limit(100),
    )
    .await;
    assert_eq!(
        page.jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        ready[21..].to_vec(),
        "list: `after` skips ids up to and including it"
    );

    let page = list(&t, &ListQuery::new(JobState::Running)).await;
    let mut listed: Vec<JobId> = page.jobs.iter().map(|j| j.id).collect();
    listed.sort();
    let mut want = running.clone();
    want.sort();
    assert_eq!(listed, want, "list: running jobs");

    let page = list(&t, &ListQuery::new(JobState::Completed)).await;
    assert!(
        page.jobs.is_empty() && page.next.is_none(),
        "list: an empty state"
    );
    let page = list(&t, &ListQuery::new(JobState::Ready).limit(0)).await;
    assert_eq!(page.jobs.len(), 1, "list: limit 0 is clamped to 1");
}

/// A paused queue is not reserved from (other queues are), pushes still land, counts say
/// paused, running jobs can finish, and resuming makes its jobs available again.
pub async fn pause_and_resume<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let before = t.push_one(t.job("n", "p")).await;
    let l = t.reserve_one("p", "pause").await;
    assert_eq!(l.id(), before);
    t.b.pause("p")
        .await
        .unwrap_or_else(|e| panic!("pause: backend error: {e:?}"));
    let waiting = t.push_one(t.job("n", "p")).await;
    let other = t.push_one(t.job("n", "other")).await;
    let c = t.counts_of("p").await;
    assert!(c.paused, "pause: counts say paused");
    assert_eq!((c.ready, c.running), (1, 1), "pause: the push landed");
    let got: Vec<JobId> = t
        .reserve(&["p", "other"], 10)
        .await
        .iter()
        .map(|j| j.id())
        .collect();
    assert_eq!(
        got,
        vec![other],
        "pause: only the unpaused queue is reserved from"
    );
    t.finish_ok(l.lease, done(), "pause: a running job finishes")
        .await;
    t.reserve_none(&["p"], "pause: paused queue").await;

    t.b.resume("p")
        .await
        .unwrap_or_else(|e| panic!("resume: backend error: {e:?}"));
    assert!(
        !t.counts_of("p").await.paused,
        "resume: counts say not paused"
    );
    let l = t.reserve_one("p", "resume").await;
    assert_eq!(l.id(), waiting, "resume: the waiting job is leased");
}

/// Purge deletes jobs in the given final states that finished before the cutoff, and only
/// those; non-final states are `InvalidInput`.
pub async fn purge_final_before_cutoff<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let ids = t.push((0..6).map(|_| t.job("n", "q")).collect()).await;
    let mut leases = t.reserve(&["q"], 4).await;
    leases.sort_by_key(|l| l.id());
    // t0: ids[0] completed, ids[1] failed, ids[4] cancelled.
    t.finish_ok(leases[0].lease, done(), "purge").await;
    t.finish_ok(leases[1].lease, Outcome::failed("x"), "purge")
        .await;
    t.b.cancel(ids[4])
        .await
        .unwrap_or_else(|e| panic!("cancel: backend error: {e:?}"));
    t.advance(secs(10));
    let cutoff = t.now();
    t.advance(secs(10));
    // t0 + 20: ids[2] completed after the cutoff; ids[3] running, ids[5] ready.
    t.finish_ok(leases[2].lease, done(), "purge").await;

    for bad in [
        vec![JobState::Ready],
        vec![JobState::Completed, JobState::Running],
    ] {
        match t.b.purge(&bad, t.now() + secs(3600)).await {
            Err(BackendError::InvalidInput(_)) => {}
            other => panic!("purge of {bad:?}: expected InvalidInput, got {other:?}"),
        }
    }
    let purge = |states: Vec<JobState>, before| {
        let b = t.b.clone();
        async move {
            b.purge(&states, before)
                .await
                .unwrap_or_else(|e| panic!("purge: backend error: {e:?}"))
        }
    };
    assert_eq!(
        purge(vec![JobState::Failed], cutoff).await,
        1,
        "purge: failed only"
    );
    assert_eq!(
        purge(
            vec![JobState::Completed, JobState::Failed, JobState::Cancelled],
            cutoff
        )
        .await,
        2,
        "purge: completed and cancelled before the cutoff"
    );
    let mut left = BTreeSet::new();
    for id in &ids {
        if let Some(r) =
            t.b.get(*id)
                .await
                .unwrap_or_else(|e| panic!("get: backend error: {e:?}"))
        {
            left.insert((r.id, r.state));
        }
    }
    let want: BTreeSet<_> = [
        (ids[2], JobState::Completed),
        (ids[3], JobState::Running),
        (ids[5], JobState::Ready),
    ]
    .into_iter()
    .collect();
    assert_eq!(left, want, "purge: what is left");
    let c = t.counts_of("q").await;
    assert_eq!(
        (c.completed, c.failed, c.cancelled),
        (1, 0, 0),
        "purge: counts"
    );
    assert_eq!(
        purge(vec![JobState::Completed], t.now() + secs(1)).await,
        1,
        "purge: a later cutoff takes the newer completed job"
    );
}
