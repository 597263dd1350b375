//! Every route and action of the dashboard on a real `redis-server` that this test binary
//! starts on a free port (each test under its own key prefix).

#[macro_use]
mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use kosh_jobs::AnyBackend;
use kosh_jobs_testsupport::redis_server::RedisServer;

fn server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        RedisServer::start().unwrap_or_else(|e| panic!("a redis-server for the tests: {e:#}"))
    })
}

async fn redis() -> (AnyBackend, ()) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let prefix = format!(
        "web-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let url = format!("{}?prefix={prefix}", server().url());
    let backend = kosh_jobs::connect(&url).await.expect("connect to redis");
    (backend, ())
}

scenarios!(redis);
