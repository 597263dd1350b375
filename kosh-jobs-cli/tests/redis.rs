//! Every command of the binary on a real `redis-server` seeded by the library, with the key
//! prefix from the URL and from `--prefix`.

mod support;

use kosh_jobs_testsupport::redis_server::RedisServer;
use support::{bin, every_command, groups_command, json, seed, seed_groups};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_on_redis() {
    let server = RedisServer::start().expect("a redis-server for the test");
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{}?prefix=cli-test", server.url());
    let backend = kosh_jobs::connect(&url).await.unwrap();
    let seeded = seed(&backend).await;
    let path = dir.path().to_owned();
    let base = server.url();
    tokio::task::spawn_blocking(move || {
        every_command(&path, &url, &seeded);
        // --prefix picks the same keys as prefix= in the URL; another prefix sees nothing.
        let out = bin(&path)
            .args([
                "--url", &base, "--prefix", "cli-test", "queues", "ls", "--json",
            ])
            .assert()
            .success();
        let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
        assert_eq!(v.as_array().map(Vec::len), Some(2), "{v}");
        let other = format!("{base}?prefix=cli-test");
        let empty = json(
            &path,
            &other.replace("cli-test", "other-app"),
            &["queues", "ls"],
        );
        assert_eq!(empty, serde_json::json!([]));
        let overridden = bin(&path)
            .args(["--url", &other, "--prefix", "other-app", "stats", "--json"])
            .assert()
            .success();
        let v: serde_json::Value = serde_json::from_slice(&overridden.get_output().stdout).unwrap();
        assert_eq!(v["queues"], serde_json::json!([]));
    })
    .await
    .unwrap();
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_groups_on_redis() {
    let server = RedisServer::start().expect("a redis-server for the test");
    let dir = tempfile::tempdir().unwrap();
    let url = server.url();
    let backend = kosh_jobs::connect(&url).await.unwrap();
    seed_groups(&backend).await;
    let path = dir.path().to_owned();
    tokio::task::spawn_blocking(move || groups_command(&path, &url))
        .await
        .unwrap();
}
