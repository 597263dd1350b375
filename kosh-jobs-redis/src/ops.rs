//! The operations of the backend, run on its I/O thread.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::try_join_all;
use kosh_jobs_core::admin::{Total, TOTAL_BOUND};
use kosh_jobs_core::backend::{
    validate_group_key, validate_job_name, validate_queue_name, validate_trace,
};
use kosh_jobs_core::limits::{GroupFlow, GroupPage, GroupQuery};
use kosh_jobs_core::{
    CancelOutcome, Clock, Enqueued, FailureKind, Finish, FinishResult, JobId, JobRecord, JobState,
    Lease, LeasedJob, ListQuery, NewJob, Outcome, Page, QueueCounts, QueueFlow, QueueLimits,
    RateLimit, ReserveRequest, RetryOutcome, Timestamp,
};
use redis::Value;
use tracing::warn;

use crate::coalesce::Coalescer;
use crate::conn::{Conn, ScriptArgs};
use crate::decode::{
    array, bad, int, job_record, opt_int, opt_json, req_int, req_text, take_text, text,
};
use crate::error::RedisError;
use crate::keys::{first_seq_after, member, JobRef, Keys, LAYOUT, MEMBER_LEN, UPGRADABLE};
use crate::options::RedisOptions;
use crate::registry::Registry;
use crate::scripts;
use crate::spec;

mod schedule_fire;
mod schedule_record;
mod schedules;

/// Jobs leased per script call at most.
const RESERVE_CHUNK: usize = 1000;
/// Lease tokens of one reserve call: call * TOKEN_SPAN + 2k (+ 1), k <= RESERVE_CHUNK.
const TOKEN_SPAN: u64 = 10_000;
const _: () = assert!(2 * RESERVE_CHUNK as u64 + 1 < TOKEN_SPAN);
/// Worker ids whose numbers one backend handle remembers (see `Shared::worker_numbers`).
const MAX_KNOWN_WORKERS: usize = 1024;
/// Expired leases recovered per script call.
const RECOVER_CHUNK: i64 = 1000;
/// Finished jobs purged per state per script call.
const PURGE_CHUNK: i64 = 1000;
/// Completed jobs of an older layout moved into layout 9's lists per script call at connect.
const MIGRATE_CHUNK: i64 = 1000;

/// Everything the operations share; lives on the I/O thread's tasks.
pub(crate) struct Shared {
    pub(crate) conn: Arc<Conn>,
    pub(crate) keys: Keys,
    pub(crate) clock: Clock,
    pub(crate) registry: Registry,
    keep_age_ms: i64,
    keep_count: i64,
    /// Identifies this backend's own "scheduled time moved" wake-up tokens.
    origin: String,
    /// Per queue: when something may next become ready by itself (`None`: nothing pending),
    /// as last seen by this process.
    next_due: Mutex<HashMap<String, Option<i64>>>,
    /// Rotates the queue reserve starts with.
    turn: std::sync::atomic::AtomicUsize,
    /// Consecutive failed blocking waits (for the pause between them).
    pub(crate) wait_failures: std::sync::atomic::AtomicU32,
    timeout: Duration,
    /// Per worker id, its number in each queue (by queue index) as `wid` gave it: reserve
    /// passes it, so only a worker's first reserve in a queue looks it up.
    worker_numbers: Mutex<HashMap<String, HashMap<u16, String>>>,
    /// Schedule id → its queue, as this process last read the index (see `schedule_fire`).
    schedule_queues: Mutex<HashMap<String, String>>,
    /// Single enqueues waiting to share a call (see `coalesce`).
    pub(crate) coalescer: Coalescer,
    /// Whether single enqueues go through `coalescer`.
    pub(crate) coalesce_enqueues: bool,
}

