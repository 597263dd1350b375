//! `kosh-jobs`: operate [kosh-jobs](https://docs.rs/kosh-jobs) queues from a terminal.
//!
//! Stats per queue, a search over jobs with a total and a cursor, one job's attempt
//! timeline, bulk retry/cancel/delete/promote by ids or by filter (counted and confirmed
//! first), purge, pause/resume, live workers, a refreshing view, and enqueue; `--json` on
//! every command. It stands on the backend's admin contract only ([`kosh_jobs::Admin`]), so
//! it works the same on SQLite and Redis. See the crate's README for each command and the
//! exit codes (0 ok, 1 error, 2 usage, 3 not found).

mod args;
mod commands;
mod connect;
mod error;
mod output;
mod time;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;

use crate::error::{CliError, EXIT_OK};

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&CliError::Failed(format!("cannot start the runtime: {e}"))),
    };
    let result = runtime.block_on(commands::run(cli));
    // Background tasks of a backend (a Redis connection) must not delay the exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) => fail(&e),
    }
}

fn fail(e: &CliError) -> ExitCode {
    let color = output::color_allowed(std::io::stderr().is_terminal());
    let label = if color {
        "\x1b[1;31merror:\x1b[0m"
    } else {
        "error:"
    };
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{label} {e}");
    ExitCode::from(e.exit_code())
}
