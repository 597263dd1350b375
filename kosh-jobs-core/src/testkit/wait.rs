//! Cases about `wait_for_work`: what ends the wait, and that it waits otherwise.
//!
//! The case polls the wait itself, with `until` far in the future on the manual clock, so only
//! the event under test can end it; the event comes from another task. A real-time timeout is
//! there only to fail the case instead of hanging it.

use std::sync::Arc;
use std::task::Poll;

use futures_util::future::BoxFuture;

use crate::clock::Timestamp;
use crate::error::BackendError;
use crate::limits::{QueueLimits, RateLimit};
use crate::record::Finish;

use super::support::{done, env, guard, join, secs, Env, LEASE};
use super::BackendFactory;

/// A `wait_for_work` call in progress, polled by the case itself so that "still waiting" is
/// checked on the very future that must later end.
struct Waiter(BoxFuture<'static, Result<(), BackendError>>);

fn start_wait(t: &Env, queues: &[&str], until: Timestamp) -> Waiter {
    let b = Arc::clone(&t.b);
    let queues: Vec<String> = queues.iter().map(|q| (*q).to_owned()).collect();
    Waiter(Box::pin(
        async move { b.wait_for_work(&queues, until).await },
    ))
}

impl Waiter {
    /// Polls once: `true` if the wait has ended.
    async fn poll_once(&mut self, what: &str) -> bool {
        let fut = &mut self.0;
        match std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await {
            Poll::Ready(Ok(())) => true,
            Poll::Ready(Err(e)) => panic!("{what}: wait_for_work: backend error: {e:?}"),
            Poll::Pending => false,
        }
    }

    /// Checks, over a few polls with the backend given time to act, that the wait goes on.
    async fn still_waiting(&mut self, t: &Env, what: &str) {
        for _ in 0..3 {
            assert!(
                !self.poll_once(what).await,
                "{what}: wait_for_work returned although nothing happened"
            );
            t.settle().await;
        }
    }

    /// Waits for the wait to end (within the real-time guard).
    async fn ends(self, what: &str) {
        guard(what, self.0)
            .await
            .unwrap_or_else(|e| panic!("{what}: wait_for_work: backend error: {e:?}"));
    }
}

/// A push from another task ends a wait on its queue.
pub async fn wait_woken_by_push<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let mut w = start_wait(&t, &["mail"], t.now() + secs(3600));
    w.still_waiting(&t, "wait woken by push: before the push")
        .await;
    let b = Arc::clone(&t.b);
    let job = t.job("n", "mail");
    let pusher = tokio::spawn(async move {
        b.push(vec![job])
            .await
            .unwrap_or_else(|e| panic!("push: backend error: {e:?}"))
    });
    join("wait woken by push: the push", pusher).await;
    w.ends("wait woken by push: the wait ends after the push")
        .await;
}

/// With nothing to do, the wait ends when the clock reaches `until`, not before.
pub async fn wait_returns_at_until<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let mut w = start_wait(&t, &["idle"], t.now() + secs(10));
    w.still_waiting(&t, "wait until: at the start").await;
    t.advance(secs(5));
    w.still_waiting(&t, "wait until: half way").await;
    t.advance(secs(5));
    w.ends("wait until: the wait ends when the clock reaches `until`")
        .await;
}

/// A delayed job becoming due ends the wait, even though nothing was pushed meanwhile.
pub async fn wait_ends_when_scheduled_job_due<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let mut j = t.job("n", "later");
    j.run_at = t.now() + secs(30);
    t.push_one(j).await;
    let mut w = start_wait(&t, &["later"], t.now() + secs(3600));
    w.still_waiting(&t, "wait for a delayed job: before it is due")
        .await;
    t.advance(secs(29));
    w.still_waiting(&t, "wait for a delayed job: one second before it is due")
        .await;
    t.advance(secs(1));
    w.ends("wait for a delayed job: the wait ends once it is due")
        .await;
    let l = t.reserve_one("later", "wait for a delayed job").await;
    assert_eq!(l.attempt, 1);
}

