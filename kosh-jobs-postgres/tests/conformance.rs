//! The whole backend conformance suite against a private Postgres cluster (started by the
//! test with `initdb`, or `KOSH_TEST_DATABASE_URL`), each case in its own schema.

mod support;

use kosh_jobs_core::Clock;
use kosh_jobs_postgres::{PostgresBackend, PostgresOptions};

async fn backend(clock: Clock) -> PostgresBackend {
    let options = PostgresOptions::from_url(&support::shared_url())
        .expect("url")
        .schema(support::unique_schema("c"))
        .max_connections(4)
        .clock(clock)
        .build()
        .expect("options");
    PostgresBackend::connect_with(options)
        .await
        .expect("connect")
}

kosh_jobs_core::conformance_tests!(backend);
