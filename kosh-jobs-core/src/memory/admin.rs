//! The memory backend's admin operations: search, actions, throughput and workers.

use std::cmp::Reverse;
use std::ops::Bound;
use std::time::Duration;

use crate::admin::{
    ActionResult, AdminAction, LiveWorker, Order, SearchPage, SearchQuery, ThroughputPoint,
    ThroughputQuery, Total, WorkerInfo, MAX_ACTION_IDS, TOTAL_BOUND,
};
use crate::clock::Timestamp;
use crate::error::BackendError;
use crate::record::{CancelOutcome, JobId, JobState, RetryOutcome};

use super::index::{final_slot, slot, QueueIndex};
use super::state::State;

impl State {
    /// The earliest `run_at` among the heads of the queue's priority levels.
    pub(super) fn oldest_ready(&self, qi: &QueueIndex) -> Option<Timestamp> {
        let mut oldest: Option<Timestamp> = None;
        for ready in qi.ready_sets() {
            let mut from = Bound::Unbounded;
            while let Some(&(Reverse(p), id)) = ready.range((from, Bound::Unbounded)).next() {
                if let Some(e) = self.jobs.get(&id) {
                    let at = e.rec.run_at;
                    oldest = Some(oldest.map_or(at, |o| o.min(at)));
                }
                // Every job of this priority sorts before (Reverse(p), u64::MAX).
                from = Bound::Excluded((Reverse(p), u64::MAX));
            }
        }
        oldest
    }

    /// The queue slots a filter's queue names (all queues when it names none).
    fn filter_queues(&self, queue: Option<&String>) -> Vec<usize> {
        match queue {
            Some(name) => self.ix.queue_slot(name).into_iter().collect(),
            None => (0..self.ix.queues.len()).collect(),
        }
    }

    pub(super) fn search(&self, q: &SearchQuery) -> Result<SearchPage, BackendError> {
        q.filter.validate()?;
        let limit = q.effective_limit();
        let budget = q.effective_budget();
        let queues = self.filter_queues(q.filter.queue.as_ref());
        let total = q.with_total.then(|| self.total(q, &queues, budget));
        if q.filter.is_indexed() {
            // Candidates from the state indexes, past the cursor, in order.
            let mut ids = Vec::new();
            for st in q.filter.state_list() {
                for &qs in &queues {
                    self.state_ids(qs, st, &mut ids);
                }
            }
            ids.retain(|&id| q.is_past_cursor(JobId::new(id)));
            match q.order {
                Order::OldestFirst => ids.sort_unstable(),
                Order::NewestFirst => ids.sort_unstable_by(|a, b| b.cmp(a)),
            }
            let (jobs, next) = self.page_of(ids, limit);
            return Ok(SearchPage {
                examined: jobs.len() as u64,
                jobs,
                next,
                total,
            });
        }
        // Walk the ids (dense, in push order) from the cursor.
        let mut ids = self.id_walk(q.order, q.after);
        let mut jobs = Vec::new();
        let mut examined = 0u64;
        let mut last = None;
        let mut exhausted = true;
        for id in ids.by_ref() {
            if jobs.len() >= limit || examined as usize >= budget {
                exhausted = false;
                break;
            }
            last = Some(id);
            let Some(e) = self.jobs.get(&id) else {
                continue;
            };
            examined += 1;
            if q.filter.matches(&e.rec) {
                jobs.push(e.rec.clone());
            }
        }
        let next = if exhausted {
            None
        } else {
            last.map(JobId::new)
        };
        Ok(SearchPage {
            jobs,
            next,
            examined,
            total,
        })
    }

    /// Ids from past `after` in `order`, over the range of ids ever given.
    fn id_walk(&self, order: Order, after: Option<JobId>) -> Box<dyn Iterator<Item = u64>> {
        let end = self.next_id; // exclusive
        match order {
            Order::OldestFirst => {
                let from = after.map_or(1, |a| a.get().saturating_add(1));
                Box::new(from..end)
            }
            Order::NewestFirst => {
                let to = after.map_or(end, |a| a.get().min(end));
                Box::new((1..to).rev())
            }
        }
    }

    fn state_ids(&self, qs: usize, st: JobState, out: &mut Vec<u64>) {
        let qi = &self.ix.queues[qs];
        match st {
            JobState::Ready => out.extend(qi.ready.iter().map(|&(_, id)| id)),
            JobState::Scheduled => out.extend(qi.scheduled.iter().map(|&(_, id)| id)),
            JobState::Running => out.extend(
                self.ix
                    .leases
                    .iter()
                    .map(|&(_, id)| id)
                    .filter(|id| self.jobs.get(id).is_some_and(|e| e.queue == qs)),
            ),
            _ => {
                if let Some(f) = final_slot(st) {
                    out.extend(qi.finals[f].iter().copied());
                }
            }
        }
    }

