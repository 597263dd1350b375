//! Lifecycle events over `LISTEN`/`NOTIFY`: the shared lifecycle scenario, off by default,
//! one listening connection per backend, events too big for a notification, and what a
//! subscriber sees when its connection is cut or the server goes away: `Missed`, then events
//! again. (Across processes: `testsupport/tests/events_across_processes.rs`.)

mod support;

use std::time::Duration;

use kosh_jobs_core::events::{Event, EventFilter, JobEvent, JobEventKind, Subscription};
use kosh_jobs_core::{AnyBackend, Backend, Client, Clock, Error, JobId, JobState, Timestamp};
use kosh_jobs_postgres::{PostgresBackend, PostgresOptions};
use kosh_jobs_testsupport::events::{collect_and_check, run_scenario};
use kosh_jobs_testsupport::jobs::Double;
use kosh_jobs_testsupport::postgres_server::PostgresServer;
use sqlx::{Connection, PgConnection};

const LIMIT: Duration = Duration::from_secs(30);

async fn open(url: &str, schema: &str, events: bool, clock: Clock) -> PostgresBackend {
    let options = PostgresOptions::from_url(url)
        .expect("url")
        .schema(schema)
        .events(events)
        .clock(clock)
        .max_connections(4)
        .build()
        .expect("options");
    PostgresBackend::connect_with(options)
        .await
        .expect("connect")
}

/// A backend with events on, in a schema of its own on the shared server.
async fn backend(tag: &str) -> PostgresBackend {
    let url = format!("{}?events=true", support::shared_url());
    let options = PostgresOptions::from_url(&url)
        .expect("url")
        .schema(support::unique_schema(tag))
        .max_connections(4)
        .build()
        .expect("options");
    assert!(options.events(), "`events=true` in the url");
    PostgresBackend::connect_with(options)
        .await
        .expect("connect")
}

/// The next event, within [`LIMIT`].
async fn next(sub: &mut Subscription) -> Event {
    tokio::time::timeout(LIMIT, sub.next())
        .await
        .expect("an event within the limit")
        .expect("the feed goes on")
}

