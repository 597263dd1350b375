//! Firing schedules: per slot, one `cron_fire` script checks each schedule's revision and
//! cursor, pushes its ticks' jobs (the push script's own code, from `lib.lua`) and moves the
//! cursor, so of any number of concurrent firers exactly one fires a tick.
//!
//! A fire goes to the slot of the queue its ticks' jobs go to: a schedule's own queue, since
//! the jobs are made from its definition (a fire whose jobs go elsewhere was planned from
//! another definition, so it finds no schedule there and is stale). A fire without ticks (it
//! skips missed ticks, or ends the schedule) finds its queue from the schedules this process
//! last read, else from the index. On a single server all fires are one script call; on a
//! cluster, one call per queue (in parallel), after one `INCRBY` that takes the sequence
//! numbers of all the batch's ticks (the counter lives in another slot).

use std::sync::Arc;

use futures_util::future::try_join_all;
use kosh_jobs_core::backend::{validate_job_name, validate_queue_name};
use kosh_jobs_core::schedule::{FireOutcome, ScheduleFire};
use kosh_jobs_core::{Enqueued, JobId};
use redis::Value;

use super::schedule_record::time_arg;
use super::{check_queue, job_args, lock, pushed, Form, Shared};
use crate::conn::ScriptArgs;
use crate::decode::{array, bad, int, req_int, text};
use crate::error::RedisError;
use crate::keys::JobRef;
use crate::scripts;

/// A fire with its place in the caller's batch, and whether its queue is a cached guess.
struct Placed {
    at: usize,
    fire: ScheduleFire,
    guessed: bool,
    /// Its first sequence number (cluster only: taken before the call).
    first: Option<u64>,
}

/// Checks the jobs of a fire as push does, and that they all go to one queue.
fn check_fire(f: &ScheduleFire) -> Result<(), RedisError> {
    let invalid = |e: String| RedisError::InvalidInput(format!("schedule {:?}: {e}", f.id));
    for t in &f.ticks {
        validate_queue_name(&t.job.queue).map_err(invalid)?;
        validate_job_name(&t.job.name).map_err(invalid)?;
        if t.job.max_attempts == 0 {
            return Err(invalid(format!(
                "job `{}`: max_attempts must be at least 1",
                t.job.name
            )));
        }
        if f.ticks
            .first()
            .is_some_and(|t0| t0.job.queue != t.job.queue)
        {
            return Err(invalid("the jobs of one fire must go to one queue".into()));
        }
    }
    Ok(())
}

impl Shared {
    pub(crate) async fn fire_schedules(
        self: Arc<Self>,
        fires: Vec<ScheduleFire>,
    ) -> Result<Vec<FireOutcome>, RedisError> {
        for f in &fires {
            check_fire(f)?;
        }
        let n = fires.len();
        // Each fire's queue: its jobs', else the cached one, else the index's.
        let mut placed: Vec<(Option<String>, Placed)> = Vec::with_capacity(n);
        let mut unknown: Vec<usize> = Vec::new();
        {
            let cache = lock(&self.schedule_queues);
            for (at, fire) in fires.into_iter().enumerate() {
                let (queue, guessed) = match fire.ticks.first() {
                    Some(t) => (Some(t.job.queue.clone()), false),
                    None => (cache.get(&fire.id).cloned(), true),
                };
                if queue.is_none() {
                    unknown.push(at);
                }
                let p = Placed {
                    at,
                    fire,
                    guessed,
                    first: None,
                };
                placed.push((queue, p));
            }
        }
        if !unknown.is_empty() {
            let mut hmget = redis::cmd("HMGET");
            hmget.arg(self.keys.schedule_index());
            for &i in &unknown {
                hmget.arg(&placed[i].1.fire.id);
            }
            let found = array(self.conn.query(&hmget).await?)?;
            for (&i, q) in unknown.iter().zip(&found) {
                placed[i].0 = text(q).filter(|q| check_queue(q).is_ok());
                placed[i].1.guessed = false;
            }
        }
        let mut out = vec![FireOutcome::Stale; n];
        // Fires of no known schedule are stale without a call.
        let mut groups: Vec<(String, Vec<Placed>)> = Vec::new();
        for (queue, p) in placed {
            let Some(queue) = queue else { continue };
            match groups.iter_mut().find(|(q, _)| *q == queue) {
                Some((_, g)) => g.push(p),
                None => groups.push((queue, vec![p])),
            }
        }
        if groups.is_empty() {
            return Ok(out);
        }
        let done = if self.conn.is_cluster() {
            let ticks: usize = groups
                .iter()
                .flat_map(|(_, g)| g.iter().map(|p| p.fire.ticks.len()))
                .sum();
            if ticks > 0 {
                // The counter lives in another slot: take every tick's number first.
                let v = self
                    .conn
                    .query(redis::cmd("INCRBY").arg(self.keys.seq()).arg(ticks as i64))
                    .await?;
                let mut next = req_int(&v, "sequence")? - ticks as i64 + 1;
                for (_, g) in &mut groups {
                    for p in g.iter_mut().filter(|p| !p.fire.ticks.is_empty()) {
                        p.first = u64::try_from(next).ok();
                        next += p.fire.ticks.len() as i64;
                    }
                }
            }
            let calls = groups.into_iter().map(|(queue, g)| {
                let this = self.clone();
                async move {
                    this.fire_call(std::slice::from_ref(&queue), vec![(0, g)])
                        .await
                }
            });
            try_join_all(calls).await?.into_iter().flatten().collect()
        } else {
            let (queues, gs): (Vec<String>, Vec<Vec<Placed>>) = groups.into_iter().unzip();
            self.fire_call(&queues, gs.into_iter().enumerate().collect())
                .await?
        };
        for (at, outcome) in done {
            out[at] = outcome;
        }
        Ok(out)
    }

