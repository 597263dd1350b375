//! Focused tests of the SQLite backend, each on a fresh file with a manual clock.

use std::time::Duration;

use kosh_jobs_core::{
    Backend, CancelOutcome, Clock, Finish, FinishResult, JobState, ListQuery, ManualClock, NewJob,
    Outcome, ReserveRequest, RetryOutcome, Timestamp,
};
use kosh_jobs_sqlite::{Retention, SqliteBackend, SqliteOptions};
use tempfile::TempDir;

struct Fixture {
    backend: SqliteBackend,
    time: ManualClock,
    dir: TempDir,
}

async fn fresh() -> Fixture {
    fresh_with(|b| b).await
}

async fn fresh_with(
    f: impl FnOnce(kosh_jobs_sqlite::SqliteOptionsBuilder) -> kosh_jobs_sqlite::SqliteOptionsBuilder,
) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let (clock, time) = Clock::manual();
    let opts = f(SqliteOptions::builder(dir.path().join("jobs.db")).clock(clock))
        .build()
        .expect("options");
    let backend = SqliteBackend::connect_with(opts).await.expect("open");
    Fixture { backend, time, dir }
}

fn job(queue: &str, n: u32, at: Timestamp) -> NewJob {
    NewJob::new("test", queue, format!("{{\"n\":{n}}}"), at)
}

fn req(queues: &[&str], max: usize) -> ReserveRequest {
    ReserveRequest {
        queues: queues.iter().map(|q| q.to_string()).collect(),
        worker: "test".into(),
        max,
        lease: Duration::from_secs(30),
    }
}

fn completed() -> Outcome {
    Outcome::Completed { result: None }
}

