//! [`Admin`]: the admin contract ([`crate::admin`]) as an operator's tool uses it — the
//! `kosh-jobs` CLI now, a dashboard later.
//!
//! The [`Backend`] admin calls are bounded per call; this handle strings them together: a
//! [`Stats`] snapshot from counts, throughput and live workers, an exact [`Admin::count`]
//! by paging, and bulk actions over a filter ([`Admin::apply_filter`]) or a list of ids
//! ([`Admin::apply_ids`]) in chunks the backend accepts.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::admin::{
    ActionResult, AdminAction, JobFilter, LiveWorker, Order, SearchPage, SearchQuery,
    ThroughputQuery, MAX_ACTION_IDS,
};
use crate::any::AnyBackend;
use crate::backend::Backend;
use crate::clock::Timestamp;
use crate::error::{BackendError, Error};
use crate::record::{JobId, JobRecord, JobState, QueueCounts};

/// How many jobs one page of [`Admin::apply_filter`] and [`Admin::count`] takes.
const PAGE: usize = 1000;

/// The largest examine budget a search accepts: bulk loops use it to take few calls.
const BULK_BUDGET: usize = 100_000;

/// A cheap, cloneable handle for operator tools over any backend.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), kosh_jobs::Error> {
/// use kosh_jobs::{memory::MemoryBackend, Admin, AdminAction, Backend, JobFilter, JobState, NewJob};
///
/// let backend = MemoryBackend::new();
/// let now = backend.clock().now();
/// backend.push(vec![NewJob::new("mail", "default", "{}", now); 3]).await?;
///
/// let admin = Admin::new(backend);
/// let stats = admin.stats().await?;
/// assert_eq!((stats.queues[0].counts.queue.as_str(), stats.queues[0].counts.ready), ("default", 3));
///
/// let ready = JobFilter::new().state(JobState::Ready);
/// assert_eq!(admin.count(&ready).await?, 3);
/// let done = admin.apply_filter(AdminAction::Cancel, &ready, |_| {}).await?;
/// assert_eq!((done.applied, done.skipped), (3, 0));
/// assert_eq!(admin.count(&ready).await?, 0);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Admin {
    backend: AnyBackend,
}

/// A snapshot of every queue and the live workers, from [`Admin::stats`].
#[derive(Clone, Debug, PartialEq)]
pub struct Stats {
    /// When it was taken (the backend's clock).
    pub at: Timestamp,
    /// Every queue that has jobs, is paused, or finished jobs in the last day, by name.
    pub queues: Vec<QueueStats>,
    /// The live workers, by id.
    pub workers: Vec<LiveWorker>,
}

/// One queue in [`Stats`].
#[derive(Clone, Debug, PartialEq)]
pub struct QueueStats {
    /// Jobs per state, whether the queue is paused, and its oldest ready job.
    pub counts: QueueCounts,
    /// How long the longest-waiting ready job has been due (the queue's latency); `None`
    /// when no job is ready.
    pub oldest_ready_age: Option<Duration>,
    /// Jobs that finished in the current minute and the one before it.
    pub last_minute: Finished,
    /// Jobs that finished in the current minute and the 60 before it.
    pub last_hour: Finished,
    /// Jobs that finished in the current minute and the 1,440 before it.
    pub last_day: Finished,
}

/// Jobs that reached `completed` or `failed` in a time window (retried attempts are not
/// counted), from the backend's throughput history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finished {
    /// Jobs completed.
    pub completed: u64,
    /// Jobs failed for good.
    pub failed: u64,
}

/// What a bulk action did, from [`Admin::apply_filter`] or [`ActionTotals::tally`].
///
/// ```
/// use kosh_jobs::{admin::ActionResult, ActionTotals, JobState};
/// let mut t = ActionTotals::default();
/// t.tally(&ActionResult::Applied);
/// t.tally(&ActionResult::Skipped(JobState::Running));
/// t.tally(&ActionResult::NotFound);
/// assert_eq!((t.applied, t.skipped, t.not_found), (1, 1, 1));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionTotals {
    /// Jobs the action was applied to.
    pub applied: u64,
    /// Jobs left as they were: the action does not apply to their state (they changed
    /// state since they were found, for a filter).
    pub skipped: u64,
    /// Ids of no job (deleted meanwhile, or never existed).
    pub not_found: u64,
    /// Retry only: jobs not retried because another live job holds their unique key.
    pub conflicts: u64,
    /// Jobs the searches looked at (0 for an action by ids).
    pub examined: u64,
}

