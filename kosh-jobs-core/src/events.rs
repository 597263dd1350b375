//! Lifecycle events: what happened to a job, seen from any process.
//!
//! A [`Client`](crate::Client) (and so a worker, whose handlers get one) publishes an event
//! when a job is enqueued, when an attempt starts, reports progress or ends, and when a job is
//! cancelled or retried by hand. Any process can [subscribe](crate::Client::subscribe) to the
//! events of one job, one queue, or all:
//!
//! ```
//! use kosh_jobs::events::{Event, EventFilter, JobEventKind};
//! use kosh_jobs::{memory::MemoryBackend, Client, Job};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct ImportCsv { upload_id: i64 }
//! impl Job for ImportCsv {
//!     type Output = ();
//!     const NAME: &'static str = "import_csv";
//!     const QUEUE: &'static str = "csv-uploads";
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), kosh_jobs::Error> {
//! let jobs = Client::new(MemoryBackend::new());
//! let mut events = jobs.subscribe(EventFilter::Queue("csv-uploads".into())).await?;
//! let job = jobs.enqueue(ImportCsv { upload_id: 7 }).await?;
//! match events.next().await {
//!     Some(Event::Job(e)) => {
//!         assert_eq!((e.id, e.kind), (job.id(), JobEventKind::Enqueued));
//!     }
//!     other => panic!("{other:?}"),
//! }
//! # Ok(()) }
//! ```
//!
//! # Delivery
//!
//! Events are notifications, not the record: the store stays the truth. They are delivered
//! at most once, in the order each process published them, to subscribers connected at the
//! time. When a subscriber may have missed some (its connection to the store dropped, or it
//! read too slowly and the feed moved on), it gets [`Event::Missed`] instead of silence: read
//! the state again (a subscription to one job does that for you and hands over the record).
//!
//! Which backends carry events, and what they cost:
//!
//! | backend | transport | cost |
//! |---|---|---|
//! | memory | in-process broadcast | none |
//! | SQLite | a bounded table, read only while someone subscribes | off by default: `?events=true` (one small write per batch of events) |
//! | Redis | pub/sub (`PUBLISH`) | off by default: `?events=true` (one command per batch of events) |
//! | Postgres | `LISTEN`/`NOTIFY` | off by default: `?events=true` (one statement per batch of events, a notification per event) |
//!
//! A backend without events (or with them off) refuses [`subscribe`](crate::Client::subscribe)
//! with an `InvalidInput` error that says how to turn them on; publishing is then skipped
//! without any cost.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};

use crate::clock::Timestamp;
use crate::record::{JobId, JobRecord};

/// What happened to a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobEventKind {
    /// Stored by a client (a job a unique key turned away publishes nothing), or put back to
    /// ready by a retry from an operator.
    Enqueued,
    /// An attempt started in a worker.
    Started,
    /// The running attempt reported progress (the event carries it).
    Progress,
    /// The job completed.
    Completed,
    /// The attempt failed and another one is scheduled (the event carries the error).
    RetryScheduled,
    /// The job failed for good (the event carries the error).
    Failed,
    /// The job was cancelled.
    Cancelled,
    /// The handler asked to run later ([`JobError::snooze`](crate::JobError::snooze)): the
    /// job waits again (scheduled, or ready if the delay was zero) and the attempt does not
    /// count.
    Snoozed,
}

impl JobEventKind {
    /// The name used on the wire and in the docs: `enqueued`, `started`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            JobEventKind::Enqueued => "enqueued",
            JobEventKind::Started => "started",
            JobEventKind::Progress => "progress",
            JobEventKind::Completed => "completed",
            JobEventKind::RetryScheduled => "retry_scheduled",
            JobEventKind::Failed => "failed",
            JobEventKind::Cancelled => "cancelled",
            JobEventKind::Snoozed => "snoozed",
        }
    }

    /// Whether the job has ended with this event (completed, failed, cancelled).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobEventKind::Completed | JobEventKind::Failed | JobEventKind::Cancelled
        )
    }
}

