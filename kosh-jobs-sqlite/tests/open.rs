//! Opening files: new, concurrent, foreign, newer, corrupt; URLs and in-memory databases; use
//! from another runtime. Folders, paths in messages and permissions are in `paths.rs`.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use kosh_jobs_core::{Backend, BackendError, JobState, NewJob, ReserveRequest};
use kosh_jobs_sqlite::{SqliteBackend, SqliteError, SqliteOptions};

fn job(queue: &str) -> NewJob {
    NewJob::new("t", queue, "{}", kosh_jobs_core::Timestamp::now_system())
}

/// Opens the file at `path` with default options.
async fn open(path: impl AsRef<Path>) -> Result<SqliteBackend, SqliteError> {
    SqliteBackend::connect_with(SqliteOptions::builder(path.as_ref()).build()?).await
}

/// Writes a kosh-jobs database with one job, closed again when this returns.
async fn make_db(path: &Path) {
    let b = open(path).await.expect("create");
    b.push(vec![job("q")]).await.expect("push");
    b.close().await;
}

#[tokio::test]
async fn reopening_keeps_jobs_and_url_works() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    make_db(&path).await;
    let url = format!("sqlite://{}", path.display());
    let b = SqliteBackend::connect(&url).await.expect("reopen by url");
    assert_eq!(b.counts().await.unwrap()[0].ready, 1);
    assert_eq!(b.path(), Some(path.as_path()));
    let mem = SqliteBackend::connect("sqlite::memory:").await.unwrap();
    assert!(mem.counts().await.unwrap().is_empty());
}

#[tokio::test]
async fn many_openers_of_a_new_file_do_not_race() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("race.db");
    // Threads, each with its own runtime, open the same new file at once.
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let path = path.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                barrier.wait();
                rt.block_on(async {
                    let b = open(&path).await?;
                    b.push(vec![job("q")])
                        .await
                        .map_err(|e| SqliteError::InvalidOptions(format!("push failed: {e}")))?;
                    Ok::<_, SqliteError>(())
                })
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap().expect("every opener succeeds");
    }
    let b = open(&path).await.unwrap();
    assert_eq!(b.counts().await.unwrap()[0].ready, 8);
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "these are my notes, not a database\n".repeat(200)).unwrap();
    let err = open(&path).await.unwrap_err();
    assert!(matches!(err, SqliteError::NotADatabase { .. }), "{err:?}");
    assert!(
        err.to_string().contains("is not an sqlite database"),
        "{err}"
    );
    assert!(matches!(
        BackendError::from(err),
        BackendError::Incompatible(_)
    ));
    // The file was left alone.
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .starts_with("these are my notes"));
}

