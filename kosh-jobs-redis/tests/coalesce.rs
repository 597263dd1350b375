//! Coalesced single enqueues on a real server and on a cluster: concurrent callers share
//! script calls, and each gets its own id, `existing` flag or error.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kosh_jobs_core::{Backend, BackendError, Enqueued, JobState, NewJob, Timestamp};
use kosh_jobs_redis::{RedisBackend, RedisOptions};
use support::{command_stats, node_serving, raw_command, unique_prefix, RedisCluster, RedisServer};

/// What caller `i` enqueues: mostly plain jobs on two queues; every 10th job shares a
/// unique key with the caller 5 places before it; every 50th is invalid (`max_attempts` 0).
fn job(i: usize) -> NewJob {
    let queue = if i.is_multiple_of(2) {
        "mail"
    } else {
        "reports"
    };
    let mut j = NewJob::new(
        "send",
        queue,
        format!("{{\"n\":{i}}}"),
        Timestamp::now_system(),
    );
    if i % 10 == 5 || i.is_multiple_of(10) && i > 0 {
        // Callers 5 and 10 share a key, 15 and 20, and so on, in one queue.
        j.unique_key = Some(format!("key-{}", (i + 5) / 10));
        j.queue = "mail".into();
    }
    if i % 50 == 49 {
        j.max_attempts = 0;
    }
    j
}

/// Enqueues `n` jobs from `n` concurrent tasks, each calling `push` with its one job. Each
/// task counts itself before it calls; `before_waiting` runs once all of them have called
/// (their enqueues joined the waiting ones or were sent) and before their results are read.
async fn enqueue_concurrently(
    b: &RedisBackend,
    n: usize,
    before_waiting: impl FnOnce(),
) -> Vec<Result<Enqueued, BackendError>> {
    enqueue_concurrently_with(b, n, Arc::new(job), before_waiting).await
}

/// [`enqueue_concurrently`] with caller `i` enqueuing `make(i)`.
async fn enqueue_concurrently_with(
    b: &RedisBackend,
    n: usize,
    make: Arc<dyn Fn(usize) -> NewJob + Send + Sync>,
    before_waiting: impl FnOnce(),
) -> Vec<Result<Enqueued, BackendError>> {
    let started = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let b = b.clone();
            let started = started.clone();
            let j = make(i);
            tokio::spawn(async move {
                started.fetch_add(1, Ordering::SeqCst);
                b.push(vec![j]).await.map(|mut e| e.remove(0))
            })
        })
        .collect();
    // On this single-threaded test runtime a task runs until its enqueue waits for a reply:
    // once all have counted themselves, all have handed their job over.
    let deadline = Instant::now() + Duration::from_secs(10);
    while started.load(Ordering::SeqCst) < n {
        assert!(Instant::now() < deadline, "the tasks did not start");
        tokio::task::yield_now().await;
    }
    tokio::task::yield_now().await;
    before_waiting();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.expect("task"));
    }
    out
}

/// Checks every caller's result against what it enqueued, and reads each stored job back.
async fn check_results(b: &RedisBackend, results: &[Result<Enqueued, BackendError>]) {
    let mut ids = std::collections::HashMap::new();
    let mut keys: std::collections::HashMap<String, Vec<Enqueued>> = Default::default();
    for (i, r) in results.iter().enumerate() {
        let j = job(i);
        if j.max_attempts == 0 {
            let e = r.as_ref().expect_err("an invalid job fails");
            assert!(
                matches!(e, BackendError::InvalidInput(_)),
                "caller {i}: {e:?}"
            );
            assert!(e.to_string().contains("max_attempts"), "caller {i}: {e}");
            continue;
        }
        let e = r
            .as_ref()
            .unwrap_or_else(|e| panic!("caller {i} failed: {e}"));
        match &j.unique_key {
            // Whichever of the pair was sent first stores the job, the other gets its id.
            Some(k) => keys.entry(k.clone()).or_default().push(*e),
            None => assert!(!e.existing, "caller {i}"),
        }
        if !e.existing {
            assert!(
                ids.insert(e.id, i).is_none(),
                "callers {} and {i} got one id",
                ids[&e.id]
            );
            let rec = b.get(e.id).await.expect("get").expect("the job is stored");
            assert_eq!(rec.queue, j.queue, "caller {i}");
            assert_eq!(rec.payload, j.payload, "caller {i}: its own payload");
            assert_eq!(rec.state, JobState::Ready, "caller {i}");
        }
    }
    assert!(!keys.is_empty());
    for (k, got) in keys {
        let stored: Vec<_> = got.iter().filter(|e| !e.existing).collect();
        assert_eq!(
            stored.len(),
            1,
            "key {k}: one caller stores the job: {got:?}"
        );
        assert!(
            got.iter().all(|e| e.id == stored[0].id),
            "key {k}: every caller gets the holder's id: {got:?}"
        );
    }
}

