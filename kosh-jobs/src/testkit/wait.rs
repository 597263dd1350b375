//! Cases about `wait_for_work`: what ends the wait, and that it waits otherwise.
//!
//! A waiter runs in its own task with `until` far in the future on the manual clock, so only
//! the event under test can end it; a real-time timeout is there only to fail the case
//! instead of hanging it.

use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::backend::Backend;
use crate::clock::Timestamp;

use super::support::{env, guard, join, secs, Env, LEASE};
use super::BackendFactory;

fn spawn_wait(t: &Env, queues: &[&str], until: Timestamp) -> JoinHandle<()> {
    let b: Arc<dyn Backend> = Arc::clone(&t.b);
    let queues: Vec<String> = queues.iter().map(|q| (*q).to_owned()).collect();
    tokio::spawn(async move {
        b.wait_for_work(&queues, until)
            .await
            .unwrap_or_else(|e| panic!("wait_for_work: backend error: {e:?}"))
    })
}

async fn still_waiting(t: &Env, h: &JoinHandle<()>, what: &str) {
    t.settle().await;
    assert!(
        !h.is_finished(),
        "{what}: wait_for_work returned although nothing happened"
    );
}

/// A push from another task ends a wait on its queue.
pub async fn wait_woken_by_push<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let h = spawn_wait(&t, &["mail"], t.now() + secs(3600));
    still_waiting(&t, &h, "wait woken by push: before the push").await;
    let b = Arc::clone(&t.b);
    let job = t.job("n", "mail");
    let pusher = tokio::spawn(async move {
        b.push(vec![job])
            .await
            .unwrap_or_else(|e| panic!("push: backend error: {e:?}"))
    });
    join("wait woken by push: the push", pusher).await;
    join("wait woken by push: the wait ends after the push", h).await;
}

/// With nothing to do, the wait ends when the clock reaches `until`, not before.
pub async fn wait_returns_at_until<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let h = spawn_wait(&t, &["idle"], t.now() + secs(10));
    still_waiting(&t, &h, "wait until: at the start").await;
    t.advance(secs(5));
    still_waiting(&t, &h, "wait until: half way").await;
    t.advance(secs(5));
    join(
        "wait until: the wait ends when the clock reaches `until`",
        h,
    )
    .await;
}

/// A delayed job becoming due ends the wait, even though nothing was pushed meanwhile.
pub async fn wait_ends_when_scheduled_job_due<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let mut j = t.job("n", "later");
    j.run_at = t.now() + secs(30);
    t.push_one(j).await;
    let h = spawn_wait(&t, &["later"], t.now() + secs(3600));
    still_waiting(&t, &h, "wait for a delayed job: before it is due").await;
    t.advance(secs(30));
    join("wait for a delayed job: the wait ends once it is due", h).await;
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
    let h = spawn_wait(&t, &["p"], t.now() + secs(3600));
    still_waiting(&t, &h, "wait on a paused queue").await;
    t.b.resume("p")
        .await
        .unwrap_or_else(|e| panic!("resume: backend error: {e:?}"));
    join("wait on a paused queue: the wait ends on resume", h).await;
}

/// A job recovered from an expired lease ends a wait on its queue.
pub async fn wait_woken_by_recovery<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    t.push_one(t.job("n", "q")).await;
    let l = t.reserve_one("q", "wait for a recovered job").await;
    let h = spawn_wait(&t, &["q"], t.now() + secs(3600));
    still_waiting(&t, &h, "wait for a recovered job: while it runs").await;
    t.advance(LEASE + secs(1));
    assert_eq!(t.recover().await, 1, "wait for a recovered job: recovered");
    join("wait for a recovered job: the wait ends", h).await;
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
