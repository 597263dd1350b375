//! Periodic jobs: schedules that fire exactly once per tick, whatever the number of workers.
//!
//! A schedule enqueues a job at every tick of a cron expression (in a time zone) or of a
//! fixed interval. Its cursor (the next tick) lives in the backend, and firing a tick is one
//! atomic step there: the cursor moves only if it still points at that tick, and the job is
//! pushed in the same step, with the unique key `kosh:schedule:<id>:<tick in ms>`. So any
//! number of workers in any number of processes may try to fire a tick: exactly one job is
//! enqueued, no leader is needed, and a crash between deciding and pushing cannot leave a tick
//! half fired.
//!
//! Every worker fires schedules by default (see
//! [`WorkerBuilder::schedules`](crate::WorkerBuilder::schedules)): it reads the schedules due
//! in the next minute, sleeps until the first tick, and fires it with one request. An idle
//! worker reads the schedules once a minute, so a schedule created by another process is
//! seen within a minute.
//!
//! # Declaring schedules
//!
//! At run time, with a stable id, through the [`Client`](crate::Client):
//!
//! ```
//! use kosh_jobs::prelude::*;
//! use kosh_jobs::schedule::{Schedule, Overlap};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct FetchStatements { user: u64 }
//!
//! #[kosh_jobs::job(queue = "bank-sync")]
//! async fn fetch_statements(job: FetchStatements) -> Result<(), JobError> {
//!     let _ = job.user;
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), kosh_jobs::Error> {
//! let client = Client::new(kosh_jobs::memory::MemoryBackend::new());
//! let every_morning = Schedule::cron("fetch:42", "0 6 * * *")?
//!     .time_zone("Europe/Berlin")?
//!     .overlap(Overlap::Skip);
//! client.upsert_schedule(every_morning, FetchStatements { user: 42 }).await?;
//!
//! let listed = client.schedules().await?;
//! assert_eq!(listed[0].def.id, "fetch:42");
//! assert!(listed[0].next_fire.is_some());
//! # Ok(()) }
//! ```
//!
//! Upserting is idempotent: the same definition again changes nothing (two processes that
//! upsert at the same deploy converge), a changed one replaces the old one and its pending
//! tick atomically.
//!
//! # Missed ticks and overlap
//!
//! When no worker ran at a tick (downtime, a deploy), the [`Missed`] policy decides what fires
//! once one runs again: [`Missed::Latest`] (the default) the most recent missed tick only, if
//! it is younger than a grace period (one interval by default); [`Missed::Skip`] none;
//! [`Missed::All`] each of them, up to a bound. [`Overlap::Skip`] fires nothing while the job
//! of the previous tick is still scheduled, ready or running.
//!
//! # Cron expressions and time zones
//!
//! Five fields (minute, hour, day of month, month, day of week), or six with seconds first;
//! `@yearly`, `@monthly`, `@weekly`, `@daily`, `@hourly`; `L` (last), `W` (nearest weekday) and
//! `#` (nth weekday), parsed by [croner](https://docs.rs/croner). Time zones are IANA names
//! (`Asia/Kolkata`), UTC by default. Across daylight-saving changes a fixed-time job (e.g.
//! `30 2 * * *`) whose time falls in a gap runs at the first valid time after it, and one whose
//! time occurs twice runs once; an interval job (`*/15 * * * *`) keeps its interval.

mod api;
mod plan;
pub(crate) mod runner;
mod timing;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::error::Error;
use crate::record::{Enqueued, JobId, NewJob};

pub use timing::{validate_cron, validate_time_zone, Timing};

pub(crate) use plan::{plan, Plan};

/// The prefix of the unique key of a job fired by a schedule: `kosh:schedule:<id>:<tick ms>`.
pub const UNIQUE_KEY_PREFIX: &str = "kosh:schedule:";

/// The unique key of the job a schedule fires at `tick`.
pub fn tick_key(id: &str, tick: Timestamp) -> String {
    format!("{UNIQUE_KEY_PREFIX}{id}:{}", tick.as_millis())
}

/// The schedule and tick a job was fired for, read back from its unique key.
///
/// ```
/// use kosh_jobs::{schedule, Timestamp};
/// let key = schedule::tick_key("nightly:eu", Timestamp::from_millis(1_700_000_000_000));
/// assert_eq!(
///     schedule::parse_tick_key(&key),
///     Some(("nightly:eu", Timestamp::from_millis(1_700_000_000_000)))
/// );
/// assert_eq!(schedule::parse_tick_key("user-key"), None);
/// ```
pub fn parse_tick_key(key: &str) -> Option<(&str, Timestamp)> {
    let rest = key.strip_prefix(UNIQUE_KEY_PREFIX)?;
    let (id, ms) = rest.rsplit_once(':')?;
    Some((id, Timestamp::from_millis(ms.parse().ok()?)))
}

/// The tick a job was fired for: see [`JobContext::scheduled_tick`](crate::JobContext::scheduled_tick).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduledTick {
    /// The schedule's id.
    pub schedule: String,
    /// The tick.
    pub at: Timestamp,
    /// Whether it was enqueued more than a second after its time (a missed tick fired when a
    /// worker ran again, or a busy worker).
    pub late: bool,
}

