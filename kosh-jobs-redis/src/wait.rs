//! `wait_for_work`: a blocking pop on the queues' wake-up lists, raced against the clock.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use kosh_jobs_core::Timestamp;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::conn::{Woken, MAX_BLOCK};
use crate::error::RedisError;
use crate::ops::Shared;

/// A wait whose deadline is closer than this ends by our clock, not by the server's timeout.
const PRECISE_WITHIN: Duration = Duration::from_secs(1);

impl Shared {
    /// Returns when a wake-up token arrives for one of `queues`, when the clock reaches
    /// `until` or the time something there becomes due, or when `cancel` fires.
    ///
    /// With the system clock the server-side `BLPOP` timeout is the deadline itself, so an
    /// idle worker costs one command per wait. With a manual clock, or a deadline less than
    /// [`PRECISE_WITHIN`] away, the pop is raced against the clock and cut short (a push to
    /// the connection's own list) when the clock wins.
    pub(crate) async fn wait_for_work(
        self: Arc<Self>,
        queues: Vec<String>,
        until: Timestamp,
        cancel: CancellationToken,
    ) -> Result<(), RedisError> {
        for q in &queues {
            kosh_jobs_core::backend::validate_queue_name(q).map_err(RedisError::InvalidInput)?;
        }
        let manual = self.clock.is_manual();
        let keys: Vec<String> = queues.iter().map(|q| self.wake_key(q)).collect();
        loop {
            let now = self.clock.now();
            if now >= until || cancel.is_cancelled() {
                return Ok(());
            }
            if queues.is_empty() {
                tokio::select! {
                    _ = self.clock.sleep_until(until) => {}
                    _ = cancel.cancelled() => {}
                }
                return Ok(());
            }
            let due = match self.next_due(&queues).await {
                Ok(d) => d,
                Err(e) if e.is_unavailable() => {
                    return self.pause_after_failure(until, &cancel, e).await
                }
                Err(e) => return Err(e),
            };
            let deadline = due.map_or(until, |d| until.min(Timestamp::from_millis(d)));
            if now >= deadline {
                return Ok(());
            }
            // Redis ends blocking pops that timed out on its own timer (every 100 ms at the
            // default `hz 10`), so a server timeout can end up to 100 ms late. A deadline less
            // than `PRECISE_WITHIN` away (a delayed job about to be due, a rate window about to
            // open) is kept by our clock instead, for one command that ends the pop. Longer
            // waits, idle ones above all, stay one command each.
            let left = deadline.saturating_duration_since(now);
            let precise = manual || left < PRECISE_WITHIN;
            let server_timeout = if manual {
                MAX_BLOCK
            } else if precise {
                left + PRECISE_WITHIN
            } else {
                left
            };
            let clock = self.clock.clone();
            let stop = cancel.clone();
            let other = async move {
                if precise {
                    tokio::select! {
                        _ = clock.sleep_until(deadline) => {}
                        _ = stop.cancelled() => {}
                    }
                } else {
                    stop.cancelled().await
                }
            };
            match self
                .conn
                .block_pop(keys.clone(), server_timeout, other)
                .await
            {
                Ok(Woken::Stale) => continue,
                Ok(Woken::Token(t)) if self.is_own_token(&t) => {
                    self.wait_failures.store(0, Ordering::Relaxed);
                    continue;
                }
                Ok(_) => {
                    self.wait_failures.store(0, Ordering::Relaxed);
                    return Ok(());
                }
                Err(e) if e.is_unavailable() => {
                    return self.pause_after_failure(until, &cancel, e).await
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// After a connection problem: waits (with a growing pause) for the connection to come
    /// back instead of returning at once, so a worker's wait loop never spins; then returns
    /// `Ok` (an early return), letting the caller's next operation report the outage.
    async fn pause_after_failure(
        &self,
        until: Timestamp,
        cancel: &CancellationToken,
        e: RedisError,
    ) -> Result<(), RedisError> {
        let n = self.wait_failures.fetch_add(1, Ordering::Relaxed).min(6);
        let pause = Duration::from_millis(100 << n).min(Duration::from_secs(5));
        debug!(error = %e, ?pause, "blocking wait failed");
        tokio::select! {
            _ = async {
                self.conn.wait_up(self.timeout()).await;
                tokio::time::sleep(pause).await;
            } => {}
            _ = self.clock.sleep_until(until) => {}
            _ = cancel.cancelled() => {}
        }
        Ok(())
    }
}
