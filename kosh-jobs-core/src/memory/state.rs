//! The memory backend's operations on its state, all synchronous and run under one lock.

use std::collections::HashMap;
use std::time::Duration;

use crate::admin::{Attempt, AttemptOutcome, WorkerInfo, MAX_HISTORY};
use crate::backend::{
    validate_group_key, validate_job_name, validate_queue_name, validate_trace,
    MAX_UNSTARTED_EXPIRIES,
};
use crate::clock::Timestamp;
use crate::error::BackendError;
use crate::limits::{GroupPage, GroupQuery, QueueFlow, QueueLimits};
use crate::record::{
    AttemptError, CancelOutcome, Enqueued, Finish, FinishResult, JobId, JobRecord, JobState, Lease,
    LeasedJob, ListQuery, NewJob, Outcome, Page, QueueCounts, ReserveRequest, RetryOutcome,
};

use super::index::{final_slot, slot, Entry, IdMap, Indexes, Lane};

/// The error recorded for an attempt whose lease ran out.
pub(super) const LEASE_EXPIRED: &str = "lease expired";

/// What a waiter should do, as seen under the lock.
pub(super) enum WaitCheck {
    /// Something can be reserved now (or recovered by `reserve`).
    Work,
    /// Nothing yet; the earliest time something may change by itself, if any.
    Idle(Option<Timestamp>),
}

/// All jobs and their indexes.
pub(super) struct State {
    pub(super) jobs: IdMap<Entry>,
    pub(super) ix: Indexes,
    pub(super) next_id: u64,
    next_token: u64,
    /// Registered workers by id: what they told, when last seen, when the registration ends.
    pub(super) workers: HashMap<String, (WorkerInfo, Timestamp, Timestamp)>,
    /// Schedules by id.
    pub(super) schedules: std::collections::BTreeMap<String, crate::schedule::ScheduleRecord>,
}

impl State {
    pub(super) fn new() -> Self {
        State {
            jobs: IdMap::default(),
            ix: Indexes::default(),
            next_id: 1,
            next_token: 1,
            workers: HashMap::new(),
            schedules: std::collections::BTreeMap::new(),
        }
    }

    fn is_current(&self, lease: &Lease) -> bool {
        lease.token != 0
            && self
                .jobs
                .get(&lease.id.get())
                .is_some_and(|e| e.token == lease.token && e.rec.state == JobState::Running)
    }

    pub(super) fn push(
        &mut self,
        jobs: Vec<NewJob>,
        now: Timestamp,
    ) -> Result<Vec<Enqueued>, BackendError> {
        let mut valid: Option<&str> = None;
        for (i, j) in jobs.iter().enumerate() {
            // Batches are usually of one queue: check each distinct run of names once.
            if valid != Some(j.queue.as_str()) {
                validate_queue_name(&j.queue).map_err(|e| {
                    BackendError::InvalidInput(format!("job {i} of the batch: {e}"))
                })?;
                valid = Some(j.queue.as_str());
            }
            validate_job_name(&j.name)
                .map_err(|e| BackendError::InvalidInput(format!("job {i} of the batch: {e}")))?;
            if let Some(g) = &j.group {
                validate_group_key(g).map_err(|e| {
                    BackendError::InvalidInput(format!("job {i} of the batch: {e}"))
                })?;
            }
            if let Some(t) = &j.trace {
                validate_trace(t).map_err(|e| {
                    BackendError::InvalidInput(format!("job {i} of the batch: {e}"))
                })?;
            }
            if j.max_attempts == 0 {
                return Err(BackendError::InvalidInput(format!(
                    "job {i} of the batch: max_attempts must be at least 1"
                )));
            }
        }
        let mut out = Vec::with_capacity(jobs.len());
        let mut last_queue: Option<(String, usize)> = None;
        for j in jobs {
            if let Some(key) = &j.unique_key {
                if let Some(&holder) = self.ix.unique.get(key) {
                    out.push(Enqueued {
                        id: JobId::new(holder),
                        existing: true,
                    });
                    continue;
                }
            }
            let id = self.next_id;
            self.next_id += 1;
            let queue = match &last_queue {
                Some((name, q)) if *name == j.queue => *q,
                _ => {
                    let q = self.ix.queue_slot_or_create(&j.queue);
                    last_queue = Some((j.queue.clone(), q));
                    q
                }
            };
            let state = if j.run_at > now {
                JobState::Scheduled
            } else {
                JobState::Ready
            };
            let entry = Entry {
                rec: JobRecord {
                    id: JobId::new(id),
                    name: j.name,
                    queue: j.queue,
                    payload: j.payload,
                    state,
                    priority: j.priority,
                    run_at: j.run_at,
                    attempts: 0,
                    max_attempts: j.max_attempts,
                    created_at: now,
                    started_at: None,
                    finished_at: None,
                    errors: Vec::new(),
                    progress: None,
                    result: None,
                    unique_key: j.unique_key,
                    group: j.group,
                    trace: j.trace,
                    lease_expires_at: None,
                    history: Vec::new(),
                },
                queue,
                token: 0,
                started: false,
                unstarted: 0,
            };
            self.ix.index(id, &entry);
            self.ix.take_key(entry.rec.unique_key.as_ref(), id);
            self.jobs.insert(id, entry);
            out.push(Enqueued {
                id: JobId::new(id),
                existing: false,
            });
        }
        Ok(out)
    }