    fn total(&self, q: &SearchQuery, queues: &[usize], budget: usize) -> Total {
        if q.filter.is_indexed() {
            let count = queues
                .iter()
                .map(|&qs| {
                    q.filter
                        .state_list()
                        .into_iter()
                        .map(|st| self.ix.queues[qs].counts[slot(st)])
                        .sum::<u64>()
                })
                .sum::<u64>();
            return Total { count, exact: true };
        }
        let mut count = 0u64;
        let mut examined = 0usize;
        for id in self.id_walk(Order::OldestFirst, None) {
            if examined >= budget || count >= TOTAL_BOUND {
                return Total {
                    count,
                    exact: false,
                };
            }
            if let Some(e) = self.jobs.get(&id) {
                examined += 1;
                if q.filter.matches(&e.rec) {
                    count += 1;
                }
            }
        }
        Total { count, exact: true }
    }

    pub(super) fn apply(
        &mut self,
        action: AdminAction,
        ids: &[JobId],
        only: &[JobState],
        now: Timestamp,
    ) -> Result<Vec<ActionResult>, BackendError> {
        if ids.len() > MAX_ACTION_IDS {
            return Err(BackendError::InvalidInput(format!(
                "{action}: at most {MAX_ACTION_IDS} jobs per call, not {}",
                ids.len()
            )));
        }
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            let Some(state) = self.jobs.get(&id.get()).map(|e| e.rec.state) else {
                out.push(ActionResult::NotFound);
                continue;
            };
            if !action.applies_to(state) || (!only.is_empty() && !only.contains(&state)) {
                out.push(ActionResult::Skipped(state));
                continue;
            }
            out.push(match action {
                AdminAction::Retry => match self.retry(id, now) {
                    RetryOutcome::Retried => ActionResult::Applied,
                    RetryOutcome::NotFound => ActionResult::NotFound,
                    RetryOutcome::NotRetryable(s) => ActionResult::Skipped(s),
                    RetryOutcome::UniqueConflict(holder) => ActionResult::UniqueConflict(holder),
                },
                AdminAction::Cancel => match self.cancel(id, now) {
                    CancelOutcome::Cancelled => ActionResult::Applied,
                    CancelOutcome::NotFound => ActionResult::NotFound,
                    CancelOutcome::AlreadyFinal(s) => ActionResult::Skipped(s),
                },
                AdminAction::Delete => {
                    if let Some(e) = self.jobs.remove(&id.get()) {
                        self.ix.unindex(id.get(), &e);
                    }
                    ActionResult::Applied
                }
                AdminAction::Promote => {
                    self.ix.transition(&mut self.jobs, id.get(), |e| {
                        e.rec.run_at = now;
                        e.rec.state = JobState::Ready;
                    });
                    ActionResult::Applied
                }
            });
        }
        Ok(out)
    }

    pub(super) fn throughput(
        &self,
        q: &ThroughputQuery,
    ) -> Result<Vec<ThroughputPoint>, BackendError> {
        if let Some(name) = &q.queue {
            crate::backend::validate_queue_name(name).map_err(BackendError::InvalidInput)?;
        }
        let since = crate::admin::minute_of(q.since).as_millis();
        let mut queues: Vec<&QueueIndex> = self
            .filter_queues(q.queue.as_ref())
            .into_iter()
            .map(|qs| &self.ix.queues[qs])
            .collect();
        queues.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out = Vec::new();
        for qi in queues {
            for (&minute, &[completed, failed]) in qi.throughput.range(since..) {
                out.push(ThroughputPoint {
                    queue: qi.name.clone(),
                    minute: Timestamp::from_millis(minute),
                    completed,
                    failed,
                });
            }
        }
        Ok(out)
    }

    pub(super) fn register_worker(&mut self, info: &WorkerInfo, ttl: Duration, now: Timestamp) {
        self.workers.insert(
            info.id.clone(),
            (info.clone(), now, now.saturating_add(ttl)),
        );
    }

    pub(super) fn workers(&mut self, now: Timestamp) -> Vec<LiveWorker> {
        self.workers.retain(|_, (_, _, until)| *until > now);
        let mut out: Vec<LiveWorker> = self
            .workers
            .values()
            .map(|(info, seen, _)| LiveWorker {
                info: info.clone(),
                last_seen: *seen,
                jobs: Vec::new(),
            })
            .collect();
        out.sort_by(|a, b| a.info.id.cmp(&b.info.id));
        for &(_, id) in &self.ix.leases {
            let Some(e) = self.jobs.get(&id) else {
                continue;
            };
            let Some(holder) = e.rec.history.last().filter(|a| a.ended_at.is_none()) else {
                continue;
            };
            if let Ok(i) = out.binary_search_by(|w| w.info.id.as_str().cmp(&holder.worker)) {
                out[i].jobs.push(JobId::new(id));
            }
        }
        for w in &mut out {
            w.jobs.sort_unstable();
        }
        out
    }
}
