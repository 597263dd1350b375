//! Schedules: stored under their queue's hash tag, found by id through a prefix-wide index.
//!
//! A schedule lives in the slot of the queue its jobs go to (`{prefix:queue}:cron`, and
//! `{prefix:queue}:crondue` while it is unpaused and has a cursor), so firing it (check the
//! cursor, push the jobs, move the cursor) is one script in one slot, atomic on Redis Cluster
//! too; see `schedule_fire.rs`. The index `{prefix}:cronids` (id → queue) lives in another
//! slot and is written with commands of its own, so it can disagree with the queues for a
//! moment. The writes come in an order that keeps every schedule that existed visible and
//! fired by one queue only:
//!
//! - create: the record, then the index entry. A crash between them leaves a record no read
//!   sees and nothing fires (the create did not happen); the next upsert of it finds the record
//!   and adds the entry.
//! - move to another queue (an upsert whose queue changed): read the old record, write the new
//!   one (its runs, paused state and last fire carried over), point the index at it, then
//!   take the old one away (catching up on a pause or a fire it saw meanwhile). Until the
//!   index moves, reads see the old record; after, the new one. A crash in between leaves a
//!   copy that no read returns (reads keep only the record of the queue the index names), so
//!   no worker plans a fire from it; a fire planned from the old record before the move still
//!   fires that old revision's tick in the old queue, as it would have just before the upsert.
//! - remove: the record, then the index entry. A crash between them leaves an entry whose
//!   queue has no record: reads skip it, and the next upsert or remove replaces it.
//!
//! Concurrent calls on one id that both change the index (two upserts moving it to different
//! queues, a remove during a move) can leave a record the index does not name: it never
//! fires, and the next upsert into that queue replaces it.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::try_join_all;
use kosh_jobs_core::schedule::{Resumed, ScheduleDef, ScheduleRecord, Upserted};
use kosh_jobs_core::Timestamp;
use tracing::warn;

use super::schedule_record::{pairs, parse_stored, time_arg, Stored};
use super::{check_queue, lock, Shared};
use crate::conn::ScriptArgs;
use crate::decode::{array, bad, int, text};
use crate::error::RedisError;
use crate::scripts;

impl Shared {
    /// The queue the index names for schedule `id` (`None`: no entry, or not a queue name).
    async fn schedule_queue(&self, id: &str) -> Result<Option<String>, RedisError> {
        let v = self
            .conn
            .query(redis::cmd("HGET").arg(self.keys.schedule_index()).arg(id))
            .await?;
        Ok(text(&v).filter(|q| check_queue(q).is_ok()))
    }

    /// The whole index (id → queue), which also becomes the cache `fire_schedules` uses to
    /// find the queue of a fire without ticks.
    async fn schedule_index(&self) -> Result<HashMap<String, String>, RedisError> {
        let v = self
            .conn
            .query(redis::cmd("HGETALL").arg(self.keys.schedule_index()))
            .await?;
        let index: HashMap<String, String> = pairs(v)?
            .into_iter()
            .filter(|(_, q)| check_queue(q).is_ok())
            .collect();
        *lock(&self.schedule_queues) = index.clone();
        Ok(index)
    }

    pub(super) fn remember_schedule(&self, id: &str, queue: &str) {
        lock(&self.schedule_queues).insert(id.to_owned(), queue.to_owned());
    }

    pub(super) fn forget_schedule(&self, id: &str) {
        lock(&self.schedule_queues).remove(id);
    }

    /// The raw record of schedule `id` in `queue`'s slot.
    async fn raw_schedule(&self, queue: &str, id: &str) -> Result<Option<String>, RedisError> {
        let v = self
            .conn
            .query(redis::cmd("HGET").arg(self.keys.schedules(queue)).arg(id))
            .await?;
        Ok(text(&v))
    }

    /// A stored record as the contract's record.
    async fn schedule_record(&self, id: &str, raw: &str) -> Result<ScheduleRecord, RedisError> {
        let s = parse_stored(raw).ok_or_else(|| bad(format!("schedule {id:?}: bad record")))?;
        let def: ScheduleDef = serde_json::from_str(s.def)
            .map_err(|e| bad(format!("schedule {id:?}: bad definition: {e}")))?;
        let last_job = match s.last_job {
            "" => None,
            r => Some(self.id_of_job_key(r).await?),
        };
        Ok(ScheduleRecord {
            def,
            revision: s.revision,
            paused: s.paused,
            next_fire: s.next_fire,
            last_fire: s.last_fire,
            last_job,
            runs: s.runs,
        })
    }

