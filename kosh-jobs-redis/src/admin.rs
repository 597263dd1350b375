//! The admin contract over Redis: search, actions, throughput and live workers.
//!
//! Each queue lives in its own slot, so a search runs one script per queue and merges the
//! queues' jobs by id here. Scripts are bounded: a scan examines at most [`SCAN_CHUNK`] jobs
//! per call, and a search call at most its budget over all its script calls.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::try_join_all;
use kosh_jobs_core::admin::{
    minute_of, ActionResult, AdminAction, IdPage, LiveWorker, Order, SearchPage, SearchQuery,
    ThroughputPoint, ThroughputQuery, Total, WorkerInfo, MAX_ACTION_IDS, TOTAL_BOUND,
};
use kosh_jobs_core::backend::validate_queue_name;
use kosh_jobs_core::{BackendError, JobId, JobRecord, JobState, Timestamp};
use redis::Value;

use crate::conn::ScriptArgs;
use crate::decode::{array, bad, int, job_record, opt_int, req_int, req_text, take_text, text};
use crate::error::RedisError;
use crate::keys::{first_seq_after, last_seq_before, member, JobRef};
use crate::ops::{state_of, Shared};
use crate::scripts;

/// Jobs one search script call examines at most: a few milliseconds of Redis's time.
const SCAN_CHUNK: usize = 1000;
/// The most jobs one script of [`Shared::apply`] acts on (a retry of a failed job is
/// about 40 µs of server time here, so a step is a few milliseconds).
const APPLY_STEP: usize = 100;
/// The most due scheduled jobs the first step of an `apply` call makes ready.
const PROMOTE_ON_APPLY: &str = "1000";
/// Below this many jobs of budget per queue, a search first asks every queue where it
/// stands (examining nothing), then spends the budget on the queues furthest behind.
const MIN_SHARE: usize = 10;

