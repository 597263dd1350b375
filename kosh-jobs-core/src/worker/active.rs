//! The jobs a worker holds leases for, shared by the fetch loop, the executors, the finisher
//! and the heartbeat thread.
//!
//! Each job moves through `Running → Finishing` (its result is being stored) or
//! `Running → Lost` (heartbeat found its lease gone) or `Running → Released` (shutdown gave it
//! back). Whoever moves it out of `Running` owns what happens next, so a completed job is never
//! also released, and a released one never also completed.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::Timestamp;
use crate::memory::index::IdMap;
use crate::metrics::JobMetrics;
use crate::record::Lease;

/// Why an attempt was stopped from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Running,
    Finishing,
    Lost,
    Released,
    TimedOut,
}

pub(crate) struct Entry {
    pub(crate) lease: Lease,
    pub(crate) queue_slot: usize,
    pub(crate) phase: Phase,
    pub(crate) cancel: CancellationToken,
    pub(crate) deadline: Option<Timestamp>,
    /// When to tell the store that the attempt started, unless a renewal or the outcome tells
    /// it first: set when the handler starts (not when the job is leased: a leased job's task
    /// may wait for a busy runtime), `None` before and once told. See
    /// [`crate::backend::START_ACK_DELAY`].
    pub(crate) ack_at: Option<Timestamp>,
    /// Whether the handler started. Only then is the lease renewed: a renewal tells the store
    /// the attempt started, which must not be said of a job whose task still waits.
    pub(crate) started: bool,
    /// When the lease ends as the store gave it; a handler that could not start by then is
    /// not run (the store gives the attempt back and another worker runs it).
    pub(crate) lease_ends: Timestamp,
    /// Whether the job still counts against the concurrency limits. A job whose handler has
    /// ended no longer does, even while its outcome is being stored: the next jobs can be
    /// leased while the previous outcomes travel to the backend.
    pub(crate) holds_slot: bool,
    /// The metric handles of the job's queue and name.
    pub(crate) metrics: Arc<JobMetrics>,
}

/// Shared state of one running worker.
pub(crate) struct Active {
    entries: Mutex<IdMap<Entry>>,
    /// Jobs holding a slot (handler not ended yet), in total and per queue slot index.
    in_flight: AtomicUsize,
    per_queue: Vec<AtomicUsize>,
    /// Signalled whenever a slot frees.
    pub(crate) slot_freed: Notify,
    /// Signalled when a job with a timeout is leased, so the heartbeat thread, which trips
    /// timeouts for handlers that block their threads, wakes by its deadline; and when a
    /// handler starts while the thread asked for it (`ack_wanted`), so it tells the store.
    pub(crate) deadline_added: Notify,
    /// Set by the heartbeat thread while no start is waiting to be told: the next handler to
    /// start then wakes it (through `deadline_added`), once.
    ack_wanted: AtomicBool,
    /// How long after a handler's start the store is told, at the latest.
    ack_delay: std::time::Duration,
    /// Calls to the store that succeeded (lease renewals, stored outcomes), counted so that a
    /// fetch loop backing off after failed fetches retries as soon as the store answers
    /// again, instead of sleeping out its backoff (see [`Active::answered_since`]).
    answers: AtomicU64,
    answered: Notify,
}

impl Active {
    pub(crate) fn new(queues: usize, ack_delay: std::time::Duration) -> Arc<Self> {
        Arc::new(Active {
            entries: Mutex::new(IdMap::default()),
            in_flight: AtomicUsize::new(0),
            per_queue: (0..queues).map(|_| AtomicUsize::new(0)).collect(),
            slot_freed: Notify::new(),
            deadline_added: Notify::new(),
            ack_wanted: AtomicBool::new(false),
            ack_delay,
            answers: AtomicU64::new(0),
            answered: Notify::new(),
        })
    }

    /// Notes that a call to the store succeeded.
    pub(crate) fn store_answered(&self) {
        self.answers.fetch_add(1, Ordering::AcqRel);
        self.answered.notify_waiters();
    }

