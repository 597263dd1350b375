//! Runs the `kosh-jobs` binary against a store seeded by the library in the test process.

#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::time::Duration;

use assert_cmd::Command;
use kosh_jobs::{AnyBackend, JobId};
use kosh_jobs_testsupport::seed::Seed;
pub use kosh_jobs_testsupport::seed::Seeded;
use serde_json::{json, Value};

/// The binary, in `dir`, with no URL from the environment and no colour settings.
pub fn bin(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kosh-jobs"));
    c.current_dir(dir)
        .env_remove("KOSH_JOBS_URL")
        .env_remove("JOBS_URL")
        .env_remove("REDIS_URL")
        .env_remove("NO_COLOR")
        .timeout(Duration::from_secs(60));
    c
}

/// Runs `args` with `--json` and parses stdout, asserting exit code 0.
pub fn json(dir: &Path, url: &str, args: &[&str]) -> Value {
    let out = bin(dir)
        .arg("--url")
        .arg(url)
        .args(args)
        .arg("--json")
        .output()
        .expect("run kosh-jobs");
    assert!(
        out.status.success(),
        "kosh-jobs {args:?} failed ({:?}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "kosh-jobs {args:?}: stdout is not one JSON document ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Seeds: 3 failed + 2 completed + 1 running job on `csv-uploads`, each naming its statement
/// file, 1 ready and 1 scheduled on `mail`, and a live worker `test-worker` holding the
/// running job.
pub async fn seed(b: &AnyBackend) -> Seeded {
    kosh_jobs_testsupport::seed::seed(b, &Seed::default()).await
}

fn queue<'a>(stats: &'a Value, name: &str) -> &'a Value {
    stats["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .find(|q| q["queue"] == name)
        .unwrap_or_else(|| panic!("no queue {name} in {stats}"))
}

fn ids(v: &Value) -> Vec<u64> {
    v["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["id"].as_u64().expect("id"))
        .collect()
}

/// Seeds queue `per-user` with groups (see `kosh_jobs_testsupport::seed::seed_groups`).
pub async fn seed_groups(b: &AnyBackend) {
    kosh_jobs_testsupport::seed::seed_groups(b).await;
}

/// `queues groups` and the group columns of `queues limits` on a store seeded by
/// [`seed_groups`].
pub fn groups_command(dir: &Path, url: &str) {
    let page = json(dir, url, &["queues", "groups", "per-user"]);
    assert_eq!(
        page,
        json!({"queue": "per-user", "next": null, "groups": [
            {"group": "ann", "ready": 2, "ready_exact": true, "running": 1,
             "starts_in_window": 0, "at_limit": true, "next_start_at": null},
            {"group": "bob", "ready": 0, "ready_exact": true, "running": 1,
             "starts_in_window": 0, "at_limit": true, "next_start_at": null},
            {"group": "it's me", "ready": 2, "ready_exact": true, "running": 0,
             "starts_in_window": 0, "at_limit": false, "next_start_at": null},
        ]})
    );
    let first = json(dir, url, &["queues", "groups", "per-user", "--limit", "2"]);
    assert_eq!(first["next"], "bob", "{first}");
    let rest = json(
        dir,
        url,
        &[
            "queues", "groups", "per-user", "--limit", "2", "--after", "bob",
        ],
    );
    assert_eq!(rest["groups"][0]["group"], "it's me", "{rest}");
    assert_eq!(rest["next"], Value::Null, "{rest}");

    let out = bin(dir)
        .args(["--url", url, "queues", "groups", "per-user", "--limit", "2"])
        .output()
        .expect("run kosh-jobs");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("full until a running job ends")
            && table.contains("2 groups, 2 at their limit")
            && table.contains("--after bob"),
        "{table}"
    );
    let out = bin(dir)
        .args([
            "--url", url, "queues", "groups", "per-user", "--after", "bob",
        ])
        .output()
        .expect("run kosh-jobs");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("it's me") && table.contains("may start") && !table.contains("next page"),
        "{table}"
    );
    let empty = bin(dir)
        .args(["--url", url, "queues", "groups", "no-such-queue"])
        .output()
        .expect("run kosh-jobs");
    assert!(
        String::from_utf8_lossy(&empty.stdout).contains("no group has a ready or running job"),
        "{empty:?}"
    );
    bin(dir)
        .args(["--url", url, "queues", "groups", "bad queue"])
        .assert()
        .code(2);
    bin(dir)
        .args(["--url", url, "queues", "groups", "per-user", "--limit", "0"])
        .assert()
        .code(2);

    let flows = json(dir, url, &["queues", "limits"]);
    let f = flows
        .as_array()
        .and_then(|a| a.iter().find(|f| f["queue"] == "per-user"))
        .unwrap_or_else(|| panic!("per-user in {flows}"));
    assert_eq!(
        (
            &f["groups_running"],
            &f["groups_at_limit"],
            &f["held_in_groups"]
        ),
        (&json!(2), &json!(2), &json!(2)),
        "ann's 2 ready jobs wait for their group: {f}"
    );
    let out = bin(dir)
        .args(["--url", url, "queues", "limits"])
        .output()
        .expect("run kosh-jobs");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("2 running, 2 full (1 per group), 2 jobs waiting"),
        "{table}"
    );
}

