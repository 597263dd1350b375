//! Faults with real processes: a worker killed with SIGKILL mid-job, and Redis restarted
//! mid-run. The worker and producer are the `kosh-jobs-redis-fault-worker` binary.
//!
//! Real time passes here (leases of a second or two, a restart), but nothing is asserted about
//! how long things take: deadlines only turn a hang into a failure.

mod support;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kosh_jobs_core::{AttemptError, Backend, JobId, JobState, NewJob};
use kosh_jobs_redis::{RedisBackend, RedisOptions};
use support::{unique_prefix, RedisServer};

const BIN: &str = env!("CARGO_BIN_EXE_kosh-jobs-redis-fault-worker");

/// Polls `cond` every 20 ms until it holds, failing after `limit` with `what`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !cond().await {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// (n, attempt, pid) of each `start`/`done` line.
fn events(path: &Path, kind: &str) -> Vec<(u64, u32, u32)> {
    lines(path)
        .iter()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            if it.next()? != kind {
                return None;
            }
            Some((
                it.next()?.parse().ok()?,
                it.next()?.parse().ok()?,
                it.next()?.parse().ok()?,
            ))
        })
        .collect()
}

fn spawn(args: &[&str], stderr: &Path) -> Child {
    let err = std::fs::File::create(stderr).expect("stderr file");
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("start the fault worker")
}

/// Closes the worker's stdin (a graceful stop) and waits for it.
fn stop(mut child: Child) {
    drop(child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                assert!(status.success(), "worker exited with {status}");
                return;
            }
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                panic!("worker did not stop after its stdin closed");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("waiting for the worker: {e}"),
        }
    }
}

async fn connect(url: &str, prefix: &str) -> RedisBackend {
    RedisBackend::connect_with(
        RedisOptions::builder(url)
            .prefix(prefix)
            .timeout(Duration::from_secs(2))
            .build()
            .expect("options"),
    )
    .await
    .expect("connect")
}

