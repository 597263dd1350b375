//! A first attempt's `run` entry implied by its reserve call (layout 9): a reserve whose jobs
//! are all on their first attempt writes one record in `rc` (when it started them, for which
//! worker, its members, how many of its leases are live) instead of a `run` entry per job.
//! The jobs read back whole while they run; every way a lease ends writes the entry or moves
//! it into the completed job's list entry; the record goes with the call's last lease.

mod support;

use std::time::Duration;

use kosh_jobs_core::admin::AttemptOutcome;
use kosh_jobs_core::{Backend, CancelOutcome, Finish, JobState, NewJob, Outcome, ReserveRequest};
use support::KeysSetup as Setup;

const QUEUE: &str = "q";

/// Job `id`'s entry in the `run` hash ("" when it has none).
fn run_entry(s: &Setup, id: kosh_jobs_core::JobId) -> String {
    let member = format!("{:016}", id.get() >> 16);
    s.cmd(&["HGET", &s.key("run"), &member])
}

fn request(worker: &str, max: usize) -> ReserveRequest {
    ReserveRequest {
        queues: vec![QUEUE.into()],
        worker: worker.into(),
        max,
        lease: Duration::from_secs(30),
    }
}

/// Running jobs on their first attempt have no `run` entry and read back whole: attempt,
/// start, worker, lease; a unique key they hold is still held. Completing, failing and
/// releasing them write or move their entries, and the call's record goes with its last lease.
#[tokio::test]
async fn first_attempts_read_whole_without_a_run_entry() {
    let s = Setup::new("implied");
    let b = s.backend(|o| o).await;
    let now = s.clock.now();
    let mut jobs: Vec<NewJob> = (0..3)
        .map(|i| NewJob::new(format!("j{i}"), QUEUE, "{}", now))
        .collect();
    jobs[2].unique_key = Some("import-7".into());
    b.push(jobs).await.expect("push");
    // Twice: the first lease of a worker goes the general way (its number is not known yet).
    let first = b.reserve(&request("w-1", 1)).await.expect("reserve");
    s.manual.advance(Duration::from_secs(2));
    let started = s.clock.now();
    let leased = b.reserve(&request("w-1", 5)).await.expect("reserve");
    assert_eq!((first.len(), leased.len()), (1, 2));
    assert_eq!(
        s.cmd(&["EXISTS", &s.key("run")]),
        ":0",
        "no run entry written"
    );
    assert_eq!(
        s.cmd(&["HLEN", &s.key("rc")]),
        ":6",
        "two calls, three fields each"
    );

    for l in leased.iter() {
        let r = b.get(l.id()).await.expect("get").expect("stored");
        assert_eq!(r.state, JobState::Running, "{}", r.name);
        assert_eq!((r.attempts, r.started_at), (1, Some(started)), "{}", r.name);
        assert_eq!(r.lease_expires_at, Some(l.lease_expires_at), "{}", r.name);
        let last = r.history.last().expect("the attempt");
        assert_eq!((last.worker.as_str(), last.ended_at), ("w-1", None));
    }
    let running = b
        .list(&kosh_jobs_core::ListQuery::new(JobState::Running).queue(QUEUE))
        .await
        .expect("list");
    assert_eq!(running.jobs.len(), 3);
    // The running job holds its unique key.
    let mut again = NewJob::new("j2-again", QUEUE, "{}", s.clock.now());
    again.unique_key = Some("import-7".into());
    let got = b.push(vec![again]).await.expect("push")[0];
    assert!(got.existing, "the running job holds the key");
    assert_eq!(got.id, leased[1].id());

    s.manual.advance(Duration::from_secs(3));
    let results = b
        .finish(vec![
            Finish {
                lease: leased[0].lease,
                outcome: Outcome::Completed { result: None },
            },
            Finish {
                lease: leased[1].lease,
                outcome: Outcome::failed("bad row"),
            },
        ])
        .await
        .expect("finish");
    assert_eq!(results.len(), 2);
    b.release(&[first[0].lease]).await.expect("release");
    assert_eq!(s.cmd(&["EXISTS", &s.key("rc")]), ":0", "the records went");

    let done = b.get(leased[0].id()).await.expect("get").expect("stored");
    assert_eq!(done.state, JobState::Completed);
    assert_eq!((done.attempts, done.started_at), (1, Some(started)));
    assert_eq!(done.history.last().map(|a| a.worker.as_str()), Some("w-1"));
    assert_eq!(
        run_entry(&s, leased[0].id()),
        "",
        "moved into its list entry"
    );

    let failed = b.get(leased[1].id()).await.expect("get").expect("stored");
    assert_eq!(failed.state, JobState::Failed);
    assert_eq!((failed.attempts, failed.started_at), (1, Some(started)));
    let last = failed.history.last().expect("the attempt");
    assert_eq!(
        (last.worker.as_str(), last.outcome),
        ("w-1", Some(AttemptOutcome::Failed))
    );
    assert!(run_entry(&s, leased[1].id()).starts_with("1,"), "written");

    let released = b.get(first[0].id()).await.expect("get").expect("stored");
    assert_eq!((released.state, released.attempts), (JobState::Ready, 0));
    // Leased again, it runs on a `run` entry of its own: it ran before.
    let back = b.reserve(&request("w-2", 5)).await.expect("reserve");
    assert_eq!(back.len(), 1);
    assert_eq!((back[0].id(), back[0].attempt), (first[0].id(), 1));
    assert!(run_entry(&s, first[0].id()).starts_with("1,"));
    assert_eq!(s.cmd(&["EXISTS", &s.key("rc")]), ":0");
    let r = b.get(first[0].id()).await.expect("get").expect("stored");
    assert_eq!(r.history.last().map(|a| a.worker.as_str()), Some("w-2"));
    // Completing it moves that entry into its list entry.
    let results = b
        .finish(vec![Finish {
            lease: back[0].lease,
            outcome: Outcome::Completed { result: None },
        }])
        .await
        .expect("finish");
    assert_eq!(results, vec![kosh_jobs_core::FinishResult::Applied]);
    assert_eq!(run_entry(&s, first[0].id()), "", "moved");
    let r = b.get(first[0].id()).await.expect("get").expect("stored");
    assert_eq!((r.state, r.attempts), (JobState::Completed, 1));
    assert_eq!(r.history.last().map(|a| a.worker.as_str()), Some("w-2"));
}

