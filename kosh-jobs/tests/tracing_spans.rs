//! Each attempt runs in a `job` span carrying the job's id, name, queue and attempt.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use kosh_jobs::memory::MemoryBackend;
use kosh_jobs::{Client, Handler, Job, JobContext, JobError, JobState, Worker};
use serde::{Deserialize, Serialize};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

type Spans = Arc<Mutex<Vec<(String, BTreeMap<String, String>)>>>;

struct Capture(Spans);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_owned(),
            format!("{value:?}").trim_matches('"').to_owned(),
        );
    }
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        self.0
            .lock()
            .unwrap()
            .push((attrs.metadata().name().to_owned(), fields));
    }
}

#[derive(Serialize, Deserialize)]
struct Traced;
impl Job for Traced {
    type Output = ();
    const NAME: &'static str = "traced";
    const QUEUE: &'static str = "spans";
}
impl Handler<()> for Traced {
    async fn run(self, _ctx: JobContext<()>) -> Result<(), JobError> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn every_attempt_has_a_job_span() {
    let spans: Spans = Arc::default();
    let subscriber = tracing_subscriber::registry().with(Capture(spans.clone()));
    let _guard = tracing::subscriber::set_default(subscriber);

    let backend = MemoryBackend::new();
    let client = Client::new(backend.clone());
    let id = client.enqueue(Traced).await.unwrap().id();
    let w = Worker::builder(backend)
        .register::<Traced>()
        .build()
        .unwrap()
        .spawn();
    loop {
        if client.status(id).await.unwrap().state == JobState::Completed {
            break;
        }
        tokio::task::yield_now().await;
    }
    w.shutdown().await.unwrap();

    let spans = spans.lock().unwrap();
    let job_spans: Vec<_> = spans.iter().filter(|(n, _)| n == "job").collect();
    assert_eq!(job_spans.len(), 1, "{spans:?}");
    let f = &job_spans[0].1;
    assert_eq!(
        f.get("job.id").map(String::as_str),
        Some(id.to_string().as_str())
    );
    assert_eq!(f.get("job.name").map(String::as_str), Some("traced"));
    assert_eq!(f.get("job.queue").map(String::as_str), Some("spans"));
    assert_eq!(f.get("job.attempt").map(String::as_str), Some("1"));
}