#[tokio::test]
async fn lifecycle_push_reserve_complete() {
    let f = fresh().await;
    let b = &f.backend;
    let now = b.clock().now();
    let ids = b
        .push(vec![job("q", 1, now), job("q", 2, now)])
        .await
        .unwrap();
    assert_eq!(ids.len(), 2);
    assert!(ids[0].id < ids[1].id && !ids[0].existing);

    let leased = b.reserve(&req(&["q"], 10)).await.unwrap();
    assert_eq!(leased.len(), 2);
    assert_eq!(leased[0].id(), ids[0].id);
    assert_eq!(leased[0].attempt, 1);
    assert_eq!(leased[0].payload, r#"{"n":1}"#);
    assert_eq!(leased[0].lease_expires_at, now + Duration::from_secs(30));
    assert!(b.reserve(&req(&["q"], 10)).await.unwrap().is_empty());

    let result = serde_json::json!({"rows": 3});
    let done = b
        .finish(vec![
            Finish {
                lease: leased[0].lease,
                outcome: Outcome::Completed {
                    result: Some(result.clone()),
                },
            },
            Finish {
                lease: kosh_jobs_core::Lease {
                    id: leased[1].id(),
                    token: leased[1].lease.token.wrapping_add(7),
                },
                outcome: completed(),
            },
        ])
        .await
        .unwrap();
    assert_eq!(done, vec![FinishResult::Applied, FinishResult::LeaseLost]);
    let rec = b.get(ids[0].id).await.unwrap().unwrap();
    assert_eq!(rec.state, JobState::Completed);
    assert_eq!(rec.result, Some(result));
    assert_eq!(rec.attempts, 1);
    assert_eq!(rec.finished_at, Some(now));
    assert_eq!(rec.lease_expires_at, None);
    // Finishing twice is refused.
    let again = b
        .finish(vec![Finish {
            lease: leased[0].lease,
            outcome: completed(),
        }])
        .await
        .unwrap();
    assert_eq!(again, vec![FinishResult::LeaseLost]);
    assert_eq!(
        b.get(ids[1].id).await.unwrap().unwrap().state,
        JobState::Running
    );
}

#[tokio::test]
async fn priority_then_fifo() {
    let f = fresh().await;
    let b = &f.backend;
    let now = b.clock().now();
    let mut jobs = Vec::new();
    for (n, p) in [(0, 0), (1, 5), (2, 0), (3, 5), (4, -1)] {
        let mut j = job("q", n, now);
        j.priority = p;
        jobs.push(j);
    }
    let ids = b.push(jobs).await.unwrap();
    let got: Vec<_> = b
        .reserve(&req(&["q"], 3))
        .await
        .unwrap()
        .iter()
        .map(|j| j.id())
        .collect();
    assert_eq!(got, vec![ids[1].id, ids[3].id, ids[0].id]);
    let got: Vec<_> = b
        .reserve(&req(&["q"], 3))
        .await
        .unwrap()
        .iter()
        .map(|j| j.id())
        .collect();
    assert_eq!(got, vec![ids[2].id, ids[4].id]);
}

#[tokio::test]
async fn scheduled_jobs_wait_for_their_time() {
    let f = fresh().await;
    let b = &f.backend;
    let now = b.clock().now();
    let id = b
        .push(vec![job("q", 1, now + Duration::from_secs(60))])
        .await
        .unwrap()[0]
        .id;
    assert_eq!(b.get(id).await.unwrap().unwrap().state, JobState::Scheduled);
    assert!(b.reserve(&req(&["q"], 1)).await.unwrap().is_empty());

    // A waiter sleeps until the job's time on the backend clock.
    let waiter = {
        let b = b.clone();
        let until = now + Duration::from_secs(3600);
        tokio::spawn(async move { b.wait_for_work(&["q".to_string()], until).await })
    };
    tokio::time::timeout(Duration::from_millis(300), async {
        while !waiter.is_finished() {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect_err("the waiter must still wait before the job is due");
    f.time.advance(Duration::from_secs(60));
    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("advancing past run_at ends the wait")
        .unwrap()
        .unwrap();
    assert_eq!(b.get(id).await.unwrap().unwrap().state, JobState::Ready);
    assert_eq!(b.reserve(&req(&["q"], 1)).await.unwrap()[0].id(), id);
}

#[tokio::test]
async fn expired_lease_is_recovered_and_counted() {
    let f = fresh().await;
    let b = &f.backend;
    let now = b.clock().now();
    let mut j = job("q", 1, now);
    j.max_attempts = 2;
    let id = b.push(vec![j]).await.unwrap()[0].id;
    let first = b.reserve(&req(&["q"], 1)).await.unwrap().remove(0);
    // Its handler starts (the worker's first renewal says so): the expiry then counts.
    let lost = b.heartbeat(&[first.lease], Duration::from_secs(30)).await;
    assert!(lost.unwrap().is_empty());
    f.time.advance(Duration::from_secs(31));
    assert_eq!(b.recover_expired().await.unwrap(), 1);
    assert_eq!(b.recover_expired().await.unwrap(), 0);
    let rec = b.get(id).await.unwrap().unwrap();
    assert_eq!(rec.state, JobState::Ready);
    assert_eq!(rec.attempts, 1);
    assert_eq!(rec.last_error(), Some("lease expired"));
    assert_eq!(rec.errors[0].attempt, 1);

    let second = b.reserve(&req(&["q"], 1)).await.unwrap().remove(0);
    assert_eq!(second.attempt, 2);
    assert_ne!(second.lease.token, first.lease.token);
    let lost = b.heartbeat(&[second.lease], Duration::from_secs(30)).await;
    assert!(lost.unwrap().is_empty());
    // The first worker's late result is refused.
    let late = b
        .finish(vec![Finish {
            lease: first.lease,
            outcome: completed(),
        }])
        .await
        .unwrap();
    assert_eq!(late, vec![FinishResult::LeaseLost]);
    // The second lease expires too: no attempts left, so failed. Reserve recovers it.
    f.time.advance(Duration::from_secs(31));
    assert!(b.reserve(&req(&["q"], 1)).await.unwrap().is_empty());
    let rec = b.get(id).await.unwrap().unwrap();
    assert_eq!(rec.state, JobState::Failed);
    assert_eq!(rec.errors.len(), 2);
    assert!(rec.finished_at.is_some());
}

#[tokio::test]
async fn heartbeat_release_progress() {
    let f = fresh().await;
    let b = &f.backend;
    let now = b.clock().now();
    let id = b.push(vec![job("q", 1, now)]).await.unwrap()[0].id;
    let l = b.reserve(&req(&["q"], 1)).await.unwrap().remove(0);
    f.time.advance(Duration::from_secs(20));
    let lost = b
        .heartbeat(&[l.lease], Duration::from_secs(30))
        .await
        .unwrap();
    assert!(lost.is_empty());
    f.time.advance(Duration::from_secs(20));
    assert_eq!(
        b.recover_expired().await.unwrap(),
        0,
        "heartbeat extended it"
    );
    assert!(b
        .progress(l.lease, serde_json::json!({"row": 10}))
        .await
        .unwrap());
    b.release(&[l.lease]).await.unwrap();
    let rec = b.get(id).await.unwrap().unwrap();
    assert_eq!(rec.state, JobState::Ready);
    assert_eq!(rec.attempts, 0, "a released attempt is not counted");
    assert!(!b.progress(l.lease, serde_json::json!(1)).await.unwrap());
    assert_eq!(
        b.heartbeat(&[l.lease], Duration::from_secs(1))
            .await
            .unwrap(),
        vec![l.lease]
    );
    let again = b.reserve(&req(&["q"], 1)).await.unwrap().remove(0);
    assert_eq!(again.attempt, 1);
    assert_eq!(again.progress, Some(serde_json::json!({"row": 10})));
}

#[tokio::test]
async fn retry_outcomes_and_error_history() {
    let f = fresh().await;
    let b = &f.backend;
    let now = b.clock().now();
    let id = b.push(vec![job("q", 1, now)]).await.unwrap()[0].id;
    let l = b.reserve(&req(&["q"], 1)).await.unwrap().remove(0);
    b.finish(vec![Finish {
        lease: l.lease,
        outcome: Outcome::retry("bank api down", now + Duration::from_secs(10)),
    }])
    .await
    .unwrap();
    let rec = b.get(id).await.unwrap().unwrap();
    assert_eq!(rec.state, JobState::Scheduled);
    assert_eq!(rec.run_at, now + Duration::from_secs(10));
    assert_eq!(rec.last_error(), Some("bank api down"));
    f.time.advance(Duration::from_secs(10));
    let l = b.reserve(&req(&["q"], 1)).await.unwrap().remove(0);
    assert_eq!(l.attempt, 2);
    b.finish(vec![Finish {
        lease: l.lease,
        outcome: Outcome::failed("bad row \"7\""),
    }])
    .await
    .unwrap();
    let rec = b.get(id).await.unwrap().unwrap();
    assert_eq!(rec.state, JobState::Failed);
    assert_eq!(rec.errors.len(), 2);
    assert_eq!(rec.errors[1].error, "bad row \"7\"");
    assert_eq!(rec.errors[1].attempt, 2);

    assert_eq!(b.retry(id).await.unwrap(), RetryOutcome::Retried);
    let rec = b.get(id).await.unwrap().unwrap();
    assert_eq!(
        (rec.state, rec.attempts, rec.errors.len()),
        (JobState::Ready, 0, 2)
    );
    assert_eq!(
        b.retry(id).await.unwrap(),
        RetryOutcome::NotRetryable(JobState::Ready)
    );
    assert_eq!(
        b.retry(kosh_jobs_core::JobId::new(999)).await.unwrap(),
        RetryOutcome::NotFound
    );
}

#[tokio::test]
async fn unique_keys() {
    let f = fresh().await;
    let b = &f.backend;
    let now = b.clock().now();
    let mut a = job("q", 1, now);
    a.unique_key = Some("upload-1".into());
    let out = b.push(vec![a.clone(), a.clone()]).await.unwrap();
    assert!(!out[0].existing && out[1].existing && out[0].id == out[1].id);
    // Cancel it: the key is free again; retrying the cancelled one then conflicts.
    assert_eq!(b.cancel(out[0].id).await.unwrap(), CancelOutcome::Cancelled);
    let fresh_id = b.push(vec![a.clone()]).await.unwrap()[0];
    assert!(!fresh_id.existing && fresh_id.id != out[0].id);
    assert_eq!(
        b.retry(out[0].id).await.unwrap(),
        RetryOutcome::UniqueConflict(fresh_id.id)
    );
    assert_eq!(
        b.cancel(out[0].id).await.unwrap(),
        CancelOutcome::AlreadyFinal(JobState::Cancelled)
    );
}

#[tokio::test]
async fn push_is_atomic_and_validates() {
    let f = fresh().await;
    let b = &f.backend;
    let now = b.clock().now();
    let err = b
        .push(vec![job("q", 1, now), job("bad queue", 2, now)])
        .await
        .unwrap_err();
    assert!(
        matches!(err, kosh_jobs_core::BackendError::InvalidInput(_)),
        "{err:?}"
    );
    assert!(b.counts().await.unwrap().is_empty());
    let mut zero = job("q", 1, now);
    zero.max_attempts = 0;
    assert!(b.push(vec![zero]).await.is_err());
}

#[tokio::test]
async fn pause_resume_counts_list_purge() {
    let f = fresh().await;
    let b = &f.backend;
    let now = b.clock().now();
    let jobs: Vec<_> = (0..250).map(|n| job("a", n, now)).collect();
    b.push(jobs).await.unwrap();
    b.push(vec![job("b", 0, now + Duration::from_secs(5))])
        .await
        .unwrap();
    b.pause("a").await.unwrap();
    b.pause("idle").await.unwrap();
    assert!(b.reserve(&req(&["a"], 10)).await.unwrap().is_empty());
    let counts = b.counts().await.unwrap();
    let names: Vec<_> = counts.iter().map(|c| c.queue.as_str()).collect();
    assert_eq!(names, ["a", "b", "idle"]);
    assert_eq!((counts[0].ready, counts[0].paused), (250, true));
    assert_eq!(counts[1].scheduled, 1);
    assert!(counts[2].paused && counts[2].live() == 0);
    b.resume("a").await.unwrap();
    b.resume("idle").await.unwrap();
    assert_eq!(b.counts().await.unwrap().len(), 2);

    // Paging through ready jobs.
    let mut seen = 0;
    let mut q = ListQuery::new(JobState::Ready).queue("a").limit(100);
    loop {
        let page = b.list(&q).await.unwrap();
        seen += page.jobs.len();
        match page.next {
            Some(next) => q = q.after(next),
            None => break,
        }
    }
    assert_eq!(seen, 250);
    let leased = b.reserve(&req(&["a"], 250)).await.unwrap();
    let items = leased
        .iter()
        .map(|l| Finish {
            lease: l.lease,
            outcome: completed(),
        })
        .collect();
    b.finish(items).await.unwrap();
    f.time.advance(Duration::from_secs(10));
    assert!(b.purge(&[JobState::Ready], b.clock().now()).await.is_err());
    let purged = b
        .purge(&[JobState::Completed], b.clock().now())
        .await
        .unwrap();
    assert_eq!(purged, 250);
    // The scheduled job in `b` is due now and shows as ready.
    let page = b.list(&ListQuery::new(JobState::Ready)).await.unwrap();
    assert_eq!(page.jobs.len(), 1);
    assert_eq!(page.jobs[0].queue, "b");
}

#[tokio::test]
async fn in_process_push_wakes_a_waiter_at_once() {
    let f = fresh().await;
    let b = f.backend.clone();
    let until = b.clock().now() + Duration::from_secs(3600);
    let waiter = tokio::spawn({
        let b = b.clone();
        async move { b.wait_for_work(&["q".to_string()], until).await }
    });
    // Let the waiter register; a push that races the registration is fine too (it then
    // sees a ready job).
    tokio::task::yield_now().await;
    let start = std::time::Instant::now();
    b.push(vec![job("q", 1, b.clock().now())]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("push wakes the waiter")
        .unwrap()
        .unwrap();
    eprintln!("woken after {:?}", start.elapsed());
}

#[tokio::test]
async fn another_connection_wakes_a_waiter_through_data_version() {
    let f = fresh_with(|o| o.poll_interval(Duration::from_millis(20))).await;
    // A second backend on the same file stands in for another process: it shares no memory
    // with the first, only the file.
    let other = SqliteBackend::connect_with(
        SqliteOptions::builder(f.dir.path().join("jobs.db"))
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let b = f.backend.clone();
    let until = b.clock().now() + Duration::from_secs(3600);
    let waiter = tokio::spawn({
        let b = b.clone();
        async move { b.wait_for_work(&["q".to_string()], until).await }
    });
    tokio::task::yield_now().await;
    other
        .push(vec![job("q", 1, Timestamp::now_system())])
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the other connection's push wakes the waiter")
        .unwrap()
        .unwrap();
    assert_eq!(b.reserve(&req(&["q"], 5)).await.unwrap().len(), 1);
}

#[tokio::test]
async fn retention_prunes_completed_but_keeps_failed() {
    let f = fresh_with(|o| o.retention(Retention::keep_all().max_count(Some(10)))).await;
    let b = &f.backend;
    let now = b.clock().now();
    b.push((0..40).map(|n| job("q", n, now)).collect())
        .await
        .unwrap();
    let leased = b.reserve(&req(&["q"], 40)).await.unwrap();
    let items = leased
        .iter()
        .enumerate()
        .map(|(i, l)| Finish {
            lease: l.lease,
            outcome: if i < 5 {
                Outcome::failed("x")
            } else {
                completed()
            },
        })
        .collect();
    b.finish(items).await.unwrap();
    // Pruning runs in the background about once a second; wait for it with a deadline.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let c = b.counts().await.unwrap();
        if c[0].completed == 10 {
            assert_eq!(c[0].failed, 5, "failed jobs are kept");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not pruned: {c:?}");
        // Any write gives the writer a turn at housekeeping.
        b.recover_expired().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn ids_are_never_reused_after_the_newest_job_is_purged() {
    let f = fresh().await;
    let b = &f.backend;
    let now = b.clock().now();
    let first = b
        .push(vec![job("q", 1, now), job("q", 2, now)])
        .await
        .unwrap();
    let leased = b.reserve(&req(&["q"], 2)).await.unwrap();
    let items = leased
        .iter()
        .map(|l| Finish {
            lease: l.lease,
            outcome: completed(),
        })
        .collect();
    b.finish(items).await.unwrap();
    f.time.advance(Duration::from_secs(1));
    assert_eq!(
        b.purge(&[JobState::Completed], b.clock().now())
            .await
            .unwrap(),
        2
    );
    let next = b.push(vec![job("q", 3, now)]).await.unwrap()[0].id;
    assert!(next > first[1].id, "{next} reuses a purged id");
    // Also after reopening the file.
    let path = f.dir.path().join("jobs.db");
    f.backend.clone().close().await;
    let again = SqliteBackend::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let later = again.push(vec![job("q", 4, now)]).await.unwrap()[0].id;
    assert!(later > next);
}

#[tokio::test]
async fn a_lock_held_past_the_busy_timeout_is_unavailable_then_recovers() {
    let f = fresh_with(|o| o.busy_timeout(Duration::from_millis(100))).await;
    let b = &f.backend;
    let now = b.clock().now();
    // Another connection (as another process would) holds the write lock.
    let other = rusqlite::Connection::open(f.dir.path().join("jobs.db")).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let err = b.push(vec![job("q", 1, now)]).await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    let msg = std::error::Error::source(&err).map(|s| s.to_string());
    assert!(
        msg.as_deref().is_some_and(|m| m.contains("busy timeout")),
        "{msg:?}"
    );
    // Reads go on meanwhile (WAL).
    assert!(b.counts().await.unwrap().is_empty());
    other.execute_batch("COMMIT").unwrap();
    b.push(vec![job("q", 1, now)]).await.unwrap();
    assert_eq!(b.counts().await.unwrap()[0].ready, 1);
}

#[tokio::test]
async fn in_memory_backend_works_without_a_reader_thread() {
    let (clock, time) = Clock::manual();
    let b = SqliteBackend::connect_with(SqliteOptions::in_memory().clock(clock).build().unwrap())
        .await
        .unwrap();
    let now = b.clock().now();
    let id = b
        .push(vec![job("q", 1, now + Duration::from_secs(5))])
        .await
        .unwrap()[0]
        .id;
    let waiter = tokio::spawn({
        let b = b.clone();
        async move {
            b.wait_for_work(&["q".to_string()], now + Duration::from_secs(60))
                .await
        }
    });
    tokio::task::yield_now().await;
    time.advance(Duration::from_secs(5));
    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the due job ends the wait")
        .unwrap()
        .unwrap();
    let l = b.reserve(&req(&["q"], 1)).await.unwrap();
    assert_eq!(l[0].id(), id);
    assert_eq!(b.get(id).await.unwrap().unwrap().state, JobState::Running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_operation_does_not_undo_others_committed_with_it() {
    let f = fresh().await;
    let b = f.backend.clone();
    let now = b.clock().now();
    // Many callers at once: their pushes share group-committed transactions.
    let tasks: Vec<_> = (0..64u32)
        .map(|i| {
            let b = b.clone();
            tokio::spawn(async move {
                let queue = if i % 5 == 0 { "bad queue" } else { "q" };
                b.push(vec![job("q", i, now), job(queue, i, now)]).await
            })
        })
        .collect();
    let mut ok = 0;
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(ids) => {
                assert!(i % 5 != 0);
                assert_eq!(ids.len(), 2);
                ok += 1;
            }
            Err(e) => {
                assert!(i % 5 == 0);
                assert!(
                    matches!(e, kosh_jobs_core::BackendError::InvalidInput(_)),
                    "{e:?}"
                );
            }
        }
    }
    assert_eq!(ok, 51);
    assert_eq!(b.counts().await.unwrap()[0].ready, 2 * 51);
}

#[tokio::test]
async fn default_retention_drops_completed_jobs_after_a_day_and_keeps_failed_ones() {
    let f = fresh().await; // default options: Retention::default()
    let b = &f.backend;
    let now = b.clock().now();
    let ids = b
        .push(vec![job("q", 1, now), job("q", 2, now)])
        .await
        .unwrap();
    let leased = b.reserve(&req(&["q"], 2)).await.unwrap();
    b.finish(vec![
        Finish {
            lease: leased[0].lease,
            outcome: completed(),
        },
        Finish {
            lease: leased[1].lease,
            outcome: Outcome::failed("x"),
        },
    ])
    .await
    .unwrap();
    f.time
        .advance(Retention::DEFAULT_MAX_AGE - Duration::from_secs(60));
    // Pruning runs once a second of real time (on the writer, after a write): let at least
    // one round pass, in which it must keep the job.
    let deadline = std::time::Instant::now() + Duration::from_millis(1500);
    while std::time::Instant::now() < deadline {
        b.recover_expired().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        b.get(ids[0].id).await.unwrap().is_some(),
        "kept while younger than a day"
    );
    f.time.advance(Duration::from_secs(120));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while b.get(ids[0].id).await.unwrap().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "a completed job older than a day was not pruned"
        );
        b.recover_expired().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let failed = b
        .get(ids[1].id)
        .await
        .unwrap()
        .expect("failed jobs are kept");
    assert_eq!(failed.state, JobState::Failed);
}