/// Items of one queue: the queue, their places in the caller's batch, the items.
type Group<T> = (String, Vec<usize>, Vec<T>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn check_queue(q: &str) -> Result<(), RedisError> {
    validate_queue_name(q).map_err(RedisError::InvalidInput)
}

/// What is checked of a job before it is sent (the whole batch is refused for one bad job;
/// a coalesced enqueue checks its own job before it joins the others).
pub(crate) fn check_job(j: &NewJob) -> Result<(), RedisError> {
    check_queue(&j.queue)?;
    validate_job_name(&j.name).map_err(RedisError::InvalidInput)?;
    if let Some(g) = &j.group {
        validate_group_key(g)
            .map_err(|e| RedisError::InvalidInput(format!("job `{}`: {e}", j.name)))?;
    }
    if let Some(t) = &j.trace {
        validate_trace(t)
            .map_err(|e| RedisError::InvalidInput(format!("job `{}`: {e}", j.name)))?;
    }
    if j.max_attempts == 0 {
        return Err(RedisError::InvalidInput(format!(
            "job `{}`: max_attempts must be at least 1",
            j.name
        )));
    }
    Ok(())
}

impl Shared {
    pub(crate) async fn connect(opts: RedisOptions) -> Result<Arc<Shared>, RedisError> {
        let conn = Conn::connect(&opts).await?;
        let keys = Keys::new(&opts.prefix, opts.cluster);
        let shared = Shared {
            registry: Registry::new(conn.clone(), keys.clone()),
            conn,
            keys,
            clock: opts.clock.clone(),
            keep_age_ms: opts.keep_completed_for.map_or(-1, millis),
            keep_count: opts
                .keep_completed_max
                .map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX)),
            origin: format!("{:016x}", fastrand::u64(..)),
            next_due: Mutex::new(HashMap::new()),
            turn: std::sync::atomic::AtomicUsize::new(0),
            wait_failures: std::sync::atomic::AtomicU32::new(0),
            timeout: opts.timeout,
            worker_numbers: Mutex::new(HashMap::new()),
            schedule_queues: Mutex::new(HashMap::new()),
            coalescer: Coalescer::default(),
            coalesce_enqueues: opts.coalesce_enqueues,
        };
        shared.check_layout(&opts.prefix).await?;
        shared.check_eviction_policy().await;
        Ok(Arc::new(shared))
    }

    /// Refuses keys written in another storage layout (reading them would lose jobs) and
    /// marks a new prefix with this version's layout.
    async fn check_layout(&self, prefix: &str) -> Result<(), RedisError> {
        let key = self.keys.layout();
        let found = opt_int(&self.conn.query(redis::cmd("GET").arg(&key)).await?)?;
        let found = match found {
            Some(l) => Some(l),
            // Layout 1 had no marker; its id counter gives it away.
            None => {
                let v = self
                    .conn
                    .query(redis::cmd("EXISTS").arg(self.keys.seq()))
                    .await?;
                if req_int(&v, "exists")? == 1 {
                    Some(1)
                } else {
                    let mut set = redis::cmd("SET");
                    set.arg(&key).arg(LAYOUT).arg("NX");
                    self.conn.query(&set).await?;
                    None
                }
            }
        };
        match found {
            None => Ok(()),
            Some(l) if l == LAYOUT => Ok(()),
            Some(l) if UPGRADABLE.contains(&l) => {
                // Its keys read as they are but its completed jobs, moved into this layout's
                // lists first (a crash midway leaves the old marker: the next connect goes
                // on). Processes of older versions cannot read what this one writes, and the
                // new marker keeps them out.
                let moved = self.migrate_completed().await?;
                let mut set = redis::cmd("SET");
                set.arg(&key).arg(LAYOUT);
                self.conn.query(&set).await?;
                tracing::info!(
                    prefix,
                    moved,
                    "upgraded the storage layout of the keys under prefix `{prefix}` from {l} to \
                     {LAYOUT} ({moved} completed jobs moved): processes of kosh-jobs-redis \
                     versions that use layout {l} must not run against it any more"
                );
                Ok(())
            }
            Some(l) => Err(RedisError::Incompatible(format!(
                "the keys under prefix `{prefix}` use storage layout {l}, and this version of \
                 kosh-jobs-redis reads layout {LAYOUT} only: let workers of the version that \
                 wrote them drain the queues and delete the prefix's keys, or use another prefix"
            ))),
        }
    }

    /// Moves the completed jobs of an older layout, in every queue, into the lists of
    /// layout 9, [`MIGRATE_CHUNK`] a script call (each call blocks Redis only briefly).
    /// Returns how many it moved.
    async fn migrate_completed(&self) -> Result<u64, RedisError> {
        let mut moved = 0u64;
        for (queue, _) in self.registry.all(self.now()).await? {
            let base = self.keys.queue(&queue);
            loop {
                let mut args = ScriptArgs::with_capacity(1);
                args.int(MIGRATE_CHUNK);
                let v = self.conn.script(&scripts::MIGRATE, &[&base], args).await?;
                let a = array(v)?;
                let (Some(n), Some(left)) = (a.first().and_then(int), a.get(1).and_then(int))
                else {
                    return Err(bad("migrate: unexpected reply"));
                };
                moved += n.max(0) as u64;
                if left <= 0 || n <= 0 {
                    break;
                }
            }
        }
        Ok(moved)
    }

    /// Warns when Redis may evict keys (each evicted key is a lost job). Hosted services that
    /// refuse `CONFIG` are not an error.
    async fn check_eviction_policy(&self) {
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("GET").arg("maxmemory-policy");
        match self.conn.query(&cmd).await {
            Ok(v) => {
                let policy = eviction_policy(v);
                match policy.as_deref() {
                    Some("noeviction") | None => {}
                    Some(p) => warn!(
                        addr = %self.conn.addr(),
                        policy = p,
                        "redis maxmemory-policy is `{p}`, not `noeviction`: under memory pressure Redis will delete keys, and every deleted key is a lost job"
                    ),
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot read maxmemory-policy"),
        }
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn note_due(&self, queue: &str, at: i64) {
        let mut m = lock(&self.next_due);
        if let Some(slot) = m.get_mut(queue) {
            *slot = Some(slot.map_or(at, |d| d.min(at)));
        }
    }

    /// The queue names of jobs, looked up by their ids' queue index.
    async fn queues_of(
        &self,
        ids: impl Iterator<Item = JobId>,
    ) -> Result<Vec<Option<(String, JobRef)>>, RedisError> {
        let mut out = Vec::new();
        for id in ids {
            out.push(match JobRef::from_id(id) {
                None => None,
                Some(r) => self.registry.name(r.queue_index).await?.map(|q| (q, r)),
            });
        }
        Ok(out)
    }

    pub(crate) async fn push(
        self: Arc<Self>,
        jobs: Vec<NewJob>,
    ) -> Result<Vec<Enqueued>, RedisError> {
        for j in &jobs {
            check_job(j)?;
        }
        // The batch's queues in order of first appearance, and each job's place among them.
        let mut queues: Vec<String> = Vec::new();
        let mut jobs: Vec<(usize, NewJob)> = jobs
            .into_iter()
            .map(|j| {
                let q = match queues.iter().position(|q| *q == j.queue) {
                    Some(q) => q,
                    None => {
                        queues.push(j.queue.clone());
                        queues.len() - 1
                    }
                };
                (q, j)
            })
            .collect();
        if !self.conn.is_cluster() || queues.len() <= 1 {
            // One script call: the whole batch is atomic, even across queues.
            return self.push_call(&queues, jobs).await;
        }
        // On a cluster a script touches one slot: one call (atomic) per queue.
        let total = jobs.len();
        let mut groups: Vec<Group<(usize, NewJob)>> = queues
            .into_iter()
            .map(|q| (q, Vec::new(), Vec::new()))
            .collect();
        for (i, (q, j)) in jobs.drain(..).enumerate() {
            groups[q].1.push(i);
            groups[q].2.push((0, j));
        }
        let calls = groups.into_iter().map(|(queue, idxs, jobs)| {
            let this = self.clone();
            async move {
                let out = this.push_call(std::slice::from_ref(&queue), jobs).await?;
                Ok::<_, RedisError>(idxs.into_iter().zip(out))
            }
        });
        let mut results: Vec<Option<Enqueued>> = vec![None; total];
        for group in try_join_all(calls).await? {
            for (i, e) in group {
                results[i] = Some(e);
            }
        }
        results
            .into_iter()
            .map(|e| e.ok_or_else(|| bad("push: missing result")))
            .collect()
    }

    /// One push script call for `jobs`, each tagged with its queue's place in `queues`
    /// (several queues only on a single server).
    async fn push_call(
        &self,
        queues: &[String],
        jobs: Vec<(usize, NewJob)>,
    ) -> Result<Vec<Enqueued>, RedisError> {
        let mut qis = Vec::with_capacity(queues.len());
        for q in queues {
            qis.push(self.registry.index(q).await?);
        }
        let now = self.now();
        let n = jobs.len();
        let nq = queues.len();
        let mut args = ScriptArgs::with_capacity(5 + n * 5);
        args.int(now.as_millis()).str(self.origin.as_str());
        let bases: Vec<String> = queues.iter().map(|q| self.keys.queue(q)).collect();
        let (Some(first), Some(first_queue)) = (bases.first(), queues.first()) else {
            return Ok(Vec::new());
        };
        let uniq = self.keys.unique(first_queue);
        let seq_key = self.keys.seq();
        let mut keys: Vec<&str> = vec![first, &uniq];
        if self.conn.is_cluster() {
            // The counter lives in another slot: take the numbers first.
            let v = self
                .conn
                .query(redis::cmd("INCRBY").arg(&seq_key).arg(n as i64))
                .await?;
            args.int(req_int(&v, "sequence")? - n as i64 + 1);
        } else {
            args.str("");
            keys.push(&seq_key);
            keys.extend(bases[1..].iter().map(String::as_str));
        }
        // The plain form (every job ready now, no unique key, no group: the common batch)
        // sends two values per job instead of four; a batch with a group sends five.
        let plain = jobs
            .iter()
            .all(|(_, j)| j.unique_key.is_none() && j.group.is_none() && j.run_at <= now);
        // One queue and one priority: the score goes once, not per job.
        let uniform = plain
            && nq == 1
            && jobs
                .iter()
                .all(|(_, j)| Some(j.priority) == jobs.first().map(|(_, f)| f.priority));
        let form = if uniform {
            Form::Uniform
        } else if plain {
            Form::Plain
        } else if jobs.iter().any(|(_, j)| j.group.is_some()) {
            Form::Grouped
        } else {
            Form::Full
        };
        args.int(n as i64).int(nq as i64).str(form.code());
        if let (Form::Uniform, Some((_, j))) = (form, jobs.first()) {
            args.int(-i64::from(j.priority));
        }
        let mut earliest: Vec<Option<i64>> = vec![None; nq];
        let mut places = Vec::with_capacity(n);
        for (q, j) in jobs {
            let ra = j.run_at.as_millis();
            if ra > now.as_millis() {
                earliest[q] = Some(earliest[q].map_or(ra, |e| e.min(ra)));
            }
            if nq > 1 {
                args.int(q as i64 + 1);
            }
            job_args(&mut args, &j, now, form);
            places.push(q);
        }
        let v = self.conn.script(&scripts::PUSH, &keys, args).await?;
        for (queue, e) in queues.iter().zip(earliest) {
            if let Some(e) = e {
                self.note_due(queue, e);
            }
        }
        let (first, held) = pushed("push", &array(v)?)?;
        let mut out = Vec::with_capacity(n);
        for (k, q) in places.into_iter().enumerate() {
            let e = match held.get(&(k + 1)) {
                // The holder may be in another queue: its job ref says which.
                Some(h) => Enqueued {
                    id: self.id_of_job_key(h).await?,
                    existing: true,
                },
                None => Enqueued {
                    id: JobRef::new(qis[q], first + k as u64)
                        .ok_or_else(|| bad("push: sequence number out of range"))?
                        .id(),
                    existing: false,
                },
            };
            out.push(e);
        }
        Ok(out)
    }

    pub(crate) async fn reserve(
        self: Arc<Self>,
        req: ReserveRequest,
    ) -> Result<Vec<LeasedJob>, RedisError> {
        for q in &req.queues {
            check_queue(q)?;
        }
        if req.max == 0 || req.queues.is_empty() {
            return Ok(Vec::new());
        }
        let lease = millis(req.lease).max(1);
        let n = req.queues.len();
        let start = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % n;
        let mut out = Vec::new();
        for k in 0..n {
            let queue = &req.queues[(start + k) % n];
            let want = req.max - out.len();
            if want == 0 {
                break;
            }
            let qi = self.registry.index(queue).await?;
            let number = lock(&self.worker_numbers)
                .get(req.worker.as_str())
                .and_then(|by_queue| by_queue.get(&qi))
                .cloned();
            let mut args = ScriptArgs::with_capacity(6);
            let now = self.now().as_millis();
            args.int(now)
                .int(want.min(RESERVE_CHUNK) as i64)
                .int(lease)
                .str(self.origin.as_str());
            match number {
                Some(w) => args.str(w),
                None => args.str("").str(req.worker.as_str()),
            };
            let v = self
                .conn
                .script(
                    &scripts::RESERVE,
                    &[&self.keys.queue(queue), &self.keys.unique(queue)],
                    args,
                )
                .await?;
            let items = array(v)?;
            let (Some(first), Some(le), Some(tok)) = (items.first(), items.get(1), items.get(2))
            else {
                return Err(bad("reserve: short reply"));
            };
            // 'x': not computed (the queue may have more); otherwise the next due time.
            if text(first).as_deref() != Some("x") {
                lock(&self.next_due).insert(queue.clone(), opt_int(first)?);
            }
            let lease_expires_at = match opt_int(le)? {
                Some(t) => {
                    // This process's waiters learn of the new lease from the cache (the
                    // script's wake-up token for them is their own, which they ignore).
                    self.note_due(queue, t);
                    Timestamp::from_millis(t)
                }
                None => Timestamp::EPOCH,
            };
            let call = opt_int(tok)?.unwrap_or(0);
            // Then the worker's number if it was not passed, the members of the jobs (16 bytes
            // each, concatenated), a spec per job, then the jobs that ran before: (k, attempt,
            // progress). A paused queue answers with the first three fields only.
            let (Some(again), Some(number)) = (items.get(3), items.get(4)) else {
                continue;
            };
            if let Some(w) = opt_int(number)? {
                let mut known = lock(&self.worker_numbers);
                if known.len() >= MAX_KNOWN_WORKERS {
                    // Worker ids come and go (one per worker started): forget the old ones.
                    known.clear();
                }
                known
                    .entry(req.worker.as_str().to_owned())
                    .or_default()
                    .insert(qi, w.to_string());
            }
            let again = usize::try_from(req_int(again, "reserve: count")?)
                .map_err(|_| bad("reserve: bad count"))?;
            let jobs_end = again
                .checked_mul(3)
                .and_then(|r| items.len().checked_sub(r))
                .filter(|&end| end >= 6)
                .ok_or_else(|| bad("reserve: wrong number of fields"))?;
            let n_jobs = jobs_end - 6;
            let mut repeat: Vec<(u32, Option<serde_json::Value>)> = vec![(1, None); n_jobs];
            let mut items = items;
            for t in items.split_off(jobs_end).chunks_exact(3) {
                let slot = usize::try_from(req_int(&t[0], "reserve: index")?)
                    .ok()
                    .and_then(|k| k.checked_sub(1))
                    .and_then(|k| repeat.get_mut(k))
                    .ok_or_else(|| bad("reserve: bad index"))?;
                *slot = (
                    u32::try_from(req_int(&t[1], "attempt")?).map_err(|_| bad("bad attempt"))?,
                    opt_json(&t[2], "progress")?,
                );
            }
            let mut fields = items.into_iter().skip(5);
            let members = take_text(fields.next().unwrap_or(Value::Nil), "members")?;
            if members.len() != MEMBER_LEN * n_jobs || !members.is_ascii() {
                return Err(bad("reserve: bad members"));
            }
            for ((k, (attempt, progress)), spec) in (1..=n_jobs).zip(repeat).zip(fields) {
                let m = &members[(k - 1) * MEMBER_LEN..k * MEMBER_LEN];
                let r = JobRef::from_member(qi, m).ok_or_else(|| bad("reserve: bad member"))?;
                let spec = spec::decode(&take_text(spec, "spec")?)?;
                // The script's rule: call * 10000 + 2k, odd when the job holds a unique key.
                let token = u64::try_from(call)
                    .ok()
                    .filter(|&c| c >= 1)
                    .and_then(|c| c.checked_mul(TOKEN_SPAN))
                    .and_then(|t| t.checked_add(2 * k as u64))
                    .ok_or_else(|| bad("reserve: bad token"))?
                    + u64::from(spec.unique_key.is_some());
                out.push(LeasedJob {
                    lease: Lease { id: r.id(), token },
                    name: spec.name,
                    queue: queue.clone(),
                    payload: spec.payload,
                    priority: spec.priority,
                    attempt,
                    max_attempts: spec.max_attempts,
                    created_at: spec.created_at,
                    progress,
                    lease_expires_at,
                    trace: spec.trace,
                });
            }
        }
        Ok(out)
    }

    /// Groups items by queue (by their job id), runs `call` per queue concurrently, and puts
    /// the per-item results back in order. Items of unknown queues get `missing`.
    pub(crate) async fn per_queue<T, R, F, Fut>(
        self: &Arc<Self>,
        items: Vec<(JobId, T)>,
        missing: R,
        call: F,
    ) -> Result<Vec<R>, RedisError>
    where
        R: Clone,
        F: Fn(Arc<Self>, String, Vec<(JobRef, T)>) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<R>, RedisError>>,
    {
        let total = items.len();
        let places = self.queues_of(items.iter().map(|(id, _)| *id)).await?;
        let mut groups: Vec<Group<(JobRef, T)>> = Vec::new();
        for (i, ((_, item), place)) in items.into_iter().zip(places).enumerate() {
            let Some((queue, r)) = place else { continue };
            match groups.iter_mut().find(|g| g.0 == queue) {
                Some(g) => {
                    g.1.push(i);
                    g.2.push((r, item));
                }
                None => groups.push((queue, vec![i], vec![(r, item)])),
            }
        }
        let mut out = vec![missing; total];
        let calls = groups.into_iter().map(|(queue, idxs, items)| {
            let fut = call(self.clone(), queue, items);
            async move { Ok::<_, RedisError>((idxs, fut.await?)) }
        });
        for (idxs, results) in try_join_all(calls).await? {
            if results.len() != idxs.len() {
                return Err(bad("wrong number of results"));
            }
            for (i, r) in idxs.into_iter().zip(results) {
                out[i] = r;
            }
        }
        Ok(out)
    }

    pub(crate) async fn finish(
        self: Arc<Self>,
        items: Vec<Finish>,
    ) -> Result<Vec<FinishResult>, RedisError> {
        let items: Vec<(JobId, Finish)> = items.into_iter().map(|f| (f.lease.id, f)).collect();
        let results = self
            .per_queue(items, false, |this, queue, items| async move {
                let now = this.now().as_millis();
                let mut args = ScriptArgs::with_capacity(5 + items.len() * 3);
                args.int(now)
                    .int(this.keep_age_ms)
                    .int(this.keep_count)
                    .str(this.origin.as_str())
                    .int(now - now.rem_euclid(60_000));
                // Completions without a result go first, as bare leases (most items are
                // those): the script then reads one argument per item instead of three.
                // Those holding a unique key (an odd token) come last of them, counted: the
                // script then tells them apart without looking at each lease.
                let (mut plain, other): (Vec<_>, Vec<_>) =
                    items.into_iter().enumerate().partition(|(_, (_, f))| {
                        matches!(f.outcome, Outcome::Completed { result: None })
                    });
                plain.sort_by_key(|(_, (_, f))| f.lease.token % 2);
                let plain_unique = plain.iter().filter(|(_, (_, f))| f.lease.token % 2 == 1);
                args.int(plain.len() as i64)
                    .int(plain_unique.count() as i64);
                let mut order = Vec::with_capacity(plain.len() + other.len());
                for (i, (r, f)) in plain {
                    order.push(i);
                    args.str(lease_entry(r, f.lease.token));
                }
                let mut earliest: Option<i64> = None;
                for (i, (r, f)) in other {
                    order.push(i);
                    args.str(lease_entry(r, f.lease.token));
                    match f.outcome {
                        Outcome::Completed { result } => {
                            let text = match result {
                                Some(v) => serde_json::to_string(&v).map_err(|e| {
                                    RedisError::InvalidInput(format!("result: {e}"))
                                })?,
                                None => String::new(),
                            };
                            args.str("c").str(text);
                        }
                        Outcome::Retry {
                            error,
                            retry_at,
                            kind,
                        } => {
                            let at = retry_at.as_millis();
                            if at > now {
                                earliest = Some(earliest.map_or(at, |e| e.min(at)));
                            }
                            args.str(failure_kind("r", kind)).str(error).int(at);
                        }
                        Outcome::Failed { error, kind } => {
                            args.str(failure_kind("f", kind)).str(error);
                        }
                        Outcome::Snooze { until } => {
                            let at = until.as_millis();
                            if at > now {
                                earliest = Some(earliest.map_or(at, |e| e.min(at)));
                            }
                            args.str("ss").str("").int(at);
                        }
                    }
                }
                let v = this
                    .conn
                    .script(
                        &scripts::FINISH,
                        &[&this.keys.queue(&queue), &this.keys.unique(&queue)],
                        args,
                    )
                    .await?;
                if let Some(e) = earliest {
                    this.note_due(&queue, e);
                }
                // Every item applied: the script answers with their count alone.
                let got = match v {
                    Value::Int(n) if n == order.len() as i64 => vec![true; order.len()],
                    v => flags(v)?,
                };
                if got.len() != order.len() {
                    return Err(bad("finish: wrong number of results"));
                }
                let mut out = vec![false; order.len()];
                for (i, ok) in order.into_iter().zip(got) {
                    out[i] = ok;
                }
                Ok(out)
            })
            .await?;
        Ok(results
            .into_iter()
            .map(|ok| {
                if ok {
                    FinishResult::Applied
                } else {
                    FinishResult::LeaseLost
                }
            })
            .collect())
    }

    pub(crate) async fn heartbeat(
        self: Arc<Self>,
        leases: Vec<Lease>,
        extend: Duration,
    ) -> Result<Vec<Lease>, RedisError> {
        let items: Vec<(JobId, Lease)> = leases.iter().map(|l| (l.id, *l)).collect();
        let ext = millis(extend);
        let ok = self
            .per_queue(items, false, |this, queue, items| async move {
                let mut args = ScriptArgs::with_capacity(2 + items.len() * 2);
                args.int(this.now().as_millis()).int(ext);
                for (r, l) in items {
                    args.str(lease_entry(r, l.token));
                }
                let v = this
                    .conn
                    .script(&scripts::HEARTBEAT, &[&this.keys.queue(&queue)], args)
                    .await?;
                flags(v)
            })
            .await?;
        Ok(leases
            .into_iter()
            .zip(ok)
            .filter(|(_, ok)| !ok)
            .map(|(l, _)| l)
            .collect())
    }

    pub(crate) async fn progress(
        self: Arc<Self>,
        lease: Lease,
        progress: serde_json::Value,
    ) -> Result<bool, RedisError> {
        let text = serde_json::to_string(&progress)
            .map_err(|e| RedisError::InvalidInput(format!("progress: {e}")))?;
        let ok = self
            .per_queue(
                vec![(lease.id, text)],
                false,
                |this, queue, items| async move {
                    let mut out = Vec::new();
                    for (r, text) in items {
                        let mut args = ScriptArgs::with_capacity(2);
                        args.str(lease_entry(r, lease.token)).str(text);
                        let v = this
                            .conn
                            .script(&scripts::PROGRESS, &[&this.keys.queue(&queue)], args)
                            .await?;
                        out.push(req_int(&v, "progress")? == 1);
                    }
                    Ok(out)
                },
            )
            .await?;
        Ok(ok.first().copied().unwrap_or(false))
    }

    pub(crate) async fn release(self: Arc<Self>, leases: Vec<Lease>) -> Result<(), RedisError> {
        let items: Vec<(JobId, Lease)> = leases.iter().map(|l| (l.id, *l)).collect();
        self.per_queue(items, (), |this, queue, items| async move {
            let n = items.len();
            let mut args = ScriptArgs::with_capacity(n + 1);
            args.int(this.now().as_millis());
            for (r, l) in items {
                args.str(lease_entry(r, l.token));
            }
            this.conn
                .script(&scripts::RELEASE, &[&this.keys.queue(&queue)], args)
                .await?;
            Ok(vec![(); n])
        })
        .await?;
        Ok(())
    }

    pub(crate) async fn recover_expired(self: Arc<Self>) -> Result<u64, RedisError> {
        let queues = self.registry.for_recovery(self.now()).await?;
        let mut total = 0u64;
        for queue in queues {
            loop {
                let mut args = ScriptArgs::with_capacity(2);
                args.int(self.now().as_millis()).int(RECOVER_CHUNK);
                let v = self
                    .conn
                    .script(
                        &scripts::RECOVER,
                        &[&self.keys.queue(&queue), &self.keys.unique(&queue)],
                        args,
                    )
                    .await?;
                let n = req_int(&v, "recovered")?;
                total += n.max(0) as u64;
                if n < RECOVER_CHUNK {
                    break;
                }
            }
        }
        Ok(total)
    }

    pub(crate) async fn get(self: Arc<Self>, id: JobId) -> Result<Option<JobRecord>, RedisError> {
        let Some(r) = JobRef::from_id(id) else {
            return Ok(None);
        };
        let Some(queue) = self.registry.name(r.queue_index).await? else {
            return Ok(None);
        };
        let mut args = ScriptArgs::with_capacity(1);
        args.str(r.member());
        let v = self
            .conn
            .script(&scripts::GET, &[&self.keys.queue(&queue)], args)
            .await?;
        let fields = array(v)?;
        if fields.is_empty() {
            return Ok(None);
        }
        job_record(id, &queue, fields).map(Some)
    }

    pub(crate) async fn counts(self: Arc<Self>) -> Result<Vec<QueueCounts>, RedisError> {
        let queues = self.registry.all(self.now()).await?;
        let now = self.now().as_millis();
        let calls = queues.into_iter().map(|(queue, _)| {
            let this = self.clone();
            async move {
                let mut args = ScriptArgs::with_capacity(1);
                args.int(now);
                let v = this
                    .conn
                    .script(&scripts::COUNTS, &[&this.keys.queue(&queue)], args)
                    .await?;
                let a = array(v)?;
                if a.len() != 8 {
                    return Err(bad("counts: wrong number of fields"));
                }
                let n = |i: usize| int(&a[i]).map(|n| n.max(0) as u64).unwrap_or(0);
                let c = QueueCounts {
                    queue,
                    scheduled: n(0),
                    ready: n(1),
                    running: n(2),
                    completed: n(3),
                    failed: n(4),
                    cancelled: n(5),
                    paused: n(6) == 1,
                    oldest_ready_at: opt_int(&a[7])?.map(Timestamp::from_millis),
                };
                Ok::<_, RedisError>(c)
            }
        });
        let mut out: Vec<QueueCounts> = try_join_all(calls)
            .await?
            .into_iter()
            .filter(|c| c.paused || c.live() + c.completed + c.failed + c.cancelled > 0)
            .collect();
        out.sort_by(|a, b| a.queue.cmp(&b.queue));
        Ok(out)
    }

    pub(crate) async fn list(self: Arc<Self>, query: ListQuery) -> Result<Page, RedisError> {
        let limit = query.effective_limit();
        let queues: Vec<(String, u16)> = match &query.queue {
            Some(q) => {
                check_queue(q)?;
                self.registry
                    .all(self.now())
                    .await?
                    .into_iter()
                    .filter(|(name, _)| name == q)
                    .collect()
            }
            None => self.registry.all(self.now()).await?,
        };
        let calls = queues.into_iter().map(|(queue, qi)| {
            let this = self.clone();
            let state = query.state;
            let after = query.after;
            async move {
                let mut args = ScriptArgs::with_capacity(3);
                args.str(state.as_str())
                    .str(member(first_seq_after(after, qi)))
                    .int(limit as i64 + 1);
                let v = this
                    .conn
                    .script(&scripts::LIST, &[&this.keys.queue(&queue)], args)
                    .await?;
                let items = array(v)?;
                let mut out = Vec::with_capacity(items.len() / 2);
                let mut it = items.into_iter();
                while let (Some(m), Some(fields)) = (it.next(), it.next()) {
                    let m = req_text(&m, "member")?;
                    let r = JobRef::from_member(qi, &m).ok_or_else(|| bad("list: bad member"))?;
                    let fields = array(fields)?;
                    if !fields.is_empty() {
                        out.push(job_record(r.id(), &queue, fields)?);
                    }
                }
                Ok::<_, RedisError>(out)
            }
        });
        let mut jobs: Vec<JobRecord> = try_join_all(calls).await?.into_iter().flatten().collect();
        jobs.sort_by_key(|j| j.id);
        let next = if jobs.len() > limit {
            jobs.truncate(limit);
            jobs.last().map(|j| j.id)
        } else {
            None
        };
        Ok(Page { jobs, next })
    }

    pub(crate) async fn retry(self: Arc<Self>, id: JobId) -> Result<RetryOutcome, RedisError> {
        let Some(r) = JobRef::from_id(id) else {
            return Ok(RetryOutcome::NotFound);
        };
        let Some(queue) = self.registry.name(r.queue_index).await? else {
            return Ok(RetryOutcome::NotFound);
        };
        let mut args = ScriptArgs::with_capacity(2);
        args.int(self.now().as_millis()).str(r.member());
        let v = self
            .conn
            .script(
                &scripts::RETRY,
                &[&self.keys.queue(&queue), &self.keys.unique(&queue)],
                args,
            )
            .await?;
        let a = array(v)?;
        match a.first().and_then(int) {
            Some(0) => Ok(RetryOutcome::NotFound),
            Some(1) => Ok(RetryOutcome::Retried),
            Some(2) => Ok(RetryOutcome::NotRetryable(state_of(a.get(1))?)),
            Some(3) => {
                let key = req_text(a.get(1).unwrap_or(&Value::Nil), "holder")?;
                Ok(RetryOutcome::UniqueConflict(
                    self.id_of_job_key(&key).await?,
                ))
            }
            _ => Err(bad("retry: unexpected reply")),
        }
    }

    pub(crate) async fn cancel(self: Arc<Self>, id: JobId) -> Result<CancelOutcome, RedisError> {
        let Some(r) = JobRef::from_id(id) else {
            return Ok(CancelOutcome::NotFound);
        };
        let Some(queue) = self.registry.name(r.queue_index).await? else {
            return Ok(CancelOutcome::NotFound);
        };
        let mut args = ScriptArgs::with_capacity(2);
        args.int(self.now().as_millis()).str(r.member());
        let v = self
            .conn
            .script(
                &scripts::CANCEL,
                &[&self.keys.queue(&queue), &self.keys.unique(&queue)],
                args,
            )
            .await?;
        let a = array(v)?;
        match a.first().and_then(int) {
            Some(0) => Ok(CancelOutcome::NotFound),
            Some(1) => Ok(CancelOutcome::Cancelled),
            Some(2) => Ok(CancelOutcome::AlreadyFinal(state_of(a.get(1))?)),
            _ => Err(bad("cancel: unexpected reply")),
        }
    }

    pub(crate) async fn purge(
        self: Arc<Self>,
        states: Vec<JobState>,
        before: Timestamp,
    ) -> Result<u64, RedisError> {
        if let Some(s) = states.iter().find(|s| !s.is_final()) {
            return Err(RedisError::InvalidInput(format!(
                "cannot purge {s} jobs: only completed, failed and cancelled jobs can be purged"
            )));
        }
        if states.is_empty() {
            return Ok(0);
        }
        let mut total = 0u64;
        for (queue, _) in self.registry.all(self.now()).await? {
            for state in &states {
                let mut cursor = String::new();
                loop {
                    let mut args = ScriptArgs::with_capacity(4);
                    args.str(state.as_str())
                        .int(before.as_millis())
                        .int(PURGE_CHUNK)
                        .str(cursor.as_str());
                    let v = self
                        .conn
                        .script(&scripts::PURGE, &[&self.keys.queue(&queue)], args)
                        .await?;
                    let a = array(v)?;
                    let n = a
                        .first()
                        .and_then(int)
                        .ok_or_else(|| bad("purge: bad reply"))?;
                    total += n.max(0) as u64;
                    match a.get(1).and_then(text) {
                        Some(next) => cursor = next,
                        None => break,
                    }
                }
            }
        }
        Ok(total)
    }

    pub(crate) async fn set_paused(
        self: Arc<Self>,
        queue: String,
        paused: bool,
    ) -> Result<(), RedisError> {
        check_queue(&queue)?;
        self.registry.index(&queue).await?;
        let mut args = ScriptArgs::with_capacity(1);
        args.str(if paused { "1" } else { "0" });
        self.conn
            .script(&scripts::PAUSE, &[&self.keys.queue(&queue)], args)
            .await?;
        Ok(())
    }

    /// Sets (or with [`QueueLimits::NONE`] removes) the flow limits of `queue`.
    ///
    /// The limits live in the queue's slot (`{prefix:queue}:lim`); the set of limited queues
    /// (`{prefix}:limited`, another slot on a cluster) is kept apart for `queue_flows`. It may
    /// list a queue without limits, never miss one that has them: a setter adds the queue
    /// after storing its limits, and a remover takes it out after removing them, then puts it
    /// back if a setter stored limits meanwhile.
    pub(crate) async fn set_queue_limits(
        self: Arc<Self>,
        queue: String,
        limits: QueueLimits,
    ) -> Result<(), RedisError> {
        check_queue(&queue)?;
        limits.validate().map_err(RedisError::InvalidInput)?;
        let mut args = ScriptArgs::with_capacity(7);
        match limits.concurrency {
            Some(c) => args.int(i64::from(c)),
            None => args.str(""),
        };
        match limits.rate {
            Some(r) => args.int(i64::from(r.max)).int(millis(r.per)),
            None => args.str("").str(""),
        };
        match limits.group_concurrency {
            Some(g) => args.int(i64::from(g)),
            None => args.str(""),
        };
        match limits.group_rate {
            Some(r) => args.int(i64::from(r.max)).int(millis(r.per)),
            None => args.str("").str(""),
        };
        // The group rate's window is checked by the clock of the process that sets it.
        args.int(self.now().as_millis());
        let registry = self.keys.limited();
        let listed = |add: bool| {
            let mut cmd = redis::cmd(if add { "SADD" } else { "SREM" });
            cmd.arg(&registry).arg(&queue);
            cmd
        };
        if !limits.is_none() {
            // Listed before too: a call cut short after the script leaves no limits unlisted.
            self.conn.query(&listed(true)).await?;
        }
        self.conn
            .script(&scripts::LIMITS, &[&self.keys.queue(&queue)], args)
            .await?;
        if !limits.is_none() {
            self.conn.query(&listed(true)).await?;
            return Ok(());
        }
        self.conn.query(&listed(false)).await?;
        let exists = self
            .conn
            .query(redis::cmd("EXISTS").arg(self.keys.limits(&queue)))
            .await?;
        if req_int(&exists, "exists")? == 1 {
            self.conn.query(&listed(true)).await?;
        }
        Ok(())
    }

    /// Holds `queue` back until `until`: a field of its limits (`{prefix:queue}:lim`), so
    /// every process obeys it, and the queue is listed with the limited ones (before and
    /// after the script, as `set_queue_limits` does) for `queue_flows`. A hold only
    /// lengthens. This process's cached due time of the queue is dropped, so its waiters
    /// read the hold's end; the script wakes one waiter of another process to read it too.
    pub(crate) async fn hold_queue(
        self: Arc<Self>,
        queue: String,
        until: Timestamp,
    ) -> Result<(), RedisError> {
        check_queue(&queue)?;
        let mut listed = redis::cmd("SADD");
        listed.arg(self.keys.limited()).arg(&queue);
        self.conn.query(&listed).await?;
        let mut args = ScriptArgs::with_capacity(2);
        args.int(until.as_millis()).str(self.origin.as_str());
        self.conn
            .script(&scripts::HOLD, &[&self.keys.queue(&queue)], args)
            .await?;
        lock(&self.next_due).remove(&queue);
        self.conn.query(&listed).await?;
        Ok(())
    }

    /// Every queue with flow limits or a hold in force, sorted by name, and where each
    /// stands against them.
    pub(crate) async fn queue_flows(self: Arc<Self>) -> Result<Vec<QueueFlow>, RedisError> {
        let v = self
            .conn
            .query(redis::cmd("SMEMBERS").arg(self.keys.limited()))
            .await?;
        let mut queues = Vec::new();
        for q in array(v)? {
            queues.push(take_text(q, "queue")?);
        }
        let now = self.now().as_millis();
        let calls = queues.into_iter().map(|queue| {
            let this = self.clone();
            async move {
                let mut args = ScriptArgs::with_capacity(1);
                args.int(now);
                let v = this
                    .conn
                    .script(&scripts::FLOWS, &[&this.keys.queue(&queue)], args)
                    .await?;
                flow(queue, array(v)?)
            }
        });
        let mut out: Vec<QueueFlow> = try_join_all(calls).await?.into_iter().flatten().collect();
        out.sort_by(|a, b| a.queue.cmp(&b.queue));
        Ok(out)
    }

    /// One page of a queue's groups by key (bytes) with their limit state, from the `groups`
    /// script: one call, which collects the queue's G groups (O(G log G)) and reads a few
    /// keys per group it walks, the page and the groups found with nothing left.
    pub(crate) async fn queue_groups(
        self: Arc<Self>,
        query: GroupQuery,
    ) -> Result<GroupPage, RedisError> {
        check_queue(&query.queue)?;
        let limit = query.effective_limit();
        let mut args = ScriptArgs::with_capacity(3);
        args.int(self.now().as_millis())
            .str(query.after.clone().unwrap_or_default())
            .int(i64::try_from(limit + 1).unwrap_or(i64::MAX));
        let v = self
            .conn
            .script(&scripts::GROUPS, &[&self.keys.queue(&query.queue)], args)
            .await?;
        group_page(array(v)?, limit)
    }

    /// The earliest time something in `queues` may become ready by itself, from this
    /// process's cache (asking Redis for queues it has not seen yet).
    pub(crate) async fn next_due(
        self: &Arc<Self>,
        queues: &[String],
    ) -> Result<Option<i64>, RedisError> {
        let unknown: Vec<String> = {
            let m = lock(&self.next_due);
            queues
                .iter()
                .filter(|q| !m.contains_key(*q))
                .cloned()
                .collect()
        };
        for q in unknown {
            let mut args = ScriptArgs::with_capacity(1);
            args.int(self.now().as_millis());
            let v = self
                .conn
                .script(&scripts::DUE, &[&self.keys.queue(&q)], args)
                .await?;
            let due = opt_int(&v)?;
            lock(&self.next_due).entry(q).or_insert(due);
        }
        let m = lock(&self.next_due);
        Ok(queues
            .iter()
            .filter_map(|q| m.get(q).copied().flatten())
            .min())
    }

    /// The id of the job named by a job ref (`{prefix:queue}:j:<member>`).
    pub(crate) async fn id_of_job_key(&self, key: &str) -> Result<JobId, RedisError> {
        let (queue, member) = self
            .keys
            .parse_job_key(key)
            .ok_or_else(|| bad(format!("not a job key: {key}")))?;
        let qi = self.registry.index(queue).await?;
        JobRef::from_member(qi, member)
            .map(JobRef::id)
            .ok_or_else(|| bad(format!("not a job key: {key}")))
    }

    /// Whether a popped wake-up token is this process's own "scheduled time moved" token,
    /// which it already knows about.
    pub(crate) fn is_own_token(&self, token: &str) -> bool {
        token.strip_prefix("s:") == Some(self.origin.as_str())
    }

    pub(crate) fn wake_key(&self, queue: &str) -> String {
        self.keys.wake(queue)
    }
}

/// How `push_jobs` (`lib.lua`) reads a batch's jobs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Form {
    /// Spec and ready score: every job ready now, without a unique key or a group.
    Plain,
    /// Spec alone: a plain batch of one queue whose jobs have one priority (its ready score
    /// is sent once, before the jobs).
    Uniform,
    /// Also run_at and unique key.
    Full,
    /// Also run_at, unique key and group.
    Grouped,
}

impl Form {
    /// The form's code in the push script's arguments.
    fn code(self) -> &'static str {
        match self {
            Form::Plain => "p",
            Form::Uniform => "u",
            Form::Full => "f",
            Form::Grouped => "g",
        }
    }
}

