//! Cases about unique keys, cancelling and retrying by hand.

use serde_json::json;

use crate::record::{
    CancelOutcome, Enqueued, FinishResult, JobId, JobState, NewJob, Outcome, RetryOutcome,
};

use super::support::{done, env, secs, Env};
use super::BackendFactory;

fn keyed(t: &Env, key: &str) -> NewJob {
    let mut j = t.job("n", "q");
    j.unique_key = Some(key.to_owned());
    j
}

async fn cancel(t: &Env, id: JobId) -> CancelOutcome {
    t.b.cancel(id)
        .await
        .unwrap_or_else(|e| panic!("cancel: backend error: {e:?}"))
}

async fn retry(t: &Env, id: JobId) -> RetryOutcome {
    t.b.retry(id)
        .await
        .unwrap_or_else(|e| panic!("retry: backend error: {e:?}"))
}

/// A unique key held by a live job (scheduled, ready or running) returns that job, also
/// within one batch; once the job is final, the key is free again.
pub async fn unique_key_returns_live_job<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let first = t.push_one(keyed(&t, "upload-42")).await;
    let again = t.push_raw(vec![keyed(&t, "upload-42")]).await;
    assert_eq!(
        again,
        vec![Enqueued {
            id: first,
            existing: true
        }],
        "unique key: a ready job's key returns it"
    );

    let mut delayed = keyed(&t, "later");
    delayed.run_at = t.now() + secs(3600);
    let scheduled = t.push_one(delayed).await;
    let again = t.push_raw(vec![keyed(&t, "later")]).await;
    assert_eq!(
        again[0],
        Enqueued {
            id: scheduled,
            existing: true
        },
        "unique key: a scheduled job's key returns it"
    );

    let batch = t
        .push_raw(vec![
            keyed(&t, "batch"),
            keyed(&t, "batch"),
            t.job("n", "q"),
            keyed(&t, "batch"),
        ])
        .await;
    assert!(
        !batch[0].existing,
        "unique key in a batch: first one is new"
    );
    assert_eq!(
        (batch[1], batch[3]),
        (
            Enqueued {
                id: batch[0].id,
                existing: true
            },
            Enqueued {
                id: batch[0].id,
                existing: true
            }
        ),
        "unique key in a batch: later duplicates return the first"
    );
    assert!(
        !batch[2].existing,
        "unique key in a batch: unkeyed job is new"
    );
    assert_eq!(
        t.counts_of("q").await.live(),
        4,
        "unique key: duplicates were not stored (upload-42, later, batch, unkeyed)"
    );

    // Running is live too.
    let leased = t.reserve(&["q"], 10).await;
    let l = leased
        .iter()
        .find(|l| l.id() == first)
        .unwrap_or_else(|| panic!("unique key: job {first} was not leased"));
    let again = t.push_raw(vec![keyed(&t, "upload-42")]).await;
    assert_eq!(
        again[0],
        Enqueued {
            id: first,
            existing: true
        },
        "unique key: a running job's key returns it"
    );
    t.finish_ok(l.lease, done(), "unique key").await;
    let after = t.push_raw(vec![keyed(&t, "upload-42")]).await;
    assert!(
        !after[0].existing && after[0].id != first,
        "unique key: freed once the job completed, got {after:?}"
    );

    assert_eq!(cancel(&t, scheduled).await, CancelOutcome::Cancelled);
    let after = t.push_raw(vec![keyed(&t, "later")]).await;
    assert!(
        !after[0].existing && after[0].id != scheduled,
        "unique key: freed once the job was cancelled, got {after:?}"
    );
}

/// Cancel works on scheduled, ready and running jobs (voiding the lease), reports final
/// jobs as `AlreadyFinal` and unknown ids as `NotFound`.
pub async fn cancel_by_state<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let mut delayed = t.job("scheduled", "q");
    delayed.run_at = t.now() + secs(60);
    let scheduled = t.push_one(delayed).await;
    let running = t.push_one(t.job("running", "q")).await;
    let l = t.reserve_one("q", "cancel").await;
    assert_eq!(l.id(), running);
    let ready = t.push_one(t.job("ready", "q")).await;
    let completed = t.push_one(t.job("completed", "done")).await;
    let lc = t.reserve_one("done", "cancel").await;
    t.finish_ok(lc.lease, done(), "cancel").await;

    t.advance(secs(1));
    for (what, id) in [
        ("scheduled", scheduled),
        ("ready", ready),
        ("running", running),
    ] {
        assert_eq!(
            cancel(&t, id).await,
            CancelOutcome::Cancelled,
            "cancel of a {what} job"
        );
        let r = t.get(id).await;
        assert_eq!(
            r.state,
            JobState::Cancelled,
            "cancel of a {what} job: state"
        );
        assert_eq!(
            r.finished_at,
            Some(t.now()),
            "cancel of a {what} job: finished_at"
        );
        assert_eq!(r.lease_expires_at, None, "cancel of a {what} job: no lease");
    }
    assert_eq!(
        t.finish_one(l.lease, done()).await,
        FinishResult::LeaseLost,
        "cancel of a running job: its worker's result is refused"
    );
    let lost =
        t.b.heartbeat(&[l.lease], secs(30))
            .await
            .unwrap_or_else(|e| panic!("heartbeat: backend error: {e:?}"));
    assert_eq!(
        lost,
        vec![l.lease],
        "cancel of a running job: heartbeat lost"
    );
    let stored =
        t.b.progress(l.lease, json!(1))
            .await
            .unwrap_or_else(|e| panic!("progress: backend error: {e:?}"));
    assert!(!stored, "cancel of a running job: progress refused");
    assert_eq!(
        t.get(running).await.state,
        JobState::Cancelled,
        "cancel of a running job: still cancelled after its worker reported"
    );

    assert_eq!(
        cancel(&t, running).await,
        CancelOutcome::AlreadyFinal(JobState::Cancelled),
        "cancel of a cancelled job"
    );
    assert_eq!(
        cancel(&t, completed).await,
        CancelOutcome::AlreadyFinal(JobState::Completed),
        "cancel of a completed job"
    );
    assert_eq!(
        t.get(completed).await.state,
        JobState::Completed,
        "cancel of a completed job: unchanged"
    );
    assert_eq!(
        cancel(&t, JobId::new(completed.get() + 1000)).await,
        CancelOutcome::NotFound,
        "cancel of an unknown id"
    );
    t.advance(secs(120));
    t.reserve_none(&["q"], "cancelled jobs are never leased, even once due")
        .await;
    assert_eq!(t.counts_of("q").await.cancelled, 3);
}

