//! The stored counts (`kosh_counts`, schema version 4) stay equal to the jobs they count
//! through every kind of state change, and a schema-3 file gets them built when it migrates.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use kosh_jobs_core::admin::{ActionResult, AdminAction};
use kosh_jobs_core::schedule::{
    Every, FireOutcome, FiredTick, Missed, Overlap, ScheduleDef, ScheduleFire,
};
use kosh_jobs_core::{
    Backend, Clock, Finish, FinishResult, JobId, JobState, ManualClock, NewJob, Outcome,
    ReserveRequest, Timestamp,
};
use kosh_jobs_sqlite::{Retention, SqliteBackend, SqliteOptions};

fn req(queue: &str, max: usize, lease: Duration) -> ReserveRequest {
    ReserveRequest {
        queues: vec![queue.into()],
        worker: "w-counts".into(),
        max,
        lease,
    }
}

fn job(queue: &str, n: u32, at: Timestamp) -> NewJob {
    NewJob::new("count", queue, format!("{{\"n\":{n}}}"), at)
}

/// (queue, state) → jobs, as one of the two sides of a comparison.
type Tally = BTreeMap<(String, String), i64>;

fn tally(conn: &rusqlite::Connection, sql: &str) -> Tally {
    let mut stmt = conn.prepare(sql).unwrap();
    let rows = stmt
        .query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))
        .unwrap();
    rows.map(Result::unwrap).collect()
}

