//! Schedules fired by real worker processes: five processes on one SQLite file, and five on
//! one Redis, with a schedule every second for 60 seconds, enqueue exactly 60 jobs with
//! consecutive ticks; a worker SIGKILLed between deciding to fire and sending the fire leaves
//! the tick to another worker, fired once.
//!
//! The child processes are this test binary, started again with `KOSH_SCHED_CHILD_URL` set
//! to run [`child_process`] only. Each handler appends `<tick ms> <pid>` to a shared log file
//! (`O_APPEND`, one write per line): what the tests count.
#![cfg(all(feature = "sqlite", feature = "redis"))]

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kosh_jobs::prelude::*;
use kosh_jobs::schedule::{Missed, Schedule};
use kosh_jobs::Timestamp;
use kosh_jobs_testsupport::redis_server::RedisServer;
use serde::{Deserialize, Serialize};

const URL: &str = "KOSH_SCHED_CHILD_URL";
const LOG: &str = "KOSH_SCHED_CHILD_LOG";
/// If set, the child stops before its first fire: writes this file and blocks.
const STOP_AT_FIRE: &str = "KOSH_SCHED_CHILD_STOP_AT_FIRE";

#[derive(Serialize, Deserialize, Default)]
struct Beat;

#[derive(Clone)]
struct Log(Arc<std::fs::File>);

#[job(queue = "beats", max_attempts = 1)]
async fn beat(_job: Beat, ctx: JobContext<Log>) -> Result<(), JobError> {
    let tick = ctx
        .scheduled_tick()
        .await?
        .ok_or_else(|| JobError::permanent("not fired by a schedule"))?;
    let line = format!("{} {}\n", tick.at.as_millis(), std::process::id());
    (&*ctx.state().0).write_all(line.as_bytes())?;
    Ok(())
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("child process: {name} not set"))
}

fn stop_here(_ids: &[&str]) {
    if let Ok(marker) = std::env::var(STOP_AT_FIRE) {
        let _ = std::fs::write(marker, b"planned");
        // Hold the fire until the parent kills this process.
        loop {
            std::thread::park();
        }
    }
}

/// The entry point of the child processes; does nothing when run as an ordinary test.
#[test]
fn child_process() {
    let Ok(url) = std::env::var(URL) else {
        return;
    };
    let _ = kosh_jobs::__private::BEFORE_FIRE.set(stop_here);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let backend = kosh_jobs::connect(&url).await.expect("connect");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(env(LOG))
            .expect("open the log");
        // The parent closes our stdin to ask for a graceful shutdown.
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            let _ = tx.send(());
        });
        Worker::builder(backend)
            .state(Log(Arc::new(log)))
            .register::<Beat>()
            .schedule_refresh(Duration::from_secs(1))
            .build()
            .expect("worker")
            .run_until(rx)
            .await
            .expect("worker run");
    });
}

