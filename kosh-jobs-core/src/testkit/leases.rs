//! Cases about leases: expiry and recovery, stale tokens, heartbeats, release.

use std::sync::Arc;

use serde_json::json;

use crate::record::{AttemptError, FinishResult, JobId, JobState, Lease};

use super::support::{done, env, join, retry, secs, LEASE};
use super::BackendFactory;

/// An expired lease is recovered: the job is ready again with the attempt counted and
/// "lease expired" recorded; it is then leased as attempt 2 with a new token.
pub async fn lease_expiry_requeues_and_counts_attempt<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let id = t.push_one(t.job("n", "q")).await;
    let first = t.reserve_one("q", "lease expiry").await;
    t.advance(LEASE - secs(1));
    assert_eq!(
        t.recover().await,
        0,
        "lease expiry: nothing recovered before the lease ends"
    );
    assert_eq!(t.get(id).await.state, JobState::Running);
    t.advance(secs(2));
    assert_eq!(
        t.recover().await,
        1,
        "lease expiry: the expired lease is recovered"
    );
    let now = t.now();
    let r = t.get(id).await;
    assert_eq!(r.state, JobState::Ready, "lease expiry: job ready again");
    assert_eq!(r.attempts, 1, "lease expiry: the attempt stays counted");
    assert_eq!(r.lease_expires_at, None, "lease expiry: no lease");
    assert_eq!(
        r.errors,
        vec![AttemptError {
            attempt: 1,
            error: "lease expired".into(),
            at: now
        }],
        "lease expiry: the error of attempt 1"
    );
    assert_eq!(t.recover().await, 0, "lease expiry: recovered only once");

    let second = t.reserve_one("q", "lease expiry: re-lease").await;
    assert_eq!(second.id(), id);
    assert_eq!(second.attempt, 2, "lease expiry: re-leased as attempt 2");
    assert_ne!(
        second.lease.token, first.lease.token,
        "lease expiry: new token"
    );
    assert_eq!(
        t.finish_one(first.lease, done()).await,
        FinishResult::LeaseLost,
        "lease expiry: the first lease can no longer finish the job"
    );
    t.finish_ok(second.lease, done(), "lease expiry").await;
    let r = t.get(id).await;
    assert_eq!(
        (r.state, r.attempts),
        (JobState::Completed, 2),
        "lease expiry: completed by attempt 2"
    );
}

/// A job whose lease expires on its last attempt ends `failed`, with "lease expired" for
/// each attempt.
pub async fn lease_expiry_past_max_attempts_fails<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let mut j = t.job("n", "q");
    j.max_attempts = 2;
    let id = t.push_one(j).await;
    t.lease_and_expire("q", "expiry 1 of 2").await;
    let at1 = t.now();
    assert_eq!(
        t.get(id).await.state,
        JobState::Ready,
        "after expiry 1 of 2"
    );
    let l = t.lease_and_expire("q", "expiry 2 of 2").await;
    assert_eq!(l.attempt, 2);
    let at2 = t.now();
    let r = t.get(id).await;
    assert_eq!(
        r.state,
        JobState::Failed,
        "lease expiry on the last attempt: failed"
    );
    assert_eq!(r.attempts, 2, "lease expiry on the last attempt: attempts");
    assert_eq!(
        r.finished_at,
        Some(at2),
        "lease expiry on the last attempt: finished_at"
    );
    assert_eq!(
        r.errors,
        vec![
            AttemptError {
                attempt: 1,
                error: "lease expired".into(),
                at: at1
            },
            AttemptError {
                attempt: 2,
                error: "lease expired".into(),
                at: at2
            },
        ],
        "lease expiry on the last attempt: both attempts' errors"
    );
    t.reserve_none(&["q"], "a failed job is not leased").await;
    assert_eq!(t.counts_of("q").await.failed, 1);
}

