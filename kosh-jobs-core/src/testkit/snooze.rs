//! Cases about a handler's "not now, try again at T" ([`Outcome::Snooze`]): the job waits
//! again without counting the attempt, keeping its errors and progress.

use serde_json::json;

use crate::admin::AttemptOutcome;
use crate::clock::Timestamp;
use crate::record::{Finish, FinishResult, JobState, Outcome};

use super::support::{done, env, retry, secs};
use super::BackendFactory;

fn snooze(until: Timestamp) -> Outcome {
    Outcome::Snooze { until }
}

/// A snooze leaves the attempt count unchanged and the job runs again once its time has come,
/// not before; a job with `max_attempts = 1` snoozed again and again never fails for it. No
/// error is stored, progress is kept, the counts follow the job, and the history records each
/// snoozed attempt.
pub async fn snooze_does_not_count_attempt_and_runs_after_delay<F: BackendFactory + ?Sized>(
    factory: &F,
) {
    let t = env(factory).await;
    let mut j = t.job("n", "q");
    j.max_attempts = 1;
    let id = t.push_one(j).await;
    let mut last_token = None;
    for round in 1..=4 {
        let what = format!("snooze round {round}");
        let l = t.reserve_one("q", &what).await;
        assert_eq!(l.attempt, 1, "{what}: still the first attempt");
        assert_ne!(Some(l.lease.token), last_token, "{what}: new token");
        last_token = Some(l.lease.token);
        if round == 1 {
            assert!(t
                .b
                .progress(l.lease, json!({"row": 7}))
                .await
                .unwrap_or_else(|e| panic!("progress: backend error: {e:?}")));
        } else {
            assert_eq!(l.progress, Some(json!({"row": 7})), "{what}: progress kept");
        }
        let until = t.now() + secs(60);
        t.finish_ok(l.lease, snooze(until), &what).await;
        let r = t.get(id).await;
        assert_eq!(r.state, JobState::Scheduled, "{what}: waits again");
        assert_eq!(r.attempts, 0, "{what}: the attempt is not counted");
        assert_eq!(r.run_at, until, "{what}: runs at the snooze's end");
        assert!(r.errors.is_empty(), "{what}: no error stored");
        assert_eq!(r.lease_expires_at, None, "{what}: no lease");
        assert_eq!(r.finished_at, None, "{what}: not finished");
        assert_eq!(r.progress, Some(json!({"row": 7})), "{what}: progress kept");
        let c = t.counts_of("q").await;
        assert_eq!(
            (c.scheduled, c.ready, c.running, c.failed, c.completed),
            (1, 0, 0, 0, 0),
            "{what}: counts"
        );
        assert_eq!(
            t.finish_one(l.lease, done()).await,
            FinishResult::LeaseLost,
            "{what}: the snoozed lease is void"
        );
        t.reserve_none(&["q"], &format!("{what}: before its time"))
            .await;
        t.advance(secs(59));
        t.reserve_none(&["q"], &format!("{what}: a second before its time"))
            .await;
        t.advance(secs(1));
    }
    let l = t.reserve_one("q", "snooze: final run").await;
    assert_eq!(l.attempt, 1, "snooze: final run is the first attempt");
    t.finish_ok(l.lease, done(), "snooze: final run").await;
    let r = t.get(id).await;
    assert_eq!((r.state, r.attempts), (JobState::Completed, 1));
    assert!(r.errors.is_empty(), "snooze: no error at the end");
    let snoozed: Vec<u32> = r
        .history
        .iter()
        .filter(|a| a.outcome == Some(AttemptOutcome::Snoozed))
        .map(|a| a.attempt)
        .collect();
    assert_eq!(
        snoozed,
        vec![1; 4],
        "snooze: the history records each snoozed attempt as attempt 1"
    );
    assert!(
        r.history
            .iter()
            .filter(|a| a.outcome == Some(AttemptOutcome::Snoozed))
            .all(|a| a.error.is_none() && a.ended_at.is_some()),
        "snooze: snoozed attempts ended, without an error"
    );
    let c = t.counts_of("q").await;
    assert_eq!(
        (c.scheduled, c.ready, c.running, c.completed),
        (0, 0, 0, 1),
        "snooze: counts at the end"
    );
}