/// Checks, in one read transaction of a connection of its own, that the stored counts equal
/// a `GROUP BY` over the jobs, and that none is negative. Returns the jobs' tally.
fn check_stored(path: &Path, step: &str) -> Tally {
    let mut conn = rusqlite::Connection::open(path).unwrap();
    let tx = conn.transaction().unwrap();
    let stored = tally(
        &tx,
        "SELECT queue, state, n FROM kosh_counts WHERE n <> 0 ORDER BY 1, 2",
    );
    // Running jobs are stored in the `ready` row.
    let actual = tally(
        &tx,
        "SELECT queue, CASE state WHEN 'running' THEN 'ready' ELSE state END AS s, count(*) \
         FROM kosh_jobs GROUP BY 1, 2 ORDER BY 1, 2",
    );
    let negative: i64 = tx
        .query_row("SELECT count(*) FROM kosh_counts WHERE n < 0", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(
        stored, actual,
        "after {step}: stored counts differ from the jobs"
    );
    assert_eq!(negative, 0, "after {step}: a negative count");
    actual
}

/// Checks the stored counts, then that [`Backend::counts`] reports the jobs' states as
/// readers see them (a due scheduled job is ready) at the clock's time.
async fn check(b: &SqliteBackend, path: &Path, step: &str) {
    check_stored(path, step);
    let now = b.clock().now().as_millis();
    let conn = rusqlite::Connection::open(path).unwrap();
    let expected = tally(
        &conn,
        &format!(
            "SELECT queue, CASE WHEN state = 'scheduled' AND run_at <= {now} THEN 'ready' \
             ELSE state END AS s, count(*) FROM kosh_jobs GROUP BY 1, 2 ORDER BY 1, 2"
        ),
    );
    let mut reported = Tally::new();
    for c in b.counts().await.unwrap() {
        for state in JobState::ALL {
            let n = c.get(state);
            if n > 0 {
                reported.insert((c.queue.clone(), state.as_str().to_owned()), n as i64);
            }
        }
    }
    assert_eq!(
        reported, expected,
        "after {step}: counts() differs from the jobs"
    );
}

async fn open(path: &Path, clock: Clock, retention: Retention) -> SqliteBackend {
    let opts = SqliteOptions::builder(path)
        .clock(clock)
        .retention(retention)
        .build()
        .unwrap();
    SqliteBackend::connect_with(opts).await.unwrap()
}

fn finish(lease: kosh_jobs_core::Lease, outcome: Outcome) -> Finish {
    Finish { lease, outcome }
}

/// Every kind of change a job's state can go through, each followed by the comparison.
#[tokio::test]
async fn stored_counts_follow_every_state_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("counts.db");
    let (clock, time): (Clock, ManualClock) = Clock::manual();
    let b = open(&path, clock.clone(), Retention::keep_all()).await;
    let now = b.clock().now();
    let s30 = Duration::from_secs(30);

    // Push: ready, scheduled, a duplicate unique key (no new job), two queues.
    let mut unique = job("a", 0, now);
    unique.unique_key = Some("only-one".into());
    let mut batch: Vec<NewJob> = (1..=12).map(|n| job("a", n, now)).collect();
    batch.push(unique.clone());
    batch.push(unique);
    batch.extend((1..=4).map(|n| job("b", n, now + Duration::from_secs(3600))));
    batch.push(job("b", 5, now));
    b.push(batch).await.unwrap();
    check(&b, &path, "push").await;

    // Reserve, then every finish: complete, retry later (scheduled), retry now (ready), fail.
    let leased = b.reserve(&req("a", 6, s30)).await.unwrap();
    assert_eq!(leased.len(), 6);
    check(&b, &path, "reserve").await;
    b.heartbeat(&[leased[5].lease], s30).await.unwrap();
    b.progress(leased[5].lease, serde_json::json!({"rows": 1}))
        .await
        .unwrap();
    let out = b
        .finish(vec![
            finish(leased[0].lease, Outcome::Completed { result: None }),
            finish(leased[1].lease, Outcome::Completed { result: None }),
            finish(
                leased[2].lease,
                Outcome::retry("later", now + Duration::from_secs(60)),
            ),
            finish(leased[3].lease, Outcome::retry("now", now)),
            finish(leased[4].lease, Outcome::failed("bad row")),
            // A lease that is not current: changes nothing.
            finish(leased[0].lease, Outcome::failed("stale")),
        ])
        .await
        .unwrap();
    assert_eq!(out.len(), 6);
    check(&b, &path, "finish").await;

    // Release (graceful shutdown).
    b.release(&[leased[5].lease]).await.unwrap();
    check(&b, &path, "release").await;

    // Snooze (a handler's "not now"): later (scheduled), now (ready), and a stale lease.
    let snoozing = b.reserve(&req("a", 2, s30)).await.unwrap();
    assert_eq!(snoozing.len(), 2);
    check(&b, &path, "reserve to snooze").await;
    let out = b
        .finish(vec![
            finish(
                snoozing[0].lease,
                Outcome::Snooze {
                    until: now + Duration::from_secs(60),
                },
            ),
            finish(snoozing[1].lease, Outcome::Snooze { until: now }),
            finish(snoozing[0].lease, Outcome::Snooze { until: now }),
        ])
        .await
        .unwrap();
    assert_eq!(
        out,
        vec![
            FinishResult::Applied,
            FinishResult::Applied,
            FinishResult::LeaseLost
        ]
    );
    check(&b, &path, "snooze").await;

    // Lease recovery: back to ready, and failed when out of attempts.
    let mut last_try = job("c", 1, now);
    last_try.max_attempts = 1;
    b.push(vec![last_try, job("c", 2, now)]).await.unwrap();
    let held = b.reserve(&req("c", 2, s30)).await.unwrap();
    assert_eq!(held.len(), 2);
    time.advance(Duration::from_secs(31));
    assert_eq!(b.recover_expired().await.unwrap(), 2);
    check(&b, &path, "lease recovery").await;

    // Scheduled jobs fall due: counted as ready before reserve promotes them, then promoted.
    time.advance(Duration::from_secs(60));
    check(&b, &path, "a retry falling due").await;
    let promoted = b.reserve(&req("a", 1, s30)).await.unwrap();
    check(&b, &path, "promotion by reserve").await;

    // Cancel: ready, scheduled and running jobs.
    let ids = |state: JobState, queue: &'static str| {
        let path = path.clone();
        async move {
            let conn = rusqlite::Connection::open(&path).unwrap();
            let mut stmt = conn
                .prepare("SELECT id FROM kosh_jobs WHERE state = ?1 AND queue = ?2 ORDER BY id")
                .unwrap();
            stmt.query_map([state.as_str(), queue], |r| r.get::<_, i64>(0))
                .unwrap()
                .map(|id| JobId::new(id.unwrap() as u64))
                .collect::<Vec<_>>()
        }
    };
    let ready_a = ids(JobState::Ready, "a").await;
    let scheduled_b = ids(JobState::Scheduled, "b").await;
    b.cancel(ready_a[0]).await.unwrap();
    b.cancel(scheduled_b[0]).await.unwrap();
    b.cancel(promoted[0].id()).await.unwrap();
    check(&b, &path, "cancel").await;

    // Admin retry of a failed and of a cancelled job.
    let failed_a = ids(JobState::Failed, "a").await;
    b.retry(failed_a[0]).await.unwrap();
    b.retry(ready_a[0]).await.unwrap();
    check(&b, &path, "retry by hand").await;

    // Bulk actions by id: promote, cancel, retry, delete (with ids that do not apply).
    let scheduled_b = ids(JobState::Scheduled, "b").await;
    let out = b
        .apply(AdminAction::Promote, &scheduled_b[..2], &[])
        .await
        .unwrap();
    assert_eq!(out, [ActionResult::Applied, ActionResult::Applied]);
    check(&b, &path, "bulk promote").await;
    let ready_b = ids(JobState::Ready, "b").await;
    b.apply(AdminAction::Cancel, &ready_b, &[]).await.unwrap();
    check(&b, &path, "bulk cancel").await;
    let cancelled_b = ids(JobState::Cancelled, "b").await;
    let failed_c = ids(JobState::Failed, "c").await;
    let both: Vec<JobId> = cancelled_b.iter().chain(&failed_c).copied().collect();
    b.apply(AdminAction::Retry, &both, &[]).await.unwrap();
    check(&b, &path, "bulk retry").await;
    let leased = b.reserve(&req("b", 10, s30)).await.unwrap();
    b.finish(
        leased
            .iter()
            .map(|l| finish(l.lease, Outcome::failed("again")))
            .collect(),
    )
    .await
    .unwrap();
    let failed_b = ids(JobState::Failed, "b").await;
    let completed_a = ids(JobState::Completed, "a").await;
    let mut mixed = vec![failed_b[0], completed_a[0], JobId::new(999_999)];
    mixed.extend(ids(JobState::Ready, "a").await.first());
    b.apply(AdminAction::Delete, &mixed, &[]).await.unwrap();
    check(&b, &path, "bulk delete").await;

    // A schedule fires: its job is pushed in the fire's transaction.
    let def = ScheduleDef {
        id: "nightly".into(),
        every: Every::Interval { ms: 60_000 },
        job: "tick".into(),
        queue: "s".into(),
        payload: "{}".into(),
        priority: 0,
        max_attempts: 1,
        start_at: None,
        end_at: None,
        max_runs: None,
        missed: Missed::default(),
        overlap: Overlap::Allow,
        group: None,
    };
    let at = b.clock().now();
    b.upsert_schedule(&def, Some(at)).await.unwrap();
    let rec = b.schedule("nightly").await.unwrap().unwrap();
    let fired = b
        .fire_schedules(vec![ScheduleFire {
            id: def.id.clone(),
            revision: rec.revision,
            cursor: at,
            next_fire: Some(at + Duration::from_secs(60)),
            ticks: vec![FiredTick {
                at,
                job: def.job_at(at),
            }],
            skip_if_live: false,
        }])
        .await
        .unwrap();
    assert!(matches!(fired[0], FireOutcome::Fired(_)), "{fired:?}");
    check(&b, &path, "a schedule firing").await;

    // Pause: reserve takes nothing; resume.
    b.pause("a").await.unwrap();
    assert!(b.reserve(&req("a", 5, s30)).await.unwrap().is_empty());
    b.resume("a").await.unwrap();
    check(&b, &path, "pause and resume").await;

    // Purge final jobs of every final state.
    let leased = b.reserve(&req("a", 3, s30)).await.unwrap();
    b.finish(
        leased
            .iter()
            .map(|l| finish(l.lease, Outcome::Completed { result: None }))
            .collect(),
    )
    .await
    .unwrap();
    time.advance(Duration::from_secs(1));
    let purged = b
        .purge(&[JobState::Failed, JobState::Cancelled], b.clock().now())
        .await
        .unwrap();
    assert!(purged > 0);
    check(&b, &path, "purge").await;
    let before = check_stored(&path, "before retention");
    let completed = |t: &Tally| -> i64 {
        t.iter()
            .filter(|((_, s), _)| s == "completed")
            .map(|(_, n)| n)
            .sum()
    };
    assert!(completed(&before) > 1, "{before:?}");
    b.close().await;

    // Retention: reopened keeping one completed job, the writer deletes the others in the
    // background; wait for it with a deadline.
    let b = open(&path, clock, Retention::keep_all().max_count(Some(1))).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = check_stored(&path, "retention");
        if completed(&now) == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "retention did not prune: {now:?}"
        );
        // Any write gives the writer a turn at housekeeping.
        b.recover_expired().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check(&b, &path, "retention").await;
    b.close().await;
}