impl ActionTotals {
    /// Counts one job's result.
    pub fn tally(&mut self, result: &ActionResult) {
        match result {
            ActionResult::Applied => self.applied += 1,
            ActionResult::Skipped(_) => self.skipped += 1,
            ActionResult::NotFound => self.not_found += 1,
            ActionResult::UniqueConflict(_) => self.conflicts += 1,
        }
    }
}

impl Admin {
    /// A handle over `backend` (an [`AnyBackend`] is shared, not wrapped again).
    pub fn new(backend: impl Backend) -> Self {
        Admin {
            backend: AnyBackend::new(backend),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &AnyBackend {
        &self.backend
    }

    /// Per queue: counts per state, paused, the age of the oldest ready job, completed and
    /// failed jobs in the last minute, hour and day; and the live workers.
    ///
    /// Three backend calls (counts, throughput of the last day, workers), whatever the
    /// number of jobs.
    pub async fn stats(&self) -> Result<Stats, Error> {
        let now = self.backend.clock().now();
        let counts = self.backend.counts().await?;
        let this_minute = crate::admin::minute_of(now);
        let since = |minutes: u64| this_minute - Duration::from_secs(60 * minutes);
        let points = self
            .backend
            .throughput(&ThroughputQuery {
                queue: None,
                since: since(1440),
            })
            .await?;
        let workers = self.backend.workers().await?;

        let mut queues: Vec<QueueStats> = counts
            .into_iter()
            .map(|counts| QueueStats {
                oldest_ready_age: counts
                    .oldest_ready_at
                    .map(|at| now.saturating_duration_since(at)),
                counts,
                last_minute: Finished::default(),
                last_hour: Finished::default(),
                last_day: Finished::default(),
            })
            .collect();
        for p in points {
            let i = match queues.iter().position(|q| q.counts.queue == p.queue) {
                Some(i) => i,
                None => {
                    queues.push(QueueStats {
                        counts: QueueCounts::empty(p.queue.clone()),
                        oldest_ready_age: None,
                        last_minute: Finished::default(),
                        last_hour: Finished::default(),
                        last_day: Finished::default(),
                    });
                    queues.len() - 1
                }
            };
            let q = &mut queues[i];
            for (window, minutes) in [
                (&mut q.last_minute, 1),
                (&mut q.last_hour, 60),
                (&mut q.last_day, 1440),
            ] {
                if p.minute >= since(minutes) {
                    window.completed += p.completed;
                    window.failed += p.failed;
                }
            }
        }
        queues.sort_by(|a, b| a.counts.queue.cmp(&b.counts.queue));
        Ok(Stats {
            at: now,
            queues,
            workers,
        })
    }

    /// One job, in full; `None` for an unknown id.
    pub async fn job(&self, id: JobId) -> Result<Option<JobRecord>, Error> {
        Ok(self.backend.get(id).await?)
    }

    /// One page of a search, as [`Backend::search`].
    pub async fn search(&self, query: &SearchQuery) -> Result<SearchPage, Error> {
        Ok(self.backend.search(query).await?)
    }

    /// A page of `query.limit` jobs, filled by up to `max_calls` searches: a bounded search
    /// may stop short of the limit (its examine budget ran out before enough jobs matched),
    /// so this continues from each call's cursor until the page is full or the search ends.
    ///
    /// The page has the total of the first call (when `query.with_total`; later calls do
    /// not count again), the jobs examined by all calls, and a `next` cursor: a full page
    /// ends at its last job, whatever the backend's cursor says, so the next page starts
    /// right after it. After `max_calls` calls the page is returned short, with the cursor
    /// to go on from (`next` set while `jobs.len() < query.limit`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), kosh_jobs::Error> {
    /// use kosh_jobs::{memory::MemoryBackend, Admin, Backend, JobFilter, NewJob, SearchQuery};
    /// let backend = MemoryBackend::new();
    /// let now = backend.clock().now();
    /// backend.push(vec![NewJob::new("mail", "default", "{}", now); 5]).await?;
    /// let admin = Admin::new(backend);
    /// let page = admin.search_page(&SearchQuery::new(JobFilter::new()).limit(3), 10).await?;
    /// assert_eq!(page.jobs.len(), 3);
    /// assert_eq!(page.next, Some(page.jobs[2].id));
    /// assert_eq!(page.total.map(|t| t.count), Some(5));
    /// # Ok(()) }
    /// ```
    pub async fn search_page(
        &self,
        query: &SearchQuery,
        max_calls: usize,
    ) -> Result<SearchPage, Error> {
        let limit = query.limit;
        let mut q = query.clone();
        let mut out = SearchPage {
            jobs: Vec::new(),
            next: None,
            examined: 0,
            total: None,
        };
        for _ in 0..max_calls {
            let page = self.backend.search(&q).await?;
            if out.total.is_none() {
                out.total = page.total;
            }
            out.examined += page.examined;
            out.jobs.extend(page.jobs);
            out.next = page.next;
            match out.next {
                Some(n) if out.jobs.len() < limit => {
                    q.after = Some(n);
                    q.with_total = false;
                    q.limit = limit - out.jobs.len();
                }
                _ => break,
            }
        }
        if out.jobs.len() >= limit {
            out.jobs.truncate(limit);
            if out.next.is_some() {
                out.next = out.jobs.last().map(|j| j.id);
            }
        }
        Ok(out)
    }

    /// The live workers, as [`Backend::workers`].
    pub async fn workers(&self) -> Result<Vec<LiveWorker>, Error> {
        Ok(self.backend.workers().await?)
    }

    /// The exact number of jobs matching `filter`: the backend's total when it is exact
    /// (always for states and a queue), otherwise by paging through the matches, a bounded
    /// search per call.
    pub async fn count(&self, filter: &JobFilter) -> Result<u64, Error> {
        filter.validate()?;
        let mut query = SearchQuery::new(filter.clone())
            .limit(PAGE)
            .budget(BULK_BUDGET)
            .with_total(true);
        let mut counted = 0u64;
        loop {
            let page = self.backend.search(&query).await?;
            if let Some(total) = page.total.filter(|t| t.exact) {
                return Ok(total.count);
            }
            counted += page.jobs.len() as u64;
            match page.next {
                Some(next) => {
                    query.after = Some(next);
                    query.with_total = false;
                }
                None => return Ok(counted),
            }
        }
    }

    /// `filter` narrowed to the states `action` applies to ([`AdminAction::applies_to`]):
    /// what [`Admin::apply_filter`] acts on, so count this to say how many jobs it will
    /// touch. An `InvalidInput` error when none of the filter's states fits the action.
    ///
    /// ```
    /// use kosh_jobs::{Admin, AdminAction, JobFilter, JobState};
    /// let any = Admin::action_filter(AdminAction::Retry, &JobFilter::new()).unwrap();
    /// assert_eq!(any.states, vec![JobState::Failed, JobState::Cancelled]);
    /// let running = JobFilter::new().state(JobState::Running);
    /// assert!(Admin::action_filter(AdminAction::Delete, &running).is_err());
    /// ```
    pub fn action_filter(action: AdminAction, filter: &JobFilter) -> Result<JobFilter, Error> {
        let states: Vec<JobState> = filter
            .state_list()
            .into_iter()
            .filter(|s| action.applies_to(*s))
            .collect();
        if states.is_empty() {
            let fits: Vec<&str> = JobState::ALL
                .into_iter()
                .filter(|s| action.applies_to(*s))
                .map(JobState::as_str)
                .collect();
            let asked: Vec<&str> = filter.states.iter().map(|s| s.as_str()).collect();
            return Err(Error::InvalidInput(format!(
                "{action} applies to {} jobs, not to {} ones",
                fits.join(", "),
                asked.join(", ")
            )));
        }
        Ok(JobFilter {
            states,
            ..filter.clone()
        })
    }

    /// Applies `action` to every job matching `filter` (narrowed by
    /// [`Admin::action_filter`]): a search page of up to 1,000 ids
    /// ([`Backend::search_ids`]), oldest first, then one
    /// [`Backend::apply`] of its ids limited to the filter's states, so a job that changed
    /// state since it was found is skipped, not acted on; until the search ends. The search
    /// for the next page runs while a page is acted on.
    /// `on_progress` sees the totals after each page.
    ///
    /// Jobs enqueued while it runs are acted on if they match when the search reaches them.
    /// The filter's other conditions (text, times) are checked when a job is found, not
    /// again when it is acted on.
    pub async fn apply_filter(
        &self,
        action: AdminAction,
        filter: &JobFilter,
        mut on_progress: impl FnMut(&ActionTotals),
    ) -> Result<ActionTotals, Error> {
        let filter = Self::action_filter(action, filter)?;
        filter.validate()?;
        let query = SearchQuery::new(filter)
            .order(Order::OldestFirst)
            .limit(PAGE)
            .budget(BULK_BUDGET)
            .with_total(false);
        let mut totals = ActionTotals::default();
        let mut page = self.backend.search_ids(&query).await?;
        loop {
            totals.examined += page.examined;
            // The next page is looked for while this one is acted on: it starts past this
            // page's last id, so acting on this page does not change what it finds, and the
            // search (a read) and the action (a write) overlap instead of taking turns.
            let next = page.next.map(|after| SearchQuery {
                after: Some(after),
                ..query.clone()
            });
            let act = async {
                let mut results = Vec::with_capacity(page.ids.len());
                for chunk in page.ids.chunks(MAX_ACTION_IDS) {
                    results.extend(
                        self.backend
                            .apply(action, chunk, &query.filter.states)
                            .await?,
                    );
                }
                Ok::<_, BackendError>(results)
            };
            let find = async {
                match &next {
                    Some(q) => self.backend.search_ids(q).await.map(Some),
                    None => Ok(None),
                }
            };
            let (results, found) = tokio::join!(act, find);
            results?.iter().for_each(|r| totals.tally(r));
            on_progress(&totals);
            match found? {
                Some(p) => page = p,
                None => return Ok(totals),
            }
        }
    }

    /// Applies `action` to each of `ids`, in calls of at most [`MAX_ACTION_IDS`]; one result
    /// per id, in order. Tally them with [`ActionTotals::tally`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), kosh_jobs::Error> {
    /// use kosh_jobs::{admin::ActionResult, memory::MemoryBackend, Admin, AdminAction, Backend, JobId, JobState, NewJob};
    /// let backend = MemoryBackend::new();
    /// let now = backend.clock().now();
    /// let id = backend.push(vec![NewJob::new("mail", "default", "{}", now)]).await?[0].id;
    /// let admin = Admin::new(backend);
    /// let out = admin.apply_ids(AdminAction::Retry, &[id, JobId::new(999)]).await?;
    /// assert_eq!(out, vec![ActionResult::Skipped(JobState::Ready), ActionResult::NotFound]);
    /// # Ok(()) }
    /// ```
    pub async fn apply_ids(
        &self,
        action: AdminAction,
        ids: &[JobId],
    ) -> Result<Vec<ActionResult>, Error> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_ACTION_IDS) {
            out.extend(self.backend.apply(action, chunk, &[]).await?);
        }
        Ok(out)
    }
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::TimeRange;
    use crate::clock::Clock;
    use crate::memory::MemoryBackend;
    use crate::record::{Finish, NewJob, Outcome, ReserveRequest};

