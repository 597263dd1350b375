//! Issue #22: the backend on a Redis Cluster with replicas survives a failover. The master
//! that serves a queue is killed (`SIGKILL`), its replica takes the slots over, and the same
//! backend, with no reconnect by the caller, runs the job enqueued before the kill, takes a
//! new one, and goes on after the killed node has come back as a replica.
//!
//! The job enqueued before the kill is only checked once the replica has it (`WAIT`): a
//! write a master acknowledged and had not sent its replica yet is lost with the master, as
//! Redis documents; the chaos soak counts such losses (see the README, "Chaos soak").

use std::time::{Duration, Instant};

use kosh_jobs_core::{
    Backend, BackendError, Clock, Finish, FinishResult, JobState, LeasedJob, NewJob, Outcome,
    ReserveRequest,
};
use kosh_jobs_redis::{RedisBackend, RedisOptions};
use kosh_jobs_testsupport::redis_cluster::RedisCluster;
use kosh_jobs_testsupport::resp::{RedisAddr, Resp};

/// How long the backend may take to find the new master. A guard against a hang, not a
/// timing assertion.
const PATIENCE: Duration = Duration::from_secs(30);

/// Retries `op` until it succeeds or [`PATIENCE`] runs out; returns its value and the errors
/// seen on the way.
async fn until_ok<T, F, Fut>(what: &str, mut op: F) -> (T, Vec<String>)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, BackendError>>,
{
    let deadline = Instant::now() + PATIENCE;
    let mut errors = Vec::new();
    loop {
        match op().await {
            Ok(Some(v)) => return (v, errors),
            Ok(None) => {}
            Err(e) => errors.push(e.to_string()),
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not done within {PATIENCE:?}; errors: {errors:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn reserve(b: &RedisBackend, queue: &str) -> Result<Option<LeasedJob>, BackendError> {
    let req = ReserveRequest {
        queues: vec![queue.to_owned()],
        worker: "failover-test".into(),
        max: 1,
        lease: Duration::from_secs(30),
    };
    Ok(b.reserve(&req).await?.into_iter().next())
}

async fn complete(b: &RedisBackend, job: &LeasedJob) -> Result<Option<()>, BackendError> {
    let done = Finish {
        lease: job.lease,
        outcome: Outcome::Completed { result: None },
    };
    match b.finish(vec![done]).await?.as_slice() {
        [FinishResult::Applied] => Ok(Some(())),
        other => panic!("finish after the failover: {other:?}"),
    }
}

fn job(queue: &str, payload: &str) -> NewJob {
    NewJob::new("failover", queue, payload, Clock::system().now())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_enqueued_before_a_master_fails_over_runs_after_it() {
    let mut cluster =
        RedisCluster::start(3, 1, Duration::from_millis(1_000)).expect("a cluster with replicas");
    let prefix = "failover";
    let queue = "q";
    let options = RedisOptions::builder(cluster.url())
        .prefix(prefix)
        .build()
        .expect("options");
    let b = RedisBackend::connect_with(options).await.expect("connect");

    let before = b.push(vec![job(queue, "\"before\"")]).await.expect("push")[0].id;
    let master = cluster
        .master_of(&format!("{{{prefix}:{queue}}}"))
        .expect("the queue's master");
    // The job is on the replica too before the master goes: this test is about the client,
    // not about writes Redis may lose.
    let url = cluster.nodes()[master].url();
    let mut conn = Resp::connect(
        &RedisAddr::parse(&url).expect("url"),
        Duration::from_secs(5),
    )
    .expect("conn");
    let synced = conn.command(&["WAIT", "1", "5000"]).expect("WAIT");
    assert_eq!(synced, "1", "the replica did not acknowledge the push");

    let failed = cluster.fail_over(master).expect("fail over");
    eprintln!("failover: {failed:?}");

    let (leased, errors) = until_ok("reserve after the failover", || reserve(&b, queue)).await;
    eprintln!("errors before the backend found the new master: {errors:?}");
    assert_eq!(leased.id(), before, "the job enqueued before the kill");
    until_ok("complete after the failover", || complete(&b, &leased)).await;
    let rec = b.get(before).await.expect("get").expect("the job");
    assert_eq!(rec.state, JobState::Completed);

    // New jobs go to the new master.
    let after = b.push(vec![job(queue, "\"after\"")]).await.expect("push")[0].id;
    cluster
        .rejoin(failed.killed)
        .expect("the killed node rejoins");
    assert!(
        !cluster.masters().expect("masters").contains(&failed.killed),
        "the killed node came back as a replica"
    );
    let (leased, _) = until_ok("reserve after the rejoin", || reserve(&b, queue)).await;
    assert_eq!(leased.id(), after);
    until_ok("complete after the rejoin", || complete(&b, &leased)).await;
}
