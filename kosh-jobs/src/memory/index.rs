//! The indexes of the memory backend: which structure holds a job in which state.
//!
//! Every job is in exactly the indexes its current state calls for. A state change is
//! always `unindex` (using the job's old fields), mutate, `index` (using the new ones), done by
//! [`Indexes::transition`], so the indexes cannot drift from the jobs.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::clock::Timestamp;
use crate::record::{JobRecord, JobState};

/// A stored job: its record, its queue's slot and its current lease token (0: none).
pub(super) struct Entry {
    pub(super) rec: JobRecord,
    pub(super) queue: usize,
    pub(super) token: u64,
}

/// Everything about one queue.
pub(super) struct QueueIndex {
    pub(super) name: String,
    /// Ids per state, for counts and listing by id.
    pub(super) by_state: [BTreeSet<u64>; 6],
    /// Ready jobs in lease order: priority descending, then id ascending.
    pub(super) ready: BTreeSet<(Reverse<i32>, u64)>,
    /// Scheduled jobs by due time, to know when this queue's next job becomes due.
    pub(super) scheduled: BTreeSet<(Timestamp, u64)>,
    pub(super) paused: bool,
    /// Woken when a job of this queue becomes ready or scheduled, or the queue is resumed.
    pub(super) notify: Arc<Notify>,
    /// Set when `notify` must be woken at the end of the current operation.
    wake: bool,
}

impl QueueIndex {
    fn new(name: String) -> Self {
        QueueIndex {
            name,
            by_state: Default::default(),
            ready: BTreeSet::new(),
            scheduled: BTreeSet::new(),
            paused: false,
            notify: Arc::new(Notify::new()),
            wake: false,
        }
    }

    /// Whether the queue has anything worth reporting in `counts`.
    pub(super) fn is_visible(&self) -> bool {
        self.paused || self.by_state.iter().any(|s| !s.is_empty())
    }
}

/// The position of a state in `by_state`.
pub(super) fn slot(state: JobState) -> usize {
    match state {
        JobState::Scheduled => 0,
        JobState::Ready => 1,
        JobState::Running => 2,
        JobState::Completed => 3,
        JobState::Failed => 4,
        JobState::Cancelled => 5,
    }
}

/// The indexes over all jobs.
#[derive(Default)]
pub(super) struct Indexes {
    pub(super) queues: Vec<QueueIndex>,
    queue_slots: HashMap<String, usize>,
    /// All scheduled jobs by due time, for promotion.
    pub(super) scheduled: BTreeSet<(Timestamp, u64)>,
    /// All running jobs by lease end, for recovery.
    pub(super) leases: BTreeSet<(Timestamp, u64)>,
    /// All final jobs by finish time, for purging.
    pub(super) finished: BTreeSet<(Timestamp, u64)>,
    /// Unique key → the live job holding it.
    pub(super) unique: HashMap<String, u64>,
    /// Queues whose waiters must be woken at the end of the operation.
    to_wake: Vec<usize>,
}

impl Indexes {
    /// The slot of `name`, if the queue was ever seen.
    pub(super) fn queue_slot(&self, name: &str) -> Option<usize> {
        self.queue_slots.get(name).copied()
    }

    /// The slot of `name`, creating the queue if needed.
    pub(super) fn queue_slot_or_create(&mut self, name: &str) -> usize {
        if let Some(&q) = self.queue_slots.get(name) {
            return q;
        }
        let q = self.queues.len();
        self.queues.push(QueueIndex::new(name.to_owned()));
        self.queue_slots.insert(name.to_owned(), q);
        q
    }

    /// Marks a queue's waiters to be woken by [`Indexes::flush_wakes`].
    pub(super) fn wake(&mut self, queue: usize) {
        if let Some(qi) = self.queues.get_mut(queue) {
            if !qi.wake {
                qi.wake = true;
                self.to_wake.push(queue);
            }
        }
    }

    /// Wakes the waiters of every queue marked during this operation.
    pub(super) fn flush_wakes(&mut self) {
        for q in self.to_wake.drain(..) {
            if let Some(qi) = self.queues.get_mut(q) {
                qi.wake = false;
                qi.notify.notify_waiters();
            }
        }
    }

    /// Adds a job to the indexes of its state.
    pub(super) fn index(&mut self, id: u64, e: &Entry) {
        let r = &e.rec;
        let Some(qi) = self.queues.get_mut(e.queue) else {
            return;
        };
        qi.by_state[slot(r.state)].insert(id);
        match r.state {
            JobState::Scheduled => {
                qi.scheduled.insert((r.run_at, id));
                self.scheduled.insert((r.run_at, id));
            }
            JobState::Ready => {
                qi.ready.insert((Reverse(r.priority), id));
            }
            JobState::Running => {
                if let Some(t) = r.lease_expires_at {
                    self.leases.insert((t, id));
                }
            }
            JobState::Completed | JobState::Failed | JobState::Cancelled => {
                if let Some(t) = r.finished_at {
                    self.finished.insert((t, id));
                }
            }
        }
        if matches!(r.state, JobState::Scheduled | JobState::Ready) {
            self.wake(e.queue);
        }
        if !r.state.is_final() {
            if let Some(key) = &r.unique_key {
                if !self.unique.contains_key(key) {
                    self.unique.insert(key.clone(), id);
                }
            }
        }
    }

    /// Removes a job from the indexes of its state.
    pub(super) fn unindex(&mut self, id: u64, e: &Entry) {
        let r = &e.rec;
        let Some(qi) = self.queues.get_mut(e.queue) else {
            return;
        };
        qi.by_state[slot(r.state)].remove(&id);
        match r.state {
            JobState::Scheduled => {
                qi.scheduled.remove(&(r.run_at, id));
                self.scheduled.remove(&(r.run_at, id));
            }
            JobState::Ready => {
                qi.ready.remove(&(Reverse(r.priority), id));
            }
            JobState::Running => {
                if let Some(t) = r.lease_expires_at {
                    self.leases.remove(&(t, id));
                }
            }
            JobState::Completed | JobState::Failed | JobState::Cancelled => {
                if let Some(t) = r.finished_at {
                    self.finished.remove(&(t, id));
                }
            }
        }
        if let Some(key) = &r.unique_key {
            if self.unique.get(key) == Some(&id) {
                self.unique.remove(key);
            }
        }
    }

    /// Applies `change` to job `id`, keeping the indexes in step. Returns `None` for an
    /// unknown id, else what `change` returned.
    pub(super) fn transition<T>(
        &mut self,
        jobs: &mut HashMap<u64, Entry>,
        id: u64,
        change: impl FnOnce(&mut Entry) -> T,
    ) -> Option<T> {
        let e = jobs.get_mut(&id)?;
        self.unindex(id, e);
        let out = change(e);
        self.index(id, e);
        Some(out)
    }
}