/// A job's arguments to `push_jobs` (`lib.lua`): its spec and ready score, in the full forms
/// its run_at and unique key, and in the grouped form its group.
pub(crate) fn job_args(args: &mut ScriptArgs, j: &NewJob, now: Timestamp, form: Form) {
    let spec = spec::encode(
        j.unique_key.as_deref(),
        &j.name,
        j.priority,
        j.max_attempts,
        now,
        j.run_at,
        j.trace.as_deref(),
        &j.payload,
    );
    args.str(spec);
    if form == Form::Uniform {
        return;
    }
    // The ready score, so the script passes it on untouched.
    args.int(-i64::from(j.priority));
    if form != Form::Plain {
        args.int(j.run_at.as_millis())
            .str(j.unique_key.as_deref().unwrap_or_default());
    }
    if form == Form::Grouped {
        args.str(j.group.as_deref().unwrap_or_default());
    }
}

/// What `push_jobs` (`lib.lua`) reports: the first sequence number, then per job whose
/// unique key was held, its place (from 1) and the holder's job ref.
fn pushed(what: &str, items: &[Value]) -> Result<(u64, HashMap<usize, String>), RedisError> {
    let first = items
        .first()
        .and_then(int)
        .and_then(|s| u64::try_from(s).ok())
        .ok_or_else(|| bad(format!("{what}: no first sequence number")))?;
    let mut held: HashMap<usize, String> = HashMap::new();
    let mut rest = items[1..].iter();
    while let (Some(i), Some(h)) = (rest.next(), rest.next()) {
        let i = int(i)
            .and_then(|i| usize::try_from(i).ok())
            .ok_or_else(|| bad(format!("{what}: bad place")))?;
        held.insert(i, req_text(h, "holder")?);
    }
    Ok((first, held))
}