fn spawn(url: &str, log: &Path, extra: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args([
        "--exact",
        "child_process",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(URL, url)
    .env(LOG, log)
    .stdin(Stdio::piped())
    .stdout(Stdio::null());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn a child process")
}

/// Ticks logged, with how many times each ran.
fn read_log(path: &Path) -> BTreeMap<i64, Vec<u32>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
    for line in text.lines() {
        let (tick, pid) = line.split_once(' ').expect("a log line");
        out.entry(tick.parse().expect("a tick"))
            .or_default()
            .push(pid.parse().expect("a pid"));
    }
    out
}

/// Waits (polling the log another process writes) until `done` holds, or fails past the
/// deadline.
fn wait_log(
    path: &Path,
    deadline: Instant,
    what: &str,
    done: impl Fn(&BTreeMap<i64, Vec<u32>>) -> bool,
) {
    loop {
        let log = read_log(path);
        if done(&log) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {log:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stop(children: Vec<Child>) {
    for mut c in children {
        drop(c.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if c.try_wait().expect("try_wait").is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The start of the whole second at least `lead` from now.
fn whole_second_after(lead: Duration) -> Timestamp {
    let t = Timestamp::now_system() + lead;
    Timestamp::from_millis(t.as_millis() - t.as_millis() % 1000 + 1000)
}

/// Five workers, a schedule every second for 60 seconds: exactly 60 jobs, one per tick.
fn five_workers_sixty_ticks(url: &str, dir: &Path) {
    let log = dir.join("beats.log");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let start = whole_second_after(Duration::from_secs(3));
    let end = start + Duration::from_secs(59);
    rt.block_on(async {
        let client = Client::new(kosh_jobs::connect(url).await.expect("connect"));
        let schedule = Schedule::every("beat", Duration::from_secs(1))
            .unwrap()
            .start_at(start)
            .end_at(end)
            // A loaded machine may fire a tick late: it still fires, once.
            .missed(Missed::All { max: 100 });
        client
            .upsert_schedule(schedule, Beat)
            .await
            .expect("upsert");
    });
    let children: Vec<Child> = (0..5).map(|_| spawn(url, &log, &[])).collect();
    let deadline = Instant::now() + Duration::from_secs(3 + 60 + 60);
    wait_log(&log, deadline, "60 ticks", |l| l.len() >= 60);
    // The schedule has ended, and every job has finished: there is no room for a duplicate.
    rt.block_on(async {
        let client = Client::new(kosh_jobs::connect(url).await.expect("connect"));
        let rec = client
            .schedule("beat")
            .await
            .unwrap()
            .expect("the schedule");
        assert_eq!(
            rec.next_fire, None,
            "the schedule ended after its last tick"
        );
        assert_eq!(rec.runs, 60);
        // The 60th job has logged its tick; its end may still be on its way to the store.
        let beats = loop {
            let counts = client.counts().await.unwrap();
            let beats = counts
                .into_iter()
                .find(|c| c.queue == "beats")
                .expect("the queue");
            if beats.completed + beats.failed >= 60 || Instant::now() > deadline {
                break beats;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(
            (beats.completed, beats.ready, beats.running, beats.failed),
            (60, 0, 0, 0),
            "{beats:?}"
        );
    });
    stop(children);
    let ticks = read_log(&log);
    let expected: Vec<i64> = (0..60)
        .map(|k| (start + Duration::from_secs(k)).as_millis())
        .collect();
    assert_eq!(
        ticks.keys().copied().collect::<Vec<_>>(),
        expected,
        "consecutive ticks"
    );
    let twice: Vec<_> = ticks.iter().filter(|(_, runs)| runs.len() > 1).collect();
    assert!(twice.is_empty(), "ticks that ran twice: {twice:?}");
    let pids: std::collections::BTreeSet<u32> = ticks.values().flatten().copied().collect();
    eprintln!("60 ticks run by {} processes", pids.len());
}

#[test]
fn five_sqlite_workers_fire_each_tick_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("jobs.db").display());
    five_workers_sixty_ticks(&url, dir.path());
}

#[test]
fn five_redis_workers_fire_each_tick_once() {
    let server = RedisServer::start().expect("a redis-server");
    let dir = tempfile::tempdir().unwrap();
    five_workers_sixty_ticks(&server.url(), dir.path());
}

/// A worker killed after planning a fire and before sending it: the tick is fired once, by
/// the worker started after it.
fn killed_between_plan_and_fire(url: &str, dir: &Path) {
    let log = dir.join("beats.log");
    let marker: PathBuf = dir.join("planned");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let tick = whole_second_after(Duration::from_secs(2));
    rt.block_on(async {
        let client = Client::new(kosh_jobs::connect(url).await.expect("connect"));
        let schedule = Schedule::every("once", Duration::from_secs(3600))
            .unwrap()
            .start_at(tick)
            .missed(Missed::All { max: 10 });
        client
            .upsert_schedule(schedule, Beat)
            .await
            .expect("upsert");
    });
    let mut doomed = spawn(url, &log, &[(STOP_AT_FIRE, marker.display().to_string())]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !marker.exists() {
        assert!(
            Instant::now() < deadline,
            "the worker never planned the fire"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    doomed.kill().expect("SIGKILL");
    doomed.wait().expect("reap");
    let next = spawn(url, &log, &[]);
    wait_log(
        &log,
        Instant::now() + Duration::from_secs(60),
        "the tick",
        |l| !l.is_empty(),
    );
    rt.block_on(async {
        let client = Client::new(kosh_jobs::connect(url).await.expect("connect"));
        let rec = client
            .schedule("once")
            .await
            .unwrap()
            .expect("the schedule");
        assert_eq!((rec.runs, rec.last_fire), (1, Some(tick)));
        assert_eq!(rec.next_fire, Some(tick + Duration::from_secs(3600)));
    });
    stop(vec![next]);
    let ticks = read_log(&log);
    assert_eq!(ticks.len(), 1, "{ticks:?}");
    let runs = &ticks[&tick.as_millis()];
    assert_eq!(runs.len(), 1, "fired once");
    assert_ne!(runs[0], doomed.id(), "by the other worker");
}

#[test]
fn sqlite_worker_killed_between_plan_and_fire() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("jobs.db").display());
    killed_between_plan_and_fire(&url, dir.path());
}

#[test]
fn redis_worker_killed_between_plan_and_fire() {
    let server = RedisServer::start().expect("a redis-server");
    let dir = tempfile::tempdir().unwrap();
    killed_between_plan_and_fire(&server.url(), dir.path());
}
