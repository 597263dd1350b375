//! The command line, as clap parses it.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use kosh_jobs::{JobId, JobState, RateLimit};

use crate::time::TimeArg;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  error (the job store cannot be reached, a backend error, declined at the prompt)
  2  usage (a bad flag, state, duration, queue name, URL or payload)
  3  not found (e.g. `kosh-jobs jobs show 999`)

Environment:
  KOSH_JOBS_URL, JOBS_URL, REDIS_URL  the job store when --url is not given, in this order;
                                      also read from a `.env` file in the current folder
  NO_COLOR                            set: never colour (colour is only used on a terminal)";

/// Operate kosh-jobs queues from a terminal: stats, search, bulk actions, workers, a live view.
#[derive(Debug, Parser)]
#[command(name = "kosh-jobs", version, after_long_help = EXIT_CODES, after_help = EXIT_CODES)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// The job store: `sqlite://path/jobs.db`, `redis://[user:password@]host:port[/db]`,
    /// `rediss://…`, `redis+cluster://host1:port1,host2:port2`, `memory:`.
    /// Default: $KOSH_JOBS_URL, $JOBS_URL or $REDIS_URL (also from ./.env).
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) url: Option<String>,
    /// The Redis key prefix (sets `prefix=` in the URL's query, overriding it).
    #[arg(long, global = true, value_name = "PREFIX")]
    pub(crate) prefix: Option<String>,
    /// How long connecting may take, e.g. `500ms`, `5s`.
    #[arg(long, global = true, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
    /// Print JSON: one document (JSON lines for `watch`).
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Per queue: jobs per state, paused, oldest ready age, completed and failed in the last
    /// minute, hour and day; and the live workers.
    Stats,
    /// List, pause and resume queues.
    #[command(subcommand)]
    Queues(QueuesCommand),
    /// Search jobs, show one, retry, cancel, delete or promote them.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Delete finished jobs older than a duration (asks first).
    Purge(PurgeArgs),
    /// The live workers and the jobs they run.
    Workers,
    /// A refreshing view: rates per queue and running jobs (`q` quits).
    Watch(WatchArgs),
    /// Enqueue a job.
    Enqueue(EnqueueArgs),
    /// Serve the web dashboard (kosh-jobs-web) on its own.
    Dashboard(DashboardArgs),
    /// Periodic jobs: list schedules with their last and next ticks, pause, resume, trigger,
    /// remove.
    #[command(subcommand)]
    Schedules(SchedulesCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum SchedulesCommand {
    /// Every schedule: when it fires, its last and next tick, runs, policies, paused.
    Ls,
    /// Stop a schedule from firing (its ticks are skipped until it is resumed).
    Pause {
        /// The schedule's id.
        id: String,
    },
    /// Let a paused schedule fire again, from its next tick after now.
    Resume {
        /// The schedule's id.
        id: String,
    },
    /// Enqueue the schedule's job now, outside its ticks.
    Trigger {
        /// The schedule's id.
        id: String,
    },
    /// Remove a schedule and its pending tick (asks first; jobs it enqueued stay).
    Rm {
        /// The schedule's id.
        id: String,
        /// Do not ask.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum QueuesCommand {
    /// Every queue with its counts and whether it is paused.
    Ls,
    /// Stop workers from taking jobs of a queue (enqueueing still works).
    Pause {
        /// The queue.
        queue: String,
    },
    /// Let workers take jobs of a queue again.
    Resume {
        /// The queue.
        queue: String,
    },
    /// Every queue with limits: running jobs against the concurrency limit, starts in the
    /// rate window, when the next job may start.
    Limits,
    /// Set a queue's limits (replacing its previous ones), or clear them. They are kept in
    /// the store: every worker of every process obeys them from its next reserve.
    Limit(LimitArgs),
    /// A queue's groups, by key: ready and running jobs of each, its starts in the group
    /// rate window, and whether it is at its limit (a page at a time).
    Groups(GroupsArgs),
    /// Hold a queue back: no job of it starts for DURATION (`30s`, `5m`), as a handler's
    /// `JobError::rate_limited` does. A hold only lengthens.
    Hold {
        /// The queue.
        queue: String,
        /// How long: `30s`, `5m`, `1h`.
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
        duration: std::time::Duration,
    },
}

/// `queues groups`.
#[derive(Debug, Args)]
pub(crate) struct GroupsArgs {
    /// The queue.
    pub(crate) queue: String,
    /// At most this many groups (1 to 500).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=500))]
    pub(crate) limit: u16,
    /// Continue after this group (the next page, as the previous page says).
    #[arg(long, value_name = "GROUP")]
    pub(crate) after: Option<String>,
}

/// `queues limit`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).multiple(true)
    .args(["concurrency", "rate", "group_concurrency", "group_rate", "clear"])))]