/// A file written at schema version 3 (before the stored counts) gets them built from its
/// jobs when it migrates, and kept from then on.
#[tokio::test]
async fn a_schema_3_file_gets_its_counts_built_when_it_migrates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v3.db");
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL;").unwrap();
        let conn = conn.transaction().unwrap();
        for sql in [
            include_str!("../migrations/0001_initial.sql"),
            include_str!("../migrations/0002_admin.sql"),
            include_str!("../migrations/0003_schedules.sql"),
        ] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch("PRAGMA user_version = 3; PRAGMA application_id = 1263489864;")
            .unwrap();
        // 3,000 jobs over two queues and every state; 8 scheduled jobs of queue q2 are due.
        let mut insert = conn
            .prepare(
                "INSERT INTO kosh_jobs (id, name, queue, payload, state, priority, run_at, \
                 attempts, max_attempts, created_at, finished_at, lease_expires_at) \
                 VALUES (?1, 'import', ?2, '{}', ?3, 0, ?4, 0, 3, 1000, ?5, ?6)",
            )
            .unwrap();
        let states = [
            "ready",
            "scheduled",
            "running",
            "completed",
            "failed",
            "cancelled",
        ];
        for id in 1..=3000i64 {
            let state = states[(id % 6) as usize];
            let queue = if id % 5 == 0 { "q2" } else { "q1" };
            let run_at: i64 = if state == "scheduled" && queue == "q2" && id <= 240 {
                1000
            } else if state == "scheduled" {
                9_000_000_000_000
            } else {
                1000
            };
            let finished = matches!(state, "completed" | "failed" | "cancelled").then_some(2000);
            let lease = (state == "running").then_some(9_000_000_000_000i64);
            insert
                .execute(rusqlite::params![id, queue, state, run_at, finished, lease])
                .unwrap();
        }
        drop(insert);
        conn.commit().unwrap();
    }
    let (clock, _time) = Clock::manual();
    let b = open(&path, clock, Retention::keep_all()).await;
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, kosh_jobs_sqlite::SCHEMA_VERSION); // and on to the newest
    let built = check_stored(&path, "the migration");
    assert_eq!(built.values().sum::<i64>(), 3000);
    check(&b, &path, "the migration").await;

    // Kept from then on.
    let leased = b
        .reserve(&req("q2", 50, Duration::from_secs(30)))
        .await
        .unwrap();
    assert!(!leased.is_empty());
    b.finish(
        leased
            .iter()
            .map(|l| finish(l.lease, Outcome::Completed { result: None }))
            .collect(),
    )
    .await
    .unwrap();
    check(&b, &path, "work after the migration").await;
    b.close().await;

    // Opening again changes nothing.
    let (clock, _time) = Clock::manual();
    let b = open(&path, clock, Retention::keep_all()).await;
    check(&b, &path, "reopening").await;
    b.close().await;
}