/// Every command against `url` (seeded by [`seed`]), JSON checked field by field.
pub fn every_command(dir: &Path, url: &str, s: &Seeded) {
    let n = |id: JobId| id.get();

    // stats
    let st = json(dir, url, &["stats"]);
    let csv = queue(&st, "csv-uploads");
    assert_eq!(csv["paused"], false);
    assert_eq!(csv["counts"]["failed"], 3);
    assert_eq!(csv["counts"]["completed"], 2);
    assert_eq!(csv["counts"]["running"], 1);
    assert_eq!(csv["counts"]["ready"], 0);
    assert_eq!(csv["last_minute"], json!({"completed": 2, "failed": 3}));
    assert_eq!(csv["last_hour"], json!({"completed": 2, "failed": 3}));
    assert_eq!(csv["last_day"], json!({"completed": 2, "failed": 3}));
    assert_eq!(csv["oldest_ready_age_ms"], Value::Null);
    let mail = queue(&st, "mail");
    assert_eq!(
        (
            mail["counts"]["ready"].as_u64(),
            mail["counts"]["scheduled"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert!(mail["oldest_ready_age_ms"].is_u64(), "{mail}");
    assert!(mail["oldest_ready_at"].is_string(), "{mail}");
    assert_eq!(st["workers"], 1);
    assert!(st["at"].as_str().is_some_and(|t| t.ends_with('Z')));

    // queues ls
    let qs = json(dir, url, &["queues", "ls"]);
    let names: Vec<&str> = qs
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["queue"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["csv-uploads", "mail"]);
    assert_eq!(qs[1]["counts"]["ready"], 1);

    // jobs ls with the filter flags
    let failed_filter = [
        "--state",
        "failed",
        "--queue",
        "csv-uploads",
        "--since",
        "2h",
    ];
    let ls = json(dir, url, &[&["jobs", "ls"][..], &failed_filter].concat());
    assert_eq!(ids(&ls), s.failed.iter().map(|&i| n(i)).collect::<Vec<_>>());
    assert_eq!(ls["total"], json!({"count": 3, "exact": true}));
    assert_eq!(ls["next"], Value::Null);
    let j = &ls["jobs"][0];
    assert_eq!(j["state"], "failed");
    assert_eq!(j["queue"], "csv-uploads");
    assert_eq!(j["name"], "import_csv");
    assert_eq!(j["last_error"], "database is locked");
    assert_eq!(j["attempts"], 1);
    assert_eq!(j["max_attempts"], 1);
    assert_eq!(j["payload"]["upload_id"], 1);
    assert!(j["created_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(j["finished_at"].is_string());

    // Nothing created in the future, nothing before a minute from now... (--until)
    let none = json(dir, url, &["jobs", "ls", "--since", "2030-01-01T00:00:00Z"]);
    assert_eq!(ids(&none), Vec::<u64>::new());
    let before = json(dir, url, &["jobs", "ls", "--until", "1h"]);
    assert_eq!(ids(&before), Vec::<u64>::new());

    // Paging: --limit, next, --after; --newest
    let p1 = json(dir, url, &["jobs", "ls", "--limit", "2"]);
    assert_eq!(ids(&p1), vec![n(s.failed[0]), n(s.failed[1])]);
    assert_eq!(p1["next"], n(s.failed[1]));
    assert_eq!(p1["total"]["count"], 8);
    let after = n(s.failed[1]).to_string();
    let p2 = json(dir, url, &["jobs", "ls", "--limit", "2", "--after", &after]);
    assert_eq!(ids(&p2), vec![n(s.failed[2]), n(s.completed[0])]);
    let newest = json(dir, url, &["jobs", "ls", "--newest", "--limit", "1"]);
    assert_eq!(ids(&newest), vec![n(s.scheduled)]);

    // Text search (case ignored), name, several states
    let found = json(dir, url, &["jobs", "ls", "--search", "LOCKED"]);
    assert_eq!(ids(&found).len(), 3);
    let by_name = json(
        dir,
        url,
        &[
            "jobs",
            "ls",
            "--name",
            "send_mail",
            "--state",
            "ready,scheduled",
        ],
    );
    assert_eq!(ids(&by_name), vec![n(s.ready), n(s.scheduled)]);
    let by_payload = json(dir, url, &["jobs", "ls", "--search", "statement-5.csv"]);
    assert_eq!(ids(&by_payload), vec![n(s.completed[1])]);

    // jobs show
    let id = n(s.failed[0]).to_string();
    let show = json(dir, url, &["jobs", "show", &id]);
    assert_eq!(show["id"], n(s.failed[0]));
    assert_eq!(show["state"], "failed");
    assert_eq!(
        show["payload"],
        json!({"upload_id": 1, "file": "statement-1.csv"})
    );
    assert_eq!(show["history"].as_array().map(Vec::len), Some(1));
    assert_eq!(show["history"][0]["attempt"], 1);
    assert_eq!(show["history"][0]["worker"], "test-worker");
    assert_eq!(show["history"][0]["outcome"], "failed");
    assert_eq!(show["history"][0]["error"], "database is locked");
    assert!(show["history"][0]["duration_ms"].is_u64());
    assert_eq!(show["errors"][0]["error"], "database is locked");
    assert_eq!(show["trace"], kosh_jobs_testsupport::seed::TRACE);
    let done = json(dir, url, &["jobs", "show", &n(s.completed[0]).to_string()]);
    assert_eq!(done["result"], json!({"rows": 120}));
    assert_eq!(done["history"][0]["outcome"], "completed");
    let text = bin(dir)
        .args(["--url", url, "jobs", "show", &id])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&text.get_output().stdout).into_owned();
    for want in [
        "job ",
        "failed",
        "\"upload_id\": 1",
        "attempts",
        "test-worker",
        "database is locked",
        "Z (",
        kosh_jobs_testsupport::seed::TRACE,
    ] {
        assert!(text.contains(want), "`{want}` missing from:\n{text}");
    }
    assert!(
        !text.contains('\x1b'),
        "escape codes off a terminal:\n{text}"
    );
    bin(dir)
        .args(["--url", url, "jobs", "show", "999999"])
        .assert()
        .code(3)
        .stderr(predicates::str::contains("job 999999 not found"));

    // retry by filter: --dry-run counts, `n` does nothing, `y` acts
    let retry = [&["jobs", "retry"][..], &failed_filter].concat();
    let dry = json(dir, url, &[&retry[..], &["--dry-run"]].concat());
    assert_eq!(dry["matched"], 3);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["applied"], 0);
    let declined = bin(dir)
        .args(["--url", url])
        .args(&retry)
        .write_stdin("n\n")
        .assert()
        .code(1);
    let err = String::from_utf8_lossy(&declined.get_output().stderr).into_owned();
    assert!(
        err.contains("retry 3 jobs") && err.contains("[y/N]"),
        "{err}"
    );
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(
        json(dir, url, &["stats"]).pipe(|v| queue(&v, "csv-uploads")["counts"]["failed"].clone()),
        3
    );
    let yes = bin(dir)
        .args(["--url", url])
        .args(&retry)
        .write_stdin("y\n")
        .assert()
        .success();
    let out = String::from_utf8_lossy(&yes.get_output().stdout).into_owned();
    assert!(out.contains("retried 3 jobs"), "{out}");
    let st = json(dir, url, &["stats"]);
    assert_eq!(queue(&st, "csv-uploads")["counts"]["failed"], 0);
    assert_eq!(queue(&st, "csv-uploads")["counts"]["ready"], 3);
    // Nothing left to retry: no prompt, exit 0.
    let again = json(dir, url, &[&retry[..], &["--yes"]].concat());
    assert_eq!(
        (again["matched"].as_u64(), again["applied"].as_u64()),
        (Some(0), Some(0))
    );

    // cancel by ids (one unknown: exit 3, the other acted on)
    let one = n(s.failed[0]).to_string();
    bin(dir)
        .args(["--url", url, "jobs", "cancel", &one, "999999"])
        .assert()
        .code(3)
        .stdout(predicates::str::contains(format!("job {one}: cancelled")))
        .stdout(predicates::str::contains("job 999999: not found"));
    let cancelled = json(dir, url, &["jobs", "cancel", &one]);
    assert_eq!(
        cancelled["results"][0],
        json!({"id": n(s.failed[0]), "result": "skipped", "state": "cancelled", "held_by": null})
    );

    // promote by filter with --yes
    let promoted = json(dir, url, &["jobs", "promote", "--queue", "mail", "--yes"]);
    assert_eq!(
        (promoted["matched"].as_u64(), promoted["applied"].as_u64()),
        (Some(1), Some(1))
    );
    let sch = json(dir, url, &["jobs", "show", &n(s.scheduled).to_string()]);
    assert_eq!(sch["state"], "ready");

    // delete by filter
    let deleted = json(
        dir,
        url,
        &["jobs", "delete", "--state", "cancelled", "--yes"],
    );
    assert_eq!(deleted["applied"], 1);
    bin(dir)
        .args(["--url", url, "jobs", "show", &one])
        .assert()
        .code(3);

    // queues pause / resume
    assert_eq!(
        json(dir, url, &["queues", "pause", "mail"]),
        json!({"queue": "mail", "paused": true})
    );
    assert_eq!(queue(&json(dir, url, &["stats"]), "mail")["paused"], true);
    assert_eq!(
        json(dir, url, &["queues", "resume", "mail"])["paused"],
        false
    );
    assert_eq!(queue(&json(dir, url, &["stats"]), "mail")["paused"], false);

    // queues limit / limits: kept in the store, listed with where the queue stands
    assert_eq!(json(dir, url, &["queues", "limits"]), json!([]));
    let set = [
        "queues",
        "limit",
        "csv-uploads",
        "--concurrency",
        "1",
        "--rate",
        "100/1s",
        "--group-concurrency",
        "2",
        "--group-rate",
        "5/1m",
    ];
    assert_eq!(
        json(dir, url, &set),
        json!({"queue": "csv-uploads", "limits": {
            "concurrency": 1, "rate": {"max": 100, "per_ms": 1000}, "group_concurrency": 2,
            "group_rate": {"max": 5, "per_ms": 60000}}})
    );
    let flows = json(dir, url, &["queues", "limits"]);
    assert_eq!(flows.as_array().map(Vec::len), Some(1), "{flows}");
    assert_eq!(flows[0]["queue"], "csv-uploads");
    assert_eq!(
        flows[0]["running"], 1,
        "the seeded running job holds the one slot"
    );
    assert_eq!(
        flows[0]["starts_in_window"], 0,
        "it started before the limit was set"
    );
    assert_eq!(flows[0]["next_start_at"], Value::Null);
    assert_eq!(flows[0]["held_until"], Value::Null);
    assert_eq!(flows[0]["groups_at_limit"], 0);
    let table = bin(dir)
        .args(["--url", url, "queues", "limits"])
        .output()
        .expect("run kosh-jobs");
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("csv-uploads") && table.contains("when a running job ends"),
        "{table}"
    );
    for bad in [
        &["--concurrency", "0"][..],
        &["--group-concurrency", "0"],
        &["--group-rate", "0/1s"],
        &["--rate", "0/1s"],
        &["--rate", "5"],
        &[],
    ] {
        bin(dir)
            .args(["--url", url, "queues", "limit", "csv-uploads"])
            .args(bad)
            .assert()
            .code(2);
    }
    assert_eq!(
        json(dir, url, &["queues", "limit", "csv-uploads", "--clear"])["limits"],
        json!({"concurrency": null, "rate": null, "group_concurrency": null, "group_rate": null})
    );
    assert_eq!(json(dir, url, &["queues", "limits"]), json!([]));

    // queues hold: listed with its end while in force
    let held = json(dir, url, &["queues", "hold", "mail", "--for", "10m"]);
    assert_eq!(held["queue"], "mail");
    let flows = json(dir, url, &["queues", "limits"]);
    assert_eq!(flows.as_array().map(Vec::len), Some(1), "{flows}");
    assert_eq!(flows[0]["queue"], "mail");
    assert_eq!(flows[0]["held_until"], held["held_until"], "{flows}");
    let table = bin(dir)
        .args(["--url", url, "queues", "limits"])
        .output()
        .expect("run kosh-jobs");
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("held until"), "{table}");
    bin(dir)
        .args(["--url", url, "queues", "hold", "mail", "--for", "soon"])
        .assert()
        .code(2);

    // workers
    let ws = json(dir, url, &["workers"]);
    assert_eq!(ws.as_array().map(Vec::len), Some(1));
    assert_eq!(ws[0]["id"], "test-worker");
    assert_eq!(ws[0]["host"], "test-host");
    assert_eq!(ws[0]["concurrency"], 4);
    assert_eq!(ws[0]["queues"], json!(["csv-uploads"]));
    assert_eq!(ws[0]["jobs"], json!([n(s.running)]));

    // purge: --dry-run, then for real
    let purge = ["purge", "--state", "completed", "--older-than", "0s"];
    let dry = json(dir, url, &[&purge[..], &["--dry-run"]].concat());
    assert_eq!(
        (dry["matched"].as_u64(), dry["applied"].as_u64()),
        (Some(2), Some(0))
    );
    let kept = json(
        dir,
        url,
        &[
            "purge",
            "--state",
            "completed",
            "--older-than",
            "7d",
            "--yes",
        ],
    );
    assert_eq!(kept["matched"], 0);
    let purged = json(dir, url, &[&purge[..], &["--yes"]].concat());
    assert_eq!(purged["applied"], 2);
    assert_eq!(
        queue(&json(dir, url, &["stats"]), "csv-uploads")["counts"]["completed"],
        0
    );
    bin(dir)
        .args([
            "--url",
            url,
            "purge",
            "--state",
            "running",
            "--older-than",
            "1d",
        ])
        .assert()
        .code(2);

    // enqueue
    let e = json(
        dir,
        url,
        &[
            "enqueue",
            "import_csv",
            "--queue",
            "csv-uploads",
            "--payload",
            r#"{"upload_id": 9}"#,
            "--delay",
            "10m",
            "--priority",
            "5",
            "--unique",
            "upload-9",
            "--max-attempts",
            "2",
        ],
    );
    assert_eq!(e["existing"], false);
    let new_id = e["id"].as_u64().expect("id");
    let job = json(dir, url, &["jobs", "show", &new_id.to_string()]);
    assert_eq!(job["state"], "scheduled");
    assert_eq!(job["priority"], 5);
    assert_eq!(job["max_attempts"], 2);
    assert_eq!(job["unique_key"], "upload-9");
    assert_eq!(job["payload"], json!({"upload_id": 9}));
    let dup = json(
        dir,
        url,
        &[
            "enqueue",
            "import_csv",
            "--queue",
            "csv-uploads",
            "--unique",
            "upload-9",
        ],
    );
    assert_eq!(
        (dup["id"].as_u64(), dup["existing"].as_bool()),
        (Some(new_id), Some(true))
    );
    bin(dir)
        .args([
            "--url",
            url,
            "enqueue",
            "x",
            "--queue",
            "q",
            "--payload",
            "{not json",
        ])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("--payload is not JSON"));

    // watch: JSON lines, and plain text off a terminal
    let w = bin(dir)
        .args([
            "--url",
            url,
            "watch",
            "--json",
            "--count",
            "2",
            "--interval",
            "50ms",
        ])
        .assert()
        .success();
    let out = String::from_utf8_lossy(&w.get_output().stdout).into_owned();
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    for l in &lines {
        assert_eq!(l["running"][0]["id"], n(s.running));
        assert_eq!(l["running"][0]["queue"], "csv-uploads");
        assert_eq!(queue(l, "csv-uploads")["counts"]["running"], 1);
        assert_eq!(queue(l, "csv-uploads")["last_hour"]["failed"], 3);
        assert_eq!(l["workers"], 1);
    }
    let w = bin(dir)
        .args(["--url", url, "watch", "--count", "1"])
        .assert()
        .success();
    let out = String::from_utf8_lossy(&w.get_output().stdout).into_owned();
    assert!(
        out.contains("csv-uploads") && out.contains("1 running job"),
        "{out}"
    );
    assert!(!out.contains('\x1b'), "{out}");

    // Tables for people: stats, ls, queues, workers, with no escape codes off a terminal
    for args in [
        &["stats"][..],
        &["jobs", "ls", "--limit", "1"],
        &["queues", "ls"],
        &["workers"],
    ] {
        let a = bin(dir).args(["--url", url]).args(args).assert().success();
        let out = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
        assert!(!out.contains('\x1b'), "{args:?}: {out}");
        assert!(out.lines().count() >= 2, "{args:?}: {out}");
    }
    let a = bin(dir)
        .args(["--url", url, "jobs", "ls", "--limit", "1"])
        .assert()
        .success();
    let out = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
    assert!(out.contains("next page: kosh-jobs --url"), "{out}");
    assert!(out.contains("--after "), "{out}");
}

/// `x.pipe(f)` = `f(x)`, to read one value out of a temporary.
pub trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}

impl<T> Pipe for T {}