/// Script calls the server ran (`EVALSHA`, and `EVAL` after a `NOSCRIPT`).
fn script_calls(port: u16) -> u64 {
    command_stats(port, None)
        .into_iter()
        .filter(|(c, _)| c == "evalsha" || c == "eval")
        .map(|(_, n)| n)
        .sum()
}

async fn connect(server: &RedisServer, coalesce: bool) -> RedisBackend {
    let b = RedisBackend::connect_with(
        RedisOptions::builder(server.url())
            .prefix(unique_prefix("coalesce"))
            .coalesce_enqueues(coalesce)
            .build()
            .expect("options"),
    )
    .await
    .expect("connect");
    // Both queues exist and the push script is loaded before anything is counted.
    for q in ["mail", "reports"] {
        b.push(vec![NewJob::new("warm", q, "{}", Timestamp::now_system())])
            .await
            .expect("warm-up push");
    }
    b
}

/// While the server holds the first call back (`CLIENT PAUSE … WRITE`), every other caller
/// joins the waiting batch: 300 enqueues are at most two script calls, and each caller gets
/// its own id, `existing` or error.
#[tokio::test]
async fn concurrent_single_enqueues_share_calls_and_keep_their_own_results() {
    let server = RedisServer::start(&[]);
    let b = connect(&server, true).await;
    let n = 300;
    raw_command(server.port, None, &["CONFIG", "RESETSTAT"]);
    raw_command(server.port, None, &["CLIENT", "PAUSE", "10000", "WRITE"]);
    let results = enqueue_concurrently(&b, n, || {
        raw_command(server.port, None, &["CLIENT", "UNPAUSE"]);
    })
    .await;
    let calls = script_calls(server.port);
    assert!(
        calls <= 2,
        "{n} concurrent enqueues took {calls} script calls"
    );
    check_results(&b, &results).await;
}

/// With coalescing off, each enqueue is its own script call.
#[tokio::test]
async fn coalescing_can_be_turned_off() {
    let server = RedisServer::start(&[]);
    let b = connect(&server, false).await;
    let n = 100;
    raw_command(server.port, None, &["CONFIG", "RESETSTAT"]);
    let results = enqueue_concurrently(&b, n, || {}).await;
    let valid = (0..n).filter(|&i| job(i).max_attempts > 0).count() as u64;
    assert_eq!(script_calls(server.port), valid);
    check_results(&b, &results).await;
}

/// A call that fails gives every caller in it the error, each its own copy, of the same
/// kind: here Redis refuses writes (out of memory).
#[tokio::test]
async fn a_failed_shared_call_fails_each_caller_with_its_kind() {
    let server = RedisServer::start(&[]);
    let b = connect(&server, true).await;
    raw_command(server.port, None, &["CONFIG", "SET", "maxmemory", "1"]);
    let results = enqueue_concurrently(&b, 100, || {}).await;
    for (i, r) in results.iter().enumerate() {
        let e = r.as_ref().expect_err("redis is out of memory");
        if job(i).max_attempts == 0 {
            assert!(
                matches!(e, BackendError::InvalidInput(_)),
                "caller {i}: {e:?}"
            );
        } else {
            assert!(matches!(e, BackendError::Storage(_)), "caller {i}: {e:?}");
            assert!(
                support::chain(e).contains("out of memory"),
                "caller {i}: {}",
                support::chain(e)
            );
        }
    }
}