/// After a job was recovered and leased again, the old lease is refused by finish,
/// heartbeat, progress and release; so are forged tokens and unknown ids.
pub async fn stale_lease_is_refused<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let id = t.push_one(t.job("n", "q")).await;
    let old = t.lease_and_expire("q", "stale lease").await.lease;
    let current = t.reserve_one("q", "stale lease: re-lease").await.lease;
    let forged = Lease {
        id,
        token: current.token.wrapping_add(1_000_003),
    };
    let unknown = Lease {
        id: JobId::new(id.get() + 1000),
        token: current.token,
    };
    for (what, lease) in [("old", old), ("forged", forged), ("unknown id", unknown)] {
        assert_ne!(lease, current);
        assert_eq!(
            t.finish_one(lease, done()).await,
            FinishResult::LeaseLost,
            "stale lease ({what}): finish refused"
        );
        let lost =
            t.b.heartbeat(&[lease], secs(60))
                .await
                .unwrap_or_else(|e| panic!("heartbeat: backend error: {e:?}"));
        assert_eq!(
            lost,
            vec![lease],
            "stale lease ({what}): heartbeat reports it lost"
        );
        let stored =
            t.b.progress(lease, json!({"stale": true}))
                .await
                .unwrap_or_else(|e| panic!("progress: backend error: {e:?}"));
        assert!(!stored, "stale lease ({what}): progress refused");
        t.b.release(&[lease])
            .await
            .unwrap_or_else(|e| panic!("release: backend error: {e:?}"));
    }
    let r = t.get(id).await;
    assert_eq!(
        r.state,
        JobState::Running,
        "stale lease: job still running under the current lease"
    );
    assert_eq!(
        r.attempts, 2,
        "stale lease: release did not uncount attempt 2"
    );
    assert_eq!(r.progress, None, "stale lease: no progress stored");
    assert_eq!(
        r.lease_expires_at,
        Some(t.now() + LEASE),
        "stale lease: heartbeat did not extend"
    );
    t.finish_ok(current, done(), "stale lease: the current lease")
        .await;
}

/// A heartbeat extends a lease to now + extend: the job is not recovered past its original
/// end, but is after the extended one.
pub async fn heartbeat_extends_lease<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let id = t.push_one(t.job("n", "q")).await;
    let t0 = t.now();
    let l = t.reserve_one("q", "heartbeat").await;
    assert_eq!(l.lease_expires_at, t0 + LEASE);
    t.advance(secs(20));
    let lost =
        t.b.heartbeat(&[l.lease], secs(30))
            .await
            .unwrap_or_else(|e| panic!("heartbeat: backend error: {e:?}"));
    assert!(lost.is_empty(), "heartbeat: current lease reported lost");
    assert_eq!(
        t.get(id).await.lease_expires_at,
        Some(t0 + secs(50)),
        "heartbeat: lease ends at now + extend"
    );
    t.advance(secs(20)); // t0 + 40: past the original end (t0 + 30)
    assert_eq!(
        t.recover().await,
        0,
        "heartbeat: extended lease not recovered at its original end"
    );
    assert_eq!(t.get(id).await.state, JobState::Running);
    t.advance(secs(11)); // t0 + 51
    assert_eq!(
        t.recover().await,
        1,
        "heartbeat: recovered after the extended end"
    );
    assert_eq!(t.get(id).await.attempts, 1);
}

/// `release` puts a running job back to ready without counting the attempt; a job with one
/// attempt can be released many times and still runs.
pub async fn release_does_not_count_attempt<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let mut j = t.job("n", "q");
    j.max_attempts = 1;
    let id = t.push_one(j).await;
    let mut last_token = None;
    for round in 1..=3 {
        let l = t.reserve_one("q", "release").await;
        assert_eq!(
            l.attempt, 1,
            "release round {round}: still the first attempt"
        );
        assert_ne!(
            Some(l.lease.token),
            last_token,
            "release round {round}: new token"
        );
        last_token = Some(l.lease.token);
        t.b.release(&[l.lease])
            .await
            .unwrap_or_else(|e| panic!("release: backend error: {e:?}"));
        let r = t.get(id).await;
        assert_eq!(
            r.state,
            JobState::Ready,
            "release round {round}: ready again"
        );
        assert_eq!(r.attempts, 0, "release round {round}: attempt not counted");
        assert!(r.errors.is_empty(), "release round {round}: no error");
        assert_eq!(r.lease_expires_at, None, "release round {round}: no lease");
        assert_eq!(
            t.finish_one(l.lease, done()).await,
            FinishResult::LeaseLost,
            "release round {round}: the released lease is void"
        );
    }
    let l = t.reserve_one("q", "release: final run").await;
    t.finish_ok(l.lease, done(), "release: final run").await;
    assert_eq!(t.get(id).await.state, JobState::Completed);
}