impl fmt::Display for JobEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One lifecycle event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    /// The job.
    pub id: JobId,
    /// Its queue.
    pub queue: String,
    /// Its job name.
    pub job: String,
    /// What happened.
    pub kind: JobEventKind,
    /// The attempt it happened in (0 before the first one).
    pub attempt: u32,
    /// When, on the publisher's clock.
    pub at: Timestamp,
    /// The progress reported (`Progress` events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<serde_json::Value>,
    /// The error (`RetryScheduled` and `Failed` events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Which events a subscription receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventFilter {
    /// Every job's.
    All,
    /// The jobs of one queue.
    Queue(String),
    /// One job's.
    Job(JobId),
}

impl EventFilter {
    /// Whether `event` passes the filter.
    pub fn matches(&self, event: &JobEvent) -> bool {
        match self {
            EventFilter::All => true,
            EventFilter::Queue(q) => event.queue == *q,
            EventFilter::Job(id) => event.id == *id,
        }
    }
}

/// What a backend's feed delivers to a subscription (for backend authors).
#[derive(Clone, Debug)]
pub enum FeedItem {
    /// Events, in the order they were published.
    Events(Vec<JobEvent>),
    /// Events may have been lost here (a reconnect, a subscriber too slow for the feed).
    Missed,
}

/// A backend's stream of events for one subscriber (for backend authors): the receiving end
/// of a channel the backend feeds from a task of its own. The task should end when
/// [`FeedSender::is_closed`] (the subscription was dropped).
pub struct EventFeed {
    rx: FeedReceiver,
}

enum FeedReceiver {
    /// A feed of its own, filled by a backend's task.
    Own(mpsc::Receiver<FeedItem>),
    /// A share of a feed, from a [`FeedHub`].
    Shared(broadcast::Receiver<FeedItem>),
}

/// The sending end of an [`EventFeed`].
pub type FeedSender = mpsc::Sender<FeedItem>;

impl EventFeed {
    /// A feed and the sender a backend's task fills it through.
    pub fn channel() -> (FeedSender, EventFeed) {
        let (tx, rx) = mpsc::channel(256);
        (
            tx,
            EventFeed {
                rx: FeedReceiver::Own(rx),
            },
        )
    }

    /// The next item; `None` once the feed has ended (the backend is gone).
    pub async fn recv(&mut self) -> Option<FeedItem> {
        match &mut self.rx {
            FeedReceiver::Own(rx) => rx.recv().await,
            FeedReceiver::Shared(rx) => match rx.recv().await {
                Ok(item) => Some(item),
                // This subscriber fell behind the others: what it skipped is gone.
                Err(broadcast::error::RecvError::Lagged(_)) => Some(FeedItem::Missed),
                Err(broadcast::error::RecvError::Closed) => None,
            },
        }
    }
}

/// Batches a [`FeedHub`] keeps for its slowest subscriber before it reports
/// [`FeedItem::Missed`] to it.
const HUB_CAPACITY: usize = 1024;

/// One upstream feed shared by all the subscribers of a backend (for backend authors).
///
/// A backend whose feed costs something per subscriber (a connection to the store, a polling
/// task) keeps a hub and opens its feed through [`FeedHub::subscribe`]: the first subscriber
/// opens the upstream feed, later ones share it, and the upstream feed is dropped (its task
/// ends) once the last subscriber is gone. So a thousand [`Client::wait`](crate::Client::wait)
/// calls cost one feed, not a thousand. A subscriber that reads too slowly gets
/// [`FeedItem::Missed`] and does not hold the others back.
#[derive(Clone, Default)]
pub struct FeedHub {
    /// The sending end of the shared feed while one is open; its forwarding task holds the
    /// only strong sender. Locked while a subscriber joins or the last one leaves, so a
    /// subscriber never joins a feed whose task is ending.
    shared: Arc<tokio::sync::Mutex<Option<broadcast::WeakSender<FeedItem>>>>,
}

impl fmt::Debug for FeedHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FeedHub").finish_non_exhaustive()
    }
}

impl FeedHub {
    /// An empty hub.
    pub fn new() -> Self {
        FeedHub::default()
    }

