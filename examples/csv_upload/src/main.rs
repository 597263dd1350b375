//! `csv_upload`: the web app, its worker, or both in one process for development.

use std::io::IsTerminal;

use anyhow::Context;
use clap::{Parser, Subcommand};
use csv_upload::config::Config;
use csv_upload::run::{run_worker, shutdown_signal, Services};
use tracing_subscriber::EnvFilter;

/// The bank-statement import app: upload a CSV, a worker imports it in the background.
///
/// Configured by environment variables, also read from a `.env` file: DATABASE_URL,
/// JOBS_URL (or REDIS_URL), BIND, MAX_UPLOAD_BYTES, UPLOAD_DIR, WORKER_LEASE_MS,
/// IMPORT_BATCH_ROWS. See README.md.
#[derive(Debug, Parser)]
#[command(name = "csv_upload", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The web app and a worker in one process, on SQLite files in data/ (the default; see
    /// README.md for where that folder is).
    Dev {
        /// Imports run at once.
        #[arg(long, default_value_t = 2, env = "WORKER_CONCURRENCY")]
        concurrency: usize,
    },
    /// The web app alone (run workers beside it).
    Serve,
    /// A worker alone: runs imports until SIGTERM or Ctrl-C, then finishes or hands back
    /// what it runs.
    Worker {
        /// Imports run at once by this process.
        #[arg(long, default_value_t = 2, env = "WORKER_CONCURRENCY")]
        concurrency: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dotenv = dotenvy::dotenv();
    // Logs go to stderr, in colour only on a terminal and never with NO_COLOR, so the URL
    // and anything a script reads on stdout stay clean.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn")),
        )
        .init();
    if let Ok(path) = dotenv {
        tracing::info!(file = %path.display(), "read settings from .env");
    }
    let cli = Cli::parse();
    let mut config = Config::from_env().context("invalid configuration")?;
    // Relative paths are taken from the crate's folder under `cargo run`, else from the
    // working directory, and made absolute: where the data is does not depend on where
    // `cargo run` was typed (see README.md, "Run it").
    config.resolve_paths(&csv_upload::config::base_dir());
    let data = data_line(&config);
    let command = cli.command.unwrap_or_else(|| Command::Dev {
        concurrency: std::env::var("WORKER_CONCURRENCY")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(2),
    });
    let services = Services::open(config).await?;
    match command {
        Command::Dev { concurrency } => {
            let (addr, server) = services.bind_web(None, shutdown_signal()).await?;
            let worker = services.worker(concurrency).await?.spawn();
            tracing::info!("{}", services.dashboard_status());
            tracing::info!("web and worker in one process; Ctrl-C stops both");
            print_url(addr, &data);
            server.await?;
            let stats = worker.shutdown().await?;
            tracing::info!(?stats, "worker stopped");
        }
        Command::Serve => {
            let (addr, server) = services.bind_web(None, shutdown_signal()).await?;
            tracing::info!("{}", services.dashboard_status());
            print_url(addr, &data);
            server.await?;
        }
        Command::Worker { concurrency } => {
            tracing::info!(concurrency, "csv_upload worker started");
            let stats = run_worker(&services, concurrency, shutdown_signal()).await?;
            tracing::info!(?stats, "worker stopped");
        }
    }
    Ok(())
}

/// Where the data is, in one line: `Data folder: /abs/data`, or each place when they are
/// not in one folder.
fn data_line(config: &Config) -> String {
    match config.data_folder() {
        Some(dir) => format!("Data folder: {}", dir.display()),
        None => {
            let parts: Vec<String> = config
                .data_paths()
                .into_iter()
                .map(|(what, p)| format!("{what} {}", p.display()))
                .collect();
            format!("Data: {}", parts.join(", "))
        }
    }
}

/// The address to open, on a line of its own on stdout, after the start-up logs (stderr),
/// and where the data is.
fn print_url(addr: std::net::SocketAddr, data: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "\ncsv_upload is running. Open:\n\n    http://{addr}/\n\n{data}\n"
    );
    let _ = out.flush();
}
