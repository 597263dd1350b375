//! Lifecycle events over Redis pub/sub.
//!
//! Publishing is one `PUBLISH {prefix}:events <JSON array>` per batch of events, sent from
//! the backend's I/O thread without the caller waiting. Each subscription holds a pub/sub
//! connection of its own (to the first node; on a cluster, `PUBLISH` reaches every node).
//! When that connection drops, the feed reconnects with a growing pause and, once subscribed
//! again, reports [`FeedItem::Missed`]: whatever was published meanwhile is gone, and the
//! subscriber reads the state again instead of waiting for an event that will never come.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use kosh_jobs_core::events::{EventFeed, FeedHub, FeedItem, FeedSender, JobEvent, Publisher};
use kosh_jobs_core::BackendError;
use redis::aio::PubSub;

use crate::conn::Conn;
use crate::error::RedisError;
use crate::options::RedisOptions;

/// The events side of a backend.
pub(crate) struct Events {
    publisher: Publisher,
    channel: String,
    client: redis::Client,
    /// Shares one pub/sub connection among all subscribers.
    hub: FeedHub,
}

impl Events {
    /// Starts the publisher on the I/O thread `io`.
    pub(crate) fn start(
        opts: &RedisOptions,
        conn: Arc<Conn>,
        io: &tokio::runtime::Handle,
    ) -> Result<Events, RedisError> {
        let channel = format!("{}:events", opts.prefix);
        let node = opts
            .nodes
            .first()
            .ok_or_else(|| RedisError::Config("no redis url given".into()))?;
        let info = node.connection_info()?;
        let client = match &opts.tls_root_cert {
            Some(pem) => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
            None => redis::Client::open(info),
        }
        .map_err(|e| RedisError::Config(format!("redis client: {e}")))?;
        let to = channel.clone();
        let publisher = Publisher::start(io, move |batch: Vec<JobEvent>| {
            let conn = conn.clone();
            let to = to.clone();
            async move {
                let body = serde_json::to_string(&batch)
                    .map_err(|e| BackendError::storage(format!("encoding events: {e}")))?;
                let mut cmd = redis::cmd("PUBLISH");
                cmd.arg(&to).arg(body);
                conn.query(&cmd).await.map(drop).map_err(BackendError::from)
            }
        });
        Ok(Events {
            publisher,
            channel,
            client,
            hub: FeedHub::new(),
        })
    }

    pub(crate) fn publish(&self, events: Vec<JobEvent>) {
        self.publisher.publish(events);
    }

    /// Subscribes (the subscription is in place when this returns), then feeds the events
    /// from a task on the current runtime (the I/O thread's). All subscribers of a backend
    /// share one pub/sub connection, closed when the last one is dropped.
    pub(crate) async fn subscribe(&self) -> Result<EventFeed, RedisError> {
        self.hub
            .subscribe(|| async {
                let first = subscribe(&self.client, &self.channel)
                    .await
                    .map_err(|e| RedisError::from_connect(e, "the events connection"))?;
                let (tx, feed) = EventFeed::channel();
                tokio::spawn(pump(self.client.clone(), self.channel.clone(), first, tx));
                Ok(feed)
            })
            .await
    }
}

async fn subscribe(client: &redis::Client, channel: &str) -> redis::RedisResult<PubSub> {
    let mut ps = client.get_async_pubsub().await?;
    ps.subscribe(channel).await?;
    Ok(ps)
}

/// Feeds `tx` until the subscription is dropped, reconnecting after a lost connection.
async fn pump(client: redis::Client, channel: String, first: PubSub, tx: FeedSender) {
    let mut ps = Some(first);
    let mut pause = Duration::from_millis(50);
    loop {
        let Some(current) = ps.take() else {
            // Reconnecting.
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = tx.closed() => return,
            }
            pause = (pause * 2).min(Duration::from_secs(2));
            match subscribe(&client, &channel).await {
                Ok(again) => {
                    pause = Duration::from_millis(50);
                    ps = Some(again);
                    if tx.send(FeedItem::Missed).await.is_err() {
                        return;
                    }
                }
                Err(e) => tracing::debug!(error = %e, "events connection: reconnecting"),
            }
            continue;
        };
        let mut messages = current.into_on_message();
        loop {
            tokio::select! {
                m = messages.next() => match m {
                    Some(msg) => {
                        let item = match msg.get_payload::<String>().ok().and_then(|b| serde_json::from_str::<Vec<JobEvent>>(&b).ok()) {
                            Some(batch) => FeedItem::Events(batch),
                            // Not ours (a foreign publisher on our channel): say so rather
                            // than drop it silently.
                            None => FeedItem::Missed,
                        };
                        if tx.send(item).await.is_err() {
                            return;
                        }
                    }
                    None => {
                        tracing::debug!("events connection lost; reconnecting");
                        break;
                    }
                },
                _ = tx.closed() => return,
            }
        }
    }
}
