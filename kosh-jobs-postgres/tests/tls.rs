//! TLS to Postgres: a server with a certificate from a private CA (testsupport's `TestCerts`),
//! reached with `sslmode=verify-full` and `sslrootcert`; an untrusted certificate, and a
//! server without TLS when the URL requires it, refused with an error that says so and that is
//! not an outage (retrying cannot help).

use kosh_jobs_core::{Backend, BackendError, NewJob};
use kosh_jobs_postgres::{PostgresBackend, PostgresError};
use kosh_jobs_testsupport::certs::TestCerts;
use kosh_jobs_testsupport::postgres_server::{PostgresServer, PASSWORD};

/// A server with a certificate of a throwaway CA; the CA's certificate is `certs.ca()`.
fn tls_server(certs: &TestCerts) -> PostgresServer {
    PostgresServer::start_tls(&certs.dir.join("server.crt"), &certs.dir.join("server.key"))
        .unwrap_or_else(|e| panic!("cannot start a test postgres with TLS: {e:#}"))
}

fn chain(e: &dyn std::error::Error) -> String {
    kosh_jobs_core::ErrorChain(e).to_string()
}

#[tokio::test]
async fn verify_full_with_the_private_ca_runs_every_connection_over_tls() {
    let certs = TestCerts::generate("pg-ok");
    let server = tls_server(&certs);
    let ca = certs.ca();
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}&schema=tls_ok",
        server.url(),
        ca.display()
    );
    let b = PostgresBackend::connect(&url)
        .await
        .expect("connect over TLS");
    let now = b.clock().now();
    let id = b
        .push(vec![NewJob::new("n", "q", "{}", now)])
        .await
        .expect("push")[0]
        .id;
    assert!(b.get(id).await.expect("get").is_some());
    // Every client connection of the database, the backend's pools and listener and this
    // one, is encrypted.
    let pool = sqlx::PgPool::connect(&format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        server.url(),
        ca.display()
    ))
    .await
    .expect("a TLS connection of the test");
    let (plain, encrypted): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE NOT s.ssl), count(*) FILTER (WHERE s.ssl)
           FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
          WHERE a.backend_type = 'client backend'",
    )
    .fetch_one(&pool)
    .await
    .expect("pg_stat_ssl");
    assert_eq!(plain, 0, "no connection without TLS");
    assert!(
        encrypted >= 3,
        "the backend's pools, its listener and the test's connection: {encrypted}"
    );
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_not_an_outage() {
    let certs = TestCerts::generate("pg-untrusted");
    let server = tls_server(&certs);
    // The system's roots do not include the private CA.
    let url = format!("{}?sslmode=verify-full&schema=tls_untrusted", server.url());
    let e = PostgresBackend::connect(&url)
        .await
        .expect_err("an untrusted certificate must be refused");
    let text = chain(&e);
    assert!(text.to_lowercase().contains("certificate"), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
    let kind = BackendError::from(e);
    assert!(!kind.is_unavailable(), "not an outage: {kind:?}");
    assert!(
        matches!(kind, BackendError::PermissionDenied(_)),
        "refused, like a wrong password: {kind:?}"
    );
}

#[tokio::test]
async fn requiring_tls_of_a_server_without_it_is_refused_not_an_outage() {
    let server =
        PostgresServer::start().unwrap_or_else(|e| panic!("cannot start a test postgres: {e:#}"));
    let url = format!("{}?sslmode=require&schema=tls_none", server.url());
    let e: PostgresError = PostgresBackend::connect(&url)
        .await
        .expect_err("the server has no TLS");
    let text = chain(&e);
    assert!(
        text.contains("TLS") || text.to_lowercase().contains("ssl"),
        "{text}"
    );
    let kind = BackendError::from(e);
    assert!(!kind.is_unavailable(), "not an outage: {kind:?}");
    assert!(
        matches!(kind, BackendError::PermissionDenied(_)),
        "refused: {kind:?}"
    );
}