/// Releasing a job on a later attempt takes back that attempt only: the next lease is the
/// same attempt again, with the earlier attempt's error and progress kept.
pub async fn release_on_a_later_attempt_keeps_earlier_ones<F: BackendFactory + ?Sized>(
    factory: &F,
) {
    let t = env(factory).await;
    let id = t.push_one(t.job("n", "q")).await;
    let l1 = t.reserve_one("q", "release later: attempt 1").await;
    assert!(t
        .b
        .progress(l1.lease, json!({"row": 4}))
        .await
        .unwrap_or_else(|e| panic!("progress: backend error: {e:?}")));
    t.finish_ok(l1.lease, retry("flaky", t.now()), "release later: retry")
        .await;
    let l2 = t.reserve_one("q", "release later: attempt 2").await;
    assert_eq!(l2.attempt, 2, "release later: second attempt");
    t.b.release(&[l2.lease])
        .await
        .unwrap_or_else(|e| panic!("release: backend error: {e:?}"));
    let r = t.get(id).await;
    assert_eq!(
        (r.state, r.attempts),
        (JobState::Ready, 1),
        "release later: the released attempt is not counted"
    );
    let l3 = t.reserve_one("q", "release later: attempt 2 again").await;
    assert_eq!(l3.attempt, 2, "release later: the second attempt again");
    assert_eq!(
        l3.progress,
        Some(json!({"row": 4})),
        "release later: progress kept"
    );
    t.finish_ok(l3.lease, done(), "release later: done").await;
    let r = t.get(id).await;
    assert_eq!((r.state, r.attempts), (JobState::Completed, 2));
    assert_eq!(
        r.errors.len(),
        1,
        "release later: the first attempt's error"
    );
}

/// Six tasks running `recover_expired` at once recover each of 300 expired leases once.
pub async fn concurrent_recovery_recovers_each_once<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    const N: usize = 300;
    let ids = t.push((0..N).map(|_| t.job("n", "q")).collect()).await;
    let mut leased = 0;
    while leased < N {
        let got = t.reserve(&["q"], 100).await.len();
        assert!(got > 0, "concurrent recovery: only {leased} of {N} leased");
        leased += got;
    }
    t.advance(LEASE + secs(1));
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let b = Arc::clone(&t.b);
        tasks.push(tokio::spawn(async move {
            b.recover_expired()
                .await
                .unwrap_or_else(|e| panic!("recover_expired: backend error: {e:?}"))
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += join("concurrent recovery", task).await;
    }
    assert_eq!(
        total, N as u64,
        "concurrent recovery: the counts returned add up to the expired leases"
    );
    for id in ids.iter().step_by(7) {
        let r = t.get(*id).await;
        assert_eq!(
            (r.state, r.attempts, r.errors.len()),
            (JobState::Ready, 1, 1),
            "concurrent recovery: job {id} recovered once"
        );
    }
    assert_eq!(t.counts_of("q").await.ready, N as u64);
}

/// Expiry alone does not void a lease: until the job is recovered, a late heartbeat renews
/// it (nothing is recovered afterwards) and a late finish is applied. The lease expires
/// exactly at `lease_expires_at`.
pub async fn expired_lease_is_current_until_recovered<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let id = t.push_one(t.job("n", "q")).await;
    let leased = t.reserve_one("q", "late lease").await;
    t.advance(LEASE + secs(5));
    let lost =
        t.b.heartbeat(&[leased.lease], LEASE)
            .await
            .unwrap_or_else(|e| panic!("heartbeat: backend error: {e:?}"));
    assert!(
        lost.is_empty(),
        "late lease: an expired but unrecovered lease is renewed, not lost"
    );
    assert_eq!(
        t.get(id).await.lease_expires_at,
        Some(t.now() + LEASE),
        "late lease: renewed from now"
    );
    assert_eq!(
        t.recover().await,
        0,
        "late lease: renewed, so not recovered"
    );
    t.advance(LEASE);
    assert_eq!(
        t.recover().await,
        1,
        "late lease: expired when the clock reads lease_expires_at"
    );
    let second = t.reserve_one("q", "late lease: re-lease").await;
    t.advance(LEASE + secs(1));
    t.finish_ok(
        second.lease,
        done(),
        "late lease: finish after expiry, before recovery",
    )
    .await;
    let r = t.get(id).await;
    assert_eq!(
        (r.state, r.attempts),
        (JobState::Completed, 2),
        "late lease: completed by the late finish"
    );
}

