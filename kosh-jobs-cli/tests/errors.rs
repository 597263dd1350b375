//! Errors and exit codes: unreachable stores (no password in the message), bad flags, missing
//! SQLite files (never created by a read-only command), colour.

mod support;

use std::net::TcpListener;

use predicates::prelude::*;
use support::bin;

/// A port of 127.0.0.1 nothing listens on.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    port
}

#[test]
fn an_unreachable_redis_is_named_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port();
    for url in [
        format!("redis://:hunter2secret@127.0.0.1:{port}"),
        format!("redis://admin:hunter2secret@127.0.0.1:{port}/3?prefix=app"),
    ] {
        let started = std::time::Instant::now();
        let out = bin(dir.path())
            .args(["--url", &url, "--timeout", "2s", "stats"])
            .assert()
            .code(1);
        let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
        assert!(!err.contains("hunter2secret"), "{err}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{err}"
        );
    }
    // Through the environment and --prefix as well.
    let url = format!("redis://:hunter2secret@127.0.0.1:{port}");
    let out = bin(dir.path())
        .env("REDIS_URL", &url)
        .args(["--prefix", "myapp", "--timeout", "1s", "jobs", "ls"])
        .assert()
        .code(1);
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && !err.contains("hunter2secret"),
        "{err}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    bin(dir.path())
        .args(["--url", "memory:", "jobs", "ls", "--state", "done"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "valid states: scheduled, ready, running, completed, failed, cancelled",
        ));
    bin(dir.path())
        .args(["stats"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--url").and(predicate::str::contains("KOSH_JOBS_URL")));
    bin(dir.path())
        .args(["--url", "memory:", "jobs", "retry"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("which jobs?"));
    bin(dir.path())
        .args([
            "--url", "memory:", "jobs", "retry", "1", "--state", "failed",
        ])
        .assert()
        .code(2);
    bin(dir.path())
        .args([
            "--url", "memory:", "jobs", "delete", "--state", "running", "--yes",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "delete applies to completed, failed, cancelled",
        ));
    bin(dir.path())
        .args(["--url", "memory:", "jobs", "ls", "--since", "soonish"])
        .assert()
        .code(2);
    bin(dir.path())
        .args(["--url", "memory:", "jobs", "ls", "--queue", "bad queue"])
        .assert()
        .code(2);
    bin(dir.path())
        .args(["--url", "sqlite://x.db", "--prefix", "app", "stats"])
        .assert()
        .code(2);
    bin(dir.path())
        .args(["--url", "mongodb://localhost", "stats"])
        .assert()
        .code(2);
    bin(dir.path()).args(["frobnicate"]).assert().code(2);
    assert!(!dir.path().join("x.db").exists());
}

#[test]
fn help_documents_the_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    bin(dir.path()).arg("--help").assert().success().stdout(
        predicate::str::contains("Exit codes:").and(predicate::str::contains("3  not found")),
    );
}

#[test]
fn read_only_commands_never_create_a_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("missing").join("jobs.db");
    let url = format!("sqlite://{}", db.display());
    for args in [
        &["stats"][..],
        &["queues", "ls"],
        &["jobs", "ls"],
        &["jobs", "show", "1"],
        &["workers"],
        &["watch", "--count", "1"],
    ] {
        bin(dir.path())
            .args(["--url", &url])
            .args(args)
            .assert()
            .code(1)
            .stderr(predicate::str::contains(db.display().to_string()));
        assert!(!db.exists(), "{args:?} created {}", db.display());
        assert!(
            !db.parent().unwrap().exists(),
            "{args:?} created the folder"
        );
    }
    // A command that writes does create it.
    bin(dir.path())
        .args(["--url", &url, "enqueue", "mail", "--queue", "default"])
        .assert()
        .success();
    assert!(db.exists());
}

#[test]
fn no_escape_codes_off_a_terminal_or_with_no_color() {
    let dir = tempfile::tempdir().unwrap();
    for no_color in [false, true] {
        let mut c = bin(dir.path());
        if no_color {
            c.env("NO_COLOR", "1");
        }
        let out = c
            .args(["--url", "memory:", "jobs", "show", "1"])
            .assert()
            .code(3);
        let o = out.get_output();
        assert!(!o.stdout.contains(&0x1b) && !o.stderr.contains(&0x1b));
    }
}