impl ScheduledTick {
    /// The tick of a stored job, if a schedule fired it.
    pub fn of(job: &crate::record::JobRecord) -> Option<Self> {
        let (id, at) = parse_tick_key(job.unique_key.as_deref()?)?;
        Some(ScheduledTick {
            schedule: id.to_owned(),
            at,
            late: job.created_at.saturating_duration_since(at) > plan::LATE_AFTER,
        })
    }
}

/// A schedule declared on a job type with `#[job(cron = "...", tz = "...")]` (see
/// [`Job::declared_schedule`](crate::Job::declared_schedule)).
#[derive(Clone, Debug)]
pub struct DeclaredSchedule<J> {
    /// The cron expression, checked when compiling.
    pub cron: &'static str,
    /// The IANA time zone, checked when compiling.
    pub tz: &'static str,
    /// The payload of each tick's job.
    pub payload: J,
}

/// How often a schedule fires.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Every {
    /// At each match of a cron expression, read in an IANA time zone.
    Cron {
        /// The expression, e.g. `0 3 * * *`.
        expr: String,
        /// The time zone, e.g. `Europe/Berlin`.
        tz: String,
    },
    /// Every `ms` milliseconds from the schedule's start.
    Interval {
        /// The interval, at least 1 s.
        ms: u64,
    },
}

/// Which missed ticks fire when a worker runs again after none ran at their time.
///
/// A tick is missed when a later tick has come, or, for the most recent one, when it is older
/// than the policy allows. The grace defaults to one interval (for cron, the time from the tick
/// to the one after it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "snake_case")]
pub enum Missed {
    /// Fire no missed tick: only a tick that is due now (at most one interval, and at most a
    /// minute, old).
    Skip,
    /// Fire the most recent missed tick only, if it is at most `grace_ms` old (one interval if
    /// `None`).
    Latest {
        /// How old the tick may be, in milliseconds; `None` for one interval.
        grace_ms: Option<u64>,
    },
    /// Fire every missed tick, oldest first, up to the `max` most recent.
    All {
        /// At most this many ticks at once (at least 1).
        max: u32,
    },
}

impl Default for Missed {
    fn default() -> Self {
        Missed::Latest { grace_ms: None }
    }
}

impl Missed {
    /// [`Missed::Latest`] with a grace period.
    pub fn latest_within(grace: Duration) -> Self {
        Missed::Latest {
            grace_ms: Some(u64::try_from(grace.as_millis()).unwrap_or(u64::MAX)),
        }
    }
}

/// What happens at a tick while the previous tick's job is still live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Fire anyway.
    #[default]
    Allow,
    /// Fire nothing while the previous tick's job is scheduled, ready or running (the cursor
    /// still moves on).
    Skip,
}

/// A schedule as stored: when it fires and the job it enqueues.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleDef {
    /// Its stable id (1 to 200 characters, no control characters).
    pub id: String,
    /// When it fires.
    pub every: Every,
    /// The job's name (its handler).
    pub job: String,
    /// The queue the job goes to.
    pub queue: String,
    /// The job's payload, JSON text.
    pub payload: String,
    /// The job's priority.
    pub priority: i32,
    /// The job's attempts.
    pub max_attempts: u32,
    /// No tick before this time.
    pub start_at: Option<Timestamp>,
    /// No tick after this time.
    pub end_at: Option<Timestamp>,
    /// At most this many ticks fire, then the schedule ends.
    pub max_runs: Option<u64>,
    /// Which missed ticks fire.
    pub missed: Missed,
    /// What happens while the previous job is live.
    pub overlap: Overlap,
    /// The group of the jobs it enqueues (see [`crate::limits#groups`]), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