/// How many connections listen on the events channel of `schema`.
async fn listeners(admin: &mut PgConnection, schema: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE query = $1")
        .bind(format!("LISTEN \"kosh_events.{schema}\""))
        .fetch_one(admin)
        .await
        .expect("pg_stat_activity")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lifecycle_scenario_arrives_in_order() {
    let backend = backend("ev_scenario").await;
    assert!(backend.events_enabled());
    let client = Client::new(backend.clone());
    let mut sub = client
        .subscribe(EventFilter::Queue("scripted".into()))
        .await
        .expect("subscribe");
    // `run_scenario` waits for each job with `wait_record`, on the events.
    let expected = run_scenario(&client, AnyBackend::new(backend)).await;
    collect_and_check(&mut sub, &expected, LIMIT).await;
}

#[tokio::test]
async fn events_are_off_by_default_and_subscribing_says_how_to_turn_them_on() {
    let schema = support::unique_schema("ev_off");
    let b = open(&support::shared_url(), &schema, false, Clock::system()).await;
    assert!(!b.events_enabled());
    match Client::new(b).subscribe(EventFilter::All).await {
        Err(Error::InvalidInput(msg)) => {
            assert!(msg.contains("events=true"), "{msg}");
            assert!(msg.contains("events(true)"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
}

/// A wait on a clock that never moves ends only by an event: its fallback look would
/// never come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_ends_on_the_final_event_with_time_standing_still() {
    let (clock, _time) = Clock::manual();
    let url = format!("{}?events=true", support::shared_url());
    let b = open(&url, &support::unique_schema("ev_wait"), true, clock).await;
    let client = Client::new(b);
    let job = client.enqueue(Double { n: 2 }).await.expect("enqueue");
    let waiting = {
        let job = job.clone();
        tokio::spawn(async move { job.wait().await })
    };
    client.cancel(job.id()).await.expect("cancel");
    match tokio::time::timeout(LIMIT, waiting)
        .await
        .expect("the wait ends on the cancelled event")
        .expect("wait task")
    {
        Err(Error::JobCancelled(id)) => assert_eq!(id, job.id()),
        other => panic!("{other:?}"),
    }
}

/// All the subscriptions of a backend share one listening connection, closed with the last;
/// when that connection is cut, each learns it may have missed events, then gets them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_share_one_listener_and_learn_when_it_was_cut() {
    let b = backend("ev_hub").await;
    let schema = b.schema().to_owned();
    let client = Client::new(b);
    let mut admin = PgConnection::connect(&support::shared_url())
        .await
        .expect("admin connection");
    let mut subs = Vec::new();
    for _ in 0..20 {
        subs.push(client.subscribe(EventFilter::All).await.expect("subscribe"));
    }
    assert_eq!(
        listeners(&mut admin, &schema).await,
        1,
        "one connection for 20"
    );
    let job = client.enqueue(Double { n: 1 }).await.expect("enqueue");
    for sub in &mut subs {
        match next(sub).await {
            Event::Job(e) => assert_eq!((e.id, e.kind), (job.id(), JobEventKind::Enqueued)),
            other => panic!("{other:?}"),
        }
    }

    // The server ends the listening connection: `Missed` for each, once it listens again.
    let cut: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE query = $1) t",
    )
    .bind(format!("LISTEN \"kosh_events.{schema}\""))
    .fetch_one(&mut admin)
    .await
    .expect("terminate the listener");
    assert_eq!(cut, 1);
    for sub in &mut subs {
        assert!(
            matches!(next(sub).await, Event::Missed { current: None }),
            "a cut connection is reported"
        );
    }
    let again = client.enqueue(Double { n: 2 }).await.expect("enqueue");
    for sub in &mut subs {
        match next(sub).await {
            Event::Job(e) => assert_eq!((e.id, e.kind), (again.id(), JobEventKind::Enqueued)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        listeners(&mut admin, &schema).await,
        1,
        "one new connection"
    );

    drop(subs);
    let deadline = std::time::Instant::now() + LIMIT;
    while listeners(&mut admin, &schema).await != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the listening connection is closed with its last subscriber"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn event(id: u64, kind: JobEventKind) -> JobEvent {
    JobEvent {
        id: JobId::new(id),
        queue: "big".into(),
        job: "big".into(),
        kind,
        attempt: 1,
        at: Timestamp::from_millis(1_700_000_000_000),
        progress: None,
        error: None,
    }
}

/// Events too big for a notification's 8000 bytes still arrive, smaller, in order with the
/// others of their batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_too_big_for_a_notification_arrive_cut_in_order() {
    let b = backend("ev_big").await;
    let mut sub = Client::new(b.clone())
        .subscribe(EventFilter::All)
        .await
        .expect("subscribe");
    let mut progress = event(2, JobEventKind::Progress);
    progress.progress = Some(serde_json::json!({ "blob": "p".repeat(50_000) }));
    let mut failed = event(3, JobEventKind::Failed);
    failed.error = Some(format!("{}€", "e".repeat(50_000)));
    let mut small = event(4, JobEventKind::Progress);
    small.progress = Some(serde_json::json!({ "rows": 12 }));
    let sent = vec![
        event(1, JobEventKind::Started),
        progress,
        failed,
        small.clone(),
    ];
    b.publish_events(sent);
    let mut got = Vec::new();
    for _ in 0..4 {
        match next(&mut sub).await {
            Event::Job(e) => got.push(e),
            other => panic!("{other:?} after {got:?}"),
        }
    }
    let ids: Vec<u64> = got.iter().map(|e| e.id.get()).collect();
    assert_eq!(ids, [1, 2, 3, 4], "in order, none lost");
    assert_eq!(got[1].kind, JobEventKind::Progress);
    assert_eq!(got[1].progress, None, "the progress is dropped");
    let error = got[2].error.as_deref().expect("the error is kept");
    assert!(
        error.starts_with("eeee") && error.len() < 8000,
        "{}",
        error.len()
    );
    assert!(
        error.ends_with("longer than a NOTIFY payload]"),
        "marked as cut"
    );
    assert_eq!(got[3], small, "small events are untouched");
}

/// The server goes down and comes back: a subscriber hears `Missed` (a subscription to one job
/// with the job as stored now, changed meanwhile without an event: what `wait` re-reads),
/// then events again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_server_was_down_subscribers_hear_missed_then_events() {
    let mut server = PostgresServer::start().expect("test postgres");
    let url = format!("{}?events=true", server.url());
    let with_events = open(&url, "downup", true, Clock::system()).await;
    // Another process's backend without events: its changes send none.
    let silent = Client::new(open(&server.url(), "downup", false, Clock::system()).await);
    let client = Client::new(with_events.clone());

    let mut all = client
        .subscribe(EventFilter::All)
        .await
        .expect("subscribe to all");
    let job = client.enqueue(Double { n: 3 }).await.expect("enqueue");
    // Sent after `enqueue` returned: taken here, so the subscription below starts after it.
    match next(&mut all).await {
        Event::Job(e) => assert_eq!((e.id, e.kind), (job.id(), JobEventKind::Enqueued)),
        other => panic!("{other:?}"),
    }
    let mut one = client
        .subscribe(EventFilter::Job(job.id()))
        .await
        .expect("subscribe to the job");
    // Cancelled without an event: only a re-read can tell the subscribers.
    silent.cancel(job.id()).await.expect("cancel");

    server.down().expect("server down");
    server.up().expect("server up");
    match next(&mut one).await {
        Event::Missed { current: Some(rec) } => {
            assert_eq!((rec.id, rec.state), (job.id(), JobState::Cancelled));
        }
        other => panic!("expected Missed with the job, got {other:?}"),
    }
    assert!(
        matches!(next(&mut all).await, Event::Missed { current: None }),
        "a subscription to all reports the gap"
    );
    // Events flow again once the backend's own connections are back.
    let deadline = std::time::Instant::now() + LIMIT;
    let after = loop {
        match client.enqueue(Double { n: 4 }).await {
            Ok(h) => break h,
            Err(e) if e.is_unavailable() && std::time::Instant::now() < deadline => {
                tokio::task::yield_now().await
            }
            Err(e) => panic!("{e}"),
        }
    };
    match next(&mut all).await {
        Event::Job(e) => assert_eq!((e.id, e.kind), (after.id(), JobEventKind::Enqueued)),
        other => panic!("expected the new job's event, got {other:?}"),
    }
    // A new subscription to one job works as well.
    let mut again = client
        .subscribe(EventFilter::Job(after.id()))
        .await
        .expect("subscribe after the outage");
    client.cancel(after.id()).await.expect("cancel");
    match next(&mut again).await {
        Event::Job(e) => assert_eq!((e.id, e.kind), (after.id(), JobEventKind::Cancelled)),
        other => panic!("{other:?}"),
    }
    drop(server);
}

/// A job enqueued in the application's transaction has its `Enqueued` event sent at the
/// commit, and none for a transaction rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_enqueued_in_a_transaction_is_announced_only_at_its_commit() {
    let b = backend("ev_tx").await;
    let mut sub = Client::new(b.clone())
        .subscribe(EventFilter::All)
        .await
        .expect("subscribe");
    let mut app = PgConnection::connect(&support::shared_url())
        .await
        .expect("app connection");
    let mut tx = app.begin().await.expect("begin");
    let rolled_back = b
        .enqueue_in(&mut tx, Double { n: 1 })
        .await
        .expect("enqueue in the first transaction");
    tx.rollback().await.expect("rollback");
    let mut tx = app.begin().await.expect("begin");
    let committed = b
        .enqueue_in(&mut tx, Double { n: 2 })
        .await
        .expect("enqueue in the second transaction");
    let quiet = tokio::time::timeout(Duration::from_millis(200), sub.next()).await;
    assert!(quiet.is_err(), "an event before the commit: {quiet:?}");
    tx.commit().await.expect("commit");
    match next(&mut sub).await {
        Event::Job(e) => {
            assert_ne!(e.id, rolled_back.id);
            assert_eq!((e.id, e.kind), (committed.id, JobEventKind::Enqueued));
            assert_eq!((e.queue.as_str(), e.job.as_str()), ("test-child", "double"));
        }
        other => panic!("{other:?}"),
    }
}
