//! How jobs are stored: batches across queues in one script call, jobs whose data Redis lost,
//! the encodings that keep batch operations linear, and Redis at its memory limit.

mod support;

use std::time::Duration;

use kosh_jobs_core::admin::ActionResult;
use kosh_jobs_core::{
    AdminAction, Backend, Finish, FinishResult, JobId, JobState, Lease, LeasedJob, ManualClock,
    NewJob, Outcome, ReserveRequest,
};
use kosh_jobs_redis::{RedisBackend, RedisOptions};
use support::{backend, raw_command, reserve, unique_prefix, RedisServer};

/// A backend on a manual clock, under a fresh prefix, and the hand that moves the clock.
async fn manual_backend(server: &RedisServer, name: &str) -> (RedisBackend, ManualClock) {
    let (clock, manual) = kosh_jobs_core::Clock::manual();
    let b = RedisBackend::connect_with(
        RedisOptions::builder(server.url())
            .prefix(unique_prefix(name))
            .clock(clock)
            .build()
            .expect("options"),
    )
    .await
    .expect("connect");
    (b, manual)
}

fn unique_job(b: &RedisBackend, queue: &str, key: Option<&str>) -> NewJob {
    let mut j = NewJob::new("n", queue, "{}", b.clock().now());
    j.unique_key = key.map(str::to_owned);
    j
}

/// Completes a lease without a result.
fn done(lease: Lease) -> Finish {
    Finish {
        lease,
        outcome: Outcome::Completed { result: None },
    }
}

/// Fails a lease for good with `error`.
fn failed(lease: Lease, error: &str) -> Finish {
    Finish {
        lease,
        outcome: Outcome::failed(error),
    }
}

/// A batch spanning queues is one script call on a single server, handled in batch order:
/// of two jobs with one unique key in different queues, the earlier in the batch wins, even
/// when its queue comes second among the batch's queues.
#[tokio::test]
async fn a_batch_across_queues_is_one_call_in_batch_order() {
    let server = RedisServer::start(&[]);
    let b = backend(&server, &unique_prefix("order")).await;
    // Queue `a` appears first in the batch, but the job holding the key is in `b`.
    let out = b
        .push(vec![
            unique_job(&b, "a", None),
            unique_job(&b, "b", Some("k")),
            unique_job(&b, "a", Some("k")),
            unique_job(&b, "b", None),
        ])
        .await
        .expect("push");
    assert!(!out[1].existing, "the first job with the key is stored");
    assert!(out[2].existing, "the second job with the key is not");
    assert_eq!(
        out[2].id, out[1].id,
        "and names the holder in the other queue"
    );
    let ids: Vec<JobId> = out.iter().map(|e| e.id).collect();
    assert!(
        ids[0] < ids[1] && ids[1] < ids[3],
        "ids follow batch order: {ids:?}"
    );
    let rec = b.get(out[1].id).await.expect("get").expect("holder");
    assert_eq!(rec.queue, "b");
    assert_eq!(rec.unique_key.as_deref(), Some("k"));

    // One EVALSHA for the whole batch (of queues already registered).
    let before = evalsha_calls(server.port);
    b.push(vec![
        unique_job(&b, "a", None),
        unique_job(&b, "b", None),
        unique_job(&b, "a", None),
    ])
    .await
    .expect("push");
    assert_eq!(evalsha_calls(server.port) - before, 1);
    let counts = b.counts().await.expect("counts");
    let ready: Vec<(String, u64)> = counts.into_iter().map(|c| (c.queue, c.ready)).collect();
    assert_eq!(ready, vec![("a".into(), 3), ("b".into(), 3)]);
}

fn evalsha_calls(port: u16) -> u64 {
    support::command_stats(port, None)
        .into_iter()
        .find(|(c, _)| c == "evalsha")
        .map_or(0, |(_, n)| n)
}