fn fault_job(n: u64, extra: &str) -> NewJob {
    let mut j = NewJob::new(
        "fault_job",
        "faults",
        format!(r#"{{"n":{n}{extra}}}"#),
        kosh_jobs_core::Timestamp::now_system(),
    );
    j.unique_key = Some(format!("job-{n}"));
    j
}

/// How many leases of `queue` a heartbeat marked started: it scores a lease its deadline
/// + 0.5 (see `recover` in the scripts' lib.lua).
async fn started_leases(url: &str, prefix: &str, queue: &str) -> usize {
    let Ok(client) = redis::Client::open(url) else {
        return 0;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return 0;
    };
    let scores: Vec<(String, String)> = redis::cmd("ZRANGE")
        .arg(format!("{{{prefix}:{queue}}}:lease"))
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    scores.iter().filter(|(_, s)| s.ends_with(".5")).count()
}

async fn completed(b: &RedisBackend) -> u64 {
    b.counts()
        .await
        .map(|c| c.iter().map(|q| q.completed).sum())
        .unwrap_or(0)
}

fn work_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(unique_prefix(tag));
    std::fs::create_dir_all(&d).expect("work dir");
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_job_runs_again_on_another_worker() {
    let server = RedisServer::start(&[]);
    let url = server.url();
    let prefix = unique_prefix("kill");
    let dir = work_dir("kill");
    let log = dir.join("jobs.log");
    let b = connect(&url, &prefix).await;

    let mut jobs = vec![fault_job(0, r#","block_first":true"#)];
    jobs.extend((1..10).map(|n| fault_job(n, "")));
    let ids: Vec<JobId> = b
        .push(jobs)
        .await
        .expect("push")
        .iter()
        .map(|e| e.id)
        .collect();

    let lease = "1500";
    let a = spawn(
        &["worker", &url, &prefix, log.to_str().unwrap(), lease],
        &dir.join("a.err"),
    );
    let pid_a = a.id();
    eventually("worker A starts job 0", Duration::from_secs(30), || async {
        events(&log, "start")
            .iter()
            .any(|e| e.0 == 0 && e.2 == pid_a)
    })
    .await;
    // Killed once the store knows the attempt started (A's first renewal): its expiry then
    // counts. (Killed before, the attempt is given back: the conformance suite covers that.)
    eventually(
        "the store knows job 0 started",
        Duration::from_secs(30),
        || async { started_leases(&url, &prefix, "faults").await == 1 },
    )
    .await;
    let mut a = a;
    a.kill().expect("SIGKILL worker A");
    a.wait().expect("reap worker A");

    let w = spawn(
        &["worker", &url, &prefix, log.to_str().unwrap(), lease],
        &dir.join("b.err"),
    );
    let pid_b = w.id();
    eventually(
        "all ten jobs completed",
        Duration::from_secs(60),
        || async { completed(&b).await == 10 },
    )
    .await;
    stop(w);

    let r = b.get(ids[0]).await.expect("get").expect("job 0 exists");
    assert_eq!(r.state, JobState::Completed, "job 0 completed");
    assert_eq!(r.attempts, 2, "the killed attempt counts");
    assert_eq!(r.errors.len(), 1, "one error: {:?}", r.errors);
    assert!(
        matches!(&r.errors[0], AttemptError { attempt: 1, error, .. } if error == "lease expired")
    );
    let starts = events(&log, "start");
    assert!(starts.contains(&(0, 1, pid_a)), "attempt 1 of job 0 on A");
    assert!(starts.contains(&(0, 2, pid_b)), "attempt 2 of job 0 on B");
    let done: HashSet<u64> = events(&log, "done").iter().map(|e| e.0).collect();
    assert_eq!(
        done,
        (0..10).collect(),
        "nothing lost: every job ran to the end"
    );
    assert!(
        !events(&log, "done")
            .iter()
            .any(|e| e.0 == 0 && e.2 == pid_a),
        "job 0 never finished on the killed worker"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_mid_run_loses_nothing() {
    const JOBS: u64 = 300;
    let mut server = RedisServer::start(&["--appendonly", "yes", "--appendfsync", "always"]);
    let url = server.url();
    let prefix = unique_prefix("restart");
    let dir = work_dir("restart");
    let log = dir.join("jobs.log");
    let worker_err = dir.join("worker.err");
    let b = connect(&url, &prefix).await;

    let worker = spawn(
        &["worker", &url, &prefix, log.to_str().unwrap(), "5000"],
        &worker_err,
    );
    let mut producer = spawn(
        &[
            "produce",
            &url,
            &prefix,
            log.to_str().unwrap(),
            &JOBS.to_string(),
        ],
        &dir.join("producer.err"),
    );
    eventually(
        "50 jobs done before the restart",
        Duration::from_secs(60),
        || async { events(&log, "done").len() >= 50 },
    )
    .await;

    server.stop();
    // While Redis is down, an enqueue fails (within the backend's timeout) instead of hanging.
    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(30), b.push(vec![fault_job(10_000, "")]))
        .await
        .expect("enqueue while Redis is down returns");
    match r {
        Err(e) => assert!(e.is_unavailable(), "unavailable, got {e:?}"),
        Ok(v) => panic!("enqueue while Redis is down succeeded: {v:?}"),
    }
    let failed_after = started.elapsed();
    // The worker noticed the outage before Redis comes back.
    eventually(
        "the worker notices the outage",
        Duration::from_secs(30),
        || async {
            std::fs::read_to_string(&worker_err)
                .unwrap_or_default()
                .contains("redis connection lost")
        },
    )
    .await;
    let outage_log = std::fs::read_to_string(&worker_err).unwrap_or_default();
    server.restart();

    let status = tokio::task::spawn_blocking(move || producer.wait())
        .await
        .expect("join")
        .expect("producer exit");
    assert!(status.success(), "producer finished: {status}");
    eventually("every job completed", Duration::from_secs(120), || async {
        completed(&b).await >= JOBS
    })
    .await;
    stop(worker);

    let done: HashSet<u64> = events(&log, "done").iter().map(|e| e.0).collect();
    assert_eq!(done, (0..JOBS).collect(), "every job ran to the end");
    let mut per_job: HashMap<u64, usize> = HashMap::new();
    for (n, _, _) in events(&log, "done") {
        *per_job.entry(n).or_default() += 1;
    }
    let counts = b.counts().await.expect("counts");
    let c = counts
        .iter()
        .find(|c| c.queue == "faults")
        .expect("queue listed");
    // An enqueue that failed while Redis went down may have been stored before its reply was
    // lost; the producer's retry then stores the job again if the first copy has already
    // finished (a unique key is held only while its job is live). So each retried enqueue
    // may add one completed job, and nothing else may.
    let retried = events(&log, "retried").len() as u64;
    assert_eq!(
        (c.live(), c.failed),
        (0, 0),
        "nothing left running or failed: {c:?}"
    );
    assert!(
        c.completed >= JOBS && c.completed - JOBS <= retried,
        "all {JOBS} jobs completed, plus at most one per retried enqueue ({retried}): {c:?}"
    );
    // The outage is logged once per connection and per worker loop, not in a tight loop.
    let lost = outage_log
        .matches("kosh_jobs_redis::conn: redis connection lost")
        .count();
    assert_eq!(lost, 1, "one 'connection lost' line, got:\n{outage_log}");
    let warns = outage_log.lines().filter(|l| l.starts_with("WARN")).count();
    assert!(
        warns <= 6,
        "few warnings during the outage, got {warns}:\n{outage_log}"
    );
    eprintln!(
        "restart test: enqueue failed after {failed_after:?} while down; jobs run more than once: {}; enqueues retried: {retried}; completed: {}",
        per_job.values().filter(|n| **n > 1).count(),
        c.completed
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn worker_process_fails_clearly_when_redis_is_unreachable() {
    let port = support::free_port();
    let dir = work_dir("unreachable");
    let url = format!("redis://admin:Sekr1t-pw@127.0.0.1:{port}");
    let out = Command::new(BIN)
        .args([
            "worker",
            &url,
            "p",
            dir.join("log").to_str().unwrap(),
            "1000",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run the fault worker");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit code; stderr: {err}");
    assert!(
        err.contains(&format!("cannot reach redis at 127.0.0.1:{port}")),
        "names host and port: {err}"
    );
    assert!(!err.contains("Sekr1t"), "never the password: {err}");
    let _ = std::fs::remove_dir_all(&dir);
}
