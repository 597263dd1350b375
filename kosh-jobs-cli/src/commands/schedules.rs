//! `schedules ls|pause|resume|trigger|rm`.

use std::time::Duration;

use kosh_jobs::schedule::{Every, Missed, Overlap, ScheduleRecord};
use kosh_jobs::{Client, Timestamp};
use serde_json::{json, Value};

use super::actions::confirm;
use super::Session;
use crate::args::SchedulesCommand;
use crate::error::{CliError, Context as _};
use crate::output::{line, render};
use crate::time;

pub(super) async fn run(s: &Session, c: SchedulesCommand) -> Result<(), CliError> {
    let client = Client::new(s.admin.backend().clone());
    match c {
        SchedulesCommand::Ls => ls(s, &client).await,
        SchedulesCommand::Pause { id } => {
            let found = client
                .pause_schedule(&id)
                .await
                .ctx(&s.target, "cannot pause the schedule")?;
            done(s, &id, found, "paused")
        }
        SchedulesCommand::Resume { id } => {
            let found = client
                .resume_schedule(&id)
                .await
                .ctx(&s.target, "cannot resume the schedule")?;
            done(s, &id, found, "resumed")
        }
        SchedulesCommand::Trigger { id } => {
            let job = client
                .trigger_schedule(&id)
                .await
                .ctx(&s.target, "cannot trigger the schedule")?
                .ok_or_else(|| not_found(&id))?;
            if s.out.json {
                s.out.json(&json!({"schedule": id, "job": job.get()}))
            } else {
                line(&format!("schedule {id}: enqueued job {job}"))
            }
        }
        SchedulesCommand::Rm { id, yes } => {
            if client
                .schedule(&id)
                .await
                .ctx(&s.target, "cannot read the schedule")?
                .is_none()
            {
                return Err(not_found(&id));
            }
            if !yes
                && !confirm(&format!(
                    "remove schedule {id} (the jobs it enqueued stay)?"
                ))?
            {
                return Err(CliError::Declined);
            }
            let found = client
                .remove_schedule(&id)
                .await
                .ctx(&s.target, "cannot remove the schedule")?;
            done(s, &id, found, "removed")
        }
    }
}

fn not_found(id: &str) -> CliError {
    CliError::NotFound(format!(
        "no schedule {id:?} (`kosh-jobs schedules ls` lists them)"
    ))
}

fn done(s: &Session, id: &str, found: bool, what: &str) -> Result<(), CliError> {
    if !found {
        return Err(not_found(id));
    }
    if s.out.json {
        s.out.json(&json!({"schedule": id, what: true}))
    } else {
        line(&format!("schedule {id}: {what}"))
    }
}

/// When a schedule fires, in words: `0 3 * * * (Asia/Kolkata)`, `every 30 s`.
fn every(e: &Every) -> String {
    match e {
        Every::Cron { expr, tz } => format!("{expr} ({tz})"),
        Every::Interval { ms } => format!("every {}", time::span(Duration::from_millis(*ms))),
    }
}

/// The policies in words: `missed: latest, overlap: skip`.
fn policy(r: &ScheduleRecord) -> String {
    let missed = match r.def.missed {
        Missed::Skip => "skip".to_owned(),
        Missed::Latest { grace_ms: None } => "latest".to_owned(),
        Missed::Latest { grace_ms: Some(ms) } => {
            format!("latest within {}", time::span(Duration::from_millis(ms)))
        }
        Missed::All { max } => format!("all (at most {max})"),
    };
    let overlap = match r.def.overlap {
        Overlap::Allow => "allow",
        Overlap::Skip => "skip",
    };
    format!("missed: {missed}, overlap: {overlap}")
}

fn schedule_json(r: &ScheduleRecord) -> Value {
    let iso = |t: Option<Timestamp>| t.map(time::iso);
    json!({
        "id": r.def.id,
        "every": r.def.every,
        "job": r.def.job,
        "queue": r.def.queue,
        "payload": kosh_jobs::admin::json::stored_json(&r.def.payload),
        "priority": r.def.priority,
        "max_attempts": r.def.max_attempts,
        "start_at": iso(r.def.start_at),
        "end_at": iso(r.def.end_at),
        "max_runs": r.def.max_runs,
        "missed": r.def.missed,
        "overlap": r.def.overlap,
        "paused": r.paused,
        "revision": r.revision,
        "next_fire": iso(r.next_fire),
        "last_fire": iso(r.last_fire),
        "last_job": r.last_job.map(|j| j.get()),
        "runs": r.runs,
    })
}

async fn ls(s: &Session, client: &Client) -> Result<(), CliError> {
    let list = client
        .schedules()
        .await
        .ctx(&s.target, "cannot list the schedules")?;
    if s.out.json {
        return s
            .out
            .json(&Value::Array(list.iter().map(schedule_json).collect()));
    }
    if list.is_empty() {
        return line(
            "no schedules: declare one with #[job(cron = \"...\")] or Client::upsert_schedule",
        );
    }
    let now = s.now();
    let mut t = s.out.table(&[
        "SCHEDULE", "EVERY", "JOB", "QUEUE", "NEXT", "LAST", "RUNS", "POLICY", "PAUSED",
    ]);
    for r in &list {
        let next = match (r.paused, r.next_fire) {
            (true, _) => "paused".to_owned(),
            (false, Some(t)) => time::both(t, now),
            (false, None) => "ended".to_owned(),
        };
        let last = r
            .last_fire
            .map_or_else(|| "-".to_owned(), |t| time::both(t, now));
        t.add_row(vec![
            r.def.id.clone(),
            every(&r.def.every),
            r.def.job.clone(),
            r.def.queue.clone(),
            next,
            last,
            r.runs.to_string(),
            policy(r),
            if r.paused { "yes" } else { "no" }.to_owned(),
        ]);
    }
    line(&render(t))
}
