//! The indexes of the memory backend: which structure holds a job in which state.
//!
//! Every job is in exactly the indexes its current state calls for. A state change is
//! always `unindex` (using the job's old fields), mutate, `index` (using the new ones), done by
//! [`Indexes::transition`], so the indexes cannot drift from the jobs.
//!
//! Per job lifecycle this is six B-tree operations (ready in/out, lease in/out, final set
//! and finish time in) and a few hash lookups with a cheap hasher: the memory backend must
//! stay far from being the bottleneck of a worker running hundreds of thousands of jobs a
//! second.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::admin::{Total, TOTAL_BOUND};
use crate::clock::Timestamp;
use crate::limits::{GroupFlow, GroupPage, GroupQuery, QueueLimits};
use crate::record::{JobRecord, JobState};

/// The hasher of the job map. Ids are assigned by the backend in sequence, never chosen by a
/// user, so flooding attacks on the hash are not a concern (unique keys, which users choose,
/// keep the default hasher). The hash keeps the id's low bits, so consecutive ids land in
/// consecutive buckets and a queue drained in id order walks memory in order, and mixes the
/// top 7 bits, which hashbrown uses as its tag, so probes still tell ids apart.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

const MIX: u64 = 0x9e37_79b9_7f4a_7c15;
const TAG_BITS: u64 = 0x7f << 57;

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        let n = self.0.rotate_left(8) ^ n;
        self.0 = n ^ (n.wrapping_mul(MIX) & TAG_BITS);
    }
}

/// A map keyed by job id.
pub(crate) type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// A stored job: its record, its queue's slot and its current lease token (0: none).
pub(super) struct Entry {
    pub(super) rec: JobRecord,
    pub(super) queue: usize,
    pub(super) token: u64,
    /// Whether the current lease's attempt was seen to start (a heartbeat came).
    pub(super) started: bool,
    /// How many leases expired before their attempt was seen to start, and were given back.
    pub(super) unstarted: u32,
}

/// One group of a queue.
#[derive(Default)]
pub(super) struct Group {
    /// Its ready jobs in lease order.
    pub(super) ready: BTreeSet<(Reverse<i32>, u64)>,
    /// Its jobs running now.
    pub(super) running: u64,
    /// Its place in the queue's turns (0 for a group new to the queue: it goes first once).
    pub(super) turn: u64,
}

/// Whose turn a job was taken from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Lane {
    Ungrouped,
    Group(String),
}

/// Everything about one queue.
pub(super) struct QueueIndex {
    pub(super) name: String,
    /// Jobs per state.
    pub(super) counts: [u64; 6],
    /// Ids of completed, failed and cancelled jobs, for listing them by id.
    pub(super) finals: [BTreeSet<u64>; 3],
    /// Ready jobs without a group in lease order: priority descending, then id ascending.
    pub(super) ready: BTreeSet<(Reverse<i32>, u64)>,
    /// The groups with ready or running jobs (see [`crate::limits`]); a group is dropped
    /// once it has neither.
    pub(super) groups: HashMap<String, Group>,
    /// The groups with ready jobs, by turn: the lowest turn goes next.
    pub(super) turns: BTreeSet<(u64, String)>,
    /// The turn of the jobs without a group, when any group has ready jobs.
    pub(super) ungrouped_turn: u64,
    /// The turn given to the next lane served (ever growing).
    pub(super) next_turn: u64,
    /// No job starts before this time, if set ([`crate::Backend::hold_queue`]).
    pub(super) held_until: Option<Timestamp>,
    /// Under a group rate limit: each group's last starts, oldest first (at most
    /// `group_rate.max`), kept while one of them is inside the window.
    pub(super) group_starts: HashMap<String, Vec<Timestamp>>,
    /// Every start logged in `group_starts`, oldest first, to forget the logs that left
    /// their window: each start is looked at once more, so the upkeep is constant per start.
    pub(super) group_start_order: VecDeque<(Timestamp, String)>,
    /// Scheduled jobs by due time, to know when this queue's next job becomes due.
    pub(super) scheduled: BTreeSet<(Timestamp, u64)>,
    pub(super) paused: bool,
    /// Flow-control limits (none by default).
    pub(super) limits: QueueLimits,
    /// The times of the last `limits.rate.max` starts, oldest first (empty without a rate
    /// limit).
    pub(super) starts: VecDeque<Timestamp>,
    /// Completed and failed jobs per minute (minute start in ms → [completed, failed]).
    pub(super) throughput: BTreeMap<i64, [u64; 2]>,
    /// Woken when a job of this queue becomes ready or scheduled, or the queue is resumed.
    pub(super) notify: Arc<Notify>,
    /// Set when `notify` must be woken at the end of the current operation.
    wake: bool,
}