/// Resuming a paused queue with a ready job ends a wait on it.
pub async fn wait_woken_by_resume<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    t.b.pause("p")
        .await
        .unwrap_or_else(|e| panic!("pause: backend error: {e:?}"));
    t.push_one(t.job("n", "p")).await;
    let mut w = start_wait(&t, &["p"], t.now() + secs(3600));
    w.still_waiting(&t, "wait on a paused queue").await;
    t.b.resume("p")
        .await
        .unwrap_or_else(|e| panic!("resume: backend error: {e:?}"));
    w.ends("wait on a paused queue: the wait ends on resume")
        .await;
}

/// A job recovered from an expired lease ends a wait on its queue.
pub async fn wait_woken_by_recovery<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    t.push_one(t.job("n", "q")).await;
    let l = t.reserve_one("q", "wait for a recovered job").await;
    let mut w = start_wait(&t, &["q"], t.now() + secs(3600));
    w.still_waiting(&t, "wait for a recovered job: while it runs")
        .await;
    t.advance(LEASE + secs(1));
    assert_eq!(t.recover().await, 1, "wait for a recovered job: recovered");
    w.ends("wait for a recovered job: the wait ends").await;
    let l2 = t.reserve_one("q", "wait for a recovered job").await;
    assert_eq!((l2.id(), l2.attempt), (l.id(), 2));
}

/// A job already ready when the wait starts ends it at once: a push just before the wait
/// is not lost.
pub async fn wait_returns_when_work_is_ready<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    t.push_one(t.job("n", "q")).await;
    let until = t.now() + secs(3600);
    guard(
        "wait with a ready job: returns at once",
        t.b.wait_for_work(&["other".into(), "q".into()], until),
    )
    .await
    .unwrap_or_else(|e| panic!("wait_for_work: backend error: {e:?}"));
}

/// A queue whose rate limit holds its ready jobs back is not work: the wait goes on, and ends
/// when the rate window has room again.
pub async fn wait_sleeps_until_the_rate_window_opens<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let limits = QueueLimits::default().with_rate(RateLimit::new(1, secs(60)));
    t.b.set_queue_limits("api", limits)
        .await
        .unwrap_or_else(|e| panic!("set_queue_limits: backend error: {e:?}"));
    t.push(vec![t.job("n", "api"), t.job("n", "api")]).await;
    let l = t
        .reserve_one("api", "wait on a rate limit: the first start")
        .await;
    // No lease outstanding, whose expiry would end the wait by itself.
    t.finish_ok(l.lease, done(), "wait on a rate limit").await;
    let mut w = start_wait(&t, &["api"], t.now() + secs(3600));
    w.still_waiting(&t, "wait on a rate limit: a job is ready but held back")
        .await;
    t.advance(secs(59));
    w.still_waiting(
        &t,
        "wait on a rate limit: one second before the window opens",
    )
    .await;
    t.advance(secs(1));
    w.ends("wait on a rate limit: the wait ends when the window opens")
        .await;
    t.reserve_one("api", "wait on a rate limit: the second start")
        .await;
}

/// A queue whose concurrency limit holds its ready jobs back is not work: the wait goes on
/// until a running job of the queue finishes, which ends it.
pub async fn wait_woken_by_a_freed_slot<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let limits = QueueLimits::default().with_concurrency(1);
    t.b.set_queue_limits("imports", limits)
        .await
        .unwrap_or_else(|e| panic!("set_queue_limits: backend error: {e:?}"));
    t.push(vec![t.job("n", "imports"), t.job("n", "imports")])
        .await;
    let l = t
        .reserve_one("imports", "wait on a concurrency limit: the first job")
        .await;
    let mut w = start_wait(&t, &["imports"], t.now() + secs(3600));
    w.still_waiting(
        &t,
        "wait on a concurrency limit: a job is ready but held back",
    )
    .await;
    let b = Arc::clone(&t.b);
    let finisher = tokio::spawn(async move {
        b.finish(vec![Finish {
            lease: l.lease,
            outcome: done(),
        }])
        .await
        .unwrap_or_else(|e| panic!("finish: backend error: {e:?}"))
    });
    join("wait on a concurrency limit: the finish", finisher).await;
    w.ends("wait on a concurrency limit: the wait ends when the running job finishes")
        .await;
    t.reserve_one("imports", "wait on a concurrency limit: the second job")
        .await;
}