/// A running job whose data Redis lost (possible only when keys may be evicted) is no
/// script error: finishing it reports the lease lost or completes it, releasing and
/// recovering it drops the lease, and `get` finds nothing.
#[tokio::test]
async fn running_jobs_whose_data_was_evicted_end_cleanly() {
    let server = RedisServer::start(&[]);
    let prefix = unique_prefix("evicted");
    let b = backend(&server, &prefix).await;
    let jobs: Vec<NewJob> = (0..4).map(|_| unique_job(&b, "q", None)).collect();
    b.push(jobs).await.expect("push");
    let leased = reserve(&b, "q", 4).await;
    assert_eq!(leased.len(), 4);
    // Redis loses every job's spec.
    let spec_key = format!("{{{prefix}:q}}:spec");
    for l in &leased {
        let member = format!("{:016}", l.id().get() >> 16);
        assert_eq!(
            raw_command(server.port, None, &["HDEL", &spec_key, &member]),
            ":1"
        );
        assert!(b.get(l.id()).await.expect("get").is_none());
    }
    let finish = |i: usize, outcome: Outcome| Finish {
        lease: leased[i].lease,
        outcome,
    };
    let results = b
        .finish(vec![
            finish(0, Outcome::failed("boom")),
            finish(1, Outcome::retry("again", b.clock().now())),
            finish(2, Outcome::Completed { result: None }),
        ])
        .await
        .expect("finish is not a script error");
    assert_eq!(
        results,
        vec![
            FinishResult::LeaseLost,
            FinishResult::LeaseLost,
            FinishResult::Applied
        ]
    );
    b.release(&[leased[3].lease]).await.expect("release");
    let c = b.counts().await.expect("counts");
    let q = c.iter().find(|c| c.queue == "q").expect("queue q");
    assert_eq!((q.ready, q.running, q.failed), (0, 0, 0));
    // The backend goes on working.
    b.push(vec![unique_job(&b, "q", None)]).await.expect("push");
    let l = reserve(&b, "q", 1).await;
    assert_eq!(l.len(), 1);
    let rec = b.get(l[0].id()).await.expect("get").expect("job");
    assert_eq!(rec.state, JobState::Running);
}

/// The lease set and the column hashes are hash tables from their first write, even while
/// small (a listpack would make each batch lookup a linear scan), and the marker entry that
/// keeps them so is never counted or listed as a job.
#[tokio::test]
async fn small_queues_use_hash_table_encodings() {
    let server = RedisServer::start(&[]);
    let prefix = unique_prefix("enc");
    let b = backend(&server, &prefix).await;
    b.push(vec![unique_job(&b, "q", None), unique_job(&b, "q", None)])
        .await
        .expect("push");
    let leased = reserve(&b, "q", 1).await;
    let enc = |key: &str| {
        raw_command(
            server.port,
            None,
            &["OBJECT", "ENCODING", &format!("{{{prefix}:q}}:{key}")],
        )
    };
    assert_eq!(enc("lease"), "skiplist");
    assert_eq!(enc("spec"), "hashtable");
    // A first attempt's `run` entry is implied by its reserve call (layout 9): none written.
    assert_eq!(enc("run"), "");
    let c = b.counts().await.expect("counts");
    assert_eq!((c[0].ready, c[0].running), (1, 1));
    let running = b
        .list(&kosh_jobs_core::ListQuery::new(JobState::Running))
        .await
        .expect("list");
    assert_eq!(running.jobs.len(), 1);
    assert_eq!(running.jobs[0].id, leased[0].id());
    b.finish(vec![done(leased[0].lease)]).await.expect("finish");
    let c = b.counts().await.expect("counts");
    assert_eq!((c[0].running, c[0].completed), (0, 1));
    assert!(b
        .list(&kosh_jobs_core::ListQuery::new(JobState::Running))
        .await
        .expect("list")
        .jobs
        .is_empty());
    // A failed attempt writes its `run` entry: a hash table too.
    let other = reserve(&b, "q", 1).await;
    b.finish(vec![failed(other[0].lease, "x")])
        .await
        .expect("finish");
    assert_eq!(enc("run"), "hashtable");
}