pub(crate) struct LimitArgs {
    /// The queue.
    pub(crate) queue: String,
    /// At most K jobs of the queue running at once, across all workers.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) concurrency: Option<u32>,
    /// At most N starts in any window of DURATION: `100/1s`, `10/1m`.
    #[arg(long, value_name = "N/DURATION", value_parser = parse_rate)]
    pub(crate) rate: Option<RateLimit>,
    /// At most K jobs of each group running at once (jobs enqueued with a group key).
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) group_concurrency: Option<u32>,
    /// At most N starts of each group in any window of DURATION: `5/1m`.
    #[arg(long, value_name = "N/DURATION", value_parser = parse_rate)]
    pub(crate) group_rate: Option<RateLimit>,
    /// Remove the queue's limits.
    #[arg(long, conflicts_with_all = ["concurrency", "rate", "group_concurrency", "group_rate"])]
    pub(crate) clear: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum JobsCommand {
    /// Search jobs: a page at a time, with the total and how to get the next page.
    Ls(LsArgs),
    /// One job: payload, attempt timeline, progress, result, errors.
    Show {
        /// The job's id.
        id: JobId,
    },
    /// Put failed or cancelled jobs back to ready.
    Retry(ActionArgs),
    /// Cancel scheduled, ready or running jobs.
    Cancel(ActionArgs),
    /// Delete completed, failed or cancelled jobs for good.
    Delete(ActionArgs),
    /// Make scheduled jobs ready to run now.
    Promote(ActionArgs),
}

/// Which jobs: every set flag must match.
#[derive(Debug, Args, Default)]
pub(crate) struct FilterArgs {
    /// One or more states (repeat the flag or separate with commas): scheduled, ready,
    /// running, completed, failed, cancelled.
    #[arg(long, value_name = "STATE", value_delimiter = ',', value_parser = parse_state)]
    pub(crate) state: Vec<JobState>,
    /// Only this queue.
    #[arg(long, value_name = "QUEUE")]
    pub(crate) queue: Option<String>,
    /// Only jobs of this name.
    #[arg(long, value_name = "NAME")]
    pub(crate) name: Option<String>,
    /// Only jobs whose payload, errors or unique key contain this text (ASCII case ignored).
    #[arg(long, value_name = "TEXT")]
    pub(crate) search: Option<String>,
    /// Only jobs created since: a duration ago (`2h`, `7d`), a time today (`02:10`) or an
    /// RFC 3339 time (`2025-06-01T02:10:00Z`).
    #[arg(long, value_name = "WHEN", value_parser = TimeArg::parse)]
    pub(crate) since: Option<TimeArg>,
    /// Only jobs created before this (same forms as --since).
    #[arg(long, value_name = "WHEN", value_parser = TimeArg::parse)]
    pub(crate) until: Option<TimeArg>,
    /// Only jobs that finished (completed, failed, cancelled) since (same forms as --since).
    #[arg(long, value_name = "WHEN", value_parser = TimeArg::parse)]
    pub(crate) finished_since: Option<TimeArg>,
    /// Only jobs that finished before this (same forms as --since).
    #[arg(long, value_name = "WHEN", value_parser = TimeArg::parse)]
    pub(crate) finished_until: Option<TimeArg>,
}

impl FilterArgs {
    /// Whether no flag is set (the filter matches every job).
    pub(crate) fn is_empty(&self) -> bool {
        self.state.is_empty()
            && self.queue.is_none()
            && self.name.is_none()
            && self.search.is_none()
            && self.since.is_none()
            && self.until.is_none()
            && self.finished_since.is_none()
            && self.finished_until.is_none()
    }
}

#[derive(Debug, Args)]
pub(crate) struct LsArgs {
    #[command(flatten)]
    pub(crate) filter: FilterArgs,
    /// At most this many jobs (1 to 1000).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub(crate) limit: u16,
    /// Newest first (default: oldest first).
    #[arg(long)]
    pub(crate) newest: bool,
    /// Continue after this job id (the next page, as the previous page says).
    #[arg(long, value_name = "ID")]
    pub(crate) after: Option<JobId>,
}

