//! `jobs retry|cancel|delete|promote` and `purge`: count, ask, act.

use std::io::{BufRead, IsTerminal, Write};

use kosh_jobs::admin::{ActionResult, JobFilter, TimeRange};
use kosh_jobs::{ActionTotals, Admin, AdminAction, Backend, JobState};
use serde_json::{json, Value};

use super::{describe_filter, filter, Session};
use crate::args::{ActionArgs, PurgeArgs};
use crate::error::{CliError, Context as _};
use crate::output::{line, thousands};

/// Checks the arguments of an action before connecting.
pub(super) fn check(a: &ActionArgs) -> Result<(), CliError> {
    match (a.ids.is_empty(), a.filter.is_empty()) {
        (false, false) => Err(CliError::Usage(
            "give job ids or filter flags, not both".into(),
        )),
        (true, true) => Err(CliError::Usage(
            "which jobs? give their ids, or filter flags such as --state failed --queue \
             csv-uploads --since 2h"
                .into(),
        )),
        _ => Ok(()),
    }
}

/// `retried`, `cancelled`, ...
fn done(action: AdminAction) -> &'static str {
    match action {
        AdminAction::Retry => "retried",
        AdminAction::Cancel => "cancelled",
        AdminAction::Delete => "deleted",
        AdminAction::Promote => "promoted",
    }
}

fn jobs(n: u64) -> String {
    format!("{} job{}", thousands(n), if n == 1 { "" } else { "s" })
}

fn totals_json(action: AdminAction, matched: u64, dry_run: bool, t: &ActionTotals) -> Value {
    json!({
        "action": action.as_str(),
        "matched": matched,
        "dry_run": dry_run,
        "applied": t.applied,
        "skipped": t.skipped,
        "not_found": t.not_found,
        "conflicts": t.conflicts,
        "examined": t.examined,
    })
}

pub(super) async fn act(s: &Session, action: AdminAction, a: &ActionArgs) -> Result<(), CliError> {
    if !a.ids.is_empty() {
        return by_ids(s, action, a).await;
    }
    let f = filter(&a.filter)?;
    let f = Admin::action_filter(action, &f).map_err(|e| CliError::Usage(e_text(e)))?;
    on_filter(s, action, &f, a.yes, a.dry_run, None).await
}

fn e_text(e: kosh_jobs::Error) -> String {
    match e {
        kosh_jobs::Error::InvalidInput(m) => m,
        other => other.to_string(),
    }
}

async fn by_ids(s: &Session, action: AdminAction, a: &ActionArgs) -> Result<(), CliError> {
    if a.dry_run {
        let mut would = 0u64;
        let mut missing = Vec::new();
        let mut skipped = Vec::new();
        for &id in &a.ids {
            match s
                .admin
                .job(id)
                .await
                .ctx(&s.target, "cannot read the job")?
            {
                Some(j) if action.applies_to(j.state) => would += 1,
                Some(j) => skipped.push((id, j.state)),
                None => missing.push(id),
            }
        }
        if s.out.json {
            return s.out.json(&json!({
                "action": action.as_str(),
                "matched": a.ids.len(),
                "dry_run": true,
                "would_apply": would,
                "skipped": skipped.len(),
                "not_found": missing.len(),
            }));
        }
        for (id, st) in skipped {
            line(&format!("job {id}: {action} does not apply to a {st} job"))?;
        }
        for id in &missing {
            line(&format!("job {id}: not found"))?;
        }
        return line(&format!("dry run: would {action} {}", jobs(would)));
    }
    let results = s
        .admin
        .apply_ids(action, &a.ids)
        .await
        .ctx(&s.target, &format!("cannot {action} the jobs"))?;
    let mut t = ActionTotals::default();
    results.iter().for_each(|r| t.tally(r));
    if s.out.json {
        let mut v = totals_json(action, a.ids.len() as u64, false, &t);
        v["results"] = a
            .ids
            .iter()
            .zip(&results)
            .map(|(id, r)| {
                let (result, state, holder) = match r {
                    ActionResult::Applied => ("applied", None, None),
                    ActionResult::NotFound => ("not_found", None, None),
                    ActionResult::Skipped(st) => ("skipped", Some(st.as_str()), None),
                    ActionResult::UniqueConflict(other) => ("conflict", None, Some(other.get())),
                };
                json!({"id": id.get(), "result": result, "state": state, "held_by": holder})
            })
            .collect();
        s.out.json(&v)?;
    } else {
        for (id, r) in a.ids.iter().zip(&results) {
            match r {
                ActionResult::Applied => line(&format!("job {id}: {}", done(action)))?,
                ActionResult::NotFound => line(&format!("job {id}: not found"))?,
                ActionResult::Skipped(st) => line(&format!(
                    "job {id}: left as it is ({action} does not apply to a {st} job)"
                ))?,
                ActionResult::UniqueConflict(other) => line(&format!(
                    "job {id}: not retried, job {other} holds its unique key"
                ))?,
            }
        }
    }
    if t.not_found > 0 {
        return Err(CliError::NotFound(format!(
            "{} not found",
            jobs(t.not_found)
        )));
    }
    Ok(())
}

