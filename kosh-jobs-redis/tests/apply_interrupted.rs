//! A bulk action whose connection breaks between two of its steps: the steps already run
//! stay applied, the call fails with the connection error, and calling it again acts on the
//! rest (the applied jobs answer `Skipped`), as `Backend::apply` documents. The break is real:
//! a TCP proxy between the backend and a real `redis-server` closes the connection instead
//! of forwarding the call's second step.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kosh_jobs_core::admin::{ActionResult, AdminAction};
use kosh_jobs_core::{Backend, Finish, JobId, JobState, NewJob, Outcome};
use kosh_jobs_redis::{RedisBackend, RedisOptions};
use support::{backend, reserve, unique_prefix, RedisServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How a step of a retry appears in the client's bytes: its action argument.
const RETRY_ARG: &[u8] = b"$5\r\nretry\r\n";

/// Forwards connections to `upstream`; the first connection that sends a second retry step
/// is closed instead of forwarding it (once). Later connections are forwarded as they are.
async fn cutting_proxy(upstream: u16) -> (u16, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let cut = Arc::new(AtomicBool::new(false));
    tokio::spawn({
        let cut = cut.clone();
        async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                tokio::spawn(forward(client, server, cut.clone()));
            }
        }
    });
    (port, cut)
}

async fn forward(client: TcpStream, server: TcpStream, cut: Arc<AtomicBool>) {
    let (mut client_rd, mut client_wr) = client.into_split();
    let (mut server_rd, mut server_wr) = server.into_split();
    let replies = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_rd, &mut client_wr).await;
    });
    let mut steps = 0;
    let mut buf = vec![0u8; 64 * 1024];
    // The end of the previous read, so a marker split across two reads is still seen.
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match client_rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut seen = tail.clone();
        seen.extend_from_slice(&buf[..n]);
        let found = seen
            .windows(RETRY_ARG.len())
            .filter(|w| *w == RETRY_ARG)
            .count();
        steps += found;
        if steps >= 2 && !cut.swap(true, Ordering::SeqCst) {
            // The second step is in these bytes: drop both directions without sending it.
            replies.abort();
            return;
        }
        if server_wr.write_all(&buf[..n]).await.is_err() {
            break;
        }
        let keep = seen.len().min(RETRY_ARG.len() - 1);
        tail = seen[seen.len() - keep..].to_vec();
    }
    replies.abort();
}

async fn queue_counts(b: &RedisBackend) -> kosh_jobs_core::QueueCounts {
    let all = b.counts().await.expect("counts");
    all.into_iter().find(|c| c.queue == "q").expect("queue q")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_retry_cut_between_steps_keeps_its_first_step_and_can_be_called_again() {
    let server = RedisServer::start(&[]);
    let prefix = unique_prefix("apply-cut");
    let direct = backend(&server, &prefix).await;
    // 250 failed jobs: a retry of all of them is three steps (100, 100, 50).
    let now = direct.clock().now();
    let mut jobs = Vec::new();
    for _ in 0..250 {
        let mut j = NewJob::new("n", "q", "{}", now);
        j.max_attempts = 1;
        jobs.push(j);
    }
    direct.push(jobs).await.expect("push");
    let leased = reserve(&direct, "q", 250).await;
    assert_eq!(leased.len(), 250);
    direct
        .finish(
            leased
                .iter()
                .map(|l| Finish {
                    lease: l.lease,
                    outcome: Outcome::failed("boom"),
                })
                .collect(),
        )
        .await
        .expect("fail them");
    let mut ids: Vec<JobId> = leased.iter().map(|l| l.id()).collect();
    ids.sort_unstable();

    // Load the script into the server first (a retry of a ready job elsewhere, which it
    // skips): a first call's step is sent twice, by SHA and again with its text.
    let other = direct
        .push(vec![NewJob::new("n", "elsewhere", "{}", now)])
        .await
        .expect("push elsewhere")[0]
        .id;
    let loaded = direct
        .apply(AdminAction::Retry, &[other], &[])
        .await
        .expect("retry elsewhere");
    assert_eq!(loaded, vec![ActionResult::Skipped(JobState::Ready)]);

    let (proxy, cut) = cutting_proxy(server.port).await;
    let through = RedisBackend::connect_with(
        RedisOptions::builder(format!("redis://127.0.0.1:{proxy}"))
            .prefix(&prefix)
            .timeout(Duration::from_secs(5))
            .build()
            .expect("options"),
    )
    .await
    .expect("connect through the proxy");
    let err = through
        .apply(AdminAction::Retry, &ids, &[])
        .await
        .expect_err("the connection broke during the call");
    assert!(cut.load(Ordering::SeqCst), "the proxy never cut: {err}");

    // The first step (the 100 lowest ids) was applied; nothing else was.
    let c = queue_counts(&direct).await;
    assert_eq!((c.ready, c.failed), (100, 150), "{c:?}");
    for (i, id) in ids.iter().enumerate() {
        let rec = direct.get(*id).await.expect("get").expect("the job");
        let want = if i < 100 {
            JobState::Ready
        } else {
            JobState::Failed
        };
        assert_eq!(rec.state, want, "job {i} of the call");
    }

    // Calling again (once the backend has reconnected) acts on the rest; the first step's
    // jobs answer as already ready.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let again = loop {
        match through.apply(AdminAction::Retry, &ids, &[]).await {
            Ok(out) => break out,
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the backend never came back: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(again.len(), 250);
    for (i, r) in again.iter().enumerate() {
        if i < 100 {
            assert!(
                *r == ActionResult::Skipped(JobState::Ready),
                "job {i}: {r:?}"
            );
        } else {
            assert_eq!(*r, ActionResult::Applied, "job {i}");
        }
    }
    let c = queue_counts(&direct).await;
    assert_eq!((c.ready, c.failed), (250, 0), "{c:?}");
}
