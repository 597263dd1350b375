//! Refused access against real servers: wrong or missing passwords, unknown users, and ACLs
//! that forbid a command or a key the backend needs, at connect and during operations. Each
//! is `PermissionDenied`, never an outage, and no message shows the password.

mod support;

use std::time::{Duration, Instant};

use kosh_jobs_core::{Backend, BackendError, NewJob};
use kosh_jobs_redis::{RedisBackend, RedisError};
use support::{chain, raw_command, round_trip, unique_prefix, RedisServer};

/// What an application writes: `?` turns a `RedisError` into the facade's error.
async fn open(url: &str) -> Result<RedisBackend, kosh_jobs_core::Error> {
    Ok(RedisBackend::connect(url).await?)
}

fn job() -> NewJob {
    NewJob::new("n", "q", "{}", kosh_jobs_core::Timestamp::now_system())
}

/// Checks a refused connection: `PermissionDenied` through every error type, not an outage,
/// naming the server and never the password.
fn assert_refused(e: RedisError, port: u16, secret: &str) {
    let text = chain(&e);
    assert!(e.is_permission_denied(), "{text}");
    assert!(!e.is_unavailable(), "{text}");
    assert!(!text.contains(secret), "password leaked: {text}");
    assert_eq!(
        e.to_string(),
        format!("redis at 127.0.0.1:{port} refused access")
    );
    let b = BackendError::from(e);
    assert!(matches!(b, BackendError::PermissionDenied(_)), "{b:?}");
    assert!(!b.is_unavailable());
}

#[tokio::test]
async fn a_wrong_or_missing_password_is_permission_denied_and_the_right_one_works() {
    let server = RedisServer::start(&["--requirepass", "right-Pw"]);
    let port = server.port;
    for url in [
        format!("redis://:wrong-Pw@127.0.0.1:{port}"),
        format!("redis://default:wrong-Pw@127.0.0.1:{port}"),
        format!("redis://nosuchuser:wrong-Pw@127.0.0.1:{port}"),
        // No password at all: Redis accepts the connection and answers NOAUTH.
        format!("redis://127.0.0.1:{port}"),
    ] {
        let e = RedisBackend::connect(&url)
            .await
            .expect_err("a wrong or missing password is refused");
        assert_refused(e, port, "wrong-Pw");
        match open(&url).await {
            Err(kosh_jobs_core::Error::PermissionDenied(source)) => {
                assert!(!chain(&*source).contains("wrong-Pw"))
            }
            other => panic!("{url}: {other:?}"),
        }
    }
    let url = format!(
        "redis://:right-Pw@127.0.0.1:{port}/2?prefix={}",
        unique_prefix("pw")
    );
    let b = open(&url).await.expect("the right password");
    round_trip(&b).await;
    // The jobs went to database 2.
    let keys = raw_command(port, Some("right-Pw"), &["INFO", "keyspace"]);
    assert!(keys.contains("db2:keys="), "{keys}");
}

#[tokio::test]
async fn an_acl_without_evalsha_is_permission_denied_on_the_operation() {
    let server = RedisServer::start(&[]);
    let port = server.port;
    let ok = raw_command(
        port,
        None,
        &[
            "ACL",
            "SETUSER",
            "noscripts",
            "on",
            ">ns-Pw",
            "~*",
            "&*",
            "+@all",
            "-evalsha",
        ],
    );
    assert_eq!(ok, "+OK");
    // Connecting needs plain commands only (the layout check), so it succeeds...
    let b = RedisBackend::connect(&format!(
        "redis://noscripts:ns-Pw@127.0.0.1:{port}?prefix={}",
        unique_prefix("acl")
    ))
    .await
    .expect("connect");
    // ...and every script is refused.
    let e = b.push(vec![job()]).await.expect_err("EVALSHA is forbidden");
    assert!(matches!(e, BackendError::PermissionDenied(_)), "{e:?}");
    assert!(!e.is_unavailable());
    assert!(chain(&e).contains("'evalsha'"), "{}", chain(&e));
    // The facade's error says the same.
    assert!(matches!(
        kosh_jobs_core::Error::from(e),
        kosh_jobs_core::Error::PermissionDenied(_)
    ));
}