/// A lease that expires before its attempt was marked started (no heartbeat: the worker died
/// between the lease and the handler) gives the attempt back: the job is ready with no attempt
/// counted and nothing in its errors or history, even with one attempt allowed. A started
/// attempt that expires counts as before.
pub async fn unstarted_lease_expiry_gives_the_attempt_back<F: BackendFactory + ?Sized>(
    factory: &F,
) {
    let t = env(factory).await;
    let mut j = t.job("n", "q");
    j.max_attempts = 1;
    let id = t.push_one(j).await;
    let first = t.reserve_one_unstarted("q", "unstarted").await;
    assert_eq!(first.attempt, 1);
    t.advance(LEASE + secs(1));
    assert_eq!(
        t.recover().await,
        1,
        "unstarted: the expired lease is recovered"
    );
    let r = t.get(id).await;
    assert_eq!(
        (r.state, r.attempts),
        (JobState::Ready, 0),
        "unstarted: ready again, the attempt given back"
    );
    assert!(
        r.errors.is_empty(),
        "unstarted: no error recorded: {:?}",
        r.errors
    );
    assert!(
        r.history.is_empty(),
        "unstarted: no attempt in the history: {:?}",
        r.history
    );
    assert_eq!(
        t.counts_of("q").await.ready,
        1,
        "unstarted: counted as ready"
    );
    assert_eq!(
        t.finish_one(first.lease, done()).await,
        FinishResult::LeaseLost,
        "unstarted: the given-back lease can no longer finish the job"
    );

    // Leased again: attempt 1 again, and this time it starts, so its expiry counts.
    let second = t.lease_and_expire("q", "unstarted: started after").await;
    assert_eq!(second.attempt, 1, "unstarted: leased again as attempt 1");
    let r = t.get(id).await;
    assert_eq!(
        (r.state, r.attempts),
        (JobState::Failed, 1),
        "unstarted: a started attempt's expiry counts"
    );
    assert_eq!(r.errors.len(), 1, "unstarted: one error: {:?}", r.errors);
    assert_eq!(r.errors[0].attempt, 1);
    assert_eq!(r.errors[0].error, "lease expired");
}

/// A job is given its attempt back for at most `MAX_UNSTARTED_EXPIRIES` unstarted expiries;
/// the next one counts, so a job that kills its worker before it can tell the store still
/// ends failed.
pub async fn unstarted_expiries_are_given_back_a_bounded_number_of_times<
    F: BackendFactory + ?Sized,
>(
    factory: &F,
) {
    let t = env(factory).await;
    let mut j = t.job("n", "q");
    j.max_attempts = 1;
    let id = t.push_one(j).await;
    for n in 1..=crate::backend::MAX_UNSTARTED_EXPIRIES {
        let l = t.reserve_one_unstarted("q", "bounded").await;
        assert_eq!(
            l.attempt, 1,
            "bounded: unstarted expiry {n}: leased as attempt 1"
        );
        t.advance(LEASE + secs(1));
        assert_eq!(t.recover().await, 1);
        let r = t.get(id).await;
        assert_eq!(
            (r.state, r.attempts),
            (JobState::Ready, 0),
            "bounded: unstarted expiry {n} is given back"
        );
    }
    t.reserve_one_unstarted("q", "bounded: one more").await;
    t.advance(LEASE + secs(1));
    assert_eq!(t.recover().await, 1);
    let r = t.get(id).await;
    assert_eq!(
        (r.state, r.attempts),
        (JobState::Failed, 1),
        "bounded: past the bound, an unstarted expiry counts"
    );
    assert_eq!(r.last_error(), Some("lease expired"));
    assert_eq!(t.counts_of("q").await.failed, 1);
}
