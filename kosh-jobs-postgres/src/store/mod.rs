//! The operations on the database, as SQL. Every statement names the backend's schema as
//! `__S__`, replaced by [`Db::sql`].

pub(crate) mod admin;
pub(crate) mod flow;
pub(crate) mod jobs;
pub(crate) mod operate;
pub(crate) mod read;
pub(crate) mod row;
pub(crate) mod schedules;
pub(crate) mod turns;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use kosh_jobs_core::{Clock, Timestamp};
use sqlx::{AssertSqlSafe, PgPool};
use tokio::sync::Notify;

/// What every operation needs: the pools, the schema, the clock and the local wake-up.
#[derive(Clone)]
pub(crate) struct Db {
    /// Every operation but the ones that keep leases: pushes, reserves, waits, admin.
    pub(crate) pool: PgPool,
    /// Heartbeats, finishes and releases only: connections of their own, so however many
    /// pushes or admin calls hold the main pool, leases are renewed and results stored.
    pub(crate) leases: PgPool,
    /// The schema as a quoted identifier.
    pub(crate) schema: Arc<str>,
    /// The NOTIFY channel of this schema.
    pub(crate) channel: Arc<str>,
    pub(crate) clock: Clock,
    /// Woken (all waiters) by a notification, by a change of this process, and when the
    /// listener reconnected (notifications may have been lost).
    pub(crate) wake: Arc<Notify>,
    /// The queues this process last saw with limits: a hint that sends their reserves
    /// straight to [`flow::reserve_limited`]. Never needed for correctness: the plain claim
    /// finds limits by itself, and the locking reserve is right for any queue.
    pub(crate) limited: Arc<Mutex<HashSet<String>>>,
}

impl Db {
    /// `template` with `__S__` replaced by the schema.
    pub(crate) fn sql(&self, template: &str) -> AssertSqlSafe<String> {
        sql_for(&self.schema, template)
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Whether this process last saw one of `queues` with limits.
    pub(crate) fn seen_limited(&self, queues: &[&str]) -> bool {
        let Ok(seen) = self.limited.lock() else {
            return false;
        };
        !seen.is_empty() && queues.iter().any(|q| seen.contains(*q))
    }

    /// Remembers whether `queue` has limits (see [`Db::limited`]).
    pub(crate) fn remember_limited(&self, queue: &str, limited: bool) {
        let Ok(mut seen) = self.limited.lock() else {
            return;
        };
        if limited {
            if !seen.contains(queue) {
                seen.insert(queue.to_owned());
            }
        } else {
            seen.remove(queue);
        }
    }

    /// Wakes the waiting workers of this process (others hear the NOTIFY).
    pub(crate) fn wake_local(&self) {
        self.wake.notify_waiters();
    }

    /// Sends a notification for `queues` (other processes' workers) and wakes this
    /// process's.
    pub(crate) async fn notify(&self, queues: &[String]) -> crate::error::Result<()> {
        if queues.is_empty() {
            return Ok(());
        }
        sqlx::query("SELECT pg_notify($1, q) FROM (SELECT DISTINCT unnest($2::text[]) AS q) d")
            .bind(&*self.channel)
            .bind(queues)
            .execute(&self.pool)
            .await?;
        self.wake_local();
        Ok(())
    }
}

/// `template` with `__S__` replaced by `schema` (a quoted identifier).
pub(crate) fn sql_for(schema: &str, template: &str) -> AssertSqlSafe<String> {
    AssertSqlSafe(template.replace("__S__", schema))
}

/// The NOTIFY channel of a schema (its plain name).
pub(crate) fn channel_of(schema: &str) -> String {
    format!("kosh_jobs.{schema}")
}
