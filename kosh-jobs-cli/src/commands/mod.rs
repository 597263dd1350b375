//! The commands, each on an open [`Session`].

mod actions;
mod dashboard;
mod enqueue;
mod jobs;
mod limits;
mod schedules;
mod stats;
mod watch;

use kosh_jobs::admin::{JobFilter, TimeRange};
use kosh_jobs::{Admin, Backend, Timestamp};

use crate::args::{Cli, Command, FilterArgs, JobsCommand, QueuesCommand, SchedulesCommand};
use crate::connect::{self, Target};
use crate::error::CliError;
use crate::output::Out;

/// An open store and how to print.
pub(crate) struct Session {
    pub(crate) admin: Admin,
    pub(crate) target: Target,
    pub(crate) out: Out,
}

impl Session {
    /// The backend's current time.
    pub(crate) fn now(&self) -> Timestamp {
        self.admin.backend().clock().now()
    }
}

/// Runs the command the command line names.
pub(crate) async fn run(cli: Cli) -> Result<(), CliError> {
    let read_only = matches!(
        cli.command,
        Command::Stats
            | Command::Dashboard(_)
            | Command::Workers
            | Command::Watch(_)
            | Command::Queues(QueuesCommand::Ls | QueuesCommand::Limits | QueuesCommand::Groups(_))
            | Command::Schedules(SchedulesCommand::Ls)
            | Command::Jobs(JobsCommand::Ls(_) | JobsCommand::Show { .. })
    );
    // Check the arguments that need no store before connecting.
    match &cli.command {
        Command::Jobs(
            JobsCommand::Retry(a)
            | JobsCommand::Cancel(a)
            | JobsCommand::Delete(a)
            | JobsCommand::Promote(a),
        ) => actions::check(a)?,
        Command::Enqueue(e) => enqueue::check(e)?,
        _ => {}
    }
    let (backend, target) = connect::open(&cli.global, read_only).await?;
    let s = Session {
        admin: Admin::new(backend),
        target,
        out: Out::new(cli.global.json),
    };
    match cli.command {
        Command::Stats => stats::stats(&s).await,
        Command::Queues(QueuesCommand::Ls) => stats::queues(&s).await,
        Command::Queues(QueuesCommand::Pause { queue }) => stats::pause(&s, &queue, true).await,
        Command::Queues(QueuesCommand::Resume { queue }) => stats::pause(&s, &queue, false).await,
        Command::Queues(QueuesCommand::Limits) => limits::list(&s).await,
        Command::Queues(QueuesCommand::Limit(a)) => limits::set(&s, &a).await,
        Command::Queues(QueuesCommand::Groups(a)) => limits::groups(&s, &a).await,
        Command::Queues(QueuesCommand::Hold { queue, duration }) => {
            limits::hold(&s, &queue, duration).await
        }
        Command::Workers => stats::workers(&s).await,
        Command::Jobs(JobsCommand::Ls(a)) => jobs::ls(&s, &a).await,
        Command::Jobs(JobsCommand::Show { id }) => jobs::show(&s, id).await,
        Command::Jobs(JobsCommand::Retry(a)) => {
            actions::act(&s, kosh_jobs::AdminAction::Retry, &a).await
        }
        Command::Jobs(JobsCommand::Cancel(a)) => {
            actions::act(&s, kosh_jobs::AdminAction::Cancel, &a).await
        }
        Command::Jobs(JobsCommand::Delete(a)) => {
            actions::act(&s, kosh_jobs::AdminAction::Delete, &a).await
        }
        Command::Jobs(JobsCommand::Promote(a)) => {
            actions::act(&s, kosh_jobs::AdminAction::Promote, &a).await
        }
        Command::Purge(a) => actions::purge(&s, &a).await,
        Command::Watch(a) => watch::watch(&s, &a).await,
        Command::Enqueue(a) => enqueue::enqueue(&s, &a).await,
        Command::Dashboard(a) => dashboard::serve(&s, &a).await,
        Command::Schedules(c) => schedules::run(&s, c).await,
    }
}

/// The library filter of the filter flags, checked.
pub(crate) fn filter(args: &FilterArgs) -> Result<JobFilter, CliError> {
    let range =
        |from: &Option<crate::time::TimeArg>, until: &Option<crate::time::TimeArg>| TimeRange {
            from: from.map(|t| t.0),
            until: until.map(|t| t.0),
        };
    let f = JobFilter {
        states: {
            let mut states = Vec::new();
            for s in &args.state {
                if !states.contains(s) {
                    states.push(*s);
                }
            }
            states
        },
        queue: args.queue.clone(),
        name: args.name.clone(),
        search: args.search.clone(),
        created: range(&args.since, &args.until),
        finished: range(&args.finished_since, &args.finished_until),
    };
    f.validate().map_err(|e| match e {
        kosh_jobs::BackendError::InvalidInput(m) => CliError::Usage(m),
        other => CliError::Usage(other.to_string()),
    })?;
    Ok(f)
}

/// The filter in words, for prompts: `state failed, queue csv-uploads, created since …`.
pub(crate) fn describe_filter(f: &JobFilter) -> String {
    let mut parts = Vec::new();
    if !f.states.is_empty() {
        let s: Vec<&str> = f.states.iter().map(|s| s.as_str()).collect();
        parts.push(format!("state {}", s.join(" or ")));
    }
    if let Some(q) = &f.queue {
        parts.push(format!("queue {q}"));
    }
    if let Some(n) = &f.name {
        parts.push(format!("name {n}"));
    }
    if let Some(t) = &f.search {
        parts.push(format!("containing {t:?}"));
    }
    for (what, r) in [("created", f.created), ("finished", f.finished)] {
        if let Some(from) = r.from {
            parts.push(format!("{what} since {}", crate::time::abs(from)));
        }
        if let Some(until) = r.until {
            parts.push(format!("{what} before {}", crate::time::abs(until)));
        }
    }
    if parts.is_empty() {
        "every job".into()
    } else {
        parts.join(", ")
    }
}