#[tokio::test]
async fn another_applications_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);")
            .unwrap();
    }
    let err = open(&path).await.unwrap_err();
    assert!(
        matches!(err, SqliteError::NotKoshDatabase { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("not a kosh-jobs database"),
        "{err}"
    );

    let other = dir.path().join("other.db");
    {
        let conn = rusqlite::Connection::open(&other).unwrap();
        conn.execute_batch("PRAGMA application_id = 1234;").unwrap();
    }
    let err = open(&other).await.unwrap_err();
    assert!(err.to_string().contains("application id"), "{err}");
}

#[tokio::test]
async fn a_newer_schema_is_refused_with_a_message_that_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    make_db(&path).await;
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA user_version = 99;").unwrap();
    }
    let err = open(&path).await.unwrap_err();
    assert!(
        matches!(err, SqliteError::NewerSchema { found: 99, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("newer version") && msg.contains("99"), "{msg}");
    match BackendError::from(err) {
        BackendError::Incompatible(m) => assert!(m.contains("newer version"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_corrupt_file_gives_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    make_db(&path).await;
    {
        // Whatever is still in the WAL goes into the file, so the scribbling below hits it.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
    }
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(len > 8192, "the database has several pages");
    // Scribble over the schema table (page 1 after its 100-byte header) and the pages after.
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.seek(SeekFrom::Start(100)).unwrap();
    f.write_all(&vec![0xA5; (len - 100) as usize]).unwrap();
    drop(f);
    let err = match open(&path).await {
        Err(e) => e,
        Ok(b) => {
            // Opening may succeed when damage is only in data pages; then use fails cleanly.
            let e = b.get(kosh_jobs_core::JobId::new(1)).await.unwrap_err();
            panic!("expected the open to notice, got a backend whose get says {e:?}")
        }
    };
    assert!(
        matches!(err, SqliteError::Corrupt { .. }),
        "expected a corrupt error: {err:?}"
    );
    assert!(err.to_string().contains("corrupt"), "{err}");
}

#[tokio::test]
async fn damage_in_data_pages_fails_operations_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    {
        let b = open(&path).await.unwrap();
        let jobs = (0..2000)
            .map(|i| {
                NewJob::new(
                    "t",
                    "q",
                    format!("{{\"pad\":\"{}\"}}", "x".repeat(i % 200)),
                    kosh_jobs_core::Timestamp::now_system(),
                )
            })
            .collect();
        b.push(jobs).await.unwrap();
        b.close().await;
    }
    let len = std::fs::metadata(&path).unwrap().len();
    // Keep the first pages (header and schema) and destroy the second half of the file.
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.seek(SeekFrom::Start(len / 2)).unwrap();
    f.write_all(&vec![0x5A; (len - len / 2) as usize]).unwrap();
    drop(f);
    let b = match open(&path).await {
        Ok(b) => b,
        Err(e) => {
            assert!(matches!(e, SqliteError::Corrupt { .. }), "{e:?}");
            return;
        }
    };
    let mut saw_error = false;
    for _ in 0..3 {
        let req = ReserveRequest {
            queues: vec!["q".into()],
            worker: "t".into(),
            max: 2000,
            lease: Duration::from_secs(30),
        };
        if let Err(e) = b.reserve(&req).await {
            assert!(
                matches!(e, BackendError::Incompatible(ref m) if m.contains("corrupt")),
                "{e:?}"
            );
            saw_error = true;
        }
        if let Err(e) = b.counts().await {
            assert!(
                matches!(e, BackendError::Incompatible(ref m) if m.contains("corrupt")),
                "{e:?}"
            );
            saw_error = true;
        }
    }
    assert!(saw_error, "reading a destroyed half of the table must fail");
}

/// `?` turns the backend's error into the application-facing one.
async fn connect(url: &str) -> Result<SqliteBackend, kosh_jobs_core::Error> {
    Ok(SqliteBackend::connect(url).await?)
}

#[tokio::test]
async fn an_unknown_url_key_is_invalid_input_naming_the_valid_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data/jobs.db");
    let url = format!("sqlite://{}?busy_timeout=5000", path.display());
    let err = SqliteBackend::connect(&url).await.unwrap_err();
    assert!(matches!(err, SqliteError::InvalidOptions(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("`busy_timeout`") && msg.contains("busy_timeout_ms, poll_interval_ms"),
        "{msg}"
    );
    assert!(matches!(
        BackendError::from(err),
        BackendError::InvalidInput(ref m) if m.contains("`busy_timeout`")
    ));
    match connect(&url).await {
        Err(kosh_jobs_core::Error::InvalidInput(m)) => {
            assert!(m.contains("busy_timeout_ms, poll_interval_ms"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    for bad in [
        "sqlite://",
        "postgres://x/jobs",
        "sqlite://j.db?busy_timeout_ms=soon",
    ] {
        assert!(
            matches!(
                connect(bad).await,
                Err(kosh_jobs_core::Error::InvalidInput(_))
            ),
            "{bad}"
        );
    }
    assert!(!dir.path().join("data").exists(), "nothing is created");
}

#[tokio::test]
async fn every_memory_database_is_private() {
    let a = connect("sqlite::memory:").await.unwrap();
    let b = connect("sqlite::memory:").await.unwrap();
    let c = connect("sqlite://:memory:").await.unwrap();
    a.push(vec![job("only-in-a")]).await.unwrap();
    assert_eq!(a.counts().await.unwrap()[0].ready, 1);
    assert!(b.counts().await.unwrap().is_empty());
    assert!(c.counts().await.unwrap().is_empty());
    assert!(a.path().is_none());
    assert!(!Path::new(":memory:").exists(), "no file named :memory:");
}

/// The backend's futures make progress when polled from a runtime other than the one that
/// opened it, even if that first runtime is blocked.
#[test]
fn usable_from_another_runtime_while_the_first_is_blocked() {
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let b = first.block_on(open(dir.path().join("jobs.db"))).unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    // Block the first runtime's only thread.
    let blocker = std::thread::spawn(move || {
        first.block_on(async move {
            let _ = rx.recv_timeout(Duration::from_secs(30));
        })
    });
    let second = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    second.block_on(async {
        let id = b.push(vec![job("q")]).await.unwrap()[0].id;
        let req = ReserveRequest {
            queues: vec!["q".into()],
            worker: "t".into(),
            max: 1,
            lease: Duration::from_secs(30),
        };
        let l = b.reserve(&req).await.unwrap();
        assert_eq!(l.len(), 1);
        assert!(b
            .heartbeat(&[l[0].lease], Duration::from_secs(60))
            .await
            .unwrap()
            .is_empty());
        assert_eq!(b.get(id).await.unwrap().unwrap().state, JobState::Running);
    });
    tx.send(()).unwrap();
    blocker.join().unwrap();
}