/// On a cluster the waiting jobs are sent as one call per queue (each queue its own slot);
/// the results are the same.
#[tokio::test]
async fn concurrent_single_enqueues_on_a_cluster() {
    let cluster = RedisCluster::start(3);
    let b = RedisBackend::connect_with(
        RedisOptions::builder(cluster.url())
            .prefix(unique_prefix("coalesce-cluster"))
            .build()
            .expect("options"),
    )
    .await
    .expect("connect");
    let n = 300;
    for s in &cluster.nodes {
        raw_command(s.port, None, &["CLIENT", "PAUSE", "10000", "WRITE"]);
    }
    let results = enqueue_concurrently(&b, n, || {
        for s in &cluster.nodes {
            raw_command(s.port, None, &["CLIENT", "UNPAUSE"]);
        }
    })
    .await;
    check_results(&b, &results).await;
}

/// On a cluster a coalesced batch spanning queues is one call per queue, and a call that
/// fails fails only its own callers: here the master holding one queue is out of memory, and
/// the callers of the other queue still get their jobs stored.
#[tokio::test]
async fn on_a_cluster_a_failed_queue_fails_only_its_callers() {
    let cluster = RedisCluster::start(3);
    let prefix = unique_prefix("coalesce-oom");
    let b = RedisBackend::connect_with(
        RedisOptions::builder(cluster.url())
            .prefix(&prefix)
            .build()
            .expect("options"),
    )
    .await
    .expect("connect");
    // The master serving a key's slot, as the cluster says.
    let port = cluster.nodes[0].port;
    let node_of = |key: &str| -> usize {
        let slot: usize = raw_command(port, None, &["CLUSTER", "KEYSLOT", key])
            .trim_start_matches(':')
            .trim()
            .parse()
            .expect("slot");
        node_serving(&cluster.nodes, slot).expect("a master serves every slot")
    };
    let counter = node_of(&format!("{{{prefix}}}:seq"));
    let queues: Vec<(String, usize)> = (0..64)
        .map(|i| {
            let q = format!("q{i}");
            let n = node_of(&format!("{{{prefix}:{q}}}:ready"));
            (q, n)
        })
        .collect();
    // `full`: on a master that holds neither the id counter nor `ok`'s keys.
    let (full, full_node) = queues
        .iter()
        .find(|(_, n)| *n != counter)
        .cloned()
        .expect("a queue away from the counter");
    let (ok, _) = queues
        .iter()
        .find(|(_, n)| *n != full_node)
        .cloned()
        .expect("a queue on another master");
    for q in [&full, &ok] {
        b.push(vec![NewJob::new(
            "warm",
            q.as_str(),
            "{}",
            Timestamp::now_system(),
        )])
        .await
        .expect("warm-up push");
    }
    raw_command(
        cluster.nodes[full_node].port,
        None,
        &["CONFIG", "SET", "maxmemory", "1"],
    );
    for s in &cluster.nodes {
        raw_command(s.port, None, &["CLIENT", "PAUSE", "10000", "WRITE"]);
    }
    let n = 100;
    let (f, o) = (full.clone(), ok.clone());
    let make = Arc::new(move |i: usize| {
        let q = if i.is_multiple_of(2) { &f } else { &o };
        NewJob::new(
            "send",
            q.as_str(),
            format!("{{\"n\":{i}}}"),
            Timestamp::now_system(),
        )
    });
    let results = enqueue_concurrently_with(&b, n, make, || {
        for s in &cluster.nodes {
            raw_command(s.port, None, &["CLIENT", "UNPAUSE"]);
        }
    })
    .await;
    raw_command(
        cluster.nodes[full_node].port,
        None,
        &["CONFIG", "SET", "maxmemory", "0"],
    );
    for (i, r) in results.iter().enumerate() {
        if i.is_multiple_of(2) {
            let e = r.as_ref().expect_err("the full master refuses");
            assert!(matches!(e, BackendError::Storage(_)), "caller {i}: {e:?}");
        } else {
            let e = r
                .as_ref()
                .unwrap_or_else(|e| panic!("caller {i} of queue {ok} failed: {e}"));
            let rec = b.get(e.id).await.expect("get").expect("stored");
            assert_eq!(rec.queue, ok);
            assert_eq!(rec.payload, format!("{{\"n\":{i}}}"));
        }
    }
}
