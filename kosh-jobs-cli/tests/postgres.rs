//! Every command of the binary on a real Postgres cluster seeded by the library, with the
//! backend's schema from the URL; a refused password named nowhere in the error.

mod support;

use kosh_jobs_testsupport::postgres_server::{PostgresServer, PASSWORD};
use support::{bin, every_command, groups_command, json, seed, seed_groups};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_on_postgres() {
    let server = PostgresServer::start().expect("a postgres cluster for the test");
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{}?schema=cli_test", server.url());
    let backend = kosh_jobs::connect(&url).await.unwrap();
    let seeded = seed(&backend).await;
    let path = dir.path().to_owned();
    let base = server.url();
    tokio::task::spawn_blocking(move || {
        every_command(&path, &url, &seeded);
        // Another schema of the same database is another store: it sees nothing.
        let empty = json(
            &path,
            &format!("{base}?schema=other_app"),
            &["queues", "ls"],
        );
        assert_eq!(empty, serde_json::json!([]));
        // A wrong password: an error naming the server, never either password.
        let wrong = base.replace(PASSWORD, "not-the-password-but-secret");
        let out = bin(&path)
            .args(["--url", &wrong, "stats"])
            .output()
            .expect("run kosh-jobs");
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("postgres at 127.0.0.1:"), "{stderr}");
        assert!(
            !stderr.contains("not-the-password-but-secret") && !stderr.contains(PASSWORD),
            "{stderr}"
        );
    })
    .await
    .unwrap();
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_groups_on_postgres() {
    let server = PostgresServer::start().expect("a postgres cluster for the test");
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{}?schema=cli_groups", server.url());
    let backend = kosh_jobs::connect(&url).await.unwrap();
    seed_groups(&backend).await;
    let path = dir.path().to_owned();
    tokio::task::spawn_blocking(move || groups_command(&path, &url))
        .await
        .unwrap();
    drop(server);
}