    fn req(queue: &str, max: usize) -> ReserveRequest {
        ReserveRequest {
            queues: vec![queue.into()],
            worker: "w1".into(),
            max,
            lease: Duration::from_secs(60),
        }
    }

    /// `n` jobs of `queue` finished with `outcome`.
    async fn finished(b: &MemoryBackend, queue: &str, n: usize, fail: bool) -> Vec<JobId> {
        let now = b.clock().now();
        let mut job = NewJob::new("import", queue, r#"{"file":"a.csv"}"#, now);
        job.max_attempts = 1;
        b.push(vec![job; n]).await.unwrap();
        let leased = b.reserve(&req(queue, n)).await.unwrap();
        assert_eq!(leased.len(), n);
        let finishes = leased
            .iter()
            .map(|j| Finish {
                lease: j.lease,
                outcome: if fail {
                    Outcome::failed("database is locked")
                } else {
                    Outcome::Completed { result: None }
                },
            })
            .collect();
        b.finish(finishes).await.unwrap();
        leased.iter().map(|j| j.id()).collect()
    }

    #[tokio::test]
    async fn stats_windows_count_by_minute() {
        let (clock, hand) = Clock::manual_at(Timestamp::from_millis(1_000 * 60_000 + 5_000));
        let b = MemoryBackend::with_clock(clock);
        finished(&b, "csv", 2, true).await;
        hand.advance(Duration::from_secs(30 * 60));
        finished(&b, "csv", 3, false).await;
        finished(&b, "mail", 1, false).await;
        hand.advance(Duration::from_secs(3 * 60));
        let now = b.clock().now();
        b.push(vec![NewJob::new(
            "import",
            "csv",
            "{}",
            now - Duration::from_secs(7),
        )])
        .await
        .unwrap();
        let admin = Admin::new(b);
        let s = admin.stats().await.unwrap();
        assert_eq!(s.queues.len(), 2);
        let csv = &s.queues[0];
        assert_eq!(csv.counts.queue, "csv");
        assert_eq!((csv.counts.ready, csv.counts.failed), (1, 2));
        assert_eq!(csv.oldest_ready_age, Some(Duration::from_secs(7)));
        assert_eq!(csv.last_minute, Finished::default());
        assert_eq!(
            csv.last_hour,
            Finished {
                completed: 3,
                failed: 2
            }
        );
        assert_eq!(csv.last_day, csv.last_hour);
        assert_eq!(s.queues[1].last_hour.completed, 1);
        assert_eq!(s.queues[1].oldest_ready_age, None);
    }

    #[tokio::test]
    async fn count_is_exact_past_the_total_bound() {
        let b = MemoryBackend::new();
        let now = b.clock().now();
        let jobs: Vec<NewJob> = (0..10_050)
            .map(|i| NewJob::new("import", "csv", format!(r#"{{"row":{i}}}"#), now))
            .collect();
        b.push(jobs).await.unwrap();
        let admin = Admin::new(b);
        assert_eq!(admin.count(&JobFilter::new()).await.unwrap(), 10_050);
        let text = JobFilter::new().search("row");
        assert_eq!(admin.count(&text).await.unwrap(), 10_050);
        assert_eq!(
            admin
                .count(&JobFilter::new().search("\"row\":100"))
                .await
                .unwrap(),
            61 // 100, 1000..=1009, 10000..=10049
        );
    }

    #[tokio::test]
    async fn apply_filter_acts_on_matching_jobs_only() {
        let b = MemoryBackend::new();
        let failed = finished(&b, "csv", 1_500, true).await;
        finished(&b, "csv", 10, false).await;
        finished(&b, "mail", 5, true).await;
        let admin = Admin::new(b.clone());
        let filter = JobFilter::new()
            .state(JobState::Failed)
            .queue("csv")
            .search("LOCKED")
            .created(TimeRange::default());
        let mut calls = 0;
        let t = admin
            .apply_filter(AdminAction::Retry, &filter, |_| calls += 1)
            .await
            .unwrap();
        assert_eq!((t.applied, t.skipped, t.not_found), (1_500, 0, 0));
        assert!(calls >= 2, "one progress call per page, got {calls}");
        assert!(t.examined >= 1_500);
        assert_eq!(
            b.get(failed[0]).await.unwrap().unwrap().state,
            JobState::Ready
        );
        let mail_failed = JobFilter::new().state(JobState::Failed).queue("mail");
        assert_eq!(admin.count(&mail_failed).await.unwrap(), 5);
    }

    #[tokio::test]
    async fn apply_filter_without_states_takes_the_actions_states() {
        let b = MemoryBackend::new();
        finished(&b, "csv", 3, true).await;
        finished(&b, "csv", 2, false).await;
        let admin = Admin::new(b);
        let t = admin
            .apply_filter(AdminAction::Delete, &JobFilter::new().queue("csv"), |_| {})
            .await
            .unwrap();
        assert_eq!(t.applied, 5);
        let err = admin
            .apply_filter(
                AdminAction::Promote,
                &JobFilter::new().state(JobState::Failed),
                |_| {},
            )
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("promote applies to scheduled"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn search_page_fills_the_page_across_bounded_searches() {
        let b = MemoryBackend::new();
        let now = b.clock().now();
        // One job in ten matches: a search examining at most 100 jobs finds 10 a call.
        let jobs: Vec<NewJob> = (0..1_000)
            .map(|i| {
                let tag = if i % 10 == 0 { r#","tag":"hit""# } else { "" };
                NewJob::new("import", "csv", format!(r#"{{"row":{i}{tag}}}"#), now)
            })
            .collect();
        let ids: Vec<JobId> = b.push(jobs).await.unwrap().iter().map(|e| e.id).collect();
        let hits: Vec<JobId> = ids.iter().copied().step_by(10).collect();
        let admin = Admin::new(b);
        let query = SearchQuery::new(JobFilter::new().search("hit"))
            .limit(25)
            .budget(100);
        let one_call = admin.search(&query).await.unwrap();
        assert_eq!(one_call.jobs.len(), 10, "the budget stops one call short");

        let page = admin.search_page(&query, 10).await.unwrap();
        let got: Vec<JobId> = page.jobs.iter().map(|j| j.id).collect();
        assert_eq!(got, hits[..25]);
        assert_eq!(
            page.next,
            Some(hits[24]),
            "a full page ends at its last job"
        );
        assert_eq!(page.total, one_call.total, "the first call's total");
        assert!(page.examined > one_call.examined, "{}", page.examined);

        // The next page goes on right after it, without counting again.
        let mut rest = query.clone();
        rest.after = page.next;
        rest.with_total = false;
        let page2 = admin.search_page(&rest, 10).await.unwrap();
        let got: Vec<JobId> = page2.jobs.iter().map(|j| j.id).collect();
        assert_eq!(got, hits[25..50]);
        assert_eq!(page2.total, None);

        // Out of calls: a short page with the cursor to go on from.
        let short = admin.search_page(&query, 2).await.unwrap();
        assert_eq!(short.jobs.len(), 20);
        let next = short.next.expect("more may match");
        assert!(next >= hits[19], "{next:?}");

        // The search ends: every match, no cursor.
        let all = admin
            .search_page(&query.clone().limit(1_000), 100)
            .await
            .unwrap();
        assert_eq!(all.jobs.len(), 100);
        assert_eq!(all.next, None);
        assert_eq!(all.examined, 1_000);
    }

    #[tokio::test]
    async fn apply_ids_chunks_large_lists() {
        let b = MemoryBackend::new();
        let ids = finished(&b, "csv", 2_100, true).await;
        let admin = Admin::new(b);
        let out = admin.apply_ids(AdminAction::Delete, &ids).await.unwrap();
        assert_eq!(out.len(), 2_100);
        assert!(out.iter().all(|r| *r == ActionResult::Applied));
        let again = admin
            .apply_ids(AdminAction::Delete, &ids[..3])
            .await
            .unwrap();
        assert_eq!(again, vec![ActionResult::NotFound; 3]);
    }
}
