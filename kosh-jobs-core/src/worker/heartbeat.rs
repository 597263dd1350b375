//! Lease renewal on its own OS thread.
//!
//! A handler that blocks its thread (CPU-bound CSV parsing) can starve every task of the
//! runtime it runs on. Renewal therefore runs on a dedicated thread with its own small
//! runtime: however busy the handlers' threads are, leases are renewed on time and the job is
//! not declared stalled and run twice.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::active::Active;
use super::outage::Outage;
use crate::any::AnyBackend;
use crate::backend::Backend;
use crate::clock::{Clock, Timestamp};

pub(crate) struct Heartbeat {
    stop: CancellationToken,
    thread: Option<JoinHandle<()>>,
}

impl Heartbeat {
    pub(crate) fn start(
        backend: AnyBackend,
        clock: Clock,
        active: Arc<Active>,
        interval: Duration,
        lease: Duration,
    ) -> std::io::Result<Self> {
        let stop = CancellationToken::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("kosh-jobs-heartbeat".into())
            .spawn(move || {
                rt.block_on(beat(backend, clock, active, interval, lease, stop2));
            })?;
        Ok(Heartbeat {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops renewing and waits for the thread to end.
    pub(crate) async fn stop(mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            // Joining blocks; the thread ends promptly once stopped.
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn beat(
    backend: AnyBackend,
    clock: Clock,
    active: Arc<Active>,
    interval: Duration,
    lease: Duration,
    stop: CancellationToken,
) {
    let mut outage = Outage::new("renewing leases");
    let mut next_beat = clock.now() + interval;
    loop {
        // Wake for the next renewal, or sooner for a timeout: a handler blocking its thread
        // cannot run the worker's own timer, so its token is tripped from here, on time. Or
        // sooner still to tell the store that a job started (`START_ACK_DELAY`).
        let wake = [active.earliest_deadline(), active.earliest_ack()]
            .into_iter()
            .flatten()
            .fold(next_beat, Timestamp::min);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = clock.sleep_until(wake) => {}
            _ = active.deadline_added.notified() => continue,
        }
        let now = clock.now();
        active.expire_deadlines(now);
        let leases = if now < next_beat {
            // Not a renewal yet: only the starts due to be told, if any.
            active.take_due_acks(now)
        } else {
            next_beat = now + interval;
            active.leases_to_renew()
        };
        if leases.is_empty() {
            continue;
        }
        match backend.heartbeat(&leases, lease).await {
            Ok(lost) => {
                outage.ok();
                active.store_answered();
                if !lost.is_empty() {
                    let n = active.mark_lost(&lost);
                    tracing::warn!(
                        lost = lost.len(),
                        running = n,
                        "leases lost; those attempts are cancelled"
                    );
                }
            }
            Err(e) => {
                // Retry sooner than the interval, but never faster than the outage backoff.
                next_beat = clock.now() + outage.failed(&e).min(interval);
            }
        }
    }
}