fn invalid(e: BackendError) -> RedisError {
    match e {
        BackendError::InvalidInput(s) => RedisError::InvalidInput(s),
        other => RedisError::InvalidInput(other.to_string()),
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The filter as the search script takes it (ARGV 6 to 12).
struct ScriptFilter {
    states: String,
    name: String,
    text: String,
    ranges: [String; 4],
}

impl ScriptFilter {
    fn new(q: &SearchQuery) -> Self {
        let f = &q.filter;
        let states = f
            .state_list()
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let t = |x: Option<Timestamp>| x.map_or(String::new(), |t| t.as_millis().to_string());
        ScriptFilter {
            states,
            name: f.name.as_ref().map_or(String::new(), |n| format!("={n}")),
            text: f
                .search
                .as_ref()
                .map_or(String::new(), |s| s.to_ascii_lowercase()),
            ranges: [
                t(f.created.from),
                t(f.created.until),
                t(f.finished.from),
                t(f.finished.until),
            ],
        }
    }
}

/// One queue's progress through a scan.
struct Lane {
    queue: String,
    index: u16,
    /// The first member not examined yet (inclusive bound), `None` for the start.
    bound: Option<String>,
    /// The id of `bound`, once a call reported it.
    frontier: Option<JobId>,
    done: bool,
}

/// What one scan call reported.
struct Scanned {
    next: Option<String>,
    examined: usize,
    count: u64,
    jobs: Vec<JobRecord>,
}

impl Shared {
    /// The registered queues a filter names (every queue when it names none), by name.
    async fn named_queues(&self, queue: Option<&String>) -> Result<Vec<(String, u16)>, RedisError> {
        let all = self.registry.all(self.now()).await?;
        Ok(match queue {
            Some(q) => all.into_iter().filter(|(n, _)| n == q).collect(),
            None => all,
        })
    }

    /// One search script call on one queue.
    #[allow(clippy::too_many_arguments)]
    async fn search_call(
        &self,
        queue: &str,
        mode: &str,
        order: Order,
        bound: Option<&str>,
        n: usize,
        limit: usize,
        f: &ScriptFilter,
        with_total: bool,
        ids_only: bool,
    ) -> Result<Vec<Value>, RedisError> {
        let mut args = ScriptArgs::with_capacity(15);
        args.str(mode)
            .str(match order {
                Order::OldestFirst => "a",
                Order::NewestFirst => "d",
            })
            .str(bound.unwrap_or(""))
            .int(n as i64)
            .int(limit as i64)
            .str(f.states.as_str())
            .str(f.name.as_str())
            .str(f.text.as_str());
        for r in &f.ranges {
            args.str(r.as_str());
        }
        args.int(self.now().as_millis())
            .str(if with_total { "1" } else { "0" })
            .str(if ids_only { "1" } else { "0" });
        let v = self
            .conn
            .script(&scripts::SEARCH, &[&self.keys.queue(queue)], args)
            .await?;
        array(v)
    }

    /// The ids of a search page (see [`kosh_jobs_core::Backend::search_ids`]): an indexed
    /// filter reads only members from the indexes; a scan reads the jobs it examines in any
    /// case, and gives its page's ids.
    pub(crate) async fn search_ids(self: Arc<Self>, q: SearchQuery) -> Result<IdPage, RedisError> {
        q.filter.validate().map_err(invalid)?;
        if !q.filter.is_indexed() {
            return Ok(self.search(q).await?.into());
        }
        let queues = self.named_queues(q.filter.queue.as_ref()).await?;
        let f = ScriptFilter::new(&q);
        self.search_indexed_ids(&q, queues, &f).await
    }

    pub(crate) async fn search(self: Arc<Self>, q: SearchQuery) -> Result<SearchPage, RedisError> {
        q.filter.validate().map_err(invalid)?;
        let queues = self.named_queues(q.filter.queue.as_ref()).await?;
        let f = ScriptFilter::new(&q);
        if q.filter.is_indexed() {
            return self.search_indexed(&q, queues, &f).await;
        }
        let mut lanes = Vec::with_capacity(queues.len());
        for (queue, index) in &queues {
            let (bound, done) = match q.order {
                Order::OldestFirst => (Some(member(first_seq_after(q.after, *index))), false),
                Order::NewestFirst => match last_seq_before(q.after, *index) {
                    None => (None, false),
                    Some(0) => (None, true),
                    Some(s) => (Some(member(s)), false),
                },
            };
            lanes.push(Lane {
                queue: queue.clone(),
                index: *index,
                bound,
                frontier: None,
                done,
            });
        }
        let total = if q.with_total {
            Some(self.scan_total(&q, &queues, &f).await?)
        } else {
            None
        };
        let (mut jobs, examined, lanes) = self.scan_page(&q, lanes, &f).await?;
        let limit = q.effective_limit();
        let asc = q.order == Order::OldestFirst;
        // Every job before the frontier (the furthest-behind queue's next job) was examined
        // in every queue: the matches before it are final, the others are found again later.
        let frontier = lanes
            .iter()
            .filter(|l| !l.done)
            .map(|l| {
                l.frontier
                    .ok_or_else(|| bad("search: a queue was never scanned"))
            })
            .collect::<Result<Vec<JobId>, RedisError>>()?;
        let frontier = if asc {
            frontier.into_iter().min()
        } else {
            frontier.into_iter().max()
        };
        if let Some(fr) = frontier {
            jobs.retain(|j| if asc { j.id < fr } else { j.id > fr });
        }
        sort_jobs(&mut jobs, q.order);
        let next = if jobs.len() > limit {
            jobs.truncate(limit);
            jobs.last().map(|j| j.id)
        } else {
            frontier.map(|fr| {
                JobId::new(if asc {
                    fr.get().saturating_sub(1)
                } else {
                    fr.get().saturating_add(1)
                })
            })
        };
        Ok(SearchPage {
            jobs,
            next,
            examined: examined as u64,
            total,
        })
    }

    /// A search answered from the state indexes: each queue's first `limit + 1` jobs past
    /// the cursor, merged by id.
    async fn search_indexed(
        self: &Arc<Self>,
        q: &SearchQuery,
        queues: Vec<(String, u16)>,
        f: &ScriptFilter,
    ) -> Result<SearchPage, RedisError> {
        let (total, found) = self.indexed_calls(q, queues, f, false).await?;
        let mut jobs: Vec<JobRecord> = found
            .into_iter()
            .filter_map(|h| match h {
                Hit::Record(r) => Some(*r),
                Hit::Id(_) => None,
            })
            .collect();
        let next = first_page(&mut jobs, |j| j.id, q);
        Ok(SearchPage {
            examined: jobs.len() as u64,
            jobs,
            next,
            total,
        })
    }

    /// [`Shared::search_indexed`] reading only the ids: the script returns members, not
    /// records.
    async fn search_indexed_ids(
        self: &Arc<Self>,
        q: &SearchQuery,
        queues: Vec<(String, u16)>,
        f: &ScriptFilter,
    ) -> Result<IdPage, RedisError> {
        let (total, found) = self.indexed_calls(q, queues, f, true).await?;
        let mut ids: Vec<JobId> = found.iter().map(Hit::id).collect();
        let next = first_page(&mut ids, |id| *id, q);
        Ok(IdPage {
            examined: ids.len() as u64,
            ids,
            next,
            total,
        })
    }

    /// The indexed search script on every queue: the total (when asked) and each queue's
    /// first `limit + 1` jobs past the cursor, as records or as ids.
    async fn indexed_calls(
        self: &Arc<Self>,
        q: &SearchQuery,
        queues: Vec<(String, u16)>,
        f: &ScriptFilter,
        ids_only: bool,
    ) -> Result<(Option<Total>, Vec<Hit>), RedisError> {
        let limit = q.effective_limit();
        let calls = queues.into_iter().map(|(queue, index)| {
            let this = self.clone();
            async move {
                let (bound, n) = match q.order {
                    Order::OldestFirst => {
                        (Some(member(first_seq_after(q.after, index))), limit + 1)
                    }
                    Order::NewestFirst => match last_seq_before(q.after, index) {
                        None => (None, limit + 1),
                        Some(0) => (None, 0),
                        Some(s) => (Some(member(s)), limit + 1),
                    },
                };
                let a = this
                    .search_call(
                        &queue,
                        "i",
                        q.order,
                        bound.as_deref(),
                        n,
                        limit,
                        f,
                        q.with_total,
                        ids_only,
                    )
                    .await?;
                let mut it = a.into_iter();
                let total = opt_int(&it.next().unwrap_or(Value::Nil))?;
                let hits: Vec<Hit> = if ids_only {
                    ids_of(it, index)?.into_iter().map(Hit::Id).collect()
                } else {
                    jobs_of(it, &queue, index)?
                        .into_iter()
                        .map(|j| Hit::Record(Box::new(j)))
                        .collect()
                };
                Ok::<_, RedisError>((total, hits))
            }
        });
        let mut total = 0u64;
        let mut found: Vec<Hit> = Vec::new();
        for (t, hits) in try_join_all(calls).await? {
            total += t.unwrap_or(0).max(0) as u64;
            found.extend(hits);
        }
        let total = q.with_total.then_some(Total {
            count: total,
            exact: true,
        });
        Ok((total, found))
    }

    /// One scan call on a lane, examining up to `n` jobs (0: only find where it stands).
    async fn scan_call(
        self: &Arc<Self>,
        lane: &Lane,
        mode: &str,
        order: Order,
        n: usize,
        limit: usize,
        f: &ScriptFilter,
    ) -> Result<Scanned, RedisError> {
        let a = self
            .search_call(
                &lane.queue,
                mode,
                order,
                lane.bound.as_deref(),
                n,
                limit,
                f,
                false,
                false,
            )
            .await?;
        let mut it = a.into_iter();
        let next = match it.next().unwrap_or(Value::Nil) {
            Value::Nil => None,
            v => Some(take_text(v, "search: next member")?),
        };
        let examined = usize::try_from(req_int(&it.next().unwrap_or(Value::Nil), "examined")?)
            .map_err(|_| bad("search: bad examined count"))?;
        if examined > n {
            return Err(bad("search: examined more than asked"));
        }
        let (count, jobs) = if mode == "c" {
            let c = req_int(&it.next().unwrap_or(Value::Nil), "search: count")?;
            (c.max(0) as u64, Vec::new())
        } else {
            let jobs = jobs_of(it, &lane.queue, lane.index)?;
            (jobs.len() as u64, jobs)
        };
        Ok(Scanned {
            next,
            examined,
            count,
            jobs,
        })
    }

    /// Applies what a scan call reported to its lane.
    fn advance(&self, lane: &mut Lane, s: &Scanned) -> Result<(), RedisError> {
        match &s.next {
            None => {
                lane.done = true;
                lane.bound = None;
            }
            Some(m) => {
                let r = JobRef::from_member(lane.index, m)
                    .ok_or_else(|| bad("search: bad next member"))?;
                lane.frontier = Some(r.id());
                lane.bound = Some(m.clone());
            }
        }
        Ok(())
    }

    /// The matching jobs of a page's scan, the jobs examined, and where each queue stopped.
    async fn scan_page(
        self: &Arc<Self>,
        q: &SearchQuery,
        mut lanes: Vec<Lane>,
        f: &ScriptFilter,
    ) -> Result<(Vec<JobRecord>, usize, Vec<Lane>), RedisError> {
        let limit = q.effective_limit();
        let mut remaining = q.effective_budget();
        let mut examined = 0usize;
        let mut found: Vec<JobRecord> = Vec::new();
        let asc = q.order == Order::OldestFirst;
        loop {
            let mut active: Vec<usize> = (0..lanes.len()).filter(|&i| !lanes[i].done).collect();
            if active.is_empty() {
                break;
            }
            let unplaced: Vec<usize> = active
                .iter()
                .copied()
                .filter(|&i| lanes[i].frontier.is_none())
                .collect();
            if unplaced.is_empty() {
                // Enough final matches already?
                let fr = active.iter().filter_map(|&i| lanes[i].frontier);
                let fr = if asc { fr.min() } else { fr.max() };
                let finals = found
                    .iter()
                    .filter(|j| fr.is_none_or(|fr| if asc { j.id < fr } else { j.id > fr }))
                    .count();
                if finals >= limit || remaining == 0 {
                    break;
                }
            } else if remaining == 0 {
                return Err(bad("search: no budget left to place every queue"));
            }
            let mut plan: Vec<(usize, usize)> = Vec::new();
            if !unplaced.is_empty() && unplaced.len() * MIN_SHARE > remaining {
                // Many queues, little budget: find where each stands first.
                plan = unplaced.into_iter().map(|i| (i, 0)).collect();
            } else {
                // The queues furthest behind first: they hold the frontier back.
                active.sort_by_key(|&i| {
                    let id = lanes[i].frontier.map_or(0, JobId::get);
                    if asc {
                        id
                    } else {
                        u64::MAX - id
                    }
                });
                let share = (remaining / active.len()).clamp(1, SCAN_CHUNK);
                let mut avail = remaining;
                for i in active {
                    if avail == 0 {
                        break;
                    }
                    let c = share.min(avail);
                    avail -= c;
                    plan.push((i, c));
                }
            }
            let calls = plan.iter().map(|&(i, c)| {
                let lane = &lanes[i];
                async move {
                    self.scan_call(lane, "s", q.order, c, limit, f)
                        .await
                        .map(|s| (i, s))
                }
            });
            let results = try_join_all(calls).await?;
            let mut progress = false;
            for (i, s) in results {
                self.advance(&mut lanes[i], &s)?;
                examined += s.examined;
                remaining = remaining.saturating_sub(s.examined);
                progress |= s.examined > 0 || s.next.is_none();
                found.extend(s.jobs);
            }
            if !progress && plan.iter().any(|&(_, c)| c > 0) {
                return Err(bad("search: a scan made no progress"));
            }
        }
        Ok((found, examined, lanes))
    }

    /// The number of jobs matching a scan filter: a count of at most the budget's jobs from
    /// the start of every queue, stopping at [`TOTAL_BOUND`].
    async fn scan_total(
        self: &Arc<Self>,
        q: &SearchQuery,
        queues: &[(String, u16)],
        f: &ScriptFilter,
    ) -> Result<Total, RedisError> {
        let mut lanes: Vec<Lane> = queues
            .iter()
            .map(|(queue, index)| Lane {
                queue: queue.clone(),
                index: *index,
                bound: None,
                frontier: None,
                done: false,
            })
            .collect();
        let mut remaining = q.effective_budget();
        let mut count = 0u64;
        loop {
            let active: Vec<usize> = (0..lanes.len()).filter(|&i| !lanes[i].done).collect();
            if active.is_empty() {
                return Ok(Total { count, exact: true });
            }
            if count >= TOTAL_BOUND || remaining == 0 {
                return Ok(Total {
                    count,
                    exact: false,
                });
            }
            let share = (remaining / active.len()).clamp(1, SCAN_CHUNK);
            let mut avail = remaining;
            let mut plan = Vec::new();
            for i in active {
                if avail == 0 {
                    break;
                }
                let c = share.min(avail);
                avail -= c;
                plan.push((i, c));
            }
            let want = (TOTAL_BOUND - count) as usize;
            let calls = plan.iter().map(|&(i, c)| {
                let lane = &lanes[i];
                async move {
                    self.scan_call(lane, "c", Order::OldestFirst, c, want, f)
                        .await
                        .map(|s| (i, s))
                }
            });
            for (i, s) in try_join_all(calls).await? {
                self.advance(&mut lanes[i], &s)?;
                remaining = remaining.saturating_sub(s.examined);
                count += s.count;
            }
        }
    }

    pub(crate) async fn apply(
        self: Arc<Self>,
        action: AdminAction,
        ids: Vec<JobId>,
        only: Vec<JobState>,
    ) -> Result<Vec<ActionResult>, RedisError> {
        if ids.len() > MAX_ACTION_IDS {
            return Err(RedisError::InvalidInput(format!(
                "{action}: at most {MAX_ACTION_IDS} jobs per call, not {}",
                ids.len()
            )));
        }
        let only = only
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let items: Vec<(JobId, ())> = ids.iter().map(|id| (*id, ())).collect();
        let replies = self
            .per_queue(items, None, |this, queue, items| {
                let only = only.clone();
                async move {
                    // One script per step, each awaited before the next is sent: a script
                    // blocks the whole server while it runs, and a reserve sent meanwhile
                    // runs between two steps, not after all of them.
                    let mut out = Vec::with_capacity(items.len());
                    for (i, step) in items.chunks(APPLY_STEP).enumerate() {
                        let mut args = ScriptArgs::with_capacity(4 + step.len());
                        // Due scheduled jobs are made ready once a call, by its first step
                        // (the bounded lookup of the reserve script), not at every step.
                        let promote = if i == 0 { PROMOTE_ON_APPLY } else { "0" };
                        args.str(action.as_str())
                            .int(this.now().as_millis())
                            .str(only.as_str())
                            .str(promote);
                        for (r, ()) in step {
                            args.str(r.member());
                        }
                        let v = this
                            .conn
                            .script(
                                &scripts::APPLY,
                                &[&this.keys.queue(&queue), &this.keys.unique(&queue)],
                                args,
                            )
                            .await?;
                        out.extend(array(v)?.into_iter().map(Some));
                    }
                    Ok(out)
                }
            })
            .await?;
        let mut out = Vec::with_capacity(replies.len());
        for r in replies {
            let Some(r) = r else {
                out.push(ActionResult::NotFound);
                continue;
            };
            let a = array(r)?;
            out.push(match a.first().and_then(int) {
                Some(0) => ActionResult::NotFound,
                Some(1) => ActionResult::Applied,
                Some(2) => ActionResult::Skipped(state_of(a.get(1))?),
                Some(3) => {
                    let key = req_text(a.get(1).unwrap_or(&Value::Nil), "holder")?;
                    ActionResult::UniqueConflict(self.id_of_job_key(&key).await?)
                }
                _ => return Err(bad("apply: unexpected reply")),
            });
        }
        Ok(out)
    }

    pub(crate) async fn throughput(
        self: Arc<Self>,
        q: ThroughputQuery,
    ) -> Result<Vec<ThroughputPoint>, RedisError> {
        if let Some(name) = &q.queue {
            validate_queue_name(name).map_err(RedisError::InvalidInput)?;
        }
        let since = minute_of(q.since).as_millis();
        let queues = self.named_queues(q.queue.as_ref()).await?;
        let calls = queues.into_iter().map(|(queue, _)| {
            let this = self.clone();
            async move {
                let mut args = ScriptArgs::with_capacity(1);
                args.int(since);
                let v = this
                    .conn
                    .script(&scripts::THROUGHPUT, &[&this.keys.queue(&queue)], args)
                    .await?;
                let a = array(v)?;
                let mut out = Vec::with_capacity(a.len() / 3);
                for t in a.chunks_exact(3) {
                    let n = |v: &Value, what: &str| req_int(v, what).map(|n| n.max(0) as u64);
                    out.push(ThroughputPoint {
                        queue: queue.clone(),
                        minute: Timestamp::from_millis(req_int(&t[0], "minute")?),
                        completed: n(&t[1], "completed")?,
                        failed: n(&t[2], "failed")?,
                    });
                }
                Ok::<_, RedisError>(out)
            }
        });
        Ok(try_join_all(calls).await?.into_iter().flatten().collect())
    }

    async fn worker_call(&self, args: ScriptArgs) -> Result<Value, RedisError> {
        let (w, x) = (self.keys.workers(), self.keys.worker_expiry());
        self.conn.script(&scripts::WORKER, &[&w, &x], args).await
    }

    pub(crate) async fn register_worker(
        self: Arc<Self>,
        info: WorkerInfo,
        ttl: Duration,
    ) -> Result<(), RedisError> {
        let json = serde_json::to_string(&info)
            .map_err(|e| RedisError::InvalidInput(format!("worker info: {e}")))?;
        let now = self.now().as_millis();
        let mut args = ScriptArgs::with_capacity(5);
        args.str("set")
            .int(now)
            .int(now.saturating_add(millis(ttl)))
            .str(info.id.as_str())
            .str(json);
        self.worker_call(args).await?;
        Ok(())
    }

    pub(crate) async fn deregister_worker(self: Arc<Self>, id: String) -> Result<(), RedisError> {
        let mut args = ScriptArgs::with_capacity(2);
        args.str("del").str(id);
        self.worker_call(args).await?;
        Ok(())
    }

    pub(crate) async fn workers(self: Arc<Self>) -> Result<Vec<LiveWorker>, RedisError> {
        let mut args = ScriptArgs::with_capacity(2);
        args.str("list").int(self.now().as_millis());
        let a = array(self.worker_call(args).await?)?;
        let mut out: Vec<LiveWorker> = Vec::with_capacity(a.len() / 2);
        for pair in a.chunks_exact(2) {
            let value = req_text(&pair[1], "worker")?;
            let (seen, json) = value
                .split_once('|')
                .ok_or_else(|| bad("worker: malformed registration"))?;
            let last_seen = seen
                .parse::<i64>()
                .map_err(|_| bad("worker: malformed registration time"))?;
            let info: WorkerInfo = serde_json::from_str(json)
                .map_err(|e| bad(format!("worker: registration is not JSON: {e}")))?;
            out.push(LiveWorker {
                info,
                last_seen: Timestamp::from_millis(last_seen),
                jobs: Vec::new(),
            });
        }
        out.sort_by(|a, b| a.info.id.cmp(&b.info.id));
        if out.is_empty() {
            return Ok(out);
        }
        let queues = self.registry.all(self.now()).await?;
        let calls = queues.into_iter().map(|(queue, index)| {
            let this = self.clone();
            async move {
                let v = this
                    .conn
                    .script(
                        &scripts::RUNNING,
                        &[&this.keys.queue(&queue)],
                        ScriptArgs::default(),
                    )
                    .await?;
                let a = array(v)?;
                let mut held = Vec::with_capacity(a.len() / 2);
                for pair in a.chunks_exact(2) {
                    let m = req_text(&pair[0], "member")?;
                    let r =
                        JobRef::from_member(index, &m).ok_or_else(|| bad("running: bad member"))?;
                    held.push((text(&pair[1]).unwrap_or_default(), r.id()));
                }
                Ok::<_, RedisError>(held)
            }
        });
        let mut by_worker: HashMap<String, Vec<JobId>> = HashMap::new();
        for (worker, id) in try_join_all(calls).await?.into_iter().flatten() {
            by_worker.entry(worker).or_default().push(id);
        }
        for w in &mut out {
            if let Some(mut jobs) = by_worker.remove(&w.info.id) {
                jobs.sort_unstable();
                w.jobs = jobs;
            }
        }
        Ok(out)
    }
}

/// Jobs from (member, record fields) pairs of a script reply.
fn jobs_of(
    it: impl Iterator<Item = Value>,
    queue: &str,
    index: u16,
) -> Result<Vec<JobRecord>, RedisError> {
    let mut it = it;
    let mut out = Vec::new();
    while let (Some(m), Some(fields)) = (it.next(), it.next()) {
        let m = take_text(m, "member")?;
        let r = JobRef::from_member(index, &m).ok_or_else(|| bad("search: bad member"))?;
        let fields = array(fields)?;
        if !fields.is_empty() {
            out.push(job_record(r.id(), queue, fields)?);
        }
    }
    Ok(out)
}

/// A job an indexed search call found: its record, or only its id.
enum Hit {
    Id(JobId),
    Record(Box<JobRecord>),
}

impl Hit {
    fn id(&self) -> JobId {
        match self {
            Hit::Id(id) => *id,
            Hit::Record(r) => r.id,
        }
    }
}

/// Job ids from the members of a script reply.
fn ids_of(it: impl Iterator<Item = Value>, index: u16) -> Result<Vec<JobId>, RedisError> {
    it.map(|m| {
        let m = take_text(m, "member")?;
        JobRef::from_member(index, &m)
            .map(|r| r.id())
            .ok_or_else(|| bad("search: bad member"))
    })
    .collect()
}

/// Sorts the hits of every queue (`items`, by `id`) in the query's order and keeps its
/// first page; returns the cursor to continue from, `None` when nothing was left out.
fn first_page<T>(items: &mut Vec<T>, id: impl Fn(&T) -> JobId, q: &SearchQuery) -> Option<JobId> {
    match q.order {
        Order::OldestFirst => items.sort_unstable_by_key(|t| id(t)),
        Order::NewestFirst => items.sort_unstable_by_key(|t| std::cmp::Reverse(id(t))),
    }
    let limit = q.effective_limit();
    if items.len() > limit {
        items.truncate(limit);
        items.last().map(id)
    } else {
        None
    }
}

fn sort_jobs(jobs: &mut [JobRecord], order: Order) {
    match order {
        Order::OldestFirst => jobs.sort_by_key(|j| j.id),
        Order::NewestFirst => jobs.sort_by_key(|j| std::cmp::Reverse(j.id)),
    }
}
