//! `kosh_jobs::connect` opens the Postgres backend from `postgres://` and `postgresql://`
//! URLs, with `?schema=`, on a private cluster this test starts.

#![cfg(feature = "postgres")]

use std::time::Duration;

use kosh_jobs::{Backend, NewJob, ReserveRequest};
use kosh_jobs_testsupport::postgres_server::PostgresServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_opens_postgres_urls_in_their_schema() {
    let server = PostgresServer::start().expect("test postgres");
    let url = format!("{}?schema=facade_urls", server.url());
    let backend = kosh_jobs::connect(&url).await.expect("connect");
    let now = backend.clock().now();
    let id = backend
        .push(vec![NewJob::new("n", "q", "{}", now)])
        .await
        .expect("push")[0]
        .id;
    // The same schema through the other scheme sees the job.
    let alias = url.replacen("postgres://", "postgresql://", 1);
    let other = kosh_jobs::connect(&alias)
        .await
        .expect("connect postgresql://");
    let leased = other
        .reserve(&ReserveRequest {
            queues: vec!["q".into()],
            worker: "t".into(),
            max: 1,
            lease: Duration::from_secs(30),
        })
        .await
        .expect("reserve");
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].id(), id);
    // A bad schema name is the caller's mistake.
    let bad = format!("{}?schema=Bad-Name", server.url());
    assert!(matches!(
        kosh_jobs::connect(&bad).await,
        Err(kosh_jobs::Error::InvalidInput(_))
    ));
}