/// A finish batch of mixed outcomes (completions without a result travel first, as bare
/// leases) reports each item in the caller's order; retention then deletes every column of
/// a job, including its errors, progress, moved run_at and result.
#[tokio::test]
async fn mixed_finish_batches_keep_their_order_and_retention_deletes_every_column() {
    let server = RedisServer::start(&[]);
    let prefix = unique_prefix("mixed");
    let b = RedisBackend::connect_with(
        RedisOptions::builder(server.url())
            .prefix(&prefix)
            .keep_completed_max(Some(0))
            .build()
            .expect("options"),
    )
    .await
    .expect("connect");
    let jobs: Vec<NewJob> = (0..4).map(|_| unique_job(&b, "q", None)).collect();
    b.push(jobs).await.expect("push");
    let first = reserve(&b, "q", 4).await;
    assert_eq!(first.len(), 4);
    // Job 0 reports progress and is retried at once; the others stay leased.
    assert!(b
        .progress(first[0].lease, serde_json::json!({"row": 7}))
        .await
        .expect("progress"));
    let stale = Lease {
        token: first[1].lease.token + 1000,
        ..first[1].lease
    };
    let now = b.clock().now();
    let results = b
        .finish(vec![
            Finish {
                lease: first[0].lease,
                outcome: Outcome::retry("flaky", now),
            },
            done(stale),
            Finish {
                lease: first[2].lease,
                outcome: Outcome::Completed {
                    result: Some(serde_json::json!({"rows": 3})),
                },
            },
            done(first[3].lease),
            failed(first[1].lease, "bad row"),
        ])
        .await
        .expect("finish");
    assert_eq!(
        results,
        vec![
            FinishResult::Applied,
            FinishResult::LeaseLost,
            FinishResult::Applied,
            FinishResult::Applied,
            FinishResult::Applied
        ]
    );
    let failed = b
        .get(first[1].id())
        .await
        .expect("get")
        .expect("failed job");
    assert_eq!(failed.state, JobState::Failed);
    assert_eq!(failed.last_error(), Some("bad row"));
    // Job 0 again: its progress comes back with it; it completes with a result.
    let again = reserve(&b, "q", 1).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id(), first[0].id());
    assert_eq!(again[0].attempt, 2);
    assert_eq!(again[0].progress, Some(serde_json::json!({"row": 7})));
    b.finish(vec![Finish {
        lease: again[0].lease,
        outcome: Outcome::Completed {
            result: Some(serde_json::json!({"rows": 9})),
        },
    }])
    .await
    .expect("finish");
    // Every completed job is gone (keep at most 0), with every column; the failed one stays.
    for l in [&first[0], &first[2], &first[3]] {
        assert!(b.get(l.id()).await.expect("get").is_none());
    }
    let member = format!("{:016}", first[1].id().get() >> 16);
    for col in ["spec", "run", "fin", "res", "err", "pg", "ra", "hist"] {
        let key = format!("{{{prefix}:q}}:{col}");
        let fields = raw_command(server.port, None, &["HKEYS", &key]);
        let jobs: Vec<&str> = fields
            .lines()
            .filter(|f| f.len() == 16 && f.bytes().all(|c| c.is_ascii_digit()))
            .collect();
        let expect: Vec<&str> = if ["spec", "run", "fin", "err", "hist"].contains(&col) {
            vec![member.as_str()]
        } else {
            vec![]
        };
        assert_eq!(jobs, expect, "column {col}: {fields}");
    }
}

/// Finishing removes the batch's leases in one step and checks leases one by one only when
/// some were not current. Each kind of stale lease is refused in such a batch, while the
/// current ones beside it apply: a lease given twice, the old lease of a job leased again
/// after its lease expired, and the lease of a job finished before.
#[tokio::test]
async fn a_finish_batch_with_stale_leases_applies_only_the_current_ones() {
    let server = RedisServer::start(&[]);
    let (b, manual) = manual_backend(&server, "stale").await;
    let jobs: Vec<NewJob> = (0..3).map(|_| unique_job(&b, "q", None)).collect();
    b.push(jobs).await.expect("push");
    let short = |max| ReserveRequest {
        queues: vec!["q".into()],
        worker: "test".into(),
        max,
        lease: Duration::from_secs(5),
    };
    // Job 0 is leased and its lease expires; it is leased again with a new token.
    let old = b.reserve(&short(1)).await.expect("reserve");
    // Its handler starts (so the expiry counts the attempt).
    let lost = b.heartbeat(&[old[0].lease], Duration::from_secs(5)).await;
    assert!(lost.expect("heartbeat").is_empty());
    manual.advance(Duration::from_secs(6));
    let rest = reserve(&b, "q", 3).await;
    assert_eq!(rest.len(), 3, "job 0 is leased again, with jobs 1 and 2");
    let again = rest.iter().find(|l| l.id() == old[0].id()).expect("job 0");
    assert_eq!(again.attempt, 2);
    let others: Vec<&LeasedJob> = rest.iter().filter(|l| l.id() != old[0].id()).collect();
    // Job 1 is finished before the batch.
    let first = b.finish(vec![done(others[0].lease)]).await.expect("finish");
    assert_eq!(first, vec![FinishResult::Applied]);
    let results = b
        .finish(vec![
            done(others[1].lease),
            done(others[1].lease),
            done(old[0].lease),
            done(others[0].lease),
            failed(again.lease, "bad row"),
        ])
        .await
        .expect("finish");
    assert_eq!(
        results,
        vec![
            FinishResult::Applied,
            FinishResult::LeaseLost,
            FinishResult::LeaseLost,
            FinishResult::LeaseLost,
            FinishResult::Applied,
        ]
    );
    let state = |id| {
        let b = &b;
        async move { b.get(id).await.expect("get").expect("job").state }
    };
    assert_eq!(state(others[1].id()).await, JobState::Completed);
    assert_eq!(state(others[0].id()).await, JobState::Completed);
    assert_eq!(state(again.id()).await, JobState::Failed);
    let c = b.counts().await.expect("counts");
    assert_eq!((c[0].running, c[0].completed, c[0].failed), (0, 2, 1));
}