#[derive(Debug, Args)]
pub(crate) struct ActionArgs {
    /// The jobs, by id; or give filter flags instead.
    #[arg(value_name = "ID")]
    pub(crate) ids: Vec<JobId>,
    #[command(flatten)]
    pub(crate) filter: FilterArgs,
    /// Do not ask before acting on a filter.
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,
    /// Only count the jobs it would act on.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

#[derive(Debug, Args)]
pub(crate) struct PurgeArgs {
    /// The final states to delete (repeat or separate with commas): completed, failed,
    /// cancelled.
    #[arg(long, value_name = "STATE", value_delimiter = ',', value_parser = parse_state, required = true)]
    pub(crate) state: Vec<JobState>,
    /// Jobs that finished longer ago than this, e.g. `7d`, `12h`.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) older_than: Duration,
    /// Only this queue.
    #[arg(long, value_name = "QUEUE")]
    pub(crate) queue: Option<String>,
    /// Do not ask before deleting.
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,
    /// Only count the jobs it would delete.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// Time between refreshes.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub(crate) interval: Duration,
    /// Stop after this many refreshes (default: until `q`, Ctrl-C or end of input).
    #[arg(long, value_name = "N")]
    pub(crate) count: Option<u64>,
}

#[derive(Debug, Args)]
pub(crate) struct EnqueueArgs {
    /// The job's name (the name its handler is registered under).
    pub(crate) name: String,
    /// The queue.
    #[arg(long, value_name = "QUEUE")]
    pub(crate) queue: String,
    /// The payload, as JSON.
    #[arg(long, value_name = "JSON", default_value = "{}")]
    pub(crate) payload: String,
    /// Run it after this delay, e.g. `10m`.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) delay: Option<Duration>,
    /// Higher runs first.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub(crate) priority: i32,
    /// A unique key: while a live job holds it, the existing job's id is returned instead.
    #[arg(long, value_name = "KEY")]
    pub(crate) unique: Option<String>,
    /// How many attempts at most.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) max_attempts: u32,
}

/// A job state, with the valid ones listed when it is not one.
pub(crate) fn parse_state(s: &str) -> Result<JobState, String> {
    s.trim().to_ascii_lowercase().parse().map_err(|_| {
        let valid: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
        format!(
            "unknown job state `{s}`; valid states: {}",
            valid.join(", ")
        )
    })
}

/// A rate limit written `N/DURATION`: `100/1s`, `10/1m`.
pub(crate) fn parse_rate(s: &str) -> Result<RateLimit, String> {
    let bad = || format!("`{s}` is not a rate; write N/DURATION, e.g. 100/1s or 10/1m");
    let (n, per) = s.split_once('/').ok_or_else(bad)?;
    let max: u32 = n.trim().parse().map_err(|_| bad())?;
    let rate = RateLimit::new(max, parse_duration(per)?);
    kosh_jobs::QueueLimits::default()
        .with_rate(rate)
        .validate()?;
    Ok(rate)
}

/// A duration such as `500ms`, `2h`, `7d`, `1h 30m`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration ({e}); write e.g. 30s, 10m, 2h or 7d"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn rates_parse_with_a_clear_message() {
        assert_eq!(
            parse_rate("100/1s"),
            Ok(RateLimit::new(100, Duration::from_secs(1)))
        );
        assert_eq!(
            parse_rate(" 10 / 1m"),
            Ok(RateLimit::new(10, Duration::from_secs(60)))
        );
        assert!(parse_rate("100").is_err_and(|e| e.contains("N/DURATION")));
        assert!(parse_rate("x/1s").is_err_and(|e| e.contains("N/DURATION")));
        assert!(parse_rate("0/1s").is_err_and(|e| e.contains("not 0")));
        assert!(parse_rate("5/soon").is_err_and(|e| e.contains("not a duration")));
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn states_parse_and_list_the_valid_ones() {
        assert_eq!(parse_state("Failed"), Ok(JobState::Failed));
        let err = parse_state("done").unwrap_err();
        assert!(err.contains("scheduled, ready, running, completed, failed, cancelled"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn state_lists_split_on_commas() {
        let cli = Cli::try_parse_from([
            "kosh-jobs",
            "jobs",
            "ls",
            "--state",
            "failed,cancelled",
            "--state",
            "ready",
        ])
        .unwrap();
        match cli.command {
            Command::Jobs(JobsCommand::Ls(ls)) => assert_eq!(
                ls.filter.state,
                vec![JobState::Failed, JobState::Cancelled, JobState::Ready]
            ),
            other => panic!("{other:?}"),
        }
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct DashboardArgs {
    /// Address to listen on (port 0: any free port; the URL is printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub(crate) bind: std::net::SocketAddr,
    /// Refuse every action: pages and searches only.
    #[arg(long)]
    pub(crate) read_only: bool,
    /// The basic-auth user name; the password comes from the environment variable
    /// KOSH_JOBS_DASHBOARD_PASSWORD (not a flag: flags are visible to every user in `ps`).
    /// Without that variable the dashboard asks no password.
    #[arg(long, value_name = "NAME", default_value = "admin")]
    pub(crate) user: String,
}
