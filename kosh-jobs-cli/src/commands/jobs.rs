//! `jobs ls` and `jobs show`.

use comfy_table::Cell;
use kosh_jobs::admin::json::stored_json;
use kosh_jobs::admin::{Order, SearchPage, SearchQuery};
use kosh_jobs::JobId;
use serde_json::{json, Value};

use super::{filter, Session};
use crate::args::LsArgs;
use crate::error::{CliError, Context as _};
use crate::output::{job_json, line, render, short, thousands};
use crate::time;

/// At most this many search calls to fill one page (each bounded by the backend).
const MAX_CALLS: usize = 1000;

pub(super) async fn ls(s: &Session, a: &LsArgs) -> Result<(), CliError> {
    let f = filter(&a.filter)?;
    let limit = usize::from(a.limit);
    let mut q = SearchQuery::new(f)
        .order(if a.newest {
            Order::NewestFirst
        } else {
            Order::OldestFirst
        })
        .limit(limit)
        .with_total(true);
    q.after = a.after;
    let SearchPage {
        jobs,
        next,
        examined,
        total,
    } = s
        .admin
        .search_page(&q, MAX_CALLS)
        .await
        .ctx(&s.target, "cannot search jobs")?;
    if s.out.json {
        return s.out.json(&json!({
            "jobs": jobs.iter().map(|j| job_json(j, false)).collect::<Vec<_>>(),
            "total": total.map(|t| json!({"count": t.count, "exact": t.exact})),
            "next": next.map(|n| n.get()),
            "examined": examined,
        }));
    }
    let now = s.now();
    if !jobs.is_empty() {
        let mut t = s.out.table(&[
            "ID",
            "STATE",
            "QUEUE",
            "NAME",
            "ATTEMPTS",
            "CREATED",
            "LAST ERROR",
        ]);
        for j in &jobs {
            t.add_row(vec![
                Cell::new(j.id),
                s.out.state_cell(j.state),
                Cell::new(&j.queue),
                Cell::new(short(&j.name, 32)),
                Cell::new(format!("{}/{}", j.attempts, j.max_attempts)),
                Cell::new(time::both(j.created_at, now)),
                Cell::new(short(j.last_error().unwrap_or(""), 60)),
            ]);
        }
        line(&render(t))?;
    }
    let total_text = total.map_or_else(|| "?".into(), |t| t.to_string());
    line(&format!(
        "{} of {total_text} matching job{} {}",
        thousands(jobs.len() as u64),
        if total.is_some_and(|t| t.count == 1 && t.exact) {
            ""
        } else {
            "s"
        },
        s.out.dim(&format!("(examined {})", thousands(examined)))
    ))?;
    if let Some(n) = next {
        line(&format!(
            "next page: {}",
            s.out
                .bold(&next_page_command(std::env::args().skip(1), &n.to_string()))
        ))?;
    }
    Ok(())
}

/// The command line that was run, with `--after` set to `next`.
pub(super) fn next_page_command(args: impl Iterator<Item = String>, next: &str) -> String {
    let mut out = vec!["kosh-jobs".to_owned()];
    let mut skip = false;
    for arg in args {
        if skip {
            skip = false;
            continue;
        }
        if arg == "--after" {
            skip = true;
            continue;
        }
        if arg.starts_with("--after=") {
            continue;
        }
        out.push(shell_quote(&arg));
    }
    out.push(format!("--after {}", shell_quote(next)));
    out.join(" ")
}

fn shell_quote(arg: &str) -> String {
    let safe = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@+%".contains(c));
    if safe {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

pub(super) async fn show(s: &Session, id: JobId) -> Result<(), CliError> {
    let job = s
        .admin
        .job(id)
        .await
        .ctx(&s.target, "cannot read the job")?
        .ok_or_else(|| CliError::NotFound(format!("job {id} not found")))?;
    if s.out.json {
        return s.out.json(&job_json(&job, true));
    }
    let now = s.now();
    let opt =
        |t: Option<kosh_jobs::Timestamp>| t.map_or_else(|| "-".into(), |t| time::both(t, now));
    line(&format!(
        "{} {}  {} on {}",
        s.out.bold(&format!("job {}", job.id)),
        s.out.state(job.state),
        job.name,
        job.queue
    ))?;
    let mut t = s.out.plain_table();
    let mut rows: Vec<(&str, String)> = vec![
        ("created", time::both(job.created_at, now)),
        ("run at", time::both(job.run_at, now)),
        ("started", opt(job.started_at)),
        ("finished", opt(job.finished_at)),
        (
            "attempts",
            format!("{} of {}", job.attempts, job.max_attempts),
        ),
        ("priority", job.priority.to_string()),
        (
            "unique key",
            job.unique_key.clone().unwrap_or_else(|| "-".into()),
        ),
        ("lease ends", opt(job.lease_expires_at)),
    ];
    if let Some(trace) = &job.trace {
        // The traceparent it was enqueued with: its trace id finds the trace.
        rows.push(("trace", trace.clone()));
    }
    for (k, v) in rows {
        t.add_row(vec![Cell::new(format!("  {k}")), Cell::new(v)]);
    }
    line(&render(t))?;
    section(s, "payload", &stored_json(&job.payload))?;
    if let Some(p) = &job.progress {
        section(s, "progress", p)?;
    }
    if let Some(r) = &job.result {
        section(s, "result", r)?;
    }
    if !job.history.is_empty() {
        line(&s.out.bold("attempts"))?;
        let mut t = s
            .out
            .table(&["  #", "STARTED", "WORKER", "TOOK", "OUTCOME", "ERROR"]);
        for a in &job.history {
            t.add_row(vec![
                Cell::new(format!("  {}", a.attempt)),
                Cell::new(time::both(a.started_at, now)),
                Cell::new(&a.worker),
                Cell::new(a.ended_at.map_or_else(
                    || {
                        format!(
                            "running for {}",
                            time::span(now.saturating_duration_since(a.started_at))
                        )
                    },
                    |e| time::span(e.saturating_duration_since(a.started_at)),
                )),
                Cell::new(a.outcome.map_or("running", |o| o.as_str())),
                Cell::new(short(a.error.as_deref().unwrap_or(""), 80)),
            ]);
        }
        line(&render(t))?;
    }
    if !job.errors.is_empty() {
        line(&s.out.bold("errors"))?;
        for e in &job.errors {
            line(&format!(
                "  attempt {} at {}: {}",
                e.attempt,
                time::abs(e.at),
                s.out.red(&e.error)
            ))?;
        }
    }
    Ok(())
}

fn section(s: &Session, title: &str, value: &Value) -> Result<(), CliError> {
    line(&s.out.bold(title))?;
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    for l in text.lines() {
        line(&format!("  {l}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_page_keeps_the_flags() {
        let args = [
            "jobs",
            "ls",
            "--state",
            "failed",
            "--after",
            "3",
            "--search",
            "is locked",
        ];
        assert_eq!(
            next_page_command(args.iter().map(|s| s.to_string()), "77"),
            "kosh-jobs jobs ls --state failed --search 'is locked' --after 77"
        );
    }

    #[test]
    fn a_group_key_is_quoted_for_the_shell() {
        let args = ["queues", "groups", "imports", "--after=x"];
        assert_eq!(
            next_page_command(args.iter().map(|s| s.to_string()), "it's me"),
            r"kosh-jobs queues groups imports --after 'it'\''s me'"
        );
    }
}
