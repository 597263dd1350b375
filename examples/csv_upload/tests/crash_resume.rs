//! Crash and resume with real processes: a `csv_upload worker` is SIGKILLed in the middle
//! of an import; a second one takes the job over once the lease expires, resumes from the
//! checkpoint, and every row ends up imported exactly once.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{wait_for, TestApp};

const ROWS: i64 = 2000;

fn statement() -> Vec<u8> {
    let mut s = String::from("Booking Date;Payee;Amount\n");
    for i in 1..=ROWS {
        s.push_str(&format!(
            "{:02}.03.2024;Payee {i};-{i},{:02}\n",
            1 + i % 28,
            i % 100
        ));
    }
    s.into_bytes()
}

fn worker(app: &TestApp, row_delay_ms: u64) -> Child {
    let cfg = &app.services.config;
    Command::new(env!("CARGO_BIN_EXE_csv_upload"))
        .arg("worker")
        .arg("--concurrency=2")
        .env("DATABASE_URL", &cfg.database_url)
        .env("JOBS_URL", &cfg.jobs_url)
        .env("UPLOAD_DIR", &cfg.upload_dir)
        .env("IMPORT_BATCH_ROWS", "50")
        .env("WORKER_LEASE_MS", "1000")
        .env("CSV_UPLOAD_ROW_DELAY_MS", row_delay_ms.to_string())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start the csv_upload worker")
}

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn import_row(app: &TestApp, id: i64) -> (String, i64, Option<i64>, i64, Option<i64>) {
    sqlx::query_as(
        "SELECT state, rows_done, rows_total, attempts, resumed_from FROM imports WHERE id = ?",
    )
    .bind(id)
    .fetch_one(app.services.app.db.as_sqlite().unwrap())
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_s_import_resumes_elsewhere_and_imports_each_row_once() {
    // The web app in this process; workers are separate processes on the same files.
    let app = TestApp::start(None, false).await;
    let (status, v) = app.upload("big.csv", statement()).await;
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_i64().unwrap();

    // A slow worker (2 ms a row: 4 s for the file), killed once a checkpoint is committed.
    let mut first = Guard(worker(&app, 2));
    let done_at_kill = wait_for("a first checkpoint", Duration::from_secs(60), || async {
        let (state, rows_done, ..) = import_row(&app, id).await;
        assert_ne!(state, "failed");
        (rows_done > 0).then_some(rows_done)
    })
    .await;
    // Killed once the job store knows the attempt started (the worker's first lease renewal,
    // at most 250 ms after the start): its expiry then counts. Killed sooner, the attempt
    // would be given back, as if it had never started.
    let jobs_db = format!("sqlite://{}", app.dir.path().join("jobs.db").display());
    let jobs = sqlx::SqlitePool::connect(&jobs_db).await.unwrap();
    wait_for(
        "the job store knows the attempt started",
        Duration::from_secs(60),
        || async {
            let started: Option<(i64,)> = sqlx::query_as(
                "SELECT lease_started FROM kosh_jobs WHERE state = 'running' AND lease_started = 1",
            )
            .fetch_optional(&jobs)
            .await
            .unwrap();
            started.map(|_| ())
        },
    )
    .await;
    jobs.close().await;
    first.0.kill().unwrap(); // SIGKILL: no shutdown, no release, the lease just stops
    first.0.wait().unwrap();
    let (state, rows_done, total, attempts, _) = import_row(&app, id).await;
    assert_eq!(state, "running", "killed in the middle");
    assert!(rows_done >= done_at_kill && rows_done < ROWS, "{rows_done}");
    assert_eq!((total, attempts), (Some(ROWS), 1));

    // Spoil the first data row in place (same length). A resumed import never reads it
    // again; one that started over would reject it.
    let (stored,): (String,) = sqlx::query_as("SELECT stored_name FROM imports WHERE id = ?")
        .bind(id)
        .fetch_one(app.services.app.db.as_sqlite().unwrap())
        .await
        .unwrap();
    let path = app.upload_dir().join(stored);
    let text = std::fs::read_to_string(&path).unwrap();
    let spoiled = text.replacen("\n02.03.2024;Payee 1;", "\n99.03.2024;Payee 1;", 1);
    assert_ne!(text, spoiled);
    std::fs::write(&path, spoiled).unwrap();

    // Another worker takes it over when the lease has expired, and finishes it.
    let mut second = Guard(worker(&app, 0));
    let v = app.wait_final(id, Duration::from_secs(60)).await;
    assert_eq!(v["state"], "completed", "{v}");
    assert_eq!(v["rows_imported"], ROWS, "{v}");
    assert_eq!(
        v["rows_rejected"], 0,
        "rows before the checkpoint were read again: {v}"
    );
    assert_eq!(v["attempts"], 2, "{v}");
    let resumed_from = v["resumed_from"].as_i64().unwrap();
    assert!(
        resumed_from >= rows_done && resumed_from < ROWS,
        "resumed from row {resumed_from}, not from the start (checkpoint at kill: {rows_done})"
    );
    assert_eq!(
        v["job"]["attempts"], 2,
        "the expired lease counted as an attempt: {v}"
    );

    // Each row exactly once.
    let (count, lines, sum): (i64, i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(DISTINCT line), SUM(amount_cents) FROM transactions WHERE import_id = ?",
    )
    .bind(id)
    .fetch_one(app.services.app.db.as_sqlite().unwrap())
    .await
    .unwrap();
    let expected_sum: i64 = (1..=ROWS).map(|i| -(i * 100 + i % 100)).sum();
    assert_eq!((count, lines, sum), (ROWS, ROWS, expected_sum));
    let (_, n) = app.get("/api/notifications").await;
    assert_eq!(n["items"].as_array().unwrap().len(), 1, "{n}");

    // SIGTERM: the worker stops gracefully.
    let pid = second.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = second.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "worker did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status}");
    app.stop().await;
}

