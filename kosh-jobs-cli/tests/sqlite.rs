//! Every command of the binary on a SQLite file seeded by the library.

mod support;

use support::{bin, every_command, groups_command, seed, seed_groups};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_on_a_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("jobs.db").display());
    let backend = kosh_jobs::connect(&url).await.unwrap();
    let seeded = seed(&backend).await;
    let path = dir.path().to_owned();
    tokio::task::spawn_blocking(move || every_command(&path, &url, &seeded))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_groups_on_a_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("jobs.db").display());
    let backend = kosh_jobs::connect(&url).await.unwrap();
    seed_groups(&backend).await;
    let path = dir.path().to_owned();
    tokio::task::spawn_blocking(move || groups_command(&path, &url))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_url_comes_from_dot_env_and_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobs.db");
    let url = format!("sqlite://{}", db.display());
    let backend = kosh_jobs::connect(&url).await.unwrap();
    seed(&backend).await;
    std::fs::write(dir.path().join(".env"), format!("KOSH_JOBS_URL={url}\n")).unwrap();
    let out = bin(dir.path()).args(["stats", "--json"]).assert().success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v["queues"][0]["queue"], "csv-uploads");
    std::fs::remove_file(dir.path().join(".env")).unwrap();
    for var in ["KOSH_JOBS_URL", "JOBS_URL", "REDIS_URL"] {
        bin(dir.path())
            .env(var, &url)
            .args(["queues", "ls", "--json"])
            .assert()
            .success();
    }
    // The environment wins over .env; --url wins over both.
    std::fs::write(
        dir.path().join(".env"),
        "KOSH_JOBS_URL=sqlite://elsewhere.db\n",
    )
    .unwrap();
    bin(dir.path())
        .env("KOSH_JOBS_URL", &url)
        .args(["stats"])
        .assert()
        .success();
    bin(dir.path())
        .env("KOSH_JOBS_URL", "sqlite://nowhere.db")
        .args(["--url", &url, "stats"])
        .assert()
        .success();
    bin(dir.path())
        .args(["stats"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains("no job database at elsewhere.db"));
    assert!(!dir.path().join("elsewhere.db").exists());
}
