//! Lifecycle events over `LISTEN`/`NOTIFY`.
//!
//! Publishing is one statement per batch of events, `SELECT pg_notify($1, e) FROM
//! unnest($2::text[])`, each event a notification of its own carrying its JSON, sent from the
//! backend's I/O thread on a connection of the main pool without the caller waiting (never
//! on the lease pool: events must not delay a heartbeat). The channel is the schema's events
//! channel ([`channel_of`]), apart from the wake-up channel, so waiting workers are not woken
//! by events and subscribers never see wake-ups.
//!
//! Jobs pushed on the application's connection ([`crate::PostgresBackend::push_in`]) have
//! their `Enqueued` events sent on that connection, so inside the application's transaction:
//! Postgres delivers them at its commit, and never for a transaction rolled back.
//!
//! A notification's payload must be shorter than 8000 bytes. An event whose JSON is longer is
//! still sent, smaller: its progress dropped (a `Progress` event without progress), then its
//! error cut, ending with [`CUT_MARK`]. One that still does not fit (it cannot, with names of
//! at most 128 bytes) is sent as [`MISSED`], which subscribers get as [`FeedItem::Missed`].
//!
//! All subscribers of a backend share one listening connection ([`FeedHub`]), a `PgListener`
//! on a pool of one connection of its own, opened with the first subscriber and closed with
//! the last. When that connection is lost, the feed opens a new one (with a growing pause
//! while the server is away) and, once it listens again, reports [`FeedItem::Missed`]: what
//! was sent meanwhile is gone, and the subscriber reads the state again instead of waiting
//! for an event that will never come.

use std::time::Duration;

use kosh_jobs_core::events::{
    EventFeed, FeedHub, FeedItem, FeedSender, JobEvent, JobEventKind, Publisher,
};
use kosh_jobs_core::{BackendError, Enqueued, NewJob, Timestamp};
use sqlx::postgres::{PgConnectOptions, PgListener, PgNotification, PgPool, PgPoolOptions};
use sqlx::PgConnection;

use crate::error::{PostgresError, Result};

/// The largest payload Postgres accepts in a notification (it refuses 8000 bytes and more).
pub(crate) const MAX_PAYLOAD: usize = 7999;

/// What ends an error cut to fit a notification.
pub(crate) const CUT_MARK: &str = " … [cut: the event was longer than a NOTIFY payload]";

/// The payload sent for an event that cannot be made to fit: subscribers see a gap.
pub(crate) const MISSED: &str = "missed";

/// The events channel of a schema (its plain name). At most 60 bytes for a schema of 48, so
/// within Postgres's 63-byte identifiers (a longer one would be cut by `LISTEN` and refused
/// by `pg_notify`).
pub(crate) fn channel_of(schema: &str) -> String {
    format!("kosh_events.{schema}")
}

/// Sends one notification per payload, in order, in one statement.
const NOTIFY: &str = "SELECT pg_notify($1, e) FROM unnest($2::text[]) AS e";

/// The events side of a backend.
pub(crate) struct Events {
    publisher: Publisher,
    channel: String,
    connect: PgConnectOptions,
    acquire_timeout: Duration,
    /// Shares one listening connection among all subscribers.
    hub: FeedHub,
}

impl Events {
    /// Starts the publisher on the I/O thread `io`; it sends on `pool` (the main pool).
    pub(crate) fn start(
        schema: &str,
        pool: PgPool,
        connect: PgConnectOptions,
        acquire_timeout: Duration,
        io: &tokio::runtime::Handle,
    ) -> Events {
        let channel = channel_of(schema);
        let to = channel.clone();
        let publisher = Publisher::start(io, move |batch: Vec<JobEvent>| {
            let pool = pool.clone();
            let to = to.clone();
            async move {
                let payloads: Vec<String> = batch.iter().map(payload).collect();
                sqlx::query(NOTIFY)
                    .bind(&to)
                    .bind(&payloads)
                    .execute(&pool)
                    .await
                    .map(drop)
                    .map_err(|e| BackendError::from(PostgresError::from(e)))
            }
        });
        Events {
            publisher,
            channel,
            connect,
            acquire_timeout,
            hub: FeedHub::new(),
        }
    }

    pub(crate) fn publish(&self, events: Vec<JobEvent>) {
        self.publisher.publish(events);
    }

