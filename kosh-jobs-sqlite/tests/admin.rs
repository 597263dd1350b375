//! The SQLite side of the admin contract beyond the conformance suite: migrating a
//! schema-1 file, texts that JSON escapes or `LIKE` would misread, `create=false`.

use std::path::Path;
use std::time::Duration;

use kosh_jobs_core::admin::{AttemptOutcome, JobFilter, SearchQuery, ThroughputQuery};
use kosh_jobs_core::{
    Backend, BackendError, Clock, Finish, JobId, JobState, NewJob, Outcome, ReserveRequest,
};
use kosh_jobs_sqlite::{SqliteBackend, SqliteError, SqliteOptions};

fn req(queue: &str, max: usize) -> ReserveRequest {
    ReserveRequest {
        queues: vec![queue.into()],
        worker: "w-test".into(),
        max,
        lease: Duration::from_secs(30),
    }
}

/// Writes a database as kosh-jobs-sqlite wrote it at schema version 1: the first
/// migration's SQL run by hand, with jobs in several states.
fn write_schema_1(path: &Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("PRAGMA journal_mode = WAL;").unwrap();
    conn.execute_batch(include_str!("../migrations/0001_initial.sql"))
        .unwrap();
    conn.execute_batch(
        "PRAGMA user_version = 1;
         PRAGMA application_id = 1263489864;
         INSERT INTO kosh_jobs (id, name, queue, payload, state, priority, run_at, attempts,
                                max_attempts, created_at)
             VALUES (1, 'import', 'q', '{\"file\":\"a.csv\"}', 'ready', 0, 1000, 0, 3, 1000);
         INSERT INTO kosh_jobs (id, name, queue, payload, state, priority, run_at, attempts,
                                max_attempts, created_at, finished_at, errors)
             VALUES (2, 'import', 'q', '{}', 'failed', 0, 1000, 3, 3, 1000, 2000,
                     '[{\"attempt\":3,\"error\":\"disk \\\"full\\\"\",\"at\":2000}]');
         INSERT INTO kosh_jobs (id, name, queue, payload, state, priority, run_at, attempts,
                                max_attempts, created_at, started_at, lease_token,
                                lease_expires_at)
             VALUES (3, 'import', 'q', '{}', 'running', 0, 1000, 1, 3, 1000, 1500, 77,
                     9999999999999);",
    )
    .unwrap();
}

/// A file created at schema version 1 is migrated when opened: its jobs survive, with an
/// empty attempt history, and every new operation works on them.
#[tokio::test]
async fn a_schema_1_file_migrates_and_keeps_its_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    write_schema_1(&path);

    let b = SqliteBackend::connect_with(SqliteOptions::builder(&path).build().unwrap())
        .await
        .expect("a schema-1 file opens");
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    // Migrated to the newest schema.
    assert_eq!(version, kosh_jobs_sqlite::SCHEMA_VERSION);
    // A lease held across the upgrade counts as started, as it did before.
    let started: Vec<(i64, i64)> = rusqlite::Connection::open(&path)
        .unwrap()
        .prepare("SELECT id, lease_started FROM kosh_jobs ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(started, [(1, 0), (2, 0), (3, 1)]);

    let ready = b.get(JobId::new(1)).await.unwrap().expect("job 1 survives");
    assert_eq!(
        (ready.state, ready.payload.as_str(), ready.history.len()),
        (JobState::Ready, "{\"file\":\"a.csv\"}", 0)
    );
    let failed = b.get(JobId::new(2)).await.unwrap().expect("job 2 survives");
    assert_eq!(failed.state, JobState::Failed);
    assert_eq!(failed.last_error(), Some("disk \"full\""));
    let running = b.get(JobId::new(3)).await.unwrap().expect("job 3 survives");
    assert_eq!(
        (running.state, running.history.len()),
        (JobState::Running, 0)
    );

    // The new operations on the old jobs.
    let page = b
        .search(&SearchQuery::new(JobFilter::new().search("DISK \"FULL\"")))
        .await
        .unwrap();
    assert_eq!(
        page.jobs.iter().map(|j| j.id.get()).collect::<Vec<_>>(),
        [2]
    );
    let counts = b.counts().await.unwrap();
    assert_eq!(
        counts[0].oldest_ready_at,
        Some(kosh_jobs_core::Timestamp::from_millis(1000))
    );
    // Limits on a migrated queue: job 3 (leased before the upgrade) holds the only slot.
    b.set_queue_limits(
        "q",
        kosh_jobs_core::QueueLimits::default().with_concurrency(1),
    )
    .await
    .unwrap();
    assert!(b.reserve(&req("q", 1)).await.unwrap().is_empty());
    b.set_queue_limits("q", kosh_jobs_core::QueueLimits::NONE)
        .await
        .unwrap();
    let l = b.reserve(&req("q", 1)).await.unwrap().remove(0);
    assert_eq!(l.id().get(), 1);
    b.finish(vec![Finish {
        lease: l.lease,
        outcome: Outcome::Completed { result: None },
    }])
    .await
    .unwrap();
    let done = b.get(JobId::new(1)).await.unwrap().unwrap();
    assert_eq!(done.history.len(), 1);
    assert_eq!(done.history[0].outcome, Some(AttemptOutcome::Completed));
    assert_eq!(done.history[0].worker, "w-test");
    let tp = b
        .throughput(&ThroughputQuery {
            queue: None,
            since: kosh_jobs_core::Timestamp::from_millis(0),
        })
        .await
        .unwrap();
    assert_eq!(tp.iter().map(|p| p.completed).sum::<u64>(), 1);
    // The job leased before the migration: cancelled without a history to end.
    b.cancel(JobId::new(3)).await.unwrap();
    let cancelled = b.get(JobId::new(3)).await.unwrap().unwrap();
    assert_eq!(
        (cancelled.state, cancelled.history.len()),
        (JobState::Cancelled, 0)
    );
    b.close().await;

    // Opening again is a no-op.
    let b = SqliteBackend::connect_with(SqliteOptions::builder(&path).build().unwrap())
        .await
        .unwrap();
    assert_eq!(
        b.get(JobId::new(2)).await.unwrap().unwrap().state,
        JobState::Failed
    );
}

