//! Cases about ending attempts: completion, retries, failures, batches, progress.

use serde_json::json;

use crate::record::{AttemptError, Finish, FinishResult, JobState, Lease, Outcome};

use super::support::{done, env, retry, secs};
use super::BackendFactory;

fn failed(error: &str) -> Outcome {
    Outcome::failed(error)
}

/// Completing stores the result and the finish time, ends the lease, and only works once.
pub async fn complete_stores_result<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let id = t.push_one(t.job("n", "q")).await;
    let l = t.reserve_one("q", "complete").await;
    t.advance(secs(5));
    let result = json!({"imported": 1200, "skipped": ["row 7"]});
    t.finish_ok(
        l.lease,
        Outcome::Completed {
            result: Some(result.clone()),
        },
        "complete",
    )
    .await;
    let r = t.get(id).await;
    assert_eq!(r.state, JobState::Completed, "complete: state");
    assert_eq!(r.result, Some(result), "complete: result stored");
    assert_eq!(r.finished_at, Some(t.now()), "complete: finished_at is now");
    assert_eq!(r.attempts, 1, "complete: attempts");
    assert!(r.errors.is_empty(), "complete: no errors");
    assert_eq!(r.lease_expires_at, None, "complete: no lease");
    assert_eq!(
        t.finish_one(l.lease, done()).await,
        FinishResult::LeaseLost,
        "complete: a second finish with the same lease is refused"
    );
    let c = t.counts_of("q").await;
    assert_eq!((c.running, c.completed), (0, 1), "complete: counts");
    t.reserve_none(&["q"], "complete: a completed job is not leased")
        .await;
}

/// A batch of finishes returns one result per item, in order, applying each independently.
pub async fn finish_batch_results_in_order<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let ids = t.push((0..3).map(|_| t.job("n", "q")).collect()).await;
    let leased = t.reserve(&["q"], 3).await;
    assert_eq!(leased.len(), 3);
    let lease_of = |i: usize| -> Lease {
        leased
            .iter()
            .find(|l| l.id() == ids[i])
            .unwrap_or_else(|| panic!("finish batch: job {i} was not leased"))
            .lease
    };
    let bogus = Lease {
        id: ids[0],
        token: lease_of(0).token.wrapping_add(1_000_003),
    };
    let now = t.now();
    let results = t
        .finish(vec![
            Finish {
                lease: lease_of(0),
                outcome: done(),
            },
            Finish {
                lease: bogus,
                outcome: failed("never stored"),
            },
            Finish {
                lease: lease_of(1),
                outcome: retry("try later", now + secs(60)),
            },
            Finish {
                lease: lease_of(2),
                outcome: failed("broken"),
            },
            Finish {
                lease: lease_of(0),
                outcome: failed("too late"),
            },
        ])
        .await;
    assert_eq!(
        results,
        vec![
            FinishResult::Applied,
            FinishResult::LeaseLost,
            FinishResult::Applied,
            FinishResult::Applied,
            FinishResult::LeaseLost,
        ],
        "finish batch: one result per item, in order"
    );
    let states = [
        t.get(ids[0]).await.state,
        t.get(ids[1]).await.state,
        t.get(ids[2]).await.state,
    ];
    assert_eq!(
        states,
        [JobState::Completed, JobState::Scheduled, JobState::Failed],
        "finish batch: each item applied to its own job"
    );
    assert!(
        t.get(ids[0]).await.errors.is_empty(),
        "finish batch: refused items stored no error"
    );
}

/// A retry at a later time is scheduled until then, then leased as the next attempt.
pub async fn retry_at_is_honoured<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let id = t.push_one(t.job("n", "q")).await;
    let l = t.reserve_one("q", "retry_at").await;
    let retry_at = t.now() + secs(60);
    t.finish_ok(l.lease, retry("bank API down", retry_at), "retry_at")
        .await;
    let r = t.get(id).await;
    assert_eq!(r.state, JobState::Scheduled, "retry_at: scheduled");
    assert_eq!(r.run_at, retry_at, "retry_at: run_at is retry_at");
    assert_eq!(r.attempts, 1, "retry_at: attempts");
    assert_eq!(r.lease_expires_at, None, "retry_at: no lease");
    assert_eq!(
        r.errors,
        vec![AttemptError {
            attempt: 1,
            error: "bank API down".into(),
            at: t.now()
        }],
        "retry_at: the attempt's error"
    );
    t.reserve_none(&["q"], "retry_at: right after the failure")
        .await;
    t.advance(secs(59));
    t.reserve_none(&["q"], "retry_at: one second early").await;
    t.advance(secs(1));
    let l2 = t.reserve_one("q", "retry_at: when due").await;
    assert_eq!(
        (l2.id(), l2.attempt),
        (id, 2),
        "retry_at: leased as attempt 2"
    );
}

