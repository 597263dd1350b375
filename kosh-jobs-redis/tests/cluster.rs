//! The whole conformance suite against a real three-master Redis Cluster that the test builds
//! itself (`redis-server --cluster-enabled yes` ×3 and `redis-cli --cluster create`): every
//! script touches one queue's hash tag only, and operations across queues never need a
//! multi-key command across slots.

mod support;

use std::sync::OnceLock;

use std::time::Duration;

use kosh_jobs_core::{BackendError, Clock};
use kosh_jobs_redis::{RedisBackend, RedisOptions};

/// The shared cluster's URLs: with the first node as the only seed, and with every node.
fn cluster_urls() -> &'static (String, String) {
    static URLS: OnceLock<(String, String)> = OnceLock::new();
    URLS.get_or_init(|| {
        let cluster = support::RedisCluster::start(3);
        let urls = (cluster.url(), cluster.seeds_url());
        cluster.leak_until_exit();
        urls
    })
}

fn cluster_url() -> String {
    cluster_urls().0.clone()
}

async fn backend(clock: Clock) -> RedisBackend {
    let options = RedisOptions::builder(cluster_url())
        .prefix(support::unique_prefix("cluster"))
        .clock(clock)
        .build()
        .expect("options");
    assert!(options.is_cluster());
    RedisBackend::connect_with(options).await.expect("connect")
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

/// `redis+cluster://host1:port1,host2:port2,…?prefix=…` opens a working cluster backend
/// through `connect`, with the URL's options.
#[tokio::test]
async fn a_cluster_url_with_every_seed_and_options_works() {
    use kosh_jobs_core::{Backend as _, Finish, NewJob, Outcome, ReserveRequest};
    let prefix = support::unique_prefix("cluster-url");
    let url = format!("{}?prefix={prefix}&timeout=2s", cluster_urls().1);
    let options = RedisOptions::from_url(&url).expect("options");
    assert!(options.is_cluster());
    assert_eq!(options.addrs().len(), 3);
    let b = RedisBackend::connect(&url).await.expect("connect");
    assert_eq!(b.prefix(), prefix);
    // Queues on different masters (see `queues_spread_over_the_masters`).
    let queues = ["alpha", "beta", "gamma", "delta"];
    let now = b.clock().now();
    let pushed = b
        .push(
            queues
                .iter()
                .map(|q| NewJob::new("n", *q, "{}", now))
                .collect(),
        )
        .await
        .expect("push");
    let leased = b
        .reserve(&ReserveRequest {
            queues: queues.iter().map(|q| q.to_string()).collect(),
            worker: "test".into(),
            max: 10,
            lease: Duration::from_secs(30),
        })
        .await
        .expect("reserve");
    assert_eq!(leased.len(), queues.len());
    for e in &pushed {
        assert!(leased.iter().any(|l| l.id() == e.id));
    }
    let done = b
        .finish(
            leased
                .iter()
                .map(|l| Finish {
                    lease: l.lease,
                    outcome: Outcome::Completed { result: None },
                })
                .collect(),
        )
        .await
        .expect("finish");
    assert_eq!(done.len(), queues.len());
    // The keys are under the URL's prefix (on whichever masters its slots are).
    let ports = cluster_urls()
        .1
        .trim_start_matches("redis+cluster://")
        .split(',')
        .filter_map(|h| h.rsplit(':').next()?.parse::<u16>().ok());
    let with_keys = ports
        .filter(|port| {
            let keys = support::raw_command(*port, None, &["KEYS", &format!("{{{prefix}:*")]);
            !keys.is_empty()
        })
        .count();
    assert!(
        with_keys >= 2,
        "keys under the prefix on {with_keys} masters"
    );
}

/// Refused credentials on a cluster are `PermissionDenied`, not an outage.
#[tokio::test]
async fn refused_credentials_on_a_cluster_are_permission_denied() {
    let (_, seeds) = cluster_urls();
    let url = seeds.replacen(
        "redis+cluster://",
        "redis+cluster://nosuchuser:hunter2-Pw@",
        1,
    );
    let e = RedisBackend::connect(&format!("{url}?timeout=2s"))
        .await
        .expect_err("no such user");
    let text = support::chain(&e);
    assert!(e.is_permission_denied(), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    let b = BackendError::from(e);
    assert!(matches!(b, BackendError::PermissionDenied(_)) && !b.is_unavailable());
}

/// A schedule whose queue changes moves to the new queue's slot (on another master).
#[tokio::test]
async fn upsert_moves_a_schedule_to_its_new_queue_on_a_cluster() {
    let b = backend(Clock::system()).await;
    support::schedules::upsert_moves_a_schedule_to_its_new_queue(&b, &cluster_url()).await;
}

/// Schedules in queues on different masters are due, and fire, as one list.
#[tokio::test]
async fn due_schedules_merge_queues_on_a_cluster() {
    let b = backend(Clock::system()).await;
    support::schedules::due_schedules_merge_queues(&b).await;
}