    /// Moves scheduled jobs whose time has come to `ready`.
    pub(super) fn promote_due(&mut self, now: Timestamp) {
        while let Some(&(at, id)) = self.ix.scheduled.first() {
            if at > now {
                break;
            }
            let moved = self.ix.transition(&mut self.jobs, id, |e| {
                e.rec.state = JobState::Ready;
            });
            if moved.is_none() {
                // An index entry without a job would stop promotion forever: drop it.
                self.ix.scheduled.remove(&(at, id));
            }
        }
    }

    /// Recovers every expired lease; returns how many.
    pub(super) fn recover_expired(&mut self, now: Timestamp) -> u64 {
        let mut n = 0;
        let mut failed = Vec::new();
        while let Some(&(at, id)) = self.ix.leases.first() {
            if at > now {
                break;
            }
            let moved = self.ix.transition(&mut self.jobs, id, |e| {
                let r = &mut e.rec;
                r.lease_expires_at = None;
                e.token = 0;
                if !e.started && e.unstarted < MAX_UNSTARTED_EXPIRIES {
                    // Never seen to start: the attempt is given back, as if never leased.
                    e.unstarted += 1;
                    r.attempts = r.attempts.saturating_sub(1);
                    if r.history.last().is_some_and(|a| a.ended_at.is_none()) {
                        r.history.pop();
                    }
                    r.state = JobState::Ready;
                    return;
                }
                r.errors.push(AttemptError {
                    attempt: r.attempts,
                    error: LEASE_EXPIRED.to_owned(),
                    at: now,
                });
                end_attempt(r, now, AttemptOutcome::LeaseExpired, Some(LEASE_EXPIRED));
                if r.attempts >= r.max_attempts {
                    r.state = JobState::Failed;
                    r.finished_at = Some(now);
                    failed.push(e.queue);
                } else {
                    r.state = JobState::Ready;
                }
            });
            match moved {
                Some(()) => n += 1,
                None => {
                    self.ix.leases.remove(&(at, id));
                }
            }
        }
        for q in failed {
            self.ix.count_finished(q, now, false);
        }
        n
    }