/// A snooze that ends now (or earlier) makes the job ready at once; in a batch with other
/// outcomes each item is applied as its own.
pub async fn snooze_until_now_is_ready<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let a = t.push_one(t.job("a", "q")).await;
    let b = t.push_one(t.job("b", "q")).await;
    let leased = t.reserve(&["q"], 2).await;
    assert_eq!(leased.len(), 2, "snooze now: both leased");
    let lease_of = |id| {
        leased
            .iter()
            .find(|l| l.id() == id)
            .unwrap_or_else(|| panic!("snooze now: job {id} leased"))
            .lease
    };
    let results = t
        .finish(vec![
            Finish {
                lease: lease_of(a),
                outcome: snooze(t.now()),
            },
            Finish {
                lease: lease_of(b),
                outcome: done(),
            },
        ])
        .await;
    assert_eq!(
        results,
        vec![FinishResult::Applied; 2],
        "snooze now: applied"
    );
    let r = t.get(a).await;
    assert_eq!(
        (r.state, r.attempts),
        (JobState::Ready, 0),
        "snooze now: ready at once, attempt not counted"
    );
    assert_eq!(t.get(b).await.state, JobState::Completed);
    let c = t.counts_of("q").await;
    assert_eq!(
        (c.scheduled, c.ready, c.running, c.completed),
        (0, 1, 0, 1),
        "snooze now: counts"
    );
    let l = t.reserve_one("q", "snooze now: leased again").await;
    assert_eq!((l.id(), l.attempt), (a, 1), "snooze now: the same attempt");
}

/// Snoozing a later attempt takes back that attempt only: the earlier attempt's error stays,
/// and the next lease is the same attempt number again.
pub async fn snooze_on_a_later_attempt_keeps_earlier_ones<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let id = t.push_one(t.job("n", "q")).await;
    let l1 = t.reserve_one("q", "snooze later: attempt 1").await;
    t.finish_ok(l1.lease, retry("flaky", t.now()), "snooze later: retry")
        .await;
    let l2 = t.reserve_one("q", "snooze later: attempt 2").await;
    assert_eq!(l2.attempt, 2, "snooze later: second attempt");
    t.finish_ok(l2.lease, snooze(t.now() + secs(5)), "snooze later")
        .await;
    let r = t.get(id).await;
    assert_eq!(
        (r.state, r.attempts, r.errors.len()),
        (JobState::Scheduled, 1, 1),
        "snooze later: attempt 2 not counted, the first error kept"
    );
    t.advance(secs(5));
    let l3 = t.reserve_one("q", "snooze later: attempt 2 again").await;
    assert_eq!(l3.attempt, 2, "snooze later: the second attempt again");
    t.finish_ok(l3.lease, done(), "snooze later: done").await;
    let r = t.get(id).await;
    assert_eq!((r.state, r.attempts), (JobState::Completed, 2));
    assert_eq!(r.errors.len(), 1, "snooze later: one error in all");
}

/// A snooze with a lease that is no longer current (recovered and leased again) is refused
/// as `LeaseLost` and changes nothing.
pub async fn stale_snooze_is_refused<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let id = t.push_one(t.job("n", "q")).await;
    let old = t.lease_and_expire("q", "stale snooze").await;
    let new = t.reserve_one("q", "stale snooze: leased again").await;
    assert_eq!(new.attempt, 2, "stale snooze: second attempt");
    assert_eq!(
        t.finish_one(old.lease, snooze(t.now() + secs(60))).await,
        FinishResult::LeaseLost,
        "stale snooze: refused"
    );
    let r = t.get(id).await;
    assert_eq!(
        (r.state, r.attempts),
        (JobState::Running, 2),
        "stale snooze: nothing changed"
    );
    assert!(
        r.lease_expires_at.is_some_and(|at| at > t.now()),
        "stale snooze: the new lease stands"
    );
    let c = t.counts_of("q").await;
    assert_eq!(
        (c.scheduled, c.ready, c.running),
        (0, 0, 1),
        "stale snooze: counts"
    );
    t.finish_ok(new.lease, done(), "stale snooze: the current lease")
        .await;
}