/// A queue's flow as the `flows` script reports it (`None`: the queue has no limits and no
/// hold in force).
fn flow(queue: String, a: Vec<Value>) -> Result<Option<QueueFlow>, RedisError> {
    if a.is_empty() {
        return Ok(None);
    }
    let [c, rm, rp, running, starts, next, g, held, groups, groups_full, gm, gp, held_in_groups]: [Value; 13] = a
        .try_into()
        .map_err(|_| bad("flows: wrong number of fields"))?;
    let count = |v: &Value, what: &str| -> Result<Option<u64>, RedisError> {
        opt_int(v)?
            .map(|n| u64::try_from(n).map_err(|_| bad(format!("flows: bad {what}"))))
            .transpose()
    };
    let small = |v: &Value, what: &str| -> Result<Option<u32>, RedisError> {
        count(v, what)?
            .map(|n| u32::try_from(n).map_err(|_| bad(format!("flows: bad {what}"))))
            .transpose()
    };
    let rate_of = |max: &Value, per: &Value, what: &str| -> Result<_, RedisError> {
        Ok(match (small(max, what)?, count(per, what)?) {
            (Some(max), Some(per)) => Some(RateLimit::new(max, Duration::from_millis(per))),
            _ => None,
        })
    };
    let rate = rate_of(&rm, &rp, "rate")?;
    let group_rate = rate_of(&gm, &gp, "group rate")?;
    Ok(Some(QueueFlow {
        queue,
        limits: QueueLimits {
            concurrency: small(&c, "concurrency")?,
            rate,
            group_concurrency: small(&g, "group concurrency")?,
            group_rate,
        },
        running: count(&running, "running")?.unwrap_or(0),
        starts_in_window: count(&starts, "starts")?.unwrap_or(0),
        next_start_at: opt_int(&next)?.map(Timestamp::from_millis),
        held_until: opt_int(&held)?.map(Timestamp::from_millis),
        groups_running: count(&groups, "groups running")?.unwrap_or(0),
        groups_at_limit: count(&groups_full, "groups at their limit")?.unwrap_or(0),
        held_in_groups: count(&held_in_groups, "jobs held in groups")?.unwrap_or(0),
    }))
}