    /// One `cron_fire` call for fires of `queues` (several on a single server only), each
    /// group tagged with its queue's place in `queues`. Returns each fire's place and outcome.
    async fn fire_call(
        &self,
        queues: &[String],
        groups: Vec<(usize, Vec<Placed>)>,
    ) -> Result<Vec<(usize, FireOutcome)>, RedisError> {
        let mut qis = Vec::with_capacity(queues.len());
        for q in queues {
            qis.push(self.registry.index(q).await?);
        }
        let (Some(first_queue), Some(first_base)) =
            (queues.first(), queues.first().map(|q| self.keys.queue(q)))
        else {
            return Ok(Vec::new());
        };
        let uniq = self.keys.unique(first_queue);
        let seq_key = self.keys.seq();
        let bases: Vec<String> = queues[1..].iter().map(|q| self.keys.queue(q)).collect();
        let mut keys: Vec<&str> = vec![&first_base, &uniq];
        if !self.conn.is_cluster() {
            keys.push(&seq_key);
            keys.extend(bases.iter().map(String::as_str));
        }
        let now = self.now();
        let fires: Vec<(usize, Placed)> = groups
            .into_iter()
            .flat_map(|(q, g)| g.into_iter().map(move |p| (q, p)))
            .collect();
        let mut args = ScriptArgs::with_capacity(3 + fires.len() * 9);
        args.int(now.as_millis())
            .str(self.origin.as_str())
            .int(fires.len() as i64);
        for (q, p) in &fires {
            let f = &p.fire;
            args.int(*q as i64 + 1)
                .str(f.id.as_str())
                .str(f.revision.to_string())
                .int(f.cursor.as_millis());
            time_arg(&mut args, f.next_fire);
            args.str(if f.skip_if_live { "1" } else { "0" });
            match p.first {
                Some(first) => args.str(first.to_string()),
                None => args.str(""),
            };
            time_arg(&mut args, f.ticks.last().map(|t| t.at));
            args.int(f.ticks.len() as i64);
            for t in &f.ticks {
                // With the schedule's group, if any (`push_jobs` in its grouped form).
                job_args(&mut args, &t.job, now, Form::Grouped);
            }
        }
        let v = self.conn.script(&scripts::CRON_FIRE, &keys, args).await?;
        let replies = array(v)?;
        if replies.len() != fires.len() {
            return Err(bad("cron_fire: one reply per fire expected"));
        }
        let mut out = Vec::with_capacity(fires.len());
        for ((q, p), reply) in fires.into_iter().zip(replies) {
            let outcome = self.fire_outcome(&queues[q], qis[q], &p, reply).await?;
            if outcome == FireOutcome::Stale && p.guessed {
                // The cached queue may be out of date: ask the index next time.
                self.forget_schedule(&p.fire.id);
            }
            out.push((p.at, outcome));
        }
        Ok(out)
    }

    /// A fire's outcome from its part of the reply (see `cron_fire.lua`).
    async fn fire_outcome(
        &self,
        queue: &str,
        qi: u16,
        p: &Placed,
        reply: Value,
    ) -> Result<FireOutcome, RedisError> {
        let a = array(reply)?;
        match a.first().and_then(int) {
            Some(0) => return Ok(FireOutcome::Stale),
            Some(2) => return Ok(FireOutcome::Overlapping),
            Some(1) => {}
            _ => return Err(bad("cron_fire: unexpected reply")),
        }
        let ticks = &p.fire.ticks;
        if ticks.is_empty() {
            return Ok(FireOutcome::Fired(Vec::new()));
        }
        let (first, held) = pushed("cron_fire", &a[1..])?;
        let now = self.now().as_millis();
        let mut jobs = Vec::with_capacity(ticks.len());
        for (k, t) in ticks.iter().enumerate() {
            jobs.push(match held.get(&(k + 1)) {
                Some(h) => Enqueued {
                    id: self.id_of_job_key(h).await?,
                    existing: true,
                },
                None => {
                    let ra = t.job.run_at.as_millis();
                    if ra > now {
                        self.note_due(queue, ra);
                    }
                    Enqueued {
                        id: job_id(qi, first + k as u64)?,
                        existing: false,
                    }
                }
            });
        }
        Ok(FireOutcome::Fired(jobs))
    }
}

fn job_id(qi: u16, seq: u64) -> Result<JobId, RedisError> {
    JobRef::new(qi, seq)
        .map(JobRef::id)
        .ok_or_else(|| bad("cron_fire: sequence number out of range"))
}