impl QueueIndex {
    fn new(name: String) -> Self {
        QueueIndex {
            name,
            counts: [0; 6],
            finals: Default::default(),
            ready: BTreeSet::new(),
            groups: HashMap::new(),
            turns: BTreeSet::new(),
            ungrouped_turn: 0,
            next_turn: 1,
            held_until: None,
            group_starts: HashMap::new(),
            group_start_order: VecDeque::new(),
            scheduled: BTreeSet::new(),
            paused: false,
            limits: QueueLimits::NONE,
            starts: VecDeque::new(),
            throughput: BTreeMap::new(),
            notify: Arc::new(Notify::new()),
            wake: false,
        }
    }

    /// Whether the queue has anything worth reporting in `counts`.
    pub(super) fn is_visible(&self) -> bool {
        self.paused || self.counts.iter().any(|&n| n > 0)
    }

    /// How many jobs the limits let start at `now` (`usize::MAX` without limits) and, when
    /// none may, the time the rate limit opens again (`None`: a running job must end first,
    /// or there is no limit).
    pub(super) fn room(&mut self, now: Timestamp) -> (usize, Option<Timestamp>) {
        if let Some(until) = self.held_until.filter(|&t| t > now) {
            return (0, Some(until));
        }
        let mut room = usize::MAX;
        if let Some(k) = self.limits.concurrency {
            let running = self.counts[slot(JobState::Running)];
            room = usize::try_from(u64::from(k).saturating_sub(running)).unwrap_or(usize::MAX);
            if room == 0 {
                return (0, None);
            }
        }
        if let Some(rate) = self.limits.rate {
            let (r, next) = rate.room(self.starts.make_contiguous(), now);
            room = room.min(r as usize);
            if room == 0 {
                return (0, next);
            }
        }
        (room, None)
    }

    /// Whether any job of the queue is ready (with a group or without).
    pub(super) fn has_ready(&self) -> bool {
        !self.ready.is_empty() || !self.turns.is_empty()
    }

    /// Whether group `name` may start a job at `now` under the group limits, and if its
    /// rate window is what stops it, when it opens.
    pub(super) fn group_room(
        &self,
        name: &str,
        g: &Group,
        now: Timestamp,
    ) -> (bool, Option<Timestamp>) {
        if self
            .limits
            .group_concurrency
            .is_some_and(|k| g.running >= u64::from(k))
        {
            return (false, None);
        }
        if let (Some(rate), Some(log)) = (self.limits.group_rate, self.group_starts.get(name)) {
            let (room, next) = rate.room(log, now);
            if room == 0 {
                return (false, next);
            }
        }
        (true, None)
    }

    /// The next job to lease at `now` by the turns, if any may start (a group at its group
    /// concurrency or rate limit is skipped), and its lane. Without groups, the head of
    /// `ready`.
    pub(super) fn next(&self, now: Timestamp) -> Option<((Reverse<i32>, u64), Lane)> {
        let ungrouped = self.ready.first().map(|&h| (h, Lane::Ungrouped));
        if self.turns.is_empty() {
            return ungrouped;
        }
        let group = self.turns.iter().find_map(|(turn, name)| {
            let g = self.groups.get(name)?;
            if !self.group_room(name, g, now).0 {
                return None;
            }
            g.ready
                .first()
                .map(|&h| (*turn, h, Lane::Group(name.clone())))
        });
        match (group, ungrouped) {
            (Some((turn, h, lane)), Some(u)) => Some(if self.ungrouped_turn <= turn {
                u
            } else {
                (h, lane)
            }),
            (Some((_, h, lane)), None) => Some((h, lane)),
            (None, u) => u,
        }
    }