/// Search texts are taken literally and ignore ASCII case only: `%`, `_`, quotes and
/// backslashes match exactly what [`JobFilter::matches`] matches, in payloads (as stored)
/// and in errors (as the handler wrote them, not as JSON escapes them).
#[tokio::test]
async fn search_texts_match_as_the_reference_does() {
    let (clock, _time) = Clock::manual();
    let b = SqliteBackend::connect_with(SqliteOptions::in_memory().clock(clock).build().unwrap())
        .await
        .unwrap();
    let now = b.clock().now();
    let payloads = [
        r#"{"p":"100%"}"#,
        r#"{"p":"a_b"}"#,
        r#"{"p":"axb"}"#,
        r#"{"p":"say \"hi\""}"#,
        r#"{"p":"back\\slash"}"#,
        r#"{"p":"ÉCOLE"}"#,
        r#"{"p":"École"}"#,
        r#"{"p":"plain"}"#,
    ];
    let mut jobs: Vec<NewJob> = payloads
        .iter()
        .map(|p| NewJob::new("n", "q", *p, now))
        .collect();
    jobs[7].unique_key = Some("Key_With%Odd\"Chars".into());
    b.push(jobs).await.unwrap();
    // Errors with quotes, backslashes and wildcards, failed on the last two jobs.
    let leased = b.reserve(&req("q", 8)).await.unwrap();
    let errors = [r#"bad "row" 7"#, r"path C:\temp\x_1%"];
    let mut finish = Vec::new();
    for (i, l) in leased.iter().enumerate() {
        finish.push(Finish {
            lease: l.lease,
            outcome: match i {
                6 => Outcome::failed(errors[0]),
                7 => Outcome::failed(errors[1]),
                _ => Outcome::Completed { result: None },
            },
        });
    }
    b.finish(finish).await.unwrap();

    let mut all = Vec::new();
    for id in 1..=8u64 {
        all.push(b.get(JobId::new(id)).await.unwrap().unwrap());
    }
    for text in [
        "%",
        "_",
        "a_b",
        "\"",
        "\\",
        "\\\"",
        "\"hi\"",
        "\\\\",
        "back\\slash",
        "école",
        "éCOLE",
        "ÉCOLE",
        "bad \"ROW\"",
        "c:\\TEMP",
        "\\\\temp",
        "x_1%",
        "key_with%odd\"",
        "\"row\\\"",
        "u00e9",
    ] {
        let filter = JobFilter::new().search(text);
        let want: Vec<u64> = all
            .iter()
            .filter(|j| filter.matches(j))
            .map(|j| j.id.get())
            .collect();
        let page = b
            .search(&SearchQuery::new(filter).limit(100))
            .await
            .unwrap();
        let got: Vec<u64> = page.jobs.iter().map(|j| j.id.get()).collect();
        assert_eq!(got, want, "search {text:?}");
        assert_eq!(page.total.map(|t| t.count), Some(want.len() as u64));
    }
}

/// With `create_if_missing(false)` (URL `?create=false`) a missing file is an error naming
/// its absolute path, and neither the file nor its folders are created; an existing file
/// opens as usual.
#[tokio::test]
async fn create_false_never_creates_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("not/yet");
    let path = folder.join("jobs.db");
    let opts = SqliteOptions::builder(&path)
        .create_if_missing(false)
        .build()
        .unwrap();
    let err = SqliteBackend::connect_with(opts).await.unwrap_err();
    assert!(matches!(err, SqliteError::Missing { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("does not exist"), "{msg}");
    match BackendError::from(err) {
        BackendError::InvalidInput(m) => assert!(m.contains("does not exist"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(!dir.path().join("not").exists(), "a folder was created");

    // A missing file in an existing folder, by URL, relative to the current folder: the
    // message names the absolute path, and nothing appears.
    let missing = dir.path().join("missing.db");
    let url = format!("sqlite://{}?create=false", missing.display());
    let err = SqliteBackend::connect(&url).await.unwrap_err();
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
    assert!(!missing.exists(), "the file was created");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let err = kosh_jobs_core::Error::from(SqliteBackend::connect(&url).await.unwrap_err());
    assert!(
        matches!(err, kosh_jobs_core::Error::InvalidInput(_)),
        "{err:?}"
    );

    // An existing database opens with create=false.
    let b = SqliteBackend::connect(&format!("sqlite://{}", missing.display()))
        .await
        .unwrap();
    b.push(vec![NewJob::new("n", "q", "{}", b.clock().now())])
        .await
        .unwrap();
    b.close().await;
    let b = SqliteBackend::connect(&url)
        .await
        .expect("an existing file opens");
    assert_eq!(b.counts().await.unwrap()[0].ready, 1);
}
