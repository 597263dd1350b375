//! The operations on the database, as SQL. Every statement names the backend's schema as
//! `__S__`, replaced by [`Db::sql`].

pub(crate) mod admin;
pub(crate) mod jobs;
pub(crate) mod operate;
pub(crate) mod read;
pub(crate) mod row;
pub(crate) mod schedules;

use std::sync::Arc;

use kosh_jobs_core::{Clock, Timestamp};
use sqlx::{AssertSqlSafe, PgPool};
use tokio::sync::Notify;

/// What every operation needs: the pool, the schema, the clock and the local wake-up.
#[derive(Clone)]
pub(crate) struct Db {
    pub(crate) pool: PgPool,
    /// The schema as a quoted identifier.
    pub(crate) schema: Arc<str>,
    /// The NOTIFY channel of this schema.
    pub(crate) channel: Arc<str>,
    pub(crate) clock: Clock,
    /// Woken (all waiters) by a notification, by a change of this process, and when the
    /// listener reconnected (notifications may have been lost).
    pub(crate) wake: Arc<Notify>,
}

impl Db {
    /// `template` with `__S__` replaced by the schema.
    pub(crate) fn sql(&self, template: &str) -> AssertSqlSafe<String> {
        sql_for(&self.schema, template)
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
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
