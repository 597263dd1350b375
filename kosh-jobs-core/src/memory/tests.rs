//! Tests of the memory backend's own internals; the behaviour is covered by the conformance
//! suite (`tests/conformance_memory.rs`).

use std::time::Duration;

use super::*;
use crate::record::Outcome;

fn req(queues: &[&str], max: usize) -> ReserveRequest {
    ReserveRequest {
        queues: queues.iter().map(|q| q.to_string()).collect(),
        worker: "unit".into(),
        max,
        lease: Duration::from_secs(30),
    }
}

/// Every index agrees with the jobs after a mix of transitions.
#[tokio::test]
async fn indexes_stay_consistent_through_the_lifecycle() {
    let (clock, time) = Clock::manual();
    let b = MemoryBackend::with_clock(clock.clone());
    let now = clock.now();
    let mut jobs = Vec::new();
    for i in 0..20 {
        let mut j = NewJob::new("n", "q", "{}", now + Duration::from_secs(i % 3));
        j.priority = (i % 4) as i32;
        j.unique_key = (i % 5 == 0).then(|| format!("k{i}"));
        jobs.push(j);
    }
    b.push(jobs).await.unwrap();
    time.advance(Duration::from_secs(2));
    let leased = b.reserve(&req(&["q"], 12)).await.unwrap();
    assert_eq!(leased.len(), 12, "all 20 are due; 12 asked");
    let finishes = leased
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 2)
        .map(|(i, l)| Finish {
            lease: l.lease,
            outcome: if i % 3 == 0 {
                Outcome::Completed { result: None }
            } else {
                Outcome::failed("x")
            },
        })
        .collect();
    b.finish(finishes).await.unwrap();
    time.advance(Duration::from_secs(31));
    assert_eq!(
        b.recover_expired().await.unwrap(),
        4,
        "the 4 unfinished leases"
    );

    let st = b.lock();
    let qi = &st.ix.queues[0];
    let total: u64 = qi.counts.iter().sum();
    assert_eq!(total, 20, "each job counted in exactly one state");
    assert_eq!(
        qi.ready.len() as u64,
        qi.counts[index::slot(JobState::Ready)]
    );
    let finals: usize = qi.finals.iter().map(|s| s.len()).sum();
    assert_eq!(finals, 8, "final jobs in the by-id sets");
    assert_eq!(qi.scheduled.len(), 0);
    assert_eq!(st.ix.leases.len(), 0);
    assert_eq!(st.ix.scheduled.len(), 0);
    assert_eq!(st.ix.finished.len(), 8, "4 completed + 4 failed");
    // Keys: jobs 0, 5, 10, 15 had keys; the live ones still hold theirs.
    for (key, id) in &st.ix.unique {
        let rec = st.get(JobId::new(*id)).unwrap();
        assert!(!rec.state.is_final(), "{key} held by final job {id}");
        assert_eq!(rec.unique_key.as_deref(), Some(key.as_str()));
    }
}

/// A paused queue with a due job does not make `wait_for_work` return at once (no hot loop).
#[tokio::test]
async fn wait_ignores_paused_queues() {
    let (clock, time) = Clock::manual();
    let b = Arc::new(MemoryBackend::with_clock(clock.clone()));
    b.push(vec![NewJob::new("n", "q", "{}", clock.now())])
        .await
        .unwrap();
    b.pause("q").await.unwrap();
    let until = clock.now() + Duration::from_secs(10);
    let b2 = b.clone();
    let waiter = tokio::spawn(async move { b2.wait_for_work(&["q".into()], until).await });
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert!(
        !waiter.is_finished(),
        "returned while the only job is paused"
    );
    time.advance(Duration::from_secs(10));
    tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("wait did not end at `until`")
        .unwrap()
        .unwrap();
}

/// On the system clock, a wait with nothing to do ends at `until` (a real, short wait: this
/// is the timer path the manual clock cannot cover).
#[tokio::test]
async fn wait_on_system_clock_ends_at_until() {
    let b = MemoryBackend::new();
    let until = b.clock().now() + Duration::from_millis(30);
    tokio::time::timeout(
        Duration::from_secs(10),
        b.wait_for_work(&["q".into()], until),
    )
    .await
    .expect("wait did not end at `until`")
    .unwrap();
    assert!(b.clock().now() >= until, "wait returned before `until`");
}