    /// Sends the `Enqueued` events of jobs pushed on the application's connection, on that
    /// connection: inside its transaction, they are delivered if and only if it commits.
    pub(crate) async fn notify_enqueued(
        &self,
        conn: &mut PgConnection,
        jobs: &[NewJob],
        out: &[Enqueued],
        at: Timestamp,
    ) -> Result<()> {
        let payloads: Vec<String> = jobs
            .iter()
            .zip(out)
            .filter(|(_, e)| !e.existing)
            .map(|(j, e)| {
                payload(&JobEvent {
                    id: e.id,
                    queue: j.queue.clone(),
                    job: j.name.clone(),
                    kind: JobEventKind::Enqueued,
                    attempt: 0,
                    at,
                    progress: None,
                    error: None,
                })
            })
            .collect();
        if payloads.is_empty() {
            return Ok(());
        }
        sqlx::query(NOTIFY)
            .bind(&self.channel)
            .bind(&payloads)
            .execute(conn)
            .await?;
        Ok(())
    }

    /// The feed of every event of the schema, listening when this returns. To be called on
    /// the I/O thread: the feed's task runs there.
    pub(crate) async fn subscribe(&self) -> Result<EventFeed> {
        self.hub
            .subscribe(|| async {
                let first = listen(&self.connect, self.acquire_timeout, &self.channel).await?;
                let (tx, feed) = EventFeed::channel();
                tokio::spawn(pump(
                    self.connect.clone(),
                    self.acquire_timeout,
                    self.channel.clone(),
                    first,
                    tx,
                ));
                Ok(feed)
            })
            .await
    }
}

/// A listener on `channel`, on a connection of its own (a pool of one, dropped with it).
async fn listen(
    connect: &PgConnectOptions,
    acquire_timeout: Duration,
    channel: &str,
) -> Result<PgListener> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(acquire_timeout)
        .connect_lazy_with(connect.clone());
    let mut listener = PgListener::connect_with(&pool).await?;
    // A lost connection ends the listener: the pump opens a new one and reports the gap.
    listener.eager_reconnect(false);
    listener.listen(channel).await?;
    Ok(listener)
}

/// Feeds `tx` until the last subscriber is gone, opening a new listener after a lost
/// connection and then reporting [`FeedItem::Missed`].
async fn pump(
    connect: PgConnectOptions,
    acquire_timeout: Duration,
    channel: String,
    first: PgListener,
    tx: FeedSender,
) {
    let mut listener = Some(first);
    let mut pause = Duration::from_millis(50);
    loop {
        let Some(mut current) = listener.take() else {
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = tx.closed() => return,
            }
            pause = (pause * 2).min(Duration::from_secs(2));
            match listen(&connect, acquire_timeout, &channel).await {
                Ok(again) => {
                    pause = Duration::from_millis(50);
                    listener = Some(again);
                    if tx.send(FeedItem::Missed).await.is_err() {
                        return;
                    }
                }
                Err(e) => tracing::debug!(error = %e, "events listener: reconnecting"),
            }
            continue;
        };
        loop {
            let received = tokio::select! {
                r = current.try_recv() => r,
                () = tx.closed() => return,
            };
            match received {
                Ok(Some(first)) => {
                    let mut items = Vec::new();
                    let mut batch = Vec::new();
                    for n in
                        std::iter::once(first).chain(std::iter::from_fn(|| current.next_buffered()))
                    {
                        read(&n, &mut batch, &mut items);
                    }
                    if !batch.is_empty() {
                        items.push(FeedItem::Events(batch));
                    }
                    for item in items {
                        if tx.send(item).await.is_err() {
                            return;
                        }
                    }
                }
                Ok(None) => {
                    tracing::debug!("events listener lost its connection; reconnecting");
                    break;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "events listener failed; reconnecting");
                    break;
                }
            }
        }
        // `current` is dropped here, with its connection; the next turn opens a new one.
    }
}

/// Adds a notification to the batch being gathered; a [`MISSED`] one ends the batch with a
/// gap. Anything else that is not an event is skipped.
fn read(n: &PgNotification, batch: &mut Vec<JobEvent>, items: &mut Vec<FeedItem>) {
    let text = n.payload();
    if text == MISSED {
        if !batch.is_empty() {
            items.push(FeedItem::Events(std::mem::take(batch)));
        }
        items.push(FeedItem::Missed);
        return;
    }
    match serde_json::from_str::<JobEvent>(text) {
        Ok(e) => batch.push(e),
        Err(e) => tracing::debug!(
            error = %e,
            bytes = text.len(),
            from = n.process_id(),
            "events: skipped a notification that is not an event"
        ),
    }
}