/// Members are written without string.format: the last four digits come from a table and
/// the twelve before them change only when those wrap. A batch crossing such a wrap (and
/// one crossing a higher digit) stores every job under its own id.
#[tokio::test]
async fn members_are_right_across_digit_wraps() {
    let server = RedisServer::start(&[]);
    let prefix = unique_prefix("wrap");
    let b = backend(&server, &prefix).await;
    for start in [9_997_u64, 123_456_789_997] {
        let seq_key = format!("{{{prefix}}}:seq");
        assert_eq!(
            raw_command(server.port, None, &["SET", &seq_key, &start.to_string()]),
            "+OK"
        );
        let jobs: Vec<NewJob> = (0..5).map(|_| unique_job(&b, "q", None)).collect();
        let out = b.push(jobs).await.expect("push");
        let seqs: Vec<u64> = out.iter().map(|p| p.id.get() >> 16).collect();
        assert_eq!(seqs, (start + 1..start + 6).collect::<Vec<_>>());
        let spec_key = format!("{{{prefix}:q}}:spec");
        for p in &out {
            let member = format!("{:016}", p.id.get() >> 16);
            assert_eq!(
                raw_command(server.port, None, &["HEXISTS", &spec_key, &member]),
                ":1",
                "member {member}"
            );
            let rec = b.get(p.id).await.expect("get").expect("job");
            assert_eq!(rec.state, JobState::Ready);
        }
    }
}

/// A heartbeat extends the batch's leases in one step and looks leases up one by one only
/// when that step moved fewer than all: a lost lease or a lease given twice in the batch, or
/// a second heartbeat at the same instant (its deadlines do not move), still answer right.
#[tokio::test]
async fn heartbeat_batches_with_lost_or_repeated_leases_answer_per_lease() {
    let server = RedisServer::start(&[]);
    let (b, manual) = manual_backend(&server, "beat").await;
    let jobs: Vec<NewJob> = (0..2).map(|_| unique_job(&b, "q", None)).collect();
    b.push(jobs).await.expect("push");
    let leased = reserve(&b, "q", 2).await;
    let (a, c) = (leased[0].lease, leased[1].lease);
    let forged = Lease {
        token: a.token + 2,
        ..a
    };
    let extend = Duration::from_secs(60);
    manual.advance(Duration::from_secs(1));
    let all = b.heartbeat(&[a, c], extend).await.expect("heartbeat");
    assert_eq!(all, vec![], "every lease current: none lost");
    let again = b.heartbeat(&[a, c], extend).await.expect("heartbeat");
    assert_eq!(
        again,
        vec![],
        "the same instant: deadlines do not move, none lost"
    );
    // One lost lease among current ones: the others move, one short of the batch.
    manual.advance(Duration::from_secs(1));
    let one_lost = b
        .heartbeat(&[a, forged, c], extend)
        .await
        .expect("heartbeat");
    assert_eq!(one_lost, vec![forged], "only the forged lease is lost");
    manual.advance(Duration::from_secs(1));
    let mixed = b
        .heartbeat(&[a, forged, c, a], extend)
        .await
        .expect("heartbeat");
    assert_eq!(
        mixed,
        vec![forged],
        "a repeated lease is extended once, not lost"
    );
    // The extension holds: past the first deadline, nothing is recovered.
    manual.advance(Duration::from_secs(45));
    let rec = b.get(a.id).await.expect("get").expect("job");
    assert_eq!(rec.state, JobState::Running);
    assert_eq!(
        rec.lease_expires_at,
        Some(b.clock().now().saturating_add(Duration::from_secs(15)))
    );
}