    /// A share of the open feed, or a new feed from `open` if none is open. Must be called
    /// within a Tokio runtime (the forwarding task is spawned on it).
    pub async fn subscribe<F, Fut, E>(&self, open: F) -> Result<EventFeed, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<EventFeed, E>>,
    {
        let mut shared = self.shared.lock().await;
        if let Some(tx) = shared.as_ref().and_then(broadcast::WeakSender::upgrade) {
            return Ok(EventFeed {
                rx: FeedReceiver::Shared(tx.subscribe()),
            });
        }
        let mut upstream = open().await?;
        let (tx, rx) = broadcast::channel(HUB_CAPACITY);
        *shared = Some(tx.downgrade());
        drop(shared);
        let hub = Arc::clone(&self.shared);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    item = upstream.recv() => match item {
                        // An error means no subscriber is left: `closed` below decides.
                        Some(item) => { let _ = tx.send(item); }
                        // The backend is gone: dropping `tx` ends every subscription.
                        None => return,
                    },
                    () = tx.closed() => {
                        let mut shared = hub.lock().await;
                        if tx.receiver_count() == 0 {
                            // Nobody joined meanwhile: close the upstream feed.
                            *shared = None;
                            return;
                        }
                    }
                }
            }
        });
        Ok(EventFeed {
            rx: FeedReceiver::Shared(rx),
        })
    }
}

impl fmt::Debug for EventFeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventFeed").finish_non_exhaustive()
    }
}

/// What [`Subscription::next`] returns.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// An event that passed the filter.
    Job(JobEvent),
    /// Events may have been missed: read the state again. A subscription to one job reads it
    /// for you: `current` is the job as stored now.
    Missed {
        /// The job as stored now, for a subscription to one job; `None` for other filters, and
        /// when the job no longer exists or the store could not be read (then another `Missed`
        /// follows once the backend has reconnected).
        current: Option<Box<JobRecord>>,
    },
}

/// Events as they happen; from [`Client::subscribe`](crate::Client::subscribe). Dropping it
/// stops the feed.
pub struct Subscription {
    pub(crate) filter: EventFilter,
    pub(crate) feed: EventFeed,
    pub(crate) pending: VecDeque<JobEvent>,
    pub(crate) client: crate::Client,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("filter", &self.filter)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// The filter.
    pub fn filter(&self) -> &EventFilter {
        &self.filter
    }

    /// The next event, or `None` once the backend is gone.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(Event::Job(e));
            }
            match self.feed.recv().await? {
                FeedItem::Events(batch) => {
                    let filter = &self.filter;
                    self.pending
                        .extend(batch.into_iter().filter(|e| filter.matches(e)));
                }
                FeedItem::Missed => {
                    let current = match self.filter {
                        EventFilter::Job(id) => {
                            // Best effort: a store still out of reach gives `None`, and the
                            // next `Missed` (after the reconnect) tries again.
                            self.client.get(id).await.ok().flatten().map(Box::new)
                        }
                        _ => None,
                    };
                    return Some(Event::Missed { current });
                }
            }
        }
    }
}

/// Sends a backend's published events in order, one batch per send, gathering the events
/// published while a send is in flight into the next batch (for backend authors).
///
/// `publish` never waits: events go to a task on the runtime given to [`Publisher::start`].
/// A failed send is logged (once per run of failures) and its events are dropped:
/// subscribers learn of the gap from their own feed.
#[derive(Clone)]
pub struct Publisher {
    tx: mpsc::UnboundedSender<JobEvent>,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher").finish_non_exhaustive()
    }
}

/// The most events one send carries.
pub const MAX_EVENT_BATCH: usize = 512;

