//! The whole conformance suite against a real three-master Redis Cluster that the test builds
//! itself (`redis-server --cluster-enabled yes` ×3 and `redis-cli --cluster create`): every
//! script touches one queue's hash tag only, and operations across queues never need a
//! multi-key command across slots.

mod support;

use std::sync::OnceLock;

use kosh_jobs_core::Clock;
use kosh_jobs_redis::{RedisBackend, RedisOptions};

fn cluster_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let cluster = support::RedisCluster::start(3);
        let url = cluster.url();
        cluster.leak_until_exit();
        url
    })
    .clone()
}

async fn backend(clock: Clock) -> RedisBackend {
    let options = RedisOptions::builder(cluster_url())
        .prefix(support::unique_prefix("cluster"))
        .clock(clock)
        .build()
        .expect("options");
    assert!(options.is_cluster());
    RedisBackend::connect(options).await.expect("connect")
}

kosh_jobs_core::conformance_tests!(backend);

/// The queues of one test land on different masters, so the suite above really crosses
/// slots and nodes.
#[test]
fn queues_spread_over_the_masters() {
    let url = cluster_url();
    let port: u16 = url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let mut nodes = std::collections::HashSet::new();
    for q in ["alpha", "beta", "gamma", "delta", "q", "other", "mail"] {
        let key = format!("{{kosh:{q}}}:ready");
        let slot: u64 = support::raw_command(port, None, &["CLUSTER", "KEYSLOT", &key])
            .trim_start_matches(':')
            .parse()
            .expect("slot");
        nodes.insert(slot * 3 / 16384);
    }
    assert!(nodes.len() >= 2, "queues should not all share one master");
}

/// On a cluster a unique key is unique within its queue only: a script can touch one slot.
#[tokio::test]
async fn unique_keys_are_per_queue_on_a_cluster() {
    let b = backend(Clock::system()).await;
    let job = |queue: &str| {
        let mut j =
            kosh_jobs_core::NewJob::new("n", queue, "{}", kosh_jobs_core::Timestamp::now_system());
        j.unique_key = Some("report-2024".into());
        j
    };
    use kosh_jobs_core::Backend as _;
    let a = b.push(vec![job("a"), job("a")]).await.expect("push");
    assert!(!a[0].existing && a[1].existing && a[1].id == a[0].id);
    let other = b.push(vec![job("b")]).await.expect("push")[0];
    assert!(!other.existing, "another queue's job does not hold the key");
}