impl ScheduleDef {
    /// Checks the id, the timing and the job fields; the error says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        validate_schedule_id(&self.id)?;
        Timing::new(&self.every)?;
        crate::backend::validate_queue_name(&self.queue)?;
        crate::backend::validate_job_name(&self.job)?;
        if self.max_attempts == 0 {
            return Err("max_attempts must be at least 1".into());
        }
        if let Some(g) = &self.group {
            crate::backend::validate_group_key(g)?;
        }
        if let Missed::All { max: 0 } = self.missed {
            return Err("Missed::All needs a max of at least 1".into());
        }
        if let (Some(s), Some(e)) = (self.start_at, self.end_at) {
            if e < s {
                return Err("the schedule ends before it starts".into());
            }
        }
        Ok(())
    }

    /// The definition as the canonical JSON text backends store and compare.
    pub fn to_json(&self) -> String {
        // A struct of strings, numbers and enums always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The job this schedule enqueues at `tick`.
    pub fn job_at(&self, tick: Timestamp) -> NewJob {
        NewJob {
            name: self.job.clone(),
            queue: self.queue.clone(),
            payload: self.payload.clone(),
            priority: self.priority,
            run_at: tick,
            max_attempts: self.max_attempts,
            unique_key: Some(tick_key(&self.id, tick)),
            group: self.group.clone(),
            trace: None,
        }
    }
}

/// Checks a schedule id: 1 to 200 characters, none of them a control character.
pub fn validate_schedule_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.chars().count() > 200 {
        return Err(format!(
            "a schedule id must have 1 to 200 characters, not {}",
            id.chars().count()
        ));
    }
    if id.chars().any(char::is_control) {
        return Err(format!("schedule id {id:?} contains a control character"));
    }
    Ok(())
}

/// A schedule with its cursor, as a backend returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleRecord {
    /// What it fires and when.
    pub def: ScheduleDef,
    /// Grows by one at each change of the definition; a fire planned for an older revision is
    /// refused.
    pub revision: u64,
    /// Paused schedules do not fire.
    pub paused: bool,
    /// The next tick (the cursor); `None` once the schedule has ended.
    pub next_fire: Option<Timestamp>,
    /// The last tick fired.
    pub last_fire: Option<Timestamp>,
    /// The job of the last tick fired.
    pub last_job: Option<JobId>,
    /// Ticks fired so far.
    pub runs: u64,
}

/// What [`Backend::upsert_schedule`](crate::Backend::upsert_schedule) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Upserted {
    /// There was no schedule with this id.
    Created,
    /// The definition changed: it and its cursor were replaced.
    Replaced,
    /// The same definition was stored already: nothing changed.
    Unchanged,
}

/// One tick to fire: its time and the job it enqueues.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FiredTick {
    /// The tick.
    pub at: Timestamp,
    /// The job, with the tick's unique key.
    pub job: NewJob,
}

/// A request to fire a schedule's due ticks and move its cursor, as one atomic step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleFire {
    /// The schedule.
    pub id: String,
    /// The revision the plan was made for.
    pub revision: u64,
    /// The cursor the plan was made from: the fire happens only if it is still the stored one.
    pub cursor: Timestamp,
    /// The new cursor (`None`: the schedule has ended).
    pub next_fire: Option<Timestamp>,
    /// The ticks to enqueue, oldest first (may be empty: missed ticks skipped).
    pub ticks: Vec<FiredTick>,
    /// Enqueue nothing (but still move the cursor) if the last job is still live.
    pub skip_if_live: bool,
}

/// What [`Backend::fire_schedules`](crate::Backend::fire_schedules) did with one fire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FireOutcome {
    /// The cursor moved and the ticks' jobs were pushed (one entry per tick, as a push).
    Fired(Vec<Enqueued>),
    /// The cursor moved but nothing was pushed: the last job is still live.
    Overlapping,
    /// Nothing changed: the schedule is gone, paused, at another revision, or its cursor has
    /// moved (another worker fired the tick).
    Stale,
}

/// What [`Backend::resume_schedule`](crate::Backend::resume_schedule) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resumed {
    /// It fires again, from the given cursor.
    Resumed,
    /// No schedule with that id.
    NotFound,
    /// The definition changed since it was read: read it again.
    Conflict,
}