    /// Records of a list read; one that cannot be read is left out with a warning rather
    /// than hiding every other schedule.
    async fn schedule_records(
        &self,
        raws: Vec<(String, String)>,
    ) -> Result<Vec<ScheduleRecord>, RedisError> {
        let mut out = Vec::with_capacity(raws.len());
        for (id, raw) in raws {
            match self.schedule_record(&id, &raw).await {
                Ok(r) => out.push(r),
                Err(RedisError::Protocol(e)) => {
                    warn!(schedule = %id, error = %e, "cannot read a stored schedule; left out")
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// One call of `cron_upsert` in `queue`'s slot: the outcome code and the revision.
    async fn cron_upsert(
        &self,
        queue: &str,
        def: &ScheduleDef,
        json: &str,
        next_fire: Option<Timestamp>,
        mode: &str,
        carry: Option<(u64, &Stored<'_>)>,
    ) -> Result<(i64, u64), RedisError> {
        let mut args = ScriptArgs::with_capacity(9);
        args.str(def.id.as_str()).str(json);
        time_arg(&mut args, next_fire);
        args.str(mode);
        if let Some((rev, s)) = carry {
            args.str(rev.to_string())
                .str(if s.paused { "1" } else { "0" });
            time_arg(&mut args, s.last_fire);
            args.str(s.runs.to_string()).str(s.last_job);
        }
        let v = self
            .conn
            .script(&scripts::CRON_UPSERT, &[&self.keys.queue(queue)], args)
            .await?;
        let a = array(v)?;
        let code = a
            .first()
            .and_then(int)
            .ok_or_else(|| bad("cron_upsert: bad reply"))?;
        let rev = a.get(1).and_then(int).map_or(0, |r| r.max(0) as u64);
        Ok((code, rev))
    }

    pub(crate) async fn upsert_schedule(
        self: Arc<Self>,
        def: ScheduleDef,
        next_fire: Option<Timestamp>,
    ) -> Result<Upserted, RedisError> {
        def.validate().map_err(RedisError::InvalidInput)?;
        let json = def.to_json();
        let queue = def.queue.as_str();
        let indexed = self.schedule_queue(&def.id).await?;
        let from = indexed.as_deref().filter(|q| *q != queue);
        let old_raw = match from {
            Some(q) => self.raw_schedule(q, &def.id).await?,
            None => None,
        };
        let old = old_raw.as_deref().and_then(parse_stored);
        let (code, rev) = match &old {
            Some(s) => {
                self.cron_upsert(queue, &def, &json, next_fire, "m", Some((s.revision, s)))
                    .await?
            }
            None => {
                self.cron_upsert(queue, &def, &json, next_fire, "n", None)
                    .await?
            }
        };
        if indexed.as_deref() != Some(queue) {
            let mut hset = redis::cmd("HSET");
            hset.arg(self.keys.schedule_index()).arg(&def.id).arg(queue);
            self.conn.query(&hset).await?;
        }
        self.remember_schedule(&def.id, queue);
        if let Some(from) = from {
            let mut args = ScriptArgs::with_capacity(2);
            args.str("take").str(def.id.as_str());
            let v = self
                .conn
                .script(&scripts::CRON_EDIT, &[&self.keys.queue(from)], args)
                .await?;
            // Paused, or fired, in the old queue since it was read: carry that over too.
            if let (Some(taken), Some(old)) = (text(&v), &old) {
                if let Some(now) = parse_stored(&taken).filter(|t| t != old) {
                    self.cron_upsert(queue, &def, &json, next_fire, "c", Some((rev, &now)))
                        .await?;
                }
            }
        }
        match code {
            1 => Ok(Upserted::Created),
            2 => Ok(Upserted::Replaced),
            3 => Ok(Upserted::Unchanged),
            _ => Err(bad("cron_upsert: unexpected reply")),
        }
    }

    /// One call of `cron_edit` on schedule `id`, in the queue the index names (`None`: no
    /// entry).
    async fn cron_edit(
        &self,
        id: &str,
        op: &str,
        rest: impl FnOnce(&mut ScriptArgs),
    ) -> Result<Option<(String, i64)>, RedisError> {
        let Some(queue) = self.schedule_queue(id).await? else {
            return Ok(None);
        };
        let mut args = ScriptArgs::with_capacity(4);
        args.str(op).str(id);
        rest(&mut args);
        let v = self
            .conn
            .script(&scripts::CRON_EDIT, &[&self.keys.queue(&queue)], args)
            .await?;
        let code = int(&v).ok_or_else(|| bad(format!("cron_edit {op}: bad reply")))?;
        Ok(Some((queue, code)))
    }

    pub(crate) async fn remove_schedule(self: Arc<Self>, id: String) -> Result<bool, RedisError> {
        let Some((_, code)) = self.cron_edit(&id, "remove", |_| {}).await? else {
            return Ok(false);
        };
        // After the record: a crash in between leaves an entry that names nothing.
        let mut hdel = redis::cmd("HDEL");
        hdel.arg(self.keys.schedule_index()).arg(&id);
        self.conn.query(&hdel).await?;
        self.forget_schedule(&id);
        Ok(code == 1)
    }

    pub(crate) async fn pause_schedule(self: Arc<Self>, id: String) -> Result<bool, RedisError> {
        let done = self.cron_edit(&id, "pause", |_| {}).await?;
        Ok(matches!(done, Some((_, 1))))
    }

    pub(crate) async fn resume_schedule(
        self: Arc<Self>,
        id: String,
        revision: u64,
        next_fire: Option<Timestamp>,
    ) -> Result<Resumed, RedisError> {
        let done = self
            .cron_edit(&id, "resume", |args| {
                args.str(revision.to_string());
                time_arg(args, next_fire);
            })
            .await?;
        match done {
            None | Some((_, 0)) => Ok(Resumed::NotFound),
            Some((_, 1)) => Ok(Resumed::Resumed),
            Some((_, 2)) => Ok(Resumed::Conflict),
            Some(_) => Err(bad("cron_edit resume: unexpected reply")),
        }
    }

    pub(crate) async fn schedule(
        self: Arc<Self>,
        id: String,
    ) -> Result<Option<ScheduleRecord>, RedisError> {
        let Some(queue) = self.schedule_queue(&id).await? else {
            return Ok(None);
        };
        self.remember_schedule(&id, &queue);
        match self.raw_schedule(&queue, &id).await? {
            Some(raw) => self.schedule_record(&id, &raw).await.map(Some),
            None => Ok(None),
        }
    }

    /// The queues the index names, each once, in order.
    fn indexed_queues(index: &HashMap<String, String>) -> Vec<String> {
        let mut queues: Vec<String> = index.values().cloned().collect();
        queues.sort();
        queues.dedup();
        queues
    }

    pub(crate) async fn schedules(self: Arc<Self>) -> Result<Vec<ScheduleRecord>, RedisError> {
        let index = self.schedule_index().await?;
        let calls = Self::indexed_queues(&index).into_iter().map(|queue| {
            let this = self.clone();
            async move {
                let v = this
                    .conn
                    .query(redis::cmd("HGETALL").arg(this.keys.schedules(&queue)))
                    .await?;
                Ok::<_, RedisError>((queue, pairs(v)?))
            }
        });
        let mut raws: Vec<(String, String)> = Vec::new();
        for (queue, found) in try_join_all(calls).await? {
            // Only the record of the queue the index names (see the module's docs).
            raws.extend(
                found
                    .into_iter()
                    .filter(|(id, _)| index.get(id) == Some(&queue)),
            );
        }
        raws.sort();
        self.schedule_records(raws).await
    }

    pub(crate) async fn due_schedules(
        self: Arc<Self>,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<ScheduleRecord>, RedisError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let index = self.schedule_index().await?;
        let per_queue = i64::try_from(limit).unwrap_or(i64::MAX);
        let calls = Self::indexed_queues(&index).into_iter().map(|queue| {
            let this = self.clone();
            async move {
                let mut args = ScriptArgs::with_capacity(2);
                args.int(before.as_millis()).int(per_queue);
                let v = this
                    .conn
                    .script(&scripts::CRON_DUE, &[&this.keys.queue(&queue)], args)
                    .await?;
                Ok::<_, RedisError>((queue, pairs(v)?))
            }
        });
        let mut due: Vec<(Timestamp, String, String)> = Vec::new();
        for (queue, found) in try_join_all(calls).await? {
            for (id, raw) in found {
                if index.get(&id) != Some(&queue) {
                    continue;
                }
                let next = parse_stored(&raw).and_then(|s| s.next_fire);
                if let Some(next) = next.filter(|t| *t <= before) {
                    due.push((next, id, raw));
                }
            }
        }
        due.sort();
        due.truncate(limit);
        self.schedule_records(due.into_iter().map(|(_, id, raw)| (id, raw)).collect())
            .await
    }
}