/// A queue whose ready jobs are all in groups at their group concurrency limit is not work:
/// the wait goes on until a running job of such a group finishes, which ends it.
pub async fn wait_woken_by_a_freed_group_slot<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let limits = QueueLimits::default().with_group_concurrency(1);
    t.b.set_queue_limits("imports", limits)
        .await
        .unwrap_or_else(|e| panic!("set_queue_limits: backend error: {e:?}"));
    let mut jobs = vec![t.job("n", "imports"), t.job("n", "imports")];
    for j in &mut jobs {
        j.group = Some("user-1".into());
    }
    t.push(jobs).await;
    let l = t
        .reserve_one("imports", "wait on a group limit: the first job")
        .await;
    let mut w = start_wait(&t, &["imports"], t.now() + secs(3600));
    w.still_waiting(
        &t,
        "wait on a group limit: a job is ready but its group is full",
    )
    .await;
    let b = Arc::clone(&t.b);
    let finisher = tokio::spawn(async move {
        b.finish(vec![Finish {
            lease: l.lease,
            outcome: done(),
        }])
        .await
        .unwrap_or_else(|e| panic!("finish: backend error: {e:?}"))
    });
    join("wait on a group limit: the finish", finisher).await;
    w.ends("wait on a group limit: the wait ends when the group's job finishes")
        .await;
    t.reserve_one("imports", "wait on a group limit: the second job")
        .await;
}

/// A held queue is not work until the hold ends: the wait sleeps until then.
pub async fn wait_sleeps_until_a_hold_ends<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    t.push(vec![t.job("n", "api")]).await;
    t.b.hold_queue("api", t.now() + secs(60))
        .await
        .unwrap_or_else(|e| panic!("hold_queue: backend error: {e:?}"));
    let mut w = start_wait(&t, &["api"], t.now() + secs(3600));
    w.still_waiting(&t, "wait on a hold: a job is ready but held")
        .await;
    t.advance(secs(59));
    w.still_waiting(&t, "wait on a hold: one second before it ends")
        .await;
    t.advance(secs(1));
    w.ends("wait on a hold: the wait ends when the hold does")
        .await;
    t.reserve_one("api", "wait on a hold: the job").await;
}

/// A queue whose ready jobs are all in groups with a full rate window is not work until the
/// first of those windows opens: the wait sleeps until then.
pub async fn wait_sleeps_until_a_group_window_opens<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let limits = QueueLimits::default().with_group_rate(RateLimit::new(1, secs(60)));
    t.b.set_queue_limits("api", limits)
        .await
        .unwrap_or_else(|e| panic!("set_queue_limits: backend error: {e:?}"));
    let mut jobs = vec![t.job("n", "api"), t.job("n", "api")];
    for j in &mut jobs {
        j.group = Some("account-1".into());
    }
    t.push(jobs).await;
    let l = t
        .reserve_one("api", "wait on a group rate: the first start")
        .await;
    // No lease outstanding, whose expiry would end the wait by itself.
    t.finish_ok(l.lease, done(), "wait on a group rate").await;
    let mut w = start_wait(&t, &["api"], t.now() + secs(3600));
    w.still_waiting(
        &t,
        "wait on a group rate: a job is ready but its group's window is full",
    )
    .await;
    t.advance(secs(59));
    w.still_waiting(
        &t,
        "wait on a group rate: one second before the window opens",
    )
    .await;
    t.advance(secs(1));
    w.ends("wait on a group rate: the wait ends when the group's window opens")
        .await;
    t.reserve_one("api", "wait on a group rate: the second start")
        .await;
}