/// Counts the jobs of `f`, asks (unless `yes`), then acts on them. `purge_before` makes it
/// a purge (through the backend's purge when no queue is given).
async fn on_filter(
    s: &Session,
    action: AdminAction,
    f: &JobFilter,
    yes: bool,
    dry_run: bool,
    purge_before: Option<kosh_jobs::Timestamp>,
) -> Result<(), CliError> {
    let matched = s
        .admin
        .count(f)
        .await
        .ctx(&s.target, "cannot count the jobs")?;
    let what = describe_filter(f);
    if matched == 0 || dry_run {
        if s.out.json {
            return s.out.json(&totals_json(
                action,
                matched,
                dry_run,
                &ActionTotals::default(),
            ));
        }
        return line(&if matched == 0 {
            format!("no jobs match ({what}): nothing to {action}")
        } else {
            format!("dry run: would {action} {} ({what})", jobs(matched))
        });
    }
    if !yes && !confirm(&format!("{action} {} ({what})?", jobs(matched)))? {
        return Err(CliError::Declined);
    }
    let show_progress = !s.out.json && std::io::stderr().is_terminal() && matched > 1000;
    let totals = match purge_before {
        Some(before) if f.queue.is_none() => {
            let n = s
                .admin
                .backend()
                .purge(&f.states, before)
                .await
                .ctx(&s.target, "cannot purge")?;
            ActionTotals {
                applied: n,
                ..ActionTotals::default()
            }
        }
        _ => s
            .admin
            .apply_filter(action, f, |t| {
                if show_progress {
                    eprint!("\r{} {} of about {}", done(action), t.applied, matched);
                }
            })
            .await
            .ctx(&s.target, &format!("cannot {action} the jobs"))?,
    };
    if show_progress {
        eprintln!();
    }
    if s.out.json {
        return s.out.json(&totals_json(action, matched, false, &totals));
    }
    let mut text = format!("{} {}", done(action), jobs(totals.applied));
    if totals.skipped + totals.not_found > 0 {
        text.push_str(&format!(
            "; {} left as they were (they changed state or went away meanwhile)",
            jobs(totals.skipped + totals.not_found)
        ));
    }
    if totals.conflicts > 0 {
        text.push_str(&format!(
            "; {} not retried (another live job holds their unique key)",
            jobs(totals.conflicts)
        ));
    }
    line(&text)
}

/// Asks on stderr, reads the answer from stdin: only `y` or `yes` goes on.
pub(super) fn confirm(question: &str) -> Result<bool, CliError> {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "{question} [y/N] ");
    let _ = err.flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::Failed(format!("cannot read the answer: {e}")))?;
    let yes = matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes");
    if !std::io::stdin().is_terminal() {
        // The answer was not typed, so not echoed: show it, and end the prompt's line.
        let _ = writeln!(err, "{}", answer.trim());
    }
    Ok(yes)
}

pub(super) async fn purge(s: &Session, a: &PurgeArgs) -> Result<(), CliError> {
    let mut states = Vec::new();
    for st in &a.state {
        if !st.is_final() {
            return Err(CliError::Usage(format!(
                "purge deletes finished jobs: --state takes completed, failed or cancelled, not {st}"
            )));
        }
        if !states.contains(st) {
            states.push(*st);
        }
    }
    let before = s.now() - a.older_than;
    let f = JobFilter {
        states,
        queue: a.queue.clone(),
        finished: TimeRange {
            from: None,
            until: Some(before),
        },
        ..JobFilter::default()
    };
    f.validate().map_err(|e| CliError::Usage(e.to_string()))?;
    debug_assert!(f.states.iter().all(|s| JobState::is_final(*s)));
    on_filter(s, AdminAction::Delete, &f, a.yes, a.dry_run, Some(before)).await
}
