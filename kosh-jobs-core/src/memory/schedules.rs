//! The memory backend's schedules: a map by id, fired under the same lock as the jobs.

use crate::clock::Timestamp;
use crate::error::BackendError;
use crate::record::JobState;
use crate::schedule::{FireOutcome, Resumed, ScheduleDef, ScheduleFire, ScheduleRecord, Upserted};

use super::state::State;

impl State {
    pub(super) fn upsert_schedule(
        &mut self,
        def: &ScheduleDef,
        next_fire: Option<Timestamp>,
    ) -> Result<Upserted, BackendError> {
        def.validate().map_err(BackendError::InvalidInput)?;
        match self.schedules.get_mut(&def.id) {
            Some(rec) if rec.def.to_json() == def.to_json() => Ok(Upserted::Unchanged),
            Some(rec) => {
                rec.def = def.clone();
                rec.revision += 1;
                rec.next_fire = next_fire;
                Ok(Upserted::Replaced)
            }
            None => {
                self.schedules.insert(
                    def.id.clone(),
                    ScheduleRecord {
                        def: def.clone(),
                        revision: 1,
                        paused: false,
                        next_fire,
                        last_fire: None,
                        last_job: None,
                        runs: 0,
                    },
                );
                Ok(Upserted::Created)
            }
        }
    }

    pub(super) fn set_schedule_paused(&mut self, id: &str) -> bool {
        self.schedules
            .get_mut(id)
            .map(|r| r.paused = true)
            .is_some()
    }

    pub(super) fn resume_schedule(
        &mut self,
        id: &str,
        revision: u64,
        next_fire: Option<Timestamp>,
    ) -> Resumed {
        match self.schedules.get_mut(id) {
            None => Resumed::NotFound,
            Some(r) if r.revision != revision => Resumed::Conflict,
            Some(r) => {
                if r.paused {
                    r.paused = false;
                    r.next_fire = next_fire;
                }
                Resumed::Resumed
            }
        }
    }

    pub(super) fn due_schedules(&self, before: Timestamp, limit: usize) -> Vec<ScheduleRecord> {
        let mut due: Vec<&ScheduleRecord> = self
            .schedules
            .values()
            .filter(|r| !r.paused && r.next_fire.is_some_and(|t| t <= before))
            .collect();
        due.sort_by(|a, b| (a.next_fire, &a.def.id).cmp(&(b.next_fire, &b.def.id)));
        due.into_iter().take(limit).cloned().collect()
    }

    pub(super) fn fire_schedules(
        &mut self,
        fires: Vec<ScheduleFire>,
        now: Timestamp,
    ) -> Result<Vec<FireOutcome>, BackendError> {
        // Check every job first, so an invalid one changes nothing.
        for f in &fires {
            for t in &f.ticks {
                crate::backend::validate_queue_name(&t.job.queue)
                    .and_then(|()| crate::backend::validate_job_name(&t.job.name))
                    .map_err(|e| BackendError::InvalidInput(format!("schedule {:?}: {e}", f.id)))?;
            }
        }
        let mut out = Vec::with_capacity(fires.len());
        for f in fires {
            let current = self.schedules.get(&f.id).is_some_and(|r| {
                !r.paused && r.revision == f.revision && r.next_fire == Some(f.cursor)
            });
            if !current {
                out.push(FireOutcome::Stale);
                continue;
            }
            let last_job = self.schedules.get(&f.id).and_then(|r| r.last_job);
            let live = last_job
                .and_then(|id| self.jobs.get(&id.get()))
                .is_some_and(|e| {
                    matches!(
                        e.rec.state,
                        JobState::Scheduled | JobState::Ready | JobState::Running
                    )
                });
            let overlapping = f.skip_if_live && live && !f.ticks.is_empty();
            let last_tick = f.ticks.last().map(|t| t.at);
            let fired = if overlapping || f.ticks.is_empty() {
                Vec::new()
            } else {
                self.push(f.ticks.into_iter().map(|t| t.job).collect(), now)?
            };
            if let Some(r) = self.schedules.get_mut(&f.id) {
                r.next_fire = f.next_fire;
                if let (Some(tick), Some(job)) = (last_tick, fired.last()) {
                    r.last_fire = Some(tick);
                    r.last_job = Some(job.id);
                    r.runs += fired.len() as u64;
                }
            }
            out.push(if overlapping {
                FireOutcome::Overlapping
            } else {
                FireOutcome::Fired(fired)
            });
        }
        Ok(out)
    }
}