#[tokio::test]
async fn an_acl_refusal_inside_a_script_or_on_a_key_is_permission_denied() {
    let server = RedisServer::start(&[]);
    let port = server.port;
    // May run scripts, but the scripts may not write hash fields (a push stores its spec).
    let ok = raw_command(
        port,
        None,
        &[
            "ACL", "SETUSER", "nohset", "on", ">nh-Pw", "~*", "&*", "+@all", "-hset",
        ],
    );
    assert_eq!(ok, "+OK");
    let b = RedisBackend::connect(&format!(
        "redis://nohset:nh-Pw@127.0.0.1:{port}?prefix={}",
        unique_prefix("acl")
    ))
    .await
    .expect("connect");
    let e = b.push(vec![job()]).await.expect_err("HSET is forbidden");
    assert!(
        matches!(e, BackendError::PermissionDenied(_)),
        "{}",
        chain(&e)
    );

    // May only touch keys under another prefix: refused at connect, by the layout check.
    let ok = raw_command(
        port,
        None,
        &[
            "ACL",
            "SETUSER",
            "otherkeys",
            "on",
            ">ok-Pw",
            "~{other}*",
            "+@all",
        ],
    );
    assert_eq!(ok, "+OK");
    let e = RedisBackend::connect(&format!(
        "redis://otherkeys:ok-Pw@127.0.0.1:{port}?prefix=mine"
    ))
    .await
    .expect_err("the prefix's keys are forbidden");
    assert_refused(e, port, "ok-Pw");
}

/// The password of the backend's user changes and its connection is closed: the backend's
/// reconnection is refused, and operations say so instead of reporting an outage. Once the
/// password is back, it reconnects by itself.
#[tokio::test]
async fn credentials_refused_while_reconnecting_are_permission_denied() {
    let server = RedisServer::start(&[]);
    let port = server.port;
    let setuser = |pass: &str| {
        let ok = raw_command(
            port,
            None,
            &[
                "ACL",
                "SETUSER",
                "app",
                "on",
                "resetpass",
                pass,
                "~*",
                "&*",
                "+@all",
            ],
        );
        assert_eq!(ok, "+OK");
    };
    setuser(">old-Pw");
    let b = RedisBackend::connect(&format!(
        "redis://app:old-Pw@127.0.0.1:{port}?prefix={}&timeout=1s",
        unique_prefix("rotate")
    ))
    .await
    .expect("connect");
    round_trip(&b).await;

    setuser(">new-Pw");
    let killed = raw_command(port, None, &["CLIENT", "KILL", "USER", "app"]);
    assert!(killed.starts_with(':'), "{killed}");
    // The first operation may see the connection break (an outage, rightly); once the
    // reconnection is refused, operations are refused too.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    let refused = loop {
        match b.counts().await {
            Err(BackendError::PermissionDenied(source)) => break source,
            other => seen.push(format!("{other:?}")),
        }
        assert!(
            Instant::now() < deadline,
            "operations never reported refused credentials; {} errors, the first: {:?}",
            seen.len(),
            &seen[..seen.len().min(3)]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!chain(&*refused).contains("old-Pw"), "{}", chain(&*refused));
    assert!(
        seen.len() <= 2,
        "more than the broken connection's errors: {seen:?}"
    );
    for _ in 0..3 {
        let e = b.push(vec![job()]).await.expect_err("still refused");
        assert!(matches!(e, BackendError::PermissionDenied(_)), "{e:?}");
    }

    // The old password is valid again: the backend reconnects by itself.
    setuser(">old-Pw");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match b.counts().await {
            Ok(_) => break,
            Err(e) => assert!(
                Instant::now() < deadline,
                "the backend did not reconnect: {e:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    round_trip(&b).await;
}