/// A page of groups as the `groups` script reports it: whether due jobs were left
/// unpromoted, then six fields per group, at most `limit + 1` groups (one more than the page
/// says a group is left after it).
fn group_page(a: Vec<Value>, limit: usize) -> Result<GroupPage, RedisError> {
    let mut it = a.into_iter();
    let left = it
        .next()
        .map(|v| req_int(&v, "groups: due jobs left"))
        .transpose()?
        .ok_or_else(|| bad("groups: empty reply"))?
        != 0;
    let count = |v: &Value, what: &str| -> Result<u64, RedisError> {
        u64::try_from(req_int(v, what)?).map_err(|_| bad(format!("groups: bad {what}")))
    };
    let mut groups = Vec::new();
    let mut more = false;
    loop {
        let Some(g) = it.next() else { break };
        let (Some(ready), Some(running), Some(starts), Some(full), Some(opens)) =
            (it.next(), it.next(), it.next(), it.next(), it.next())
        else {
            return Err(bad("groups: wrong number of fields"));
        };
        if groups.len() == limit {
            more = true;
            break;
        }
        let ready = count(&ready, "ready jobs")?;
        groups.push(GroupFlow {
            group: take_text(g, "group")?,
            ready: Total {
                count: ready.min(TOTAL_BOUND),
                // Due jobs the script left unpromoted may be some group's: a lower bound then.
                exact: ready <= TOTAL_BOUND && !left,
            },
            running: count(&running, "running jobs")?,
            starts_in_window: count(&starts, "starts")?,
            at_limit: req_int(&full, "at limit")? == 1,
            next_start_at: opt_int(&opens)?.map(Timestamp::from_millis),
        });
    }
    let next = if more {
        groups.last().map(|g| g.group.clone())
    } else {
        None
    };
    Ok(GroupPage { groups, next })
}