/// `serve` prints the URL to open on a line of its own on stdout, and its logs (stderr)
/// carry no colour codes when not on a terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_prints_the_url_on_its_own_line_and_logs_without_colour() {
    use std::io::{BufRead, BufReader, Read};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Guard(
        Command::new(env!("CARGO_BIN_EXE_csv_upload"))
            .arg("serve")
            .current_dir(dir.path())
            // Not run by cargo (which sets it for this test): relative paths are taken
            // from the working directory.
            .env_remove("CARGO_MANIFEST_DIR")
            .env_remove("DATABASE_URL")
            .env_remove("JOBS_URL")
            .env_remove("REDIS_URL")
            .env_remove("UPLOAD_DIR")
            .env("BIND", "127.0.0.1:0")
            .env_remove("NO_COLOR")
            .env_remove("ADMIN_PASSWORD")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start csv_upload serve"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let mut stderr = child.0.stderr.take().unwrap();
    let mut lines = BufReader::new(stdout)
        .lines()
        .map(|l| l.expect("read stdout"));
    let url = lines
        .by_ref()
        .find(|l| l.trim_start().starts_with("http://"))
        .expect("a URL line on stdout");
    let url = url.trim();
    // Then the data folder, absolute: the relative defaults, from the working directory.
    let data = lines
        .find(|l| l.starts_with("Data folder: "))
        .expect("the data folder on stdout");
    let cwd = dir.path().canonicalize().unwrap();
    assert_eq!(
        data,
        format!("Data folder: {}", cwd.join("data").display()),
        "absolute"
    );
    assert!(cwd.join("data/uploads").is_dir() && cwd.join("data/app.db").is_file());
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with('/') && !url.contains(' '),
        "the URL alone on its line: {url:?}"
    );
    let page = reqwest::get(url).await.expect("the printed URL answers");
    assert_eq!(page.status(), 200);
    let _ = child.0.kill();
    let _ = child.0.wait();
    let mut logs = String::new();
    stderr.read_to_string(&mut logs).unwrap();
    assert!(
        logs.contains("data folder"),
        "the data folder is logged: {logs}"
    );
    assert!(logs.contains("jobs dashboard off"), "{logs}");
    assert!(
        !logs.contains('\u{1b}'),
        "no colour codes off a terminal: {logs:?}"
    );
}
