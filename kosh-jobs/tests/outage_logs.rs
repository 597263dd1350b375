//! An outage is logged once per loop, not once per try: lease recovery failing round after
//! round warns once, and says when the store is reachable again.

mod support;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kosh_jobs::{AnyBackend, Handler, Job, JobContext, JobError, Worker};
use serde::{Deserialize, Serialize};
use support::{setup, wait_until};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

type Lines = Arc<Mutex<Vec<(Level, String)>>>;

/// Keeps every event's level and message.
struct Capture(Lines);

struct Message<'a>(&'a mut String);

impl Visit for Message<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            *self.0 = format!("{value:?}");
        }
    }
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut message = String::new();
        event.record(&mut Message(&mut message));
        self.0
            .lock()
            .unwrap()
            .push((*event.metadata().level(), message));
    }
}

#[derive(Serialize, Deserialize)]
struct Idle;

impl Job for Idle {
    type Output = ();
    const NAME: &'static str = "idle";
    const QUEUE: &'static str = "idle";
}

impl Handler<()> for Idle {
    async fn run(self, _ctx: JobContext<()>) -> Result<(), JobError> {
        Ok(())
    }
}

fn lines_about(lines: &Lines, level: Level, what: &str) -> usize {
    lines
        .lock()
        .unwrap()
        .iter()
        .filter(|(l, m)| *l == level && m.contains(what))
        .count()
}

#[tokio::test(flavor = "current_thread")]
async fn failing_lease_recovery_warns_once_per_outage() {
    let lines: Lines = Arc::default();
    let subscriber = tracing_subscriber::registry().with(Capture(lines.clone()));
    let _guard = tracing::subscriber::set_default(subscriber);

    let (spy, _client, clock) = setup();
    spy.fail_recover.store(true, Ordering::SeqCst);
    let w = Worker::builder(AnyBackend::from(spy.clone()))
        .register::<Idle>()
        .recover_interval(Duration::from_secs(1))
        .build()
        .unwrap()
        .spawn();
    for round in 1..=5 {
        wait_until(&format!("recovery round {round}"), || async {
            spy.recovers.load(Ordering::SeqCst) >= round
        })
        .await;
        clock.advance(Duration::from_secs(1));
    }
    assert_eq!(
        lines_about(&lines, Level::WARN, "recovering expired leases"),
        1,
        "five failed rounds, one warning: {:?}",
        lines.lock().unwrap()
    );
    spy.fail_recover.store(false, Ordering::SeqCst);
    let done = spy.recovers.load(Ordering::SeqCst);
    wait_until("a recovery round succeeds", || async {
        clock.advance(Duration::from_millis(500));
        spy.recovers.load(Ordering::SeqCst) > done + 1
    })
    .await;
    assert_eq!(
        lines_about(
            &lines,
            Level::INFO,
            "recovering expired leases: backend reachable again"
        ),
        1,
        "{:?}",
        lines.lock().unwrap()
    );
    w.shutdown().await.unwrap();
}