/// A schedule being built, for [`Client::upsert_schedule`](crate::Client::upsert_schedule).
///
/// ```
/// use std::time::Duration;
/// use kosh_jobs::schedule::{Missed, Schedule};
///
/// let s = Schedule::cron("nightly-report", "0 3 * * *").unwrap()
///     .time_zone("Asia/Kolkata").unwrap()
///     .missed(Missed::All { max: 3 });
/// assert!(Schedule::cron("bad", "61 * * * *").is_err());
/// assert!(Schedule::every("poll", Duration::from_millis(10)).is_err());
/// # let _ = s;
/// ```
#[derive(Clone, Debug)]
pub struct Schedule {
    pub(crate) id: String,
    pub(crate) every: Every,
    pub(crate) start_at: Option<Timestamp>,
    pub(crate) end_at: Option<Timestamp>,
    pub(crate) max_runs: Option<u64>,
    pub(crate) missed: Missed,
    pub(crate) overlap: Overlap,
}

impl Schedule {
    /// Fires at each match of a cron expression, in UTC until [`time_zone`](Self::time_zone)
    /// says otherwise. An invalid expression is an [`Error::InvalidInput`] saying why.
    pub fn cron(id: impl Into<String>, expr: &str) -> Result<Self, Error> {
        let id = id.into();
        validate_schedule_id(&id).map_err(Error::InvalidInput)?;
        validate_cron(expr).map_err(Error::InvalidInput)?;
        Ok(Self::with(
            id,
            Every::Cron {
                expr: expr.trim().to_owned(),
                tz: "UTC".into(),
            },
        ))
    }

    /// Fires every `interval` (at least one second), the first time one interval from now (or
    /// at [`start_at`](Self::start_at)).
    pub fn every(id: impl Into<String>, interval: Duration) -> Result<Self, Error> {
        let id = id.into();
        validate_schedule_id(&id).map_err(Error::InvalidInput)?;
        let every = Every::Interval {
            ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
        };
        Timing::new(&every).map_err(Error::InvalidInput)?;
        Ok(Self::with(id, every))
    }

    fn with(id: String, every: Every) -> Self {
        Schedule {
            id,
            every,
            start_at: None,
            end_at: None,
            max_runs: None,
            missed: Missed::default(),
            overlap: Overlap::default(),
        }
    }

    /// Reads a cron expression in this IANA time zone (e.g. `Europe/Berlin`). An unknown zone
    /// is an [`Error::InvalidInput`]; an interval schedule ignores it.
    pub fn time_zone(mut self, tz: &str) -> Result<Self, Error> {
        validate_time_zone(tz).map_err(Error::InvalidInput)?;
        if let Every::Cron { tz: z, .. } = &mut self.every {
            *z = tz.to_owned();
        }
        Ok(self)
    }

    /// No tick before `t`.
    pub fn start_at(mut self, t: Timestamp) -> Self {
        self.start_at = Some(t);
        self
    }

    /// No tick after `t`.
    pub fn end_at(mut self, t: Timestamp) -> Self {
        self.end_at = Some(t);
        self
    }

    /// At most `n` ticks fire.
    pub fn max_runs(mut self, n: u64) -> Self {
        self.max_runs = Some(n);
        self
    }

    /// Which missed ticks fire (default [`Missed::Latest`] within one interval).
    pub fn missed(mut self, policy: Missed) -> Self {
        self.missed = policy;
        self
    }

    /// Fire or not while the previous job is live (default [`Overlap::Allow`]).
    pub fn overlap(mut self, policy: Overlap) -> Self {
        self.overlap = policy;
        self
    }

    /// The stored definition, with the job `template` (name, queue, payload, priority,
    /// attempts and group are taken from it).
    pub fn into_def(self, template: &NewJob) -> ScheduleDef {
        ScheduleDef {
            id: self.id,
            every: self.every,
            job: template.name.clone(),
            queue: template.queue.clone(),
            payload: template.payload.clone(),
            priority: template.priority,
            max_attempts: template.max_attempts,
            start_at: self.start_at,
            end_at: self.end_at,
            max_runs: self.max_runs,
            missed: self.missed,
            overlap: self.overlap,
            group: template.group.clone(),
        }
    }
}

/// The first tick of `def` at or after `from` (and its start), within its end; `None` if it
/// never fires again.
pub fn first_fire(def: &ScheduleDef, from: Timestamp) -> Result<Option<Timestamp>, String> {
    let timing = Timing::new(&def.every)?;
    let from = def.start_at.map_or(from, |s| s.max(from));
    let first = match timing {
        // An interval's first tick is one interval after it starts.
        Timing::Interval(d) => {
            Some(
                def.start_at
                    .map_or(from + d, |s| if s >= from { s } else { from + d }),
            )
        }
        Timing::Cron(..) => timing.next_after(from - Duration::from_millis(1)),
    };
    if def.max_runs == Some(0) {
        return Ok(None);
    }
    Ok(first.filter(|t| def.end_at.is_none_or(|e| *t <= e)))
}
