//! `kosh-jobs schedules ls|pause|resume|trigger|rm` on a SQLite file and a real Redis, with
//! schedules made by the library.

mod support;

use std::path::Path;
use std::time::Duration;

use kosh_jobs::schedule::{Missed, Overlap, Schedule};
use kosh_jobs::Client;
use kosh_jobs_testsupport::redis_server::RedisServer;
use predicates::str::contains;
use serde::{Deserialize, Serialize};
use support::{bin, json};

#[derive(Serialize, Deserialize)]
struct Fetch {
    user: u64,
}

#[kosh_jobs::job(queue = "bank-sync")]
async fn fetch(_job: Fetch) -> Result<(), kosh_jobs::JobError> {
    Ok(())
}

async fn make_schedules(url: &str) {
    let client = Client::new(kosh_jobs::connect(url).await.unwrap());
    client
        .upsert_schedule(
            Schedule::cron("fetch:42", "0 6 * * *")
                .unwrap()
                .time_zone("Europe/Berlin")
                .unwrap()
                .overlap(Overlap::Skip),
            Fetch { user: 42 },
        )
        .await
        .unwrap();
    client
        .upsert_schedule(
            Schedule::every("fetch:7", Duration::from_secs(90))
                .unwrap()
                .missed(Missed::All { max: 5 }),
            Fetch { user: 7 },
        )
        .await
        .unwrap();
}

fn every_schedules_command(dir: &Path, url: &str) {
    let list = json(dir, url, &["schedules", "ls"]);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["fetch:42", "fetch:7"]);
    let cron = &list[0];
    assert_eq!(cron["every"]["cron"]["expr"], "0 6 * * *");
    assert_eq!(cron["every"]["cron"]["tz"], "Europe/Berlin");
    assert_eq!(cron["payload"]["user"], 42);
    assert_eq!(cron["overlap"], "skip");
    assert_eq!(cron["paused"], false);
    assert!(cron["next_fire"].as_str().unwrap().contains("T"), "{cron}");
    assert_eq!(list[1]["missed"]["policy"], "all");

    // The table says the same for people.
    let out = bin(dir)
        .args(["--url", url, "schedules", "ls"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    for want in [
        "fetch:42",
        "0 6 * * * (Europe/Berlin)",
        "every 1 min 30 s",
        "missed: all (at most 5), overlap: allow",
        "bank-sync",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }

    json(dir, url, &["schedules", "pause", "fetch:42"]);
    let list = json(dir, url, &["schedules", "ls"]);
    assert_eq!(list[0]["paused"], true);
    json(dir, url, &["schedules", "resume", "fetch:42"]);
    let list = json(dir, url, &["schedules", "ls"]);
    assert_eq!(list[0]["paused"], false);

    let triggered = json(dir, url, &["schedules", "trigger", "fetch:7"]);
    let job = triggered["job"].as_u64().expect("a job id");
    let shown = json(dir, url, &["jobs", "show", &job.to_string()]);
    assert_eq!(shown["queue"], "bank-sync");
    assert_eq!(shown["payload"]["user"], 7);

    // Removing asks; no answer is no.
    bin(dir)
        .args(["--url", url, "schedules", "rm", "fetch:7"])
        .write_stdin("n\n")
        .assert()
        .code(1);
    assert_eq!(
        json(dir, url, &["schedules", "ls"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    json(dir, url, &["schedules", "rm", "fetch:7", "--yes"]);
    assert_eq!(
        json(dir, url, &["schedules", "ls"])
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Unknown ids exit 3 with a hint.
    for cmd in ["pause", "resume", "trigger"] {
        bin(dir)
            .args(["--url", url, "schedules", cmd, "nope"])
            .assert()
            .code(3)
            .stderr(contains("no schedule \"nope\""));
    }
    bin(dir)
        .args(["--url", url, "schedules", "rm", "nope", "--yes"])
        .assert()
        .code(3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_on_a_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("jobs.db").display());
    make_schedules(&url).await;
    let path = dir.path().to_owned();
    tokio::task::spawn_blocking(move || every_schedules_command(&path, &url))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_on_redis() {
    let server = RedisServer::start().expect("a redis-server");
    let dir = tempfile::tempdir().unwrap();
    let url = server.url();
    make_schedules(&url).await;
    let path = dir.path().to_owned();
    tokio::task::spawn_blocking(move || every_schedules_command(&path, &url))
        .await
        .unwrap();
}

#[test]
fn no_schedules_says_how_to_make_one() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("jobs.db").display());
    // Create the file first: the CLI does not create one to read from.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        kosh_jobs::connect(&url).await.unwrap();
    });
    bin(dir.path())
        .args(["--url", &url, "schedules", "ls"])
        .assert()
        .success()
        .stdout(contains("no schedules: declare one"));
}