    /// When the first group with ready jobs held back by its rate window may start one.
    pub(super) fn next_group_window(&self, now: Timestamp) -> Option<Timestamp> {
        self.turns
            .iter()
            .filter_map(|(_, name)| {
                let g = self.groups.get(name)?;
                self.group_room(name, g, now).1
            })
            .min()
    }

    /// Logs a start of group `name` at `now` for the group rate limit, and forgets the logs
    /// of the groups whose starts all left the window.
    pub(super) fn log_group_start(&mut self, name: &str, now: Timestamp) {
        let Some(rate) = self.limits.group_rate else {
            return;
        };
        let log = self.group_starts.entry(name.to_owned()).or_default();
        log.push(now);
        if log.len() > rate.max as usize {
            log.remove(0);
        }
        self.group_start_order.push_back((now, name.to_owned()));
        let from = now.saturating_sub(rate.per);
        while let Some((t, g)) = self.group_start_order.front() {
            if *t > from {
                break;
            }
            if self
                .group_starts
                .get(g)
                .is_some_and(|log| log.last().is_none_or(|&last| last <= from))
            {
                self.group_starts.remove(g);
            }
            self.group_start_order.pop_front();
        }
    }

    /// Moves `lane` to the back of the turns, after a job was taken from it.
    pub(super) fn served(&mut self, lane: &Lane) {
        let turn = self.next_turn;
        self.next_turn += 1;
        match lane {
            Lane::Ungrouped => self.ungrouped_turn = turn,
            Lane::Group(name) => {
                if let Some(g) = self.groups.get_mut(name) {
                    let had = self.turns.remove(&(g.turn, name.clone()));
                    g.turn = turn;
                    if had && !g.ready.is_empty() {
                        self.turns.insert((turn, name.clone()));
                    }
                }
            }
        }
    }

    /// Adds a ready job to its group.
    fn group_ready(&mut self, group: &str, key: (Reverse<i32>, u64)) {
        let g = self.groups.entry(group.to_owned()).or_default();
        if g.ready.is_empty() {
            self.turns.insert((g.turn, group.to_owned()));
        }
        g.ready.insert(key);
    }

    /// Removes a ready job from its group.
    fn group_unready(&mut self, group: &str, key: (Reverse<i32>, u64)) {
        if let Some(g) = self.groups.get_mut(group) {
            if g.ready.remove(&key) && g.ready.is_empty() {
                self.turns.remove(&(g.turn, group.to_owned()));
            }
        }
        self.drop_if_idle(group);
    }

    fn drop_if_idle(&mut self, group: &str) {
        if self
            .groups
            .get(group)
            .is_some_and(|g| g.ready.is_empty() && g.running == 0)
        {
            self.groups.remove(group);
        }
    }

    /// Groups with a running job, and those that may start none now (at their concurrency
    /// limit, or with a full rate window).
    /// The groups running, those at their limit, and the ready jobs of those at their limit.
    pub(super) fn group_flows(&self, now: Timestamp) -> (u64, u64, u64) {
        let running = self.groups.values().filter(|g| g.running > 0).count() as u64;
        let (mut at_limit, mut held) = (0, 0);
        for (name, g) in &self.groups {
            if !self.group_room(name, g, now).0 {
                at_limit += 1;
                held += g.ready.len() as u64;
            }
        }
        // Groups with no ready or running job left are gone from `groups`; their rate
        // windows may still be full.
        if let Some(rate) = self.limits.group_rate {
            for (name, log) in &self.group_starts {
                if !self.groups.contains_key(name) && rate.room(log, now).0 == 0 {
                    at_limit += 1;
                }
            }
        }
        (running, at_limit, held)
    }