/// A failed job retried by hand is ready with its attempts reset and its errors kept;
/// only failed and cancelled jobs can be retried.
pub async fn retry_failed_job<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let mut j = t.job("n", "q");
    j.max_attempts = 2;
    let id = t.push_one(j).await;
    let l = t.reserve_one("q", "retry by hand").await;
    t.finish_ok(l.lease, Outcome::retry("e1", t.now()), "retry by hand")
        .await;
    let l = t.reserve_one("q", "retry by hand").await;
    t.finish_ok(l.lease, Outcome::failed("e2"), "retry by hand")
        .await;
    assert_eq!(t.get(id).await.state, JobState::Failed);

    assert_eq!(
        retry(&t, id).await,
        RetryOutcome::Retried,
        "retry of a failed job"
    );
    let r = t.get(id).await;
    assert_eq!(r.state, JobState::Ready, "retry of a failed job: ready");
    assert_eq!(r.attempts, 0, "retry of a failed job: attempts reset");
    assert_eq!(
        r.errors
            .iter()
            .map(|e| e.error.as_str())
            .collect::<Vec<_>>(),
        ["e1", "e2"],
        "retry of a failed job: error history kept"
    );
    assert_eq!(r.finished_at, None, "retry of a failed job: not finished");
    assert_eq!(
        retry(&t, id).await,
        RetryOutcome::NotRetryable(JobState::Ready),
        "retry of a ready job"
    );
    let l = t.reserve_one("q", "retry by hand: re-run").await;
    assert_eq!(
        (l.id(), l.attempt),
        (id, 1),
        "retry of a failed job: attempt 1 again"
    );
    assert_eq!(
        retry(&t, id).await,
        RetryOutcome::NotRetryable(JobState::Running),
        "retry of a running job"
    );
    t.finish_ok(l.lease, done(), "retry by hand").await;
    assert_eq!(
        retry(&t, id).await,
        RetryOutcome::NotRetryable(JobState::Completed),
        "retry of a completed job"
    );
    assert_eq!(
        retry(&t, JobId::new(id.get() + 1000)).await,
        RetryOutcome::NotFound,
        "retry of an unknown id"
    );

    let cancelled = t.push_one(t.job("n", "q")).await;
    assert_eq!(cancel(&t, cancelled).await, CancelOutcome::Cancelled);
    assert_eq!(
        retry(&t, cancelled).await,
        RetryOutcome::Retried,
        "retry of a cancelled job"
    );
    let l = t.reserve_one("q", "retry of a cancelled job").await;
    assert_eq!(l.id(), cancelled, "retry of a cancelled job: leased again");
}

/// Retrying a job whose unique key another live job has taken since is refused with that
/// job's id; once the other job is done, the retry goes through and holds the key.
pub async fn retry_unique_conflict<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let a = t.push_one(keyed(&t, "daily-report")).await;
    let l = t.reserve_one("q", "unique conflict").await;
    t.finish_ok(l.lease, Outcome::failed("x"), "unique conflict")
        .await;
    let b = t.push_one(keyed(&t, "daily-report")).await;
    assert_ne!(a, b, "unique conflict: a failed job's key is free");
    assert_eq!(
        retry(&t, a).await,
        RetryOutcome::UniqueConflict(b),
        "unique conflict: retry refused while job {b} holds the key"
    );
    assert_eq!(
        t.get(a).await.state,
        JobState::Failed,
        "unique conflict: the refused job stays failed"
    );
    let l = t.reserve_one("q", "unique conflict").await;
    assert_eq!(l.id(), b);
    t.finish_ok(l.lease, done(), "unique conflict").await;
    assert_eq!(
        retry(&t, a).await,
        RetryOutcome::Retried,
        "unique conflict: retry once the key is free"
    );
    let again = t.push_raw(vec![keyed(&t, "daily-report")]).await;
    assert_eq!(
        again[0],
        Enqueued {
            id: a,
            existing: true
        },
        "unique conflict: the retried job holds the key again"
    );
}
