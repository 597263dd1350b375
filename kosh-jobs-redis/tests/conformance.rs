//! The whole backend conformance suite against a real `redis-server` (started by the test,
//! or `KOSH_TEST_REDIS_URL`), each case under its own key prefix.

mod support;

use kosh_jobs_core::Clock;
use kosh_jobs_redis::{RedisBackend, RedisOptions};

async fn backend(clock: Clock) -> RedisBackend {
    let options = RedisOptions::builder(support::shared_url())
        .prefix(support::unique_prefix("conformance"))
        .clock(clock)
        .build()
        .expect("options");
    RedisBackend::connect_with(options).await.expect("connect")
}

kosh_jobs_core::conformance_tests!(backend);