    /// One page of the groups, by key: those with ready or running jobs and those with a
    /// start inside the group rate window.
    pub(super) fn group_page(&self, query: &GroupQuery, now: Timestamp) -> GroupPage {
        let in_window = |log: &Vec<Timestamp>| -> u64 {
            self.limits.group_rate.map_or(0, |rate| {
                let from = now.saturating_sub(rate.per);
                log.iter().filter(|&&t| t > from).count() as u64
            })
        };
        let mut names: Vec<&String> = self
            .groups
            .keys()
            .chain(
                self.group_starts
                    .iter()
                    .filter(|(name, log)| !self.groups.contains_key(*name) && in_window(log) > 0)
                    .map(|(name, _)| name),
            )
            .filter(|name| {
                query
                    .after
                    .as_ref()
                    .is_none_or(|a| name.as_str() > a.as_str())
            })
            .collect();
        names.sort_unstable();
        let limit = query.effective_limit();
        let more = names.len() > limit;
        names.truncate(limit);
        let empty = Group::default();
        let groups: Vec<GroupFlow> = names
            .into_iter()
            .map(|name| {
                let g = self.groups.get(name).unwrap_or(&empty);
                let (room, next_start_at) = self.group_room(name, g, now);
                let ready = (g.ready.len() as u64).min(TOTAL_BOUND);
                GroupFlow {
                    group: name.clone(),
                    ready: Total {
                        count: ready,
                        exact: (g.ready.len() as u64) <= TOTAL_BOUND,
                    },
                    running: g.running,
                    starts_in_window: self.group_starts.get(name).map_or(0, in_window),
                    at_limit: !room,
                    next_start_at,
                }
            })
            .collect();
        let next = if more {
            groups.last().map(|g| g.group.clone())
        } else {
            None
        };
        GroupPage { groups, next }
    }

    /// Every ready job's id, with a group or without (for admin listings).
    pub(super) fn ready_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.ready
            .iter()
            .chain(self.groups.values().flat_map(|g| g.ready.iter()))
            .map(|&(_, id)| id)
    }

    /// The ready sets: the jobs without a group, then each group's.
    pub(super) fn ready_sets(&self) -> impl Iterator<Item = &BTreeSet<(Reverse<i32>, u64)>> {
        std::iter::once(&self.ready).chain(self.groups.values().map(|g| &g.ready))
    }

    /// Logs a start at `now` for the rate limit, keeping only the starts that can matter.
    pub(super) fn log_start(&mut self, now: Timestamp) {
        if let Some(rate) = self.limits.rate {
            self.starts.push_back(now);
            while self.starts.len() > rate.max as usize {
                self.starts.pop_front();
            }
        }
    }
}

/// The position of a state in `QueueIndex::counts`.
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