    pub(super) fn reserve(&mut self, req: &ReserveRequest, now: Timestamp) -> Vec<LeasedJob> {
        self.promote_due(now);
        self.recover_expired(now);
        if req.max == 0 {
            return Vec::new();
        }
        let mut queues: Vec<usize> = req
            .queues
            .iter()
            .filter_map(|q| self.ix.queue_slot(q))
            .filter(|&q| !self.ix.queues[q].paused)
            .collect();
        queues.sort_unstable();
        queues.dedup();
        // What each queue's limits let start now.
        let mut rooms: Vec<usize> = queues
            .iter()
            .map(|&q| self.ix.queues[q].room(now).0)
            .collect();
        let lease_ends = now + req.lease;
        let mut out = Vec::with_capacity(req.max.min(1024));
        while out.len() < req.max {
            // The best head across the queues with room: highest priority, then lowest id.
            let best = queues
                .iter()
                .zip(&rooms)
                .enumerate()
                .filter(|(_, (_, &room))| room > 0)
                .filter_map(|(i, (&q, _))| {
                    self.ix.queues[q].next(now).map(|(h, lane)| (h, i, lane))
                })
                .min_by_key(|&(h, i, _)| (h, i));
            let Some((head, from, lane)) = best else {
                break;
            };
            let id = head.1;
            let token = self.next_token;
            self.next_token += 1;
            let leased = self.ix.transition(&mut self.jobs, id, |e| {
                let r = &mut e.rec;
                r.state = JobState::Running;
                r.attempts = r.attempts.saturating_add(1);
                r.started_at = Some(now);
                r.lease_expires_at = Some(lease_ends);
                e.token = token;
                e.started = false;
                if r.history.len() >= MAX_HISTORY {
                    r.history.remove(0);
                }
                r.history.push(Attempt {
                    attempt: r.attempts,
                    started_at: now,
                    worker: req.worker.clone(),
                    ended_at: None,
                    outcome: None,
                    error: None,
                });
                LeasedJob {
                    lease: Lease { id: r.id, token },
                    name: r.name.clone(),
                    queue: r.queue.clone(),
                    payload: r.payload.clone(),
                    priority: r.priority,
                    attempt: r.attempts,
                    max_attempts: r.max_attempts,
                    created_at: r.created_at,
                    lease_expires_at: lease_ends,
                    progress: r.progress.clone(),
                    trace: r.trace.clone(),
                }
            });
            match leased {
                Some(job) => {
                    rooms[from] -= 1;
                    let qi = &mut self.ix.queues[queues[from]];
                    qi.log_start(now);
                    if let Lane::Group(g) = &lane {
                        qi.log_group_start(g, now);
                    }
                    qi.served(&lane);
                    out.push(job);
                }
                None => {
                    // A ready entry without a job: drop it rather than loop on it.
                    let qi = &mut self.ix.queues[queues[from]];
                    match &lane {
                        Lane::Ungrouped => {
                            qi.ready.remove(&head);
                        }
                        Lane::Group(g) => {
                            if let Some(gr) = qi.groups.get_mut(g) {
                                gr.ready.remove(&head);
                                if gr.ready.is_empty() {
                                    let turn = gr.turn;
                                    qi.turns.remove(&(turn, g.clone()));
                                }
                            }
                        }
                    }
                }
            }
        }
        out
    }