    /// How many calls to the store have succeeded so far, to give [`Active::answered_since`].
    pub(crate) fn answers(&self) -> u64 {
        self.answers.load(Ordering::Acquire)
    }

    /// Returns once more than `seen` calls to the store have succeeded.
    pub(crate) async fn answered_since(&self, seen: u64) {
        loop {
            let mut notified = std::pin::pin!(self.answered.notified());
            // Registered before the check: a success right after it still wakes this.
            notified.as_mut().enable();
            if self.answers() > seen {
                return;
            }
            notified.await;
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, IdMap<Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    pub(crate) fn in_flight_of(&self, slot: usize) -> usize {
        self.per_queue
            .get(slot)
            .map_or(0, |c| c.load(Ordering::Acquire))
    }

    /// Takes a slot for a newly leased job.
    pub(crate) fn insert(&self, entry: Entry) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        if let Some(c) = self.per_queue.get(entry.queue_slot) {
            c.fetch_add(1, Ordering::AcqRel);
        }
        let has_deadline = entry.deadline.is_some();
        self.lock().insert(entry.lease.id.get(), entry);
        if has_deadline {
            // A stored permit if the heartbeat thread is not waiting yet: it is never missed.
            self.deadline_added.notify_one();
        }
    }

    /// The earliest timeout deadline of a job still running.
    pub(crate) fn earliest_deadline(&self) -> Option<Timestamp> {
        self.lock()
            .values()
            .filter(|e| e.phase == Phase::Running)
            .filter_map(|e| e.deadline)
            .min()
    }

    /// The handler of `lease` is about to start: returns whether it may. The store is to be
    /// told within the delay (or by the lease's end, if sooner). It may not when the job is
    /// no longer running here (released, timed out, lost), or when its lease ended while its
    /// task waited for the runtime (a busy runtime, handlers blocking its threads): the
    /// attempt is then given back by the store and run elsewhere, so it is marked lost here.
    pub(crate) fn handler_started(&self, lease: Lease, now: Timestamp) -> bool {
        {
            let mut map = self.lock();
            let Some(e) = map.get_mut(&lease.id.get()).filter(|e| e.lease == lease) else {
                return false;
            };
            if e.phase != Phase::Running {
                return false;
            }
            if e.lease_ends <= now {
                e.phase = Phase::Lost;
                e.cancel.cancel();
                return false;
            }
            e.started = true;
            e.ack_at = Some((now + self.ack_delay).min(e.lease_ends));
        }
        if self.ack_wanted.swap(false, Ordering::AcqRel) {
            self.deadline_added.notify_one();
        }
        true
    }

    /// When the next start is due to be told to the store. When none is, asks to be woken
    /// (through `deadline_added`) by the next handler to start.
    pub(crate) fn earliest_ack(&self) -> Option<Timestamp> {
        // Asked first, then looked: a handler starting in between is seen here or wakes the
        // thread.
        self.ack_wanted.store(true, Ordering::Release);
        let earliest = self
            .lock()
            .values()
            .filter(|e| e.phase != Phase::Lost && e.phase != Phase::Released)
            .filter_map(|e| e.ack_at)
            .min();
        if earliest.is_some() {
            // Later jobs are due later still: this wake-up serves them too.
            self.ack_wanted.store(false, Ordering::Release);
        }
        earliest
    }

    /// Takes the leases whose start is due to be told by `now`.
    pub(crate) fn take_due_acks(&self, now: Timestamp) -> Vec<Lease> {
        let mut map = self.lock();
        let mut out = Vec::new();
        for e in map.values_mut() {
            if e.ack_at.is_some_and(|t| t <= now) {
                e.ack_at = None;
                if renewable(e.phase) {
                    out.push(e.lease);
                }
            }
        }
        out
    }

    /// A job whose handler ended: `Running` or `TimedOut` becomes `Finishing` and frees its
    /// slot. Returns the phase it was in (`None` if it is no longer held).
    pub(crate) fn begin_finishing(&self, lease: Lease) -> Option<Phase> {
        let (old, freed) = {
            let mut map = self.lock();
            // The entry of this attempt only: a job whose earlier attempt is still being
            // stored can already be leased again by this worker, under a new token.
            let e = map.get_mut(&lease.id.get()).filter(|e| e.lease == lease)?;
            let old = e.phase;
            let mut freed = None;
            if matches!(old, Phase::Running | Phase::TimedOut) {
                e.phase = Phase::Finishing;
                if e.holds_slot {
                    e.holds_slot = false;
                    freed = Some(e.queue_slot);
                }
            }
            (old, freed)
        };
        if let Some(slot) = freed {
            self.free_slots(&[slot]);
        }
        Some(old)
    }

    fn free_slots(&self, slots: &[usize]) {
        if slots.is_empty() {
            return;
        }
        for slot in slots {
            if let Some(c) = self.per_queue.get(*slot) {
                c.fetch_sub(1, Ordering::AcqRel);
            }
        }
        self.in_flight.fetch_sub(slots.len(), Ordering::AcqRel);
        self.slot_freed.notify_one();
        self.slot_freed.notify_waiters();
    }

    /// A running job whose timeout passed: `TimedOut`, its cancellation tripped.
    pub(crate) fn time_out(&self, lease: Lease) {
        if let Some(e) = self
            .lock()
            .get_mut(&lease.id.get())
            .filter(|e| e.lease == lease)
        {
            if e.phase == Phase::Running {
                e.phase = Phase::TimedOut;
                e.cancel.cancel();
            }
        }
    }

    /// Forgets settled attempts, freeing the slots they still hold. An entry of a later
    /// attempt of the same job (leased again meanwhile) is left alone.
    pub(crate) fn remove(&self, leases: &[Lease]) {
        let mut freed = Vec::new();
        {
            let mut map = self.lock();
            for lease in leases {
                let id = lease.id.get();
                if map.get(&id).is_some_and(|e| e.lease == *lease) {
                    if let Some(e) = map.remove(&id) {
                        if e.holds_slot {
                            freed.push(e.queue_slot);
                        }
                    }
                }
            }
        }
        self.free_slots(&freed);
    }

    /// Leases to renew: jobs whose handlers started and are running or whose result is being
    /// stored. Renewing them also tells the store their attempts started.
    pub(crate) fn leases_to_renew(&self) -> Vec<Lease> {
        let mut map = self.lock();
        let mut out = Vec::new();
        for e in map.values_mut() {
            if e.started && renewable(e.phase) {
                e.ack_at = None;
                out.push(e.lease);
            }
        }
        out
    }

    /// Marks the leases reported lost; returns how many were still running.
    pub(crate) fn mark_lost(&self, lost: &[Lease]) -> usize {
        let mut map = self.lock();
        let mut n = 0;
        for l in lost {
            if let Some(e) = map.get_mut(&l.id.get()) {
                if e.lease == *l && e.phase == Phase::Running {
                    e.phase = Phase::Lost;
                    e.cancel.cancel();
                    n += 1;
                }
            }
        }
        n
    }

    /// Trips the cancellation of running jobs past their deadline (for blocking code that the
    /// executor's own timer cannot interrupt).
    pub(crate) fn expire_deadlines(&self, now: Timestamp) {
        let mut map = self.lock();
        for e in map.values_mut() {
            if e.phase == Phase::Running && e.deadline.is_some_and(|d| d <= now) {
                e.phase = Phase::TimedOut;
                e.cancel.cancel();
            }
        }
    }

    /// Shutdown past the grace period: every job still running is released. Returns their
    /// leases, to give back to the backend.
    pub(crate) fn release_running(&self) -> Vec<Lease> {
        let mut map = self.lock();
        let mut out = Vec::new();
        for e in map.values_mut() {
            if e.phase == Phase::Running {
                e.phase = Phase::Released;
                e.cancel.cancel();
                e.metrics.released.increment(1);
                out.push(e.lease);
            }
        }
        out
    }
}

/// Whether a job in this phase still holds a lease worth renewing.
fn renewable(phase: Phase) -> bool {
    matches!(phase, Phase::Running | Phase::Finishing | Phase::TimedOut)
}
