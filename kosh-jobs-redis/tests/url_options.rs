//! Options in the connection URL's query string, against real servers: `?prefix=` keeps
//! backends apart, `?timeout=` bounds connecting, and bad options are `InvalidInput` naming
//! the option.

mod support;

use std::time::{Duration, Instant};

use kosh_jobs_core::{Backend, BackendError, NewJob, ReserveRequest};
use kosh_jobs_redis::{RedisBackend, RedisError, RedisOptions};
use support::{chain, raw_command, unique_prefix, RedisServer};

/// `url` with `option` added to its query string.
fn with_option(url: &str, option: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{option}")
}

fn reserve_all(queue: &str) -> ReserveRequest {
    ReserveRequest {
        queues: vec![queue.into()],
        worker: "test".into(),
        max: 100,
        lease: Duration::from_secs(30),
    }
}

#[tokio::test]
async fn the_prefix_from_the_url_keeps_backends_apart() {
    let server = RedisServer::start(&[]);
    let (pa, pb) = (unique_prefix("a"), unique_prefix("b"));
    let a = RedisBackend::connect(&with_option(&server.url(), &format!("prefix={pa}")))
        .await
        .expect("connect a");
    let b = RedisBackend::connect(&with_option(&server.url(), &format!("prefix={pb}")))
        .await
        .expect("connect b");
    assert_eq!((a.prefix(), b.prefix()), (pa.as_str(), pb.as_str()));
    let now = a.clock().now();
    let ida = a
        .push(vec![NewJob::new("n", "q", "{}", now)])
        .await
        .expect("push")[0]
        .id;
    let idb = b
        .push(vec![
            NewJob::new("n", "q", "{}", now),
            NewJob::new("n", "q", "{}", now),
        ])
        .await
        .expect("push")[0]
        .id;

    // Each sees its own jobs only, in the same queue name.
    let count = |c: Vec<kosh_jobs_core::QueueCounts>| {
        c.iter().find(|c| c.queue == "q").map_or(0, |c| c.ready)
    };
    assert_eq!(count(a.counts().await.expect("counts")), 1);
    assert_eq!(count(b.counts().await.expect("counts")), 2);
    let got_a = a.reserve(&reserve_all("q")).await.expect("reserve");
    assert_eq!(got_a.iter().map(|j| j.id()).collect::<Vec<_>>(), [ida]);
    let got_b = b.reserve(&reserve_all("q")).await.expect("reserve");
    assert_eq!(got_b.len(), 2);
    assert!(got_b.iter().any(|j| j.id() == idb));

    // Every key in Redis is under one of the two prefixes, and both have keys.
    let keys = raw_command(server.port, None, &["KEYS", "*"]);
    let under =
        |p: &str, k: &str| k.starts_with(&format!("{{{p}}}")) || k.starts_with(&format!("{{{p}:"));
    let keys: Vec<&str> = keys.lines().collect();
    assert!(keys.iter().any(|k| under(&pa, k)), "{keys:?}");
    assert!(keys.iter().any(|k| under(&pb, k)), "{keys:?}");
    assert!(
        keys.iter().all(|k| under(&pa, k) || under(&pb, k)),
        "a key outside the prefixes: {keys:?}"
    );
}

/// A server that accepts connections and never answers: only the timeout ends a connect.
#[tokio::test]
async fn the_timeout_from_the_url_bounds_connecting() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let url = format!("redis://:hunter2-Pw@127.0.0.1:{port}?timeout=300ms");
    assert_eq!(
        RedisOptions::from_url(&url).expect("options").timeout(),
        Duration::from_millis(300)
    );
    let started = Instant::now();
    let e = RedisBackend::connect(&url)
        .await
        .expect_err("nothing answers");
    let took = started.elapsed();
    assert!(e.is_unavailable(), "{}", chain(&e));
    assert!(!chain(&e).contains("hunter2"), "{}", chain(&e));
    // The default timeout is 5 s; the URL's 300 ms was used (with room for a slow machine).
    assert!(took < Duration::from_secs(3), "connect took {took:?}");
    assert!(took >= Duration::from_millis(300), "connect took {took:?}");
    drop(silent);
}

#[tokio::test]
async fn bad_or_unknown_options_are_invalid_input_naming_the_option() {
    // Nothing is contacted: the URL is refused before connecting.
    for (query, key) in [
        ("colour=red", "`colour`"),
        ("prefix=ok&Timeout=2s", "`Timeout`"),
        ("timeout=2", "`timeout`"),
        ("timeout=soon", "`timeout`"),
        ("keep_completed_max=lots", "`keep_completed_max`"),
        ("prefix=a%20b", "`prefix`"),
    ] {
        let url = format!("redis://:hunter2-Pw@127.0.0.1:1?{query}");
        let e = RedisBackend::connect(&url).await.expect_err(query);
        assert!(matches!(e, RedisError::Config(_)), "{query}: {e:?}");
        let text = chain(&e);
        assert!(text.contains(key), "{query}: {text}");
        assert!(!text.contains("hunter2"), "{query}: {text}");
        if key == "`colour`" || key == "`Timeout`" {
            assert!(
                text.contains("prefix, timeout, keep_completed_for, keep_completed_max"),
                "{text}"
            );
        }
        match BackendError::from(e) {
            BackendError::InvalidInput(m) => assert!(m.contains(key), "{m}"),
            other => panic!("{query}: {other:?}"),
        }
        match kosh_jobs_core::Error::from(RedisBackend::connect(&url).await.expect_err(query)) {
            kosh_jobs_core::Error::InvalidInput(m) => assert!(m.contains(key), "{m}"),
            other => panic!("{query}: {other:?}"),
        }
    }
}
