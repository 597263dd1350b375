//! The whole backend conformance suite against a private Postgres cluster (started by the
//! test with `initdb`, or `KOSH_TEST_DATABASE_URL`), each case in its own schema: on a backend
//! with pools of its own, and again on a backend on an application's pool
//! (`PostgresBackend::from_pool`).

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

/// The suite on a backend whose main pool is the application's: 4 connections, opened by
/// the case's runtime like an application's.
mod on_the_application_pool {
    use super::*;

    async fn backend(clock: Clock) -> PostgresBackend {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect_lazy(&support::shared_url())
            .expect("the application's pool");
        let options = PostgresOptions::from_pool(pool)
            .schema(support::unique_schema("cp"))
            .clock(clock)
            .build()
            .expect("options");
        PostgresBackend::connect_with(options)
            .await
            .expect("a backend on the application's pool")
    }

    kosh_jobs_core::conformance_tests!(backend);
}