impl Publisher {
    /// Starts the sending task on `runtime`; `send` stores or sends one batch.
    pub fn start<F, Fut>(runtime: &tokio::runtime::Handle, send: F) -> Publisher
    where
        F: Fn(Vec<JobEvent>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), crate::BackendError>> + Send,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<JobEvent>();
        runtime.spawn(async move {
            let mut failing = false;
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_EVENT_BATCH {
                    match rx.try_recv() {
                        Ok(e) => batch.push(e),
                        Err(_) => break,
                    }
                }
                let n = batch.len();
                match send(batch).await {
                    Ok(()) => failing = false,
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(events = n, error = %e, "lifecycle events not sent; subscribers will see a gap");
                    }
                    Err(_) => {}
                }
            }
        });
        Publisher { tx }
    }

    /// Queues events for sending, in order.
    pub fn publish(&self, events: Vec<JobEvent>) {
        for e in events {
            // The task ends only with its runtime; then there is nobody left to tell.
            let _ = self.tx.send(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn event(id: u64) -> JobEvent {
        JobEvent {
            id: JobId::new(id),
            queue: "q".into(),
            job: "j".into(),
            kind: JobEventKind::Enqueued,
            attempt: 0,
            at: Timestamp::from_millis(0),
            progress: None,
            error: None,
        }
    }

    /// A hub whose upstream feeds are counted, with the senders kept for the test to fill.
    struct Upstreams {
        hub: FeedHub,
        opened: AtomicUsize,
        senders: std::sync::Mutex<Vec<FeedSender>>,
    }

    impl Upstreams {
        fn new() -> Self {
            Upstreams {
                hub: FeedHub::new(),
                opened: AtomicUsize::new(0),
                senders: Default::default(),
            }
        }

        async fn subscribe(&self) -> EventFeed {
            self.hub
                .subscribe(|| async {
                    self.opened.fetch_add(1, Ordering::SeqCst);
                    let (tx, feed) = EventFeed::channel();
                    self.senders.lock().unwrap().push(tx);
                    Ok::<_, ()>(feed)
                })
                .await
                .unwrap()
        }

        fn last_sender(&self) -> FeedSender {
            self.senders.lock().unwrap().last().cloned().unwrap()
        }
    }

    fn ids(item: Option<FeedItem>) -> Vec<u64> {
        match item {
            Some(FeedItem::Events(batch)) => batch.iter().map(|e| e.id.get()).collect(),
            other => panic!("expected events, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn subscribers_share_one_upstream_feed_and_all_get_its_items() {
        let up = Upstreams::new();
        let mut a = up.subscribe().await;
        let mut b = up.subscribe().await;
        assert_eq!(up.opened.load(Ordering::SeqCst), 1, "one upstream for two");
        let tx = up.last_sender();
        tx.send(FeedItem::Events(vec![event(1), event(2)]))
            .await
            .unwrap();
        tx.send(FeedItem::Missed).await.unwrap();
        assert_eq!(ids(a.recv().await), [1, 2]);
        assert_eq!(ids(b.recv().await), [1, 2]);
        assert!(matches!(a.recv().await, Some(FeedItem::Missed)));
        assert!(matches!(b.recv().await, Some(FeedItem::Missed)));
    }

    #[tokio::test]
    async fn the_upstream_feed_closes_with_its_last_subscriber_and_reopens_for_the_next() {
        let up = Upstreams::new();
        let a = up.subscribe().await;
        let b = up.subscribe().await;
        let first = up.last_sender();
        drop(a);
        drop(b);
        // The forwarding task drops the upstream feed: its sender sees the feed closed.
        tokio::time::timeout(std::time::Duration::from_secs(10), first.closed())
            .await
            .expect("the upstream feed is dropped once nobody listens");
        let mut c = up.subscribe().await;
        assert_eq!(up.opened.load(Ordering::SeqCst), 2, "a new upstream feed");
        up.last_sender()
            .send(FeedItem::Events(vec![event(3)]))
            .await
            .unwrap();
        assert_eq!(ids(c.recv().await), [3]);
    }

    #[tokio::test]
    async fn subscribers_see_the_end_of_the_upstream_feed() {
        let up = Upstreams::new();
        let mut a = up.subscribe().await;
        let mut b = up.subscribe().await;
        up.senders.lock().unwrap().clear(); // the backend is gone
        assert!(a.recv().await.is_none());
        assert!(b.recv().await.is_none());
        let _c = up.subscribe().await;
        assert_eq!(up.opened.load(Ordering::SeqCst), 2, "a new upstream feed");
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_gets_missed_and_the_others_do_not_wait() {
        let up = Upstreams::new();
        let mut slow = up.subscribe().await;
        let mut quick = up.subscribe().await;
        let tx = up.last_sender();
        let total = HUB_CAPACITY as u64 + 10;
        for i in 0..total {
            tx.send(FeedItem::Events(vec![event(i)])).await.unwrap();
            assert_eq!(ids(quick.recv().await), [i]);
        }
        assert!(
            matches!(slow.recv().await, Some(FeedItem::Missed)),
            "the slow one learns it missed some"
        );
        // Then it reads on from the oldest batch still kept.
        assert_eq!(ids(slow.recv().await), [total - HUB_CAPACITY as u64]);
    }
}