    pub(super) fn finish(&mut self, items: Vec<Finish>, now: Timestamp) -> Vec<FinishResult> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if !self.is_current(&item.lease) {
                out.push(FinishResult::LeaseLost);
                continue;
            }
            let outcome = item.outcome.attempt_outcome();
            let ended = self
                .ix
                .transition(&mut self.jobs, item.lease.id.get(), |e| {
                    let r = &mut e.rec;
                    e.token = 0;
                    r.lease_expires_at = None;
                    let error = match &item.outcome {
                        Outcome::Completed { .. } | Outcome::Snooze { .. } => None,
                        Outcome::Retry { error, .. } | Outcome::Failed { error, .. } => {
                            Some(error.as_str())
                        }
                    };
                    end_attempt(r, now, outcome, error);
                    match item.outcome {
                        Outcome::Completed { result } => {
                            r.state = JobState::Completed;
                            r.result = result;
                            r.finished_at = Some(now);
                        }
                        Outcome::Retry {
                            error, retry_at, ..
                        } => {
                            r.errors.push(AttemptError {
                                attempt: r.attempts,
                                error,
                                at: now,
                            });
                            r.run_at = retry_at;
                            r.state = if retry_at > now {
                                JobState::Scheduled
                            } else {
                                JobState::Ready
                            };
                        }
                        Outcome::Failed { error, .. } => {
                            r.errors.push(AttemptError {
                                attempt: r.attempts,
                                error,
                                at: now,
                            });
                            r.state = JobState::Failed;
                            r.finished_at = Some(now);
                        }
                        Outcome::Snooze { until } => {
                            // As a release: the attempt does not count.
                            r.attempts = r.attempts.saturating_sub(1);
                            r.run_at = until;
                            r.state = if until > now {
                                JobState::Scheduled
                            } else {
                                JobState::Ready
                            };
                        }
                    }
                    (e.queue, r.state)
                });
            match ended {
                Some((q, JobState::Completed)) => self.ix.count_finished(q, now, true),
                Some((q, JobState::Failed)) => self.ix.count_finished(q, now, false),
                _ => {}
            }
            out.push(FinishResult::Applied);
        }
        out
    }

    pub(super) fn heartbeat(
        &mut self,
        leases: &[Lease],
        extend: Duration,
        now: Timestamp,
    ) -> Vec<Lease> {
        let mut lost = Vec::new();
        for lease in leases {
            if !self.is_current(lease) {
                lost.push(*lease);
                continue;
            }
            self.ix.transition(&mut self.jobs, lease.id.get(), |e| {
                e.rec.lease_expires_at = Some(now + extend);
                e.started = true;
            });
        }
        lost
    }

    pub(super) fn progress(&mut self, lease: Lease, progress: serde_json::Value) -> bool {
        if !self.is_current(&lease) {
            return false;
        }
        match self.jobs.get_mut(&lease.id.get()) {
            Some(e) => {
                e.rec.progress = Some(progress);
                true
            }
            None => false,
        }
    }

    pub(super) fn release(&mut self, leases: &[Lease], now: Timestamp) {
        for lease in leases {
            if !self.is_current(lease) {
                continue;
            }
            self.ix.transition(&mut self.jobs, lease.id.get(), |e| {
                let r = &mut e.rec;
                e.token = 0;
                r.lease_expires_at = None;
                end_attempt(r, now, AttemptOutcome::Released, None);
                r.attempts = r.attempts.saturating_sub(1);
                r.state = JobState::Ready;
            });
        }
    }

    /// Whether a waiter on `queues` has work now, or when it may next have some.
    pub(super) fn wait_check(&mut self, queues: &[usize], now: Timestamp) -> WaitCheck {
        let mut next: Option<Timestamp> = None;
        for &q in queues {
            let qi = &mut self.ix.queues[q];
            if qi.paused {
                continue;
            }
            if qi.has_ready() {
                // Held back by a limit: ready when the rate window opens or a hold ends, or
                // (concurrency, group concurrency) when a running job ends, which wakes the
                // queue.
                match qi.room(now) {
                    (0, Some(at)) => next = Some(next.map_or(at, |n| n.min(at))),
                    (0, None) => {}
                    _ if qi.next(now).is_some() => return WaitCheck::Work,
                    // Held back by group limits: ready when a group's rate window opens, or
                    // when a running job of a full group ends, which wakes the queue.
                    _ => {
                        if let Some(at) = qi.next_group_window(now) {
                            next = Some(next.map_or(at, |n| n.min(at)));
                        }
                    }
                }
            }
            let qi = &self.ix.queues[q];
            if let Some(&(at, _)) = qi.scheduled.first() {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        // An expired lease anywhere is recovered by the next `reserve`.
        if let Some(&(at, _)) = self.ix.leases.first() {
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        match next {
            Some(at) if at <= now => WaitCheck::Work,
            other => WaitCheck::Idle(other),
        }
    }

    pub(super) fn get(&self, id: JobId) -> Option<JobRecord> {
        self.jobs.get(&id.get()).map(|e| e.rec.clone())
    }

    pub(super) fn counts(&self) -> Vec<QueueCounts> {
        let mut out: Vec<QueueCounts> = self
            .ix
            .queues
            .iter()
            .filter(|qi| qi.is_visible())
            .map(|qi| {
                let mut c = QueueCounts::empty(qi.name.clone());
                for st in JobState::ALL {
                    *c.get_mut(st) = qi.counts[slot(st)];
                }
                c.paused = qi.paused;
                c.oldest_ready_at = self.oldest_ready(qi);
                c
            })
            .collect();
        out.sort_by(|a, b| a.queue.cmp(&b.queue));
        out
    }

    pub(super) fn list(&self, query: &ListQuery) -> Page {
        let limit = query.effective_limit();
        let from = query.after.map_or(0, |a| a.get().saturating_add(1));
        let queues: Vec<usize> = match &query.queue {
            Some(name) => self.ix.queue_slot(name).into_iter().collect(),
            None => (0..self.ix.queues.len()).collect(),
        };
        // Candidate ids >= `from`: final states have by-id sets, live ones are found in
        // their own index (a scan, fine for an admin call).
        let mut ids: Vec<u64> = Vec::new();
        match final_slot(query.state) {
            Some(f) => {
                for &q in &queues {
                    ids.extend(self.ix.queues[q].finals[f].range(from..).take(limit + 1));
                }
            }
            None => match query.state {
                JobState::Ready => {
                    for &q in &queues {
                        ids.extend(self.ix.queues[q].ready_ids());
                    }
                }
                JobState::Scheduled => {
                    for &q in &queues {
                        ids.extend(self.ix.queues[q].scheduled.iter().map(|&(_, id)| id));
                    }
                }
                _ => {
                    let wanted = |id: &u64| match &query.queue {
                        None => true,
                        Some(_) => self.jobs.get(id).is_some_and(|e| queues.contains(&e.queue)),
                    };
                    ids.extend(self.ix.leases.iter().map(|&(_, id)| id).filter(wanted));
                }
            },
        }
        ids.retain(|&id| id >= from);
        if ids.len() > limit + 1 {
            ids.select_nth_unstable(limit);
            ids.truncate(limit + 1);
        }
        ids.sort_unstable();
        let (jobs, next) = self.page_of(ids, limit);
        Page { jobs, next }
    }

    /// The first `limit` jobs of `ids` (in the order given), and the id to continue after
    /// when more follow.
    pub(super) fn page_of(
        &self,
        mut ids: Vec<u64>,
        limit: usize,
    ) -> (Vec<JobRecord>, Option<JobId>) {
        let more = ids.len() > limit;
        ids.truncate(limit);
        let jobs = ids
            .iter()
            .filter_map(|id| self.jobs.get(id).map(|e| e.rec.clone()))
            .collect();
        let next = if more {
            ids.last().map(|&id| JobId::new(id))
        } else {
            None
        };
        (jobs, next)
    }

    pub(super) fn retry(&mut self, id: JobId, now: Timestamp) -> RetryOutcome {
        let Some(e) = self.jobs.get(&id.get()) else {
            return RetryOutcome::NotFound;
        };
        if !matches!(e.rec.state, JobState::Failed | JobState::Cancelled) {
            return RetryOutcome::NotRetryable(e.rec.state);
        }
        if let Some(key) = &e.rec.unique_key {
            if let Some(&holder) = self.ix.unique.get(key) {
                if holder != id.get() {
                    return RetryOutcome::UniqueConflict(JobId::new(holder));
                }
            }
        }
        self.ix.transition(&mut self.jobs, id.get(), |e| {
            let r = &mut e.rec;
            r.state = JobState::Ready;
            r.attempts = 0;
            r.run_at = now;
            r.finished_at = None;
            r.lease_expires_at = None;
            e.token = 0;
        });
        RetryOutcome::Retried
    }

    pub(super) fn cancel(&mut self, id: JobId, now: Timestamp) -> CancelOutcome {
        let Some(e) = self.jobs.get(&id.get()) else {
            return CancelOutcome::NotFound;
        };
        if e.rec.state.is_final() {
            return CancelOutcome::AlreadyFinal(e.rec.state);
        }
        self.ix.transition(&mut self.jobs, id.get(), |e| {
            let r = &mut e.rec;
            if r.state == JobState::Running {
                end_attempt(r, now, AttemptOutcome::Cancelled, None);
            }
            r.state = JobState::Cancelled;
            r.finished_at = Some(now);
            r.lease_expires_at = None;
            e.token = 0;
        });
        CancelOutcome::Cancelled
    }

    pub(super) fn purge(
        &mut self,
        states: &[JobState],
        finished_before: Timestamp,
    ) -> Result<u64, BackendError> {
        if let Some(st) = states.iter().find(|s| !s.is_final()) {
            return Err(BackendError::InvalidInput(format!(
                "cannot purge jobs in state `{st}`: only completed, failed and cancelled jobs"
            )));
        }
        let doomed: Vec<u64> = self
            .ix
            .finished
            .range(..(finished_before, 0))
            .map(|&(_, id)| id)
            .filter(|id| {
                self.jobs
                    .get(id)
                    .is_some_and(|e| states.contains(&e.rec.state))
            })
            .collect();
        for id in &doomed {
            if let Some(e) = self.jobs.remove(id) {
                self.ix.unindex(*id, &e);
            }
        }
        Ok(doomed.len() as u64)
    }

    pub(super) fn set_limits(
        &mut self,
        queue: &str,
        limits: QueueLimits,
    ) -> Result<(), BackendError> {
        validate_queue_name(queue).map_err(BackendError::InvalidInput)?;
        limits.validate().map_err(BackendError::InvalidInput)?;
        let q = self.ix.queue_slot_or_create(queue);
        let qi = &mut self.ix.queues[q];
        qi.limits = limits;
        if limits.group_rate.is_none() {
            qi.group_starts.clear();
            qi.group_start_order.clear();
        }
        match limits.rate {
            Some(rate) => {
                while qi.starts.len() > rate.max as usize {
                    qi.starts.pop_front();
                }
            }
            None => qi.starts.clear(),
        }
        self.ix.wake(q);
        Ok(())
    }

    pub(super) fn flows(&mut self, now: Timestamp) -> Vec<QueueFlow> {
        let mut out: Vec<QueueFlow> = self
            .ix
            .queues
            .iter_mut()
            .filter(|qi| !qi.limits.is_none() || qi.held_until.is_some_and(|t| t > now))
            .map(|qi| {
                let (groups_running, groups_at_limit, held_in_groups) = qi.group_flows(now);
                let (starts_in_window, next_start_at) = match qi.limits.rate {
                    Some(rate) => {
                        let from = now.saturating_sub(rate.per);
                        let n = qi.starts.iter().filter(|&&t| t > from).count() as u64;
                        (n, rate.room(qi.starts.make_contiguous(), now).1)
                    }
                    None => (0, None),
                };
                QueueFlow {
                    queue: qi.name.clone(),
                    limits: qi.limits,
                    running: qi.counts[slot(JobState::Running)],
                    starts_in_window,
                    next_start_at,
                    held_until: qi.held_until.filter(|&t| t > now),
                    groups_running,
                    groups_at_limit,
                    held_in_groups,
                }
            })
            .collect();
        out.sort_by(|a, b| a.queue.cmp(&b.queue));
        out
    }

    pub(super) fn groups(
        &mut self,
        query: &GroupQuery,
        now: Timestamp,
    ) -> Result<GroupPage, BackendError> {
        validate_queue_name(&query.queue).map_err(BackendError::InvalidInput)?;
        self.promote_due(now);
        Ok(match self.ix.queue_slot(&query.queue) {
            Some(q) => self.ix.queues[q].group_page(query, now),
            None => GroupPage::default(),
        })
    }

    pub(super) fn hold(&mut self, queue: &str, until: Timestamp) -> Result<(), BackendError> {
        validate_queue_name(queue).map_err(BackendError::InvalidInput)?;
        let q = self.ix.queue_slot_or_create(queue);
        let qi = &mut self.ix.queues[q];
        if qi.held_until.is_none_or(|t| t < until) {
            qi.held_until = Some(until);
            // Waiters recompute their deadline: they now sleep until the hold ends.
            self.ix.wake(q);
        }
        Ok(())
    }

    pub(super) fn set_paused(&mut self, queue: &str, paused: bool) -> Result<(), BackendError> {
        validate_queue_name(queue).map_err(BackendError::InvalidInput)?;
        let q = self.ix.queue_slot_or_create(queue);
        self.ix.queues[q].paused = paused;
        if !paused {
            self.ix.wake(q);
        }
        Ok(())
    }
}

/// Ends the running attempt of `r`'s history (the last entry, if it has not ended).
fn end_attempt(r: &mut JobRecord, now: Timestamp, outcome: AttemptOutcome, error: Option<&str>) {
    if let Some(a) = r.history.last_mut().filter(|a| a.ended_at.is_none()) {
        a.ended_at = Some(now);
        a.outcome = Some(outcome);
        a.error = error.map(str::to_owned);
    }
}