/// The position of a final state in `QueueIndex::finals`.
pub(super) fn final_slot(state: JobState) -> Option<usize> {
    match state {
        JobState::Completed => Some(0),
        JobState::Failed => Some(1),
        JobState::Cancelled => Some(2),
        JobState::Scheduled | JobState::Ready | JobState::Running => None,
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

    /// Counts a job of `queue` that completed (or failed) at `now` in its minute, and drops
    /// the minutes older than the retention when a new minute starts.
    pub(super) fn count_finished(&mut self, queue: usize, now: Timestamp, completed: bool) {
        let Some(qi) = self.queues.get_mut(queue) else {
            return;
        };
        let minute = crate::admin::minute_of(now).as_millis();
        let new_minute = qi
            .throughput
            .last_key_value()
            .is_none_or(|(&m, _)| m < minute);
        qi.throughput.entry(minute).or_default()[usize::from(!completed)] += 1;
        if new_minute {
            let keep_from = now
                .saturating_sub(crate::admin::THROUGHPUT_RETENTION)
                .as_millis();
            while qi
                .throughput
                .first_key_value()
                .is_some_and(|(&m, _)| m < keep_from)
            {
                qi.throughput.pop_first();
            }
        }
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

    /// Adds a job to the indexes of its state (the unique key is handled by the callers,
    /// where a job becomes live or final).
    pub(super) fn index(&mut self, id: u64, e: &Entry) {
        let r = &e.rec;
        let Some(qi) = self.queues.get_mut(e.queue) else {
            return;
        };
        qi.counts[slot(r.state)] += 1;
        match r.state {
            JobState::Scheduled => {
                qi.scheduled.insert((r.run_at, id));
                self.scheduled.insert((r.run_at, id));
                self.wake(e.queue);
            }
            JobState::Ready => {
                match &r.group {
                    Some(g) => qi.group_ready(g, (Reverse(r.priority), id)),
                    None => {
                        qi.ready.insert((Reverse(r.priority), id));
                    }
                }
                self.wake(e.queue);
            }
            JobState::Running => {
                if let Some(g) = &r.group {
                    qi.groups.entry(g.clone()).or_default().running += 1;
                }
                if let Some(t) = r.lease_expires_at {
                    self.leases.insert((t, id));
                }
            }
            JobState::Completed | JobState::Failed | JobState::Cancelled => {
                if let Some(f) = final_slot(r.state) {
                    qi.finals[f].insert(id);
                }
                if let Some(t) = r.finished_at {
                    self.finished.insert((t, id));
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
        let n = &mut qi.counts[slot(r.state)];
        *n = n.saturating_sub(1);
        match r.state {
            JobState::Scheduled => {
                qi.scheduled.remove(&(r.run_at, id));
                self.scheduled.remove(&(r.run_at, id));
            }
            JobState::Ready => match &r.group {
                Some(g) => qi.group_unready(g, (Reverse(r.priority), id)),
                None => {
                    qi.ready.remove(&(Reverse(r.priority), id));
                }
            },
            JobState::Running => {
                if let Some(g) = &r.group {
                    if let Some(gr) = qi.groups.get_mut(g) {
                        gr.running = gr.running.saturating_sub(1);
                    }
                    qi.drop_if_idle(g);
                }
                if let Some(t) = r.lease_expires_at {
                    self.leases.remove(&(t, id));
                }
            }
            JobState::Completed | JobState::Failed | JobState::Cancelled => {
                if let Some(f) = final_slot(r.state) {
                    qi.finals[f].remove(&id);
                }
                if let Some(t) = r.finished_at {
                    self.finished.remove(&(t, id));
                }
            }
        }
    }

    /// Gives `key` to live job `id`, unless another job holds it.
    pub(super) fn take_key(&mut self, key: Option<&String>, id: u64) {
        if let Some(key) = key {
            if !self.unique.contains_key(key) {
                self.unique.insert(key.clone(), id);
            }
        }
    }

    /// Frees `key` if job `id` holds it.
    pub(super) fn free_key(&mut self, key: Option<&String>, id: u64) {
        if let Some(key) = key {
            if self.unique.get(key) == Some(&id) {
                self.unique.remove(key);
            }
        }
    }

    /// Applies `change` to job `id`, keeping the indexes (and the unique key, when the job
    /// becomes final or live again) in step. Returns `None` for an unknown id, else what
    /// `change` returned.
    pub(super) fn transition<T>(
        &mut self,
        jobs: &mut IdMap<Entry>,
        id: u64,
        change: impl FnOnce(&mut Entry) -> T,
    ) -> Option<T> {
        let e = jobs.get_mut(&id)?;
        let was_final = e.rec.state.is_final();
        let was_running = e.rec.state == JobState::Running;
        self.unindex(id, e);
        let out = change(e);
        self.index(id, e);
        // A freed slot under a concurrency limit may let a held-back job start.
        if was_running
            && e.rec.state != JobState::Running
            && self.queues.get(e.queue).is_some_and(|qi| {
                qi.limits.concurrency.is_some() || qi.limits.group_concurrency.is_some()
            })
        {
            self.wake(e.queue);
        }
        match (was_final, e.rec.state.is_final()) {
            (false, true) => self.free_key(e.rec.unique_key.as_ref(), id),
            (true, false) => self.take_key(e.rec.unique_key.as_ref(), id),
            _ => {}
        }
        Some(out)
    }
}