/// An event as a notification's payload: its JSON, made to fit [`MAX_PAYLOAD`] (see the
/// module's docs), else [`MISSED`].
pub(crate) fn payload(event: &JobEvent) -> String {
    let Ok(json) = serde_json::to_string(event) else {
        return MISSED.to_owned();
    };
    if json.len() <= MAX_PAYLOAD {
        return json;
    }
    let mut smaller = event.clone();
    smaller.progress = None;
    match serde_json::to_string(&smaller) {
        Ok(json) if json.len() <= MAX_PAYLOAD => return json,
        Ok(_) => {}
        Err(_) => return MISSED.to_owned(),
    }
    let Some(error) = smaller.error.take() else {
        return MISSED.to_owned();
    };
    // The longest start of the error that fits with the mark, by bisection over its
    // character boundaries (a longer start never makes a shorter JSON).
    let with = |end: usize| {
        let mut e = smaller.clone();
        e.error = Some(format!("{}{CUT_MARK}", &error[..end]));
        serde_json::to_string(&e)
            .ok()
            .filter(|json| json.len() <= MAX_PAYLOAD)
    };
    let ends: Vec<usize> = error.char_indices().map(|(i, _)| i).collect();
    let Some(mut best) = with(0) else {
        return MISSED.to_owned();
    };
    // `ends[lo]` fits; `ends[hi]` and later do not, once known.
    let (mut lo, mut hi) = (0, ends.len());
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match with(ends[mid]) {
            Some(json) => {
                best = json;
                lo = mid;
            }
            None => hi = mid,
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use kosh_jobs_core::JobId;

    use super::*;

    fn event(progress: Option<serde_json::Value>, error: Option<String>) -> JobEvent {
        JobEvent {
            id: JobId::new(42),
            queue: "q".repeat(128),
            job: "j".repeat(128),
            kind: JobEventKind::Failed,
            attempt: 3,
            at: Timestamp::from_millis(1_700_000_000_000),
            progress,
            error,
        }
    }

    #[test]
    fn the_longest_schema_gives_a_channel_postgres_keeps_whole() {
        let schema = "s".repeat(48);
        crate::options::validate_schema(&schema).unwrap();
        assert!(channel_of(&schema).len() <= 63);
        assert_ne!(channel_of("kosh"), crate::store::channel_of("kosh"));
    }

    #[test]
    fn a_small_event_is_sent_as_it_is() {
        let e = event(Some(serde_json::json!({"rows": 12})), Some("boom".into()));
        let p = payload(&e);
        assert_eq!(serde_json::from_str::<JobEvent>(&p).unwrap(), e);
    }

    #[test]
    fn a_big_progress_is_dropped_and_the_error_kept() {
        let e = event(
            Some(serde_json::json!({"blob": "x".repeat(20_000)})),
            Some("boom".into()),
        );
        let p = payload(&e);
        assert!(p.len() <= MAX_PAYLOAD, "{}", p.len());
        let back: JobEvent = serde_json::from_str(&p).unwrap();
        assert_eq!(back.progress, None);
        assert_eq!(back.error.as_deref(), Some("boom"));
        assert_eq!(
            (back.id, back.kind, back.attempt),
            (e.id, e.kind, e.attempt)
        );
    }

    #[test]
    fn a_long_error_is_cut_to_fit_and_marked_whatever_its_characters() {
        // Plain, multi-byte (cut on a character boundary), and escapes that take 6 bytes of
        // JSON per byte of text.
        for text in [
            "e".repeat(50_000),
            "é€😀".repeat(5_000),
            "\u{1}\"".repeat(9_000),
        ] {
            let e = event(None, Some(text.clone()));
            let p = payload(&e);
            assert!(p.len() <= MAX_PAYLOAD, "{}", p.len());
            let back: JobEvent = serde_json::from_str(&p).unwrap();
            let error = back.error.unwrap();
            let kept = error.strip_suffix(CUT_MARK).expect("marked as cut");
            assert!(text.starts_with(kept), "a prefix of the error");
            assert!(
                kept.len() > 1000,
                "most of the room is used: {}",
                kept.len()
            );
        }
    }
}
