//! Managing schedules from an application: the [`Client`] methods.

use crate::backend::Backend;
use crate::client::Client;
use crate::error::Error;
use crate::job::{Enqueue, Job};
use crate::record::JobId;

use super::{first_fire, tick_key, Resumed, Schedule, ScheduleDef, ScheduleRecord, Upserted};

/// How often a resume retries when the definition changes under it.
const RESUME_TRIES: usize = 5;

impl Client {
    /// Creates or replaces the schedule `schedule` enqueuing `job` at each tick (its queue,
    /// priority and attempts too; a unique key or delay on it is ignored: each tick has its
    /// own unique key). The same definition again changes nothing; a changed one replaces the
    /// old one and its pending tick atomically.
    pub async fn upsert_schedule<J: Job>(
        &self,
        schedule: Schedule,
        job: impl Into<Enqueue<J>>,
    ) -> Result<Upserted, Error> {
        let template = self.prepare(job)?;
        self.upsert_schedule_def(schedule.into_def(&template)).await
    }

    /// Creates or replaces a schedule from its stored form (e.g. read back from
    /// [`schedules`](Self::schedules), or built by hand for a job of another program).
    pub async fn upsert_schedule_def(&self, def: ScheduleDef) -> Result<Upserted, Error> {
        def.validate().map_err(Error::InvalidInput)?;
        let now = self.backend().clock().now();
        let next = first_fire(&def, now).map_err(Error::InvalidInput)?;
        Ok(self.backend().upsert_schedule(&def, next).await?)
    }

    /// Removes a schedule and its pending tick; `false` if there was none. Jobs it enqueued
    /// stay.
    pub async fn remove_schedule(&self, id: &str) -> Result<bool, Error> {
        Ok(self.backend().remove_schedule(id).await?)
    }

    /// Pauses a schedule; `false` if there is none.
    pub async fn pause_schedule(&self, id: &str) -> Result<bool, Error> {
        Ok(self.backend().pause_schedule(id).await?)
    }

    /// Resumes a paused schedule from its next tick after now: ticks due while it was paused
    /// do not fire. `false` if there is no such schedule.
    pub async fn resume_schedule(&self, id: &str) -> Result<bool, Error> {
        for _ in 0..RESUME_TRIES {
            let Some(rec) = self.backend().schedule(id).await? else {
                return Ok(false);
            };
            let now = self.backend().clock().now();
            let next = first_fire(&rec.def, now).map_err(Error::InvalidInput)?;
            // A schedule that already fired its last run stays ended.
            let next = next.filter(|_| rec.def.max_runs.is_none_or(|m| rec.runs < m));
            match self
                .backend()
                .resume_schedule(id, rec.revision, next)
                .await?
            {
                Resumed::Resumed => return Ok(true),
                Resumed::NotFound => return Ok(false),
                Resumed::Conflict => continue,
            }
        }
        Err(Error::Unavailable(
            format!("schedule {id:?} kept changing while it was being resumed; try again").into(),
        ))
    }

    /// Enqueues a schedule's job now, outside its ticks (its cursor does not move); the job's
    /// id, or `None` if there is no such schedule.
    pub async fn trigger_schedule(&self, id: &str) -> Result<Option<JobId>, Error> {
        let Some(rec) = self.backend().schedule(id).await? else {
            return Ok(None);
        };
        let now = self.backend().clock().now();
        let mut job = rec.def.job_at(now);
        job.unique_key = Some(tick_key(id, now));
        let out = self.push_raw(vec![job]).await?;
        Ok(out.first().map(|e| e.id))
    }

    /// Every schedule, by id, with its last and next tick.
    pub async fn schedules(&self) -> Result<Vec<ScheduleRecord>, Error> {
        Ok(self.backend().schedules().await?)
    }

    /// One schedule.
    pub async fn schedule(&self, id: &str) -> Result<Option<ScheduleRecord>, Error> {
        Ok(self.backend().schedule(id).await?)
    }
}