/// A running job's entry in its queue's lease set: `<member>:<token>`.
fn lease_entry(r: JobRef, token: u64) -> String {
    format!("{}:{token}", r.member())
}

/// A failed outcome's kind for the finish script: `r` (retry) or `f` (failed), then the
/// attempt's code in the history (see `archive` in `lib.lua`).
fn failure_kind(what: &'static str, kind: FailureKind) -> String {
    let code = match kind {
        FailureKind::Error => what,
        FailureKind::TimedOut => "t",
        FailureKind::Panicked => "p",
    };
    format!("{what}{code}")
}

fn flags(v: Value) -> Result<Vec<bool>, RedisError> {
    array(v)?
        .iter()
        .map(|x| req_int(x, "flag").map(|n| n == 1))
        .collect()
}

pub(crate) fn state_of(v: Option<&Value>) -> Result<JobState, RedisError> {
    let s = req_text(v.unwrap_or(&Value::Nil), "state")?;
    s.parse().map_err(|e| bad(format!("{e}")))
}

/// The value of `CONFIG GET maxmemory-policy` (a pair, or a map in RESP3, or per node).
fn eviction_policy(v: Value) -> Option<String> {
    match v {
        Value::Array(a) => {
            if a.len() == 2 && text(&a[0]).as_deref() == Some("maxmemory-policy") {
                return text(&a[1]);
            }
            a.into_iter().find_map(eviction_policy)
        }
        Value::Map(m) => m
            .into_iter()
            .find_map(|(_, v)| text(&v).or_else(|| eviction_policy(v))),
        _ => None,
    }
}
