//! TLS against real servers with throwaway certificate authorities: `?ca_file=` in the URL
//! trusts a private CA, and a certificate no trusted CA issued is refused at once with an
//! error that says so, not retried until the timeout and not reported as an outage.

mod support;

use std::time::{Duration, Instant};

use kosh_jobs_redis::{RedisBackend, RedisError};
use support::{chain, query_value, round_trip, unique_prefix, RedisServer, TestCerts};

/// `rediss://:password@127.0.0.1:port?prefix=…&ca_file=…` for `server`, trusting `ca`.
fn url_trusting(server: &RedisServer, ca: &TestCerts, extra: &str) -> String {
    format!(
        "{}?prefix={}&ca_file={}{extra}",
        server.url(),
        unique_prefix("tls"),
        query_value(&ca.ca().display().to_string())
    )
}

#[tokio::test]
async fn ca_file_in_the_url_trusts_a_private_ca() {
    let certs = TestCerts::generate("url");
    let server = RedisServer::start_tls_with(&certs, &["--requirepass", "tls-Pw"]);
    assert!(server.url().starts_with("rediss://"), "{}", server.url());
    let b = RedisBackend::connect(&url_trusting(&server, &certs, ""))
        .await
        .unwrap_or_else(|e| panic!("connect over TLS: {}", chain(&e)));
    round_trip(&b).await;
}

#[tokio::test]
async fn a_certificate_of_an_unknown_ca_is_refused_at_once() {
    let certs = TestCerts::generate("server");
    let other = TestCerts::generate("other");
    let server = RedisServer::start_tls_with(&certs, &["--requirepass", "tls-Pw"]);
    let addr = format!("127.0.0.1:{}", server.port);
    // A long timeout: the refusal must come from the handshake, not from waiting it out.
    let long = "&timeout=30s";
    let cases = [
        (
            "a CA of its own that did not sign it",
            url_trusting(&server, &other, long),
        ),
        ("the web PKI roots", format!("{}?timeout=30s", server.url())),
    ];
    for (trusting, url) in cases {
        let started = Instant::now();
        let e = tokio::time::timeout(Duration::from_secs(60), RedisBackend::connect(&url))
            .await
            .unwrap_or_else(|_| panic!("trusting {trusting}: connect hung"))
            .expect_err("a certificate of an unknown CA");
        let took = started.elapsed();
        let text = chain(&e);
        assert!(
            took < Duration::from_secs(10),
            "trusting {trusting}: refused only after {took:?}: {text}"
        );
        match &e {
            RedisError::UntrustedCertificate {
                addr: a, reason, ..
            } => {
                assert_eq!(a, &addr);
                assert!(reason.contains("UnknownIssuer"), "{reason}");
            }
            other => panic!("trusting {trusting}: {}", chain(other)),
        }
        let shown = e.to_string();
        for needle in [addr.as_str(), "not trusted", "UnknownIssuer", "ca_file"] {
            assert!(shown.contains(needle), "`{shown}` lacks {needle}");
        }
        assert!(!e.is_unavailable(), "{text}");
        assert!(!text.contains("tls-Pw"), "password leaked: {text}");
        // Retrying does not help until the configuration changes: not `Unavailable`.
        let e = kosh_jobs_core::Error::from(e);
        assert!(
            matches!(e, kosh_jobs_core::Error::PermissionDenied(_)),
            "{e:?}"
        );
    }
    // The server was fine all along: with its CA the same server works.
    let b = RedisBackend::connect(&url_trusting(&server, &certs, long))
        .await
        .unwrap_or_else(|e| panic!("connect over TLS: {}", chain(&e)));
    round_trip(&b).await;
}