/// Keys of another storage layout are refused at connect with a clear error, never misread:
/// layout 1 (one hash per job) is recognised by its id counter without a layout marker.
#[tokio::test]
async fn keys_of_another_storage_layout_are_refused() {
    let server = RedisServer::start(&[]);
    let fresh = unique_prefix("layout");
    let b = backend(&server, &fresh).await;
    b.push(vec![unique_job(&b, "q", None)]).await.expect("push");
    drop(b);
    // The same prefix connects again.
    let again = backend(&server, &fresh).await;
    assert_eq!(again.counts().await.expect("counts")[0].ready, 1);

    let old = unique_prefix("layout-v1");
    raw_command(server.port, None, &["SET", &format!("{{{old}}}:seq"), "42"]);
    let newer = unique_prefix("layout-newer");
    let newer_layout = kosh_jobs_redis::LAYOUT + 2;
    raw_command(
        server.port,
        None,
        &[
            "SET",
            &format!("{{{newer}}}:layout"),
            &newer_layout.to_string(),
        ],
    );
    let this_layout = format!("layout {}", kosh_jobs_redis::LAYOUT);
    for (prefix, layout) in [
        (old, "layout 1".to_owned()),
        (newer, format!("layout {newer_layout}")),
    ] {
        let e = RedisBackend::connect_with(
            RedisOptions::builder(server.url())
                .prefix(&prefix)
                .build()
                .expect("options"),
        )
        .await
        .expect_err("another layout is refused");
        let msg = e.to_string();
        assert!(
            msg.contains(&prefix) && msg.contains(&layout) && msg.contains(&this_layout),
            "{msg}"
        );
        assert!(matches!(
            kosh_jobs_core::BackendError::from(e),
            kosh_jobs_core::BackendError::Incompatible(_)
        ));
    }
}

/// Layout 6 is layout 7 without trace contexts: a layout-6 prefix's jobs are read as they are
/// and its marker upgraded at connect.
#[tokio::test]
async fn layout_6_is_upgraded_in_place() {
    let server = RedisServer::start(&[]);
    let prefix = unique_prefix("layout-v6");
    let b = backend(&server, &prefix).await;
    let job = unique_job(&b, "q", Some("k6"));
    let id = b.push(vec![job.clone()]).await.expect("push")[0].id;
    drop(b);
    raw_command(
        server.port,
        None,
        &["SET", &format!("{{{prefix}}}:layout"), "6"],
    );
    let b = backend(&server, &prefix).await;
    assert_eq!(
        raw_command(server.port, None, &["GET", &format!("{{{prefix}}}:layout")]).trim(),
        kosh_jobs_redis::LAYOUT.to_string()
    );
    let again = b.push(vec![job]).await.expect("push");
    assert!(
        again[0].existing && again[0].id == id,
        "the key is still held"
    );
    let leased = reserve(&b, "q", 1).await;
    assert_eq!((leased[0].id(), leased[0].trace.as_deref()), (id, None));
    assert_eq!(
        b.finish(vec![done(leased[0].lease)]).await.expect("finish"),
        vec![FinishResult::Applied]
    );
}

/// Layout 3 (no worker in `run` entries, no attempt history) is read as it is and its marker
/// upgraded at connect: its running jobs finish, with an attempt of unknown worker.
#[tokio::test]
async fn layout_3_is_upgraded_in_place() {
    let server = RedisServer::start(&[]);
    let prefix = unique_prefix("layout-v3");
    let b = backend(&server, &prefix).await;
    b.push(vec![unique_job(&b, "q", None)]).await.expect("push");
    let leased = reserve(&b, "q", 1).await;
    let started = b
        .get(leased[0].id())
        .await
        .expect("get")
        .and_then(|r| r.started_at)
        .expect("started");
    drop(b);
    // As layout 3 wrote it: `attempts,started_at,token` (layout 9 implies a first attempt's
    // entry from its reserve call instead: that record goes).
    let member = format!("{:016}", leased[0].id().get() >> 16);
    let three = format!("1,{},{}", started.as_millis(), leased[0].lease.token);
    raw_command(
        server.port,
        None,
        &["HSET", &format!("{{{prefix}:q}}:run"), &member, &three],
    );
    raw_command(server.port, None, &["DEL", &format!("{{{prefix}:q}}:rc")]);
    raw_command(
        server.port,
        None,
        &["SET", &format!("{{{prefix}}}:layout"), "3"],
    );
    let b = backend(&server, &prefix).await;
    assert_eq!(
        raw_command(server.port, None, &["GET", &format!("{{{prefix}}}:layout")]).trim(),
        kosh_jobs_redis::LAYOUT.to_string()
    );
    let running = b.get(leased[0].id()).await.expect("get").expect("job");
    assert_eq!(running.state, JobState::Running);
    assert_eq!(running.history.len(), 1);
    assert_eq!(running.history[0].worker, "");
    assert_eq!(
        b.finish(vec![done(leased[0].lease)]).await.expect("finish"),
        vec![FinishResult::Applied]
    );
    let rec = b.get(leased[0].id()).await.expect("get").expect("job");
    assert_eq!(rec.state, JobState::Completed);
    assert_eq!(rec.attempts, 1);
}

