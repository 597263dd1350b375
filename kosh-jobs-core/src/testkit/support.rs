//! What every case needs: an isolated backend on a manual clock, and short, checked calls.
//!
//! The helpers panic with the operation's name when the backend returns an error, so a
//! failing case says which call failed.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::Backend;
use crate::clock::{Clock, ManualClock, Timestamp};
use crate::record::{
    Enqueued, Finish, FinishResult, JobId, JobRecord, Lease, LeasedJob, NewJob, Outcome,
    QueueCounts, ReserveRequest,
};

use super::BackendFactory;

/// How long a case waits in real time for something that should happen at once, before
/// failing. Only a guard: no case relies on real time passing.
pub(crate) const GUARD: Duration = Duration::from_secs(20);

/// The lease length used by the cases unless they say otherwise.
pub(crate) const LEASE: Duration = Duration::from_secs(30);

/// Seconds, for brevity.
pub(crate) fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A backend under test and the hand on its clock.
pub(crate) struct Env {
    pub(crate) b: Arc<dyn Backend>,
    pub(crate) time: ManualClock,
}

/// A fresh backend from `factory`, on a fresh manual clock; checks it reads that clock.
pub(crate) async fn env<F: BackendFactory + ?Sized>(factory: &F) -> Env {
    let (clock, time) = Clock::manual();
    let b = factory.make(clock).await;
    let before = b.clock().now();
    assert_eq!(
        before,
        time.now(),
        "factory: the backend must read the manual clock it was given"
    );
    time.advance(Duration::from_millis(1));
    assert_eq!(
        b.clock().now(),
        before + Duration::from_millis(1),
        "factory: the backend's clock must move when the manual clock is advanced"
    );
    Env { b, time }
}

/// Waits for `fut`, failing the case with `what` if it takes longer than [`GUARD`].
pub(crate) async fn guard<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(GUARD, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: did not happen within {GUARD:?} of real time"),
    }
}

/// Awaits a spawned task, re-raising its panic with `what`.
pub(crate) async fn join<T>(what: &str, h: tokio::task::JoinHandle<T>) -> T {
    match guard(what, h).await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("{what}: task failed: {e}"),
    }
}

/// A reserve request for `queues` with the default lease.
pub(crate) fn req(queues: &[&str], max: usize) -> ReserveRequest {
    ReserveRequest {
        queues: queues.iter().map(|q| (*q).to_owned()).collect(),
        worker: "conformance".to_owned(),
        max,
        lease: LEASE,
    }
}

/// An outcome that completes without a result.
pub(crate) fn done() -> Outcome {
    Outcome::Completed { result: None }
}

/// An outcome that retries at `retry_at` after `error`.
pub(crate) fn retry(error: &str, retry_at: Timestamp) -> Outcome {
    Outcome::retry(error, retry_at)
}

impl Env {
    /// The clock's current time.
    pub(crate) fn now(&self) -> Timestamp {
        self.time.now()
    }

    /// Moves the clock forward.
    pub(crate) fn advance(&self, d: Duration) {
        self.time.advance(d);
    }

    /// A job due now, with an empty object as payload.
    pub(crate) fn job(&self, name: &str, queue: &str) -> NewJob {
        NewJob::new(name, queue, "{}", self.now())
    }

    /// Pushes, returning the raw results.
    pub(crate) async fn push_raw(&self, jobs: Vec<NewJob>) -> Vec<Enqueued> {
        let n = jobs.len();
        let out = self
            .b
            .push(jobs)
            .await
            .unwrap_or_else(|e| panic!("push: backend error: {e:?}"));
        assert_eq!(out.len(), n, "push: one result per job");
        out
    }