/// The job of [`paced_worker_recovers_an_abandoned_lease`]: does nothing.
#[derive(serde::Serialize, serde::Deserialize)]
struct Abandoned {}

impl crate::job::Job for Abandoned {
    type Output = ();
    const NAME: &'static str = "abandoned";
    const QUEUE: &'static str = "paced";
}

impl crate::job::Handler<()> for Abandoned {
    async fn run(self, _ctx: crate::context::JobContext<()>) -> Result<(), crate::JobError> {
        Ok(())
    }
}

/// A worker paced as its backend asks ([`crate::backend::Pacing`]), idle on a queue, runs a
/// job whose worker died within moments of its lease's expiry, whatever the pacing's longest
/// wait and recovery round: a backend that waits long must end the wait at the lease's
/// deadline (and recover the lease then), as one that recovers every lease period does.
/// The clock moves only to just past the deadline, so a ten-minute wait would fail the case.
pub async fn paced_worker_recovers_an_abandoned_lease<F: BackendFactory + ?Sized>(factory: &F) {
    use crate::job::Job as _;
    let what = "paced worker recovers an abandoned lease";
    let t = env(factory).await;
    let id = t.push_one(t.job(Abandoned::NAME, Abandoned::QUEUE)).await;
    // Its worker leases it and dies: no renewal, no outcome.
    let dead = t.reserve_one(Abandoned::QUEUE, what).await;
    assert_eq!(dead.id(), id, "{what}: the job leased");
    let worker = crate::worker::Worker::builder(crate::any::AnyBackend::from(Arc::clone(&t.b)))
        .register::<Abandoned>()
        .schedules(false)
        .build()
        .unwrap_or_else(|e| panic!("{what}: worker: {e}"))
        .spawn();
    // Whatever the worker does first (recover, reserve, wait), the lease is not expired yet.
    t.settle().await;
    t.advance(LEASE + secs(1));
    let last = std::sync::Mutex::new(None);
    let completed = tokio::time::timeout(super::support::GUARD, async {
        loop {
            let rec =
                t.b.get(id)
                    .await
                    .unwrap_or_else(|e| panic!("{what}: get: backend error: {e:?}"));
            if rec
                .as_ref()
                .is_some_and(|r| r.state == crate::record::JobState::Completed)
            {
                return;
            }
            *last.lock().unwrap_or_else(|e| e.into_inner()) = rec;
            t.settle().await;
        }
    });
    if completed.await.is_err() {
        panic!(
            "{what}: the job did not complete within {:?} of real time; it is {:#?}",
            super::support::GUARD,
            last.lock().unwrap_or_else(|e| e.into_inner())
        );
    }
    let stats = worker
        .shutdown()
        .await
        .unwrap_or_else(|e| panic!("{what}: shutdown: {e}"));
    assert_eq!(stats.completed, 1, "{what}: the worker ran it once");
}

/// The job of [`paced_busy_worker_recovers_an_abandoned_lease`] that keeps its worker busy: it
/// runs until the state's gate opens.
#[derive(serde::Serialize, serde::Deserialize)]
struct Busy {}

impl crate::job::Job for Busy {
    type Output = ();
    const NAME: &'static str = "busy";
    const QUEUE: &'static str = "paced-busy";
}

/// The state of the busy worker: its [`Busy`] job says when it started, and waits for the
/// gate.
#[derive(Default)]
struct Gates {
    started: tokio::sync::Notify,
    open: tokio::sync::Notify,
}

impl crate::job::Handler<Arc<Gates>> for Busy {
    async fn run(self, ctx: crate::context::JobContext<Arc<Gates>>) -> Result<(), crate::JobError> {
        ctx.state().started.notify_one();
        ctx.state().open.notified().await;
        Ok(())
    }
}