/// A lease that expires, and a running job cancelled, write their job's `run` entry with the
/// attempt counted, and free their call's record.
#[tokio::test]
async fn expired_and_cancelled_leases_write_their_run_entry() {
    let s = Setup::new("implied-end");
    let b = s.backend(|o| o).await;
    let now = s.clock.now();
    let jobs: Vec<NewJob> = (0..3)
        .map(|i| NewJob::new(format!("j{i}"), QUEUE, "{}", now))
        .collect();
    b.push(jobs).await.expect("push");
    b.reserve(&request("w-1", 1)).await.expect("reserve");
    let leased = b.reserve(&request("w-1", 2)).await.expect("reserve");
    assert_eq!(leased.len(), 2);
    let started = s.clock.now();
    assert_eq!(
        b.cancel(leased[0].id()).await.expect("cancel"),
        CancelOutcome::Cancelled
    );
    let cancelled = b.get(leased[0].id()).await.expect("get").expect("stored");
    assert_eq!(cancelled.state, JobState::Cancelled);
    assert_eq!(
        (cancelled.attempts, cancelled.started_at),
        (1, Some(started))
    );
    assert_eq!(
        cancelled.history.last().map(|a| a.worker.as_str()),
        Some("w-1")
    );

    // The other lease expires (its worker never heartbeat: the attempt is given back).
    s.manual.advance(Duration::from_secs(31));
    assert_eq!(b.recover_expired().await.expect("recover"), 2);
    let r = b.get(leased[1].id()).await.expect("get").expect("stored");
    assert_eq!((r.state, r.attempts), (JobState::Ready, 0));
    assert!(!run_entry(&s, leased[1].id()).is_empty(), "written");
    assert_eq!(s.cmd(&["EXISTS", &s.key("rc")]), ":0", "the records went");
    // Its old lease is lost; leased again, it is on attempt 1.
    let stale = b
        .finish(vec![Finish {
            lease: leased[1].lease,
            outcome: Outcome::Completed { result: None },
        }])
        .await
        .expect("finish");
    assert_eq!(stale, vec![kosh_jobs_core::FinishResult::LeaseLost]);
    let back = b.reserve(&request("w-2", 5)).await.expect("reserve");
    assert!(back
        .iter()
        .any(|l| l.id() == leased[1].id() && l.attempt == 1));
}