/// Layout 4 wrote every field of a job's spec and its `run_at` as an absolute time; layout 5
/// leaves defaults out and writes `run_at` relative to `created_at`. Specs as layout 4 wrote
/// them are read as they are after the marker is upgraded at connect: priority, attempts
/// allowed, unique key, run_at, and the scripts' own reading of them (a retry is allowed
/// while attempts remain; the unique key is still held).
#[tokio::test]
async fn layout_4_specs_are_read_after_the_upgrade() {
    let server = RedisServer::start(&[]);
    let prefix = unique_prefix("layout-v4");
    let b = backend(&server, &prefix).await;
    let now = b.clock().now();
    let mut ready = NewJob::new("mail", "q", r#"{"to":"a"}"#, now);
    ready.priority = 2;
    ready.max_attempts = 2;
    ready.unique_key = Some("k1".into());
    let later = now.saturating_add(Duration::from_secs(3600));
    let scheduled = NewJob::new("report", "q", "{}", later);
    let ids: Vec<_> = b
        .push(vec![ready.clone(), scheduled.clone()])
        .await
        .expect("push")
        .into_iter()
        .map(|e| e.id)
        .collect();
    drop(b);
    // Rewrite both specs as layout 4 wrote them.
    let spec_key = format!("{{{prefix}:q}}:spec");
    for (id, j) in ids.iter().zip([&ready, &scheduled]) {
        let member = format!("{:016}", id.get() >> 16);
        let current = raw_command(server.port, None, &["HGET", &spec_key, &member]);
        let created: i64 = current
            .split(',')
            .nth(4)
            .expect("created")
            .parse()
            .expect("ms");
        let u = j.unique_key.as_deref().unwrap_or("");
        let old = format!(
            "{},{},{},{},{},{}|{u}{}{}",
            u.len(),
            j.name.len(),
            j.priority,
            j.max_attempts,
            created,
            j.run_at.as_millis(),
            j.name,
            j.payload
        );
        raw_command(server.port, None, &["HSET", &spec_key, &member, &old]);
    }
    raw_command(
        server.port,
        None,
        &["SET", &format!("{{{prefix}}}:layout"), "4"],
    );
    let b = backend(&server, &prefix).await;
    assert_eq!(
        raw_command(server.port, None, &["GET", &format!("{{{prefix}}}:layout")]).trim(),
        kosh_jobs_redis::LAYOUT.to_string()
    );
    let r = b.get(ids[0]).await.expect("get").expect("job");
    assert_eq!((r.priority, r.max_attempts), (2, 2));
    assert_eq!(r.unique_key.as_deref(), Some("k1"));
    assert_eq!(
        (r.name.as_str(), r.payload.as_str()),
        ("mail", r#"{"to":"a"}"#)
    );
    assert_eq!(r.run_at, now);
    let s = b.get(ids[1]).await.expect("get").expect("job");
    assert_eq!(
        (s.state, s.run_at, s.max_attempts),
        (JobState::Scheduled, later, 3)
    );
    // The unique key is still held.
    let again = b.push(vec![ready.clone()]).await.expect("push");
    assert!(again[0].existing && again[0].id == ids[0]);
    // Two attempts allowed: the first failure is retried, not final.
    let leased = reserve(&b, "q", 1).await;
    assert_eq!(leased[0].id(), ids[0]);
    let retry = Finish {
        lease: leased[0].lease,
        outcome: Outcome::Retry {
            error: "try again".into(),
            retry_at: b.clock().now(),
            kind: kosh_jobs_core::FailureKind::Error,
        },
    };
    assert_eq!(
        b.finish(vec![retry]).await.expect("finish"),
        vec![FinishResult::Applied]
    );
    let r = b.get(ids[0]).await.expect("get").expect("job");
    assert_eq!((r.state, r.attempts), (JobState::Ready, 1));
}

/// Redis at `maxmemory` with `noeviction` refuses writes. A push, which only adds, is refused
/// whole with an error that says why, and nothing of it is stored. The worker's operations go
/// on: reserving (also when it first recovers an expired lease), extending, releasing and
/// finishing leases move jobs between indexes and, through retention, free memory. Once memory is available
/// again, the refused push goes through.
#[tokio::test]
async fn out_of_memory_refuses_pushes_whole_and_lets_workers_drain() {
    // DEBUG DIGEST (a hash of the whole dataset) shows that nothing changed.
    let server = RedisServer::start(&[
        "--maxmemory-policy",
        "noeviction",
        "--enable-debug-command",
        "yes",
    ]);
    let (b, clock) = manual_backend(&server, "oom").await;
    b.push((0..4).map(|_| unique_job(&b, "q", None)).collect())
        .await
        .expect("push");
    let first = reserve(&b, "q", 1).await;
    let second = reserve(&b, "q", 1).await;
    // The first lease expires: the next reserve recovers it before it leases.
    clock.advance(Duration::from_secs(31));
    let second_lease = b
        .heartbeat(&[second[0].lease], Duration::from_secs(30))
        .await
        .expect("heartbeat");
    assert!(second_lease.is_empty(), "the second lease is current");
    let digest = || raw_command(server.port, None, &["DEBUG", "DIGEST"]);
    let before = digest();

    let full = raw_command(server.port, None, &["CONFIG", "SET", "maxmemory", "1"]);
    assert!(full.contains("OK"), "{full}");
    let batch: Vec<NewJob> = (0..5)
        .map(|i| unique_job(&b, "q", (i == 2).then_some("key")))
        .collect();
    let e = b
        .push(batch.clone())
        .await
        .expect_err("a push over maxmemory is refused");
    let text = format!("{e}: {:?}", std::error::Error::source(&e));
    assert!(
        matches!(e, kosh_jobs_core::BackendError::Storage(_)),
        "a storage error, not a retryable outage: {text}"
    );
    let source = std::error::Error::source(&e).map(ToString::to_string);
    assert!(
        source
            .as_deref()
            .is_some_and(|s| s.contains("out of memory") && s.contains("maxmemory")),
        "says Redis is out of memory: {text}"
    );
    assert_eq!(digest(), before, "nothing of the refused push was stored");

    // Workers go on.
    let lost = b
        .heartbeat(&[second[0].lease], Duration::from_secs(30))
        .await
        .expect("heartbeat over maxmemory");
    assert!(lost.is_empty(), "the lease was extended");
    // Progress is the handler's data, which grows memory: refused like a push.
    let e = b
        .progress(second[0].lease, serde_json::json!({ "rows": 1 }))
        .await
        .expect_err("progress over maxmemory is refused");
    assert!(
        matches!(e, kosh_jobs_core::BackendError::Storage(_)),
        "progress: {e:?}"
    );
    let third = reserve(&b, "q", 2).await;
    let mut ids: Vec<JobId> = third.iter().map(LeasedJob::id).collect();
    ids.sort();
    assert_eq!(ids.len(), 2, "the expired job and the next one are leased");
    assert!(
        ids.contains(&first[0].id()),
        "the expired job is leased again"
    );
    let fourth = reserve(&b, "q", 1).await;
    b.release(&[fourth[0].lease])
        .await
        .expect("release over maxmemory");
    let mut finishes = vec![done(second[0].lease)];
    finishes.extend(third.iter().map(|j| done(j.lease)));
    let r = b.finish(finishes).await.expect("finish over maxmemory");
    assert_eq!(r, vec![FinishResult::Applied; 3]);
    let stale = b
        .finish(vec![done(first[0].lease)])
        .await
        .expect("finish of the expired lease");
    assert_eq!(stale, vec![FinishResult::LeaseLost]);

    let freed = raw_command(server.port, None, &["CONFIG", "SET", "maxmemory", "0"]);
    assert!(freed.contains("OK"), "{freed}");
    let out = b.push(batch).await.expect("the same push, with memory");
    assert_eq!(out.len(), 5);
    let counts = b.counts().await.expect("counts");
    assert_eq!(
        (counts[0].ready, counts[0].running, counts[0].completed),
        (6, 0, 3),
        "the released job and the pushed ones are ready"
    );
}

fn calls(port: u16) -> std::collections::HashMap<String, u64> {
    support::command_stats(port, None).into_iter().collect()
}

/// Failed jobs that held the same unique key (a job gives its key up when it fails) retried
/// in one call: the first takes the key back and the other conflicts with it, although the
/// batch writes neither until its end.
#[tokio::test]
async fn a_batched_retry_gives_a_unique_key_to_one_job_only() {
    let server = RedisServer::start(&[]);
    let b = backend(&server, &unique_prefix("retry-unique")).await;
    let mut ids = Vec::new();
    for key in [Some("k"), Some("k"), None] {
        let id = b.push(vec![unique_job(&b, "q", key)]).await.expect("push")[0].id;
        let l = reserve(&b, "q", 1).await.remove(0);
        assert_eq!(l.id(), id);
        b.finish(vec![failed(l.lease, "boom")]).await.expect("fail");
        ids.push(id);
    }
    let out = b.apply(AdminAction::Retry, &ids, &[]).await.expect("retry");
    assert_eq!(
        out,
        vec![
            ActionResult::Applied,
            ActionResult::UniqueConflict(ids[0]),
            ActionResult::Applied,
        ]
    );
    let state = |id| {
        let b = &b;
        async move { b.get(id).await.expect("get").expect("job").state }
    };
    assert_eq!(state(ids[1]).await, JobState::Failed);
    let leased: Vec<JobId> = reserve(&b, "q", 10).await.iter().map(|l| l.id()).collect();
    assert_eq!(leased, vec![ids[0], ids[2]]);
    let again = b
        .push(vec![unique_job(&b, "q", Some("k"))])
        .await
        .expect("push");
    assert_eq!((again[0].id, again[0].existing), (ids[0], true));
}

/// A bulk retry reads each column once and writes each column and index once per script,
/// whatever the number of jobs in it, and wakes waiters once per script; a call of 300 jobs
/// is three scripts of 100 (so a reserve waits for one of them at most), each costing the same,
/// and only the first looks for due scheduled jobs to make ready.
#[tokio::test]
async fn a_bulk_retry_costs_the_same_commands_for_any_number_of_jobs() {
    let server = RedisServer::start(&[]);
    let b = backend(&server, &unique_prefix("retry-bulk")).await;
    let mut jobs = Vec::new();
    for _ in 0..400 {
        let mut j = unique_job(&b, "q", None);
        j.max_attempts = 1;
        jobs.push(j);
    }
    b.push(jobs).await.expect("push");
    let leased = reserve(&b, "q", 400).await;
    assert_eq!(leased.len(), 400);
    b.finish(leased.iter().map(|l| failed(l.lease, "boom")).collect())
        .await
        .expect("fail");
    let mut ids: Vec<JobId> = leased.iter().map(|l| l.id()).collect();
    ids.sort_unstable();

    // A call of 100 of the failed jobs (one script), then of the other 300 (three).
    let (one, three) = ids.split_at(100);
    for (ids, scripts) in [(one, 1), (three, 3)] {
        let before = calls(server.port);
        let out = b.apply(AdminAction::Retry, ids, &[]).await.expect("retry");
        assert!(out.iter().all(|r| *r == ActionResult::Applied), "{out:?}");
        let after = calls(server.port);
        let delta = |cmd: &str| after.get(cmd).unwrap_or(&0) - before.get(cmd).unwrap_or(&0);
        assert_eq!(
            [
                ("hmget", delta("hmget")),
                ("zmscore", delta("zmscore")),
                ("hset", delta("hset")),
                ("zadd", delta("zadd")),
                ("zrem", delta("zrem")),
                ("rpush", delta("rpush")),
                ("zrangebyscore", delta("zrangebyscore")),
            ],
            [
                ("hmget", 2 * scripts),   // specs, runs
                ("zmscore", 2 * scripts), // failed, cancelled
                ("hset", 2 * scripts),    // runs, run_at
                ("zadd", scripts),        // ready
                ("zrem", 2 * scripts),    // failed: by time, by member
                ("rpush", scripts),       // one wake-up
                ("zrangebyscore", 1),     // due scheduled jobs, by the first step only
            ],
            "a retry of {} jobs",
            ids.len()
        );
    }
    let c = b.counts().await.expect("counts");
    assert_eq!((c[0].ready, c[0].failed), (400, 0));
}

/// A job whose lease expired before its attempt started gets an entry in `uns` (its count of
/// such expiries), and loses it when retention deletes the job: nothing is left behind.
#[tokio::test]
async fn the_count_of_unstarted_expiries_is_deleted_with_its_job() {
    let server = RedisServer::start(&[]);
    let (clock, manual) = kosh_jobs_core::Clock::manual();
    let prefix = unique_prefix("uns");
    let b = RedisBackend::connect_with(
        RedisOptions::builder(server.url())
            .prefix(&prefix)
            .clock(clock)
            .keep_completed_max(Some(0))
            .build()
            .expect("options"),
    )
    .await
    .expect("connect");
    let mut j = unique_job(&b, "q", None);
    j.max_attempts = 1;
    b.push(vec![j]).await.expect("push");
    let uns = format!("{{{prefix}:q}}:uns");
    // Leased, never started (no heartbeat), expired: given back and counted in `uns`.
    let first = reserve(&b, "q", 1).await;
    manual.advance(Duration::from_secs(31));
    assert_eq!(b.recover_expired().await.expect("recover"), 1);
    let member = format!("{:016}", first[0].id().get() >> 16);
    assert_eq!(
        raw_command(server.port, None, &["HGET", &uns, &member]).trim(),
        "1"
    );
    // Leased again (attempt 1 again), completed, and deleted by retention with its count.
    let again = reserve(&b, "q", 1).await;
    assert_eq!(again[0].attempt, 1);
    let r = b.finish(vec![done(again[0].lease)]).await.expect("finish");
    assert_eq!(r, vec![FinishResult::Applied]);
    assert!(b.get(again[0].id()).await.expect("get").is_none());
    assert_eq!(
        raw_command(server.port, None, &["HLEN", &uns]).trim(),
        ":0",
        "the job's count went with it"
    );
}