/// A retry whose time is not after now makes the job ready at once.
pub async fn retry_at_in_past_is_ready<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let id = t.push_one(t.job("n", "q")).await;
    let l = t.reserve_one("q", "retry in the past").await;
    let at = t.now() - secs(5);
    t.finish_ok(l.lease, retry("flaky", at), "retry in the past")
        .await;
    assert_eq!(
        t.get(id).await.state,
        JobState::Ready,
        "retry in the past: ready at once"
    );
    let l2 = t.reserve_one("q", "retry in the past: re-lease").await;
    assert_eq!(l2.attempt, 2, "retry in the past: attempt 2");
}

/// Running out of attempts ends `failed` with every attempt's error, in order.
pub async fn max_attempts_keeps_every_error<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let mut j = t.job("n", "q");
    j.max_attempts = 3;
    let id = t.push_one(j).await;
    let mut expected = Vec::new();
    for attempt in 1..=3u32 {
        let l = t.reserve_one("q", "max attempts").await;
        assert_eq!(l.attempt, attempt, "max attempts: attempt number");
        assert_eq!(l.max_attempts, 3);
        t.advance(secs(1));
        let error = format!("boom {attempt}");
        expected.push(AttemptError {
            attempt,
            error: error.clone(),
            at: t.now(),
        });
        let outcome = if attempt < 3 {
            retry(&error, t.now())
        } else {
            failed(&error)
        };
        t.finish_ok(l.lease, outcome, "max attempts").await;
    }
    let r = t.get(id).await;
    assert_eq!(r.state, JobState::Failed, "max attempts: failed");
    assert_eq!(r.attempts, 3, "max attempts: attempts");
    assert_eq!(
        r.errors, expected,
        "max attempts: every attempt's error, oldest first"
    );
    assert_eq!(r.last_error(), Some("boom 3"));
    assert_eq!(r.finished_at, Some(t.now()), "max attempts: finished_at");
    t.reserve_none(&["q"], "max attempts: a failed job is not leased")
        .await;
}

/// A `Failed` outcome before the last attempt ends the job at once.
pub async fn permanent_failure_skips_attempts<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let mut j = t.job("n", "q");
    j.max_attempts = 5;
    let id = t.push_one(j).await;
    let l = t.reserve_one("q", "permanent failure").await;
    t.finish_ok(l.lease, failed("malformed CSV"), "permanent failure")
        .await;
    let r = t.get(id).await;
    assert_eq!(
        (r.state, r.attempts),
        (JobState::Failed, 1),
        "permanent failure: failed after one attempt"
    );
    assert_eq!(r.last_error(), Some("malformed CSV"));
    assert_eq!(r.errors.len(), 1);
    t.reserve_none(&["q"], "permanent failure: not retried")
        .await;
    assert_eq!(t.counts_of("q").await.failed, 1);
}

/// Progress is stored under the current lease, visible through `get`, handed to the next
/// attempt as `LeasedJob::progress`, and refused once the lease is gone.
pub async fn progress_is_stored_and_carried<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let id = t.push_one(t.job("n", "q")).await;
    let l = t.reserve_one("q", "progress").await;
    for rows in [1200, 2400] {
        let stored =
            t.b.progress(l.lease, json!({ "rows": rows }))
                .await
                .unwrap_or_else(|e| panic!("progress: backend error: {e:?}"));
        assert!(stored, "progress: stored under the current lease");
        assert_eq!(
            t.get(id).await.progress,
            Some(json!({ "rows": rows })),
            "progress: visible through get"
        );
    }
    t.finish_ok(l.lease, retry("interrupted", t.now()), "progress")
        .await;
    let l2 = t.reserve_one("q", "progress: next attempt").await;
    assert_eq!(l2.attempt, 2);
    assert_eq!(
        l2.progress,
        Some(json!({ "rows": 2400 })),
        "progress: the next attempt gets the last checkpoint"
    );
    t.finish_ok(l2.lease, done(), "progress").await;
    let refused =
        t.b.progress(l2.lease, json!({ "rows": 9999 }))
            .await
            .unwrap_or_else(|e| panic!("progress: backend error: {e:?}"));
    assert!(!refused, "progress: refused after the job completed");
    assert_eq!(
        t.get(id).await.progress,
        Some(json!({ "rows": 2400 })),
        "progress: kept after completion"
    );
}