    /// Pushes jobs that must all be new; returns their ids.
    pub(crate) async fn push(&self, jobs: Vec<NewJob>) -> Vec<JobId> {
        self.push_raw(jobs)
            .await
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                assert!(
                    !e.existing,
                    "push: job {i} of the batch is new, not existing"
                );
                e.id
            })
            .collect()
    }

    /// Pushes one new job; returns its id.
    pub(crate) async fn push_one(&self, job: NewJob) -> JobId {
        self.push(vec![job]).await[0]
    }

    /// Reserves with `req`.
    /// Reserves, and marks the attempts started as a worker does once their handlers run (a
    /// heartbeat at once, which leaves the leases' ends where they are).
    pub(crate) async fn reserve_req(&self, req: &ReserveRequest) -> Vec<LeasedJob> {
        let out = self.reserve_unstarted_req(req).await;
        let leases: Vec<Lease> = out.iter().map(|j| j.lease).collect();
        if !leases.is_empty() {
            let lost = self
                .b
                .heartbeat(&leases, req.lease)
                .await
                .unwrap_or_else(|e| panic!("heartbeat: backend error: {e:?}"));
            assert!(
                lost.is_empty(),
                "reserve: fresh leases reported lost: {lost:?}"
            );
        }
        out
    }

    /// Reserves, leaving the attempts unstarted (a worker that dies before its handlers run).
    pub(crate) async fn reserve_unstarted_req(&self, req: &ReserveRequest) -> Vec<LeasedJob> {
        let out = self
            .b
            .reserve(req)
            .await
            .unwrap_or_else(|e| panic!("reserve: backend error: {e:?}"));
        assert!(
            out.len() <= req.max,
            "reserve: returned {} jobs for max {}",
            out.len(),
            req.max
        );
        out
    }

    /// Reserves exactly one job from `queue` and leaves its attempt unstarted.
    pub(crate) async fn reserve_one_unstarted(&self, queue: &str, what: &str) -> LeasedJob {
        let mut got = self.reserve_unstarted_req(&req(&[queue], 1)).await;
        assert_eq!(
            got.len(),
            1,
            "{what}: expected one job leased from `{queue}`"
        );
        got.remove(0)
    }

    /// Reserves up to `max` jobs from `queues` with the default lease.
    pub(crate) async fn reserve(&self, queues: &[&str], max: usize) -> Vec<LeasedJob> {
        self.reserve_req(&req(queues, max)).await
    }

    /// Reserves exactly one job from `queue`, failing with `what` if there is none.
    pub(crate) async fn reserve_one(&self, queue: &str, what: &str) -> LeasedJob {
        let mut got = self.reserve(&[queue], 1).await;
        assert_eq!(
            got.len(),
            1,
            "{what}: expected one job leased from `{queue}`"
        );
        got.remove(0)
    }

    /// Asserts nothing can be leased from `queues`.
    pub(crate) async fn reserve_none(&self, queues: &[&str], what: &str) {
        let got = self.reserve(queues, 100).await;
        let ids: Vec<JobId> = got.iter().map(|j| j.id()).collect();
        assert!(
            ids.is_empty(),
            "{what}: expected no job leased, got {ids:?}"
        );
    }

    /// Finishes a batch.
    pub(crate) async fn finish(&self, items: Vec<Finish>) -> Vec<FinishResult> {
        let n = items.len();
        let out = self
            .b
            .finish(items)
            .await
            .unwrap_or_else(|e| panic!("finish: backend error: {e:?}"));
        assert_eq!(out.len(), n, "finish: one result per item");
        out
    }

    /// Finishes one attempt; returns what happened.
    pub(crate) async fn finish_one(&self, lease: Lease, outcome: Outcome) -> FinishResult {
        self.finish(vec![Finish { lease, outcome }]).await[0]
    }

    /// Finishes one attempt that must be applied.
    pub(crate) async fn finish_ok(&self, lease: Lease, outcome: Outcome, what: &str) {
        assert_eq!(
            self.finish_one(lease, outcome).await,
            FinishResult::Applied,
            "{what}: finish with the current lease must be applied"
        );
    }

    /// The record of a job that must exist.
    pub(crate) async fn get(&self, id: JobId) -> JobRecord {
        self.b
            .get(id)
            .await
            .unwrap_or_else(|e| panic!("get: backend error: {e:?}"))
            .unwrap_or_else(|| panic!("get: job {id} should exist"))
    }

    /// The counts of one queue (all zero if the queue is not listed).
    pub(crate) async fn counts_of(&self, queue: &str) -> QueueCounts {
        self.b
            .counts()
            .await
            .unwrap_or_else(|e| panic!("counts: backend error: {e:?}"))
            .into_iter()
            .find(|c| c.queue == queue)
            .unwrap_or_else(|| QueueCounts::empty(queue))
    }

    /// Recovers expired leases; returns how many.
    pub(crate) async fn recover(&self) -> u64 {
        self.b
            .recover_expired()
            .await
            .unwrap_or_else(|e| panic!("recover_expired: backend error: {e:?}"))
    }

    /// Leases one job of `queue` and lets its lease expire and be recovered.
    pub(crate) async fn lease_and_expire(&self, queue: &str, what: &str) -> LeasedJob {
        let leased = self.reserve_one(queue, what).await;
        self.advance(LEASE + secs(1));
        assert_eq!(
            self.recover().await,
            1,
            "{what}: one expired lease recovered"
        );
        leased
    }

    /// Lets other tasks (and a backend's I/O) run for a moment, without moving any clock.
    /// Moves the clock forward by `d`, then waits until every task the move woke has run and
    /// gone back to sleep on the clock (a worker's timers: its fetch loop, lease renewals,
    /// registration): as many sleeps as before, none at or before now. For cases whose tasks
    /// all sleep again after waking.
    pub(crate) async fn advance_and_catch_up(&self, d: Duration, what: &str) {
        let sleeping = self.time.sleepers().len();
        self.advance(d);
        guard(what, async {
            loop {
                let now = self.now();
                let s = self.time.sleepers();
                if s.len() >= sleeping && s.iter().all(|t| *t > now) {
                    return;
                }
                self.settle().await;
            }
        })
        .await;
        self.settle().await;
    }

    pub(crate) async fn settle(&self) {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        // A round trip to the backend gives a remote store's wait time to register.
        let _ = self.b.get(JobId::new(0)).await;
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }
}