impl crate::job::Handler<Arc<Gates>> for Abandoned {
    async fn run(
        self,
        _ctx: crate::context::JobContext<Arc<Gates>>,
    ) -> Result<(), crate::JobError> {
        Ok(())
    }
}

/// A worker whose every slot is taken does not reserve, so its reserves cannot recover a dead
/// worker's lease: it still recovers leases once a lease period while it runs jobs, whatever
/// its backend's pacing (a backend that paces idle workers by ten minutes must not leave a
/// busy worker's queue that long without a recovery). The clock moves one lease period only.
pub async fn paced_busy_worker_recovers_an_abandoned_lease<F: BackendFactory + ?Sized>(
    factory: &F,
) {
    use crate::job::Job as _;
    use crate::record::JobState;
    let what = "paced busy worker recovers an abandoned lease";
    let t = env(factory).await;
    let state = |id| {
        let b = Arc::clone(&t.b);
        async move {
            b.get(id)
                .await
                .unwrap_or_else(|e| panic!("{what}: get: backend error: {e:?}"))
                .unwrap_or_else(|| panic!("{what}: job {id} is gone"))
                .state
        }
    };
    let gates = Arc::new(Gates::default());
    let busy = t.push_one(t.job(Busy::NAME, Busy::QUEUE)).await;
    let worker = crate::worker::Worker::builder(crate::any::AnyBackend::from(Arc::clone(&t.b)))
        .state(Arc::clone(&gates))
        .register::<Busy>()
        .register::<Abandoned>()
        .concurrency(1)
        .schedules(false)
        .build()
        .unwrap_or_else(|e| panic!("{what}: worker: {e}"))
        .spawn();
    guard(what, gates.started.notified()).await;
    assert_eq!(state(busy).await, JobState::Running, "{what}: the busy job");
    // The worker's lease-renewal thread is waiting to tell the store the job started
    // (`START_ACK_DELAY`): from now on it sleeps on the clock, so a move of the clock is not
    // lost on it, and the renewals keep the busy job's lease.
    guard(what, async {
        let soon = t.now() + crate::backend::START_ACK_DELAY;
        while !t.time.sleepers().iter().any(|d| *d <= soon) {
            t.settle().await;
        }
    })
    .await;
    // A job of another worker, which dies: the busy worker has no slot to reserve it with.
    // Its lease (10 s) ends before the busy worker's next recovery is due (a lease period, 30
    // s, after its first), so that recovery must find it expired.
    let dead = t.push_one(t.job(Abandoned::NAME, Abandoned::QUEUE)).await;
    let leased =
        t.b.reserve(&crate::record::ReserveRequest {
            lease: secs(10),
            ..super::support::req(&[Abandoned::QUEUE], 1)
        })
        .await
        .unwrap_or_else(|e| panic!("{what}: reserve: backend error: {e:?}"));
    assert_eq!(
        leased.iter().map(|l| l.id()).collect::<Vec<_>>(),
        [dead],
        "{what}: the dead worker's job"
    );
    // The busy job's renewals (every 10 s) keep its lease while the clock moves a lease on.
    for _ in 0..6 {
        t.advance_and_catch_up(secs(5), what).await;
    }
    guard(what, async {
        while state(dead).await == JobState::Running {
            t.settle().await;
        }
    })
    .await;
    assert_eq!(
        state(busy).await,
        JobState::Running,
        "{what}: the busy job kept its lease"
    );
    gates.open.notify_one();
    guard(what, async {
        while state(dead).await != JobState::Completed || state(busy).await != JobState::Completed {
            t.settle().await;
        }
    })
    .await;
    let stats = worker
        .shutdown()
        .await
        .unwrap_or_else(|e| panic!("{what}: shutdown: {e}"));
    assert_eq!(stats.completed, 2, "{what}: both ran once");
}
