//! Configuration from the environment (and a `.env` file, read by the binary at start).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::parse::DateOrder;

/// Everything the app reads from its environment.
#[derive(Clone, Debug)]
pub struct Config {
    /// The app's own database: `DATABASE_URL`, default `sqlite://data/app.db`.
    pub database_url: String,
    /// The job store: `JOBS_URL`, else `REDIS_URL`, default `sqlite://data/jobs.db`.
    pub jobs_url: String,
    /// Prefix of the job store's keys in Redis: `JOBS_PREFIX`, default `kosh`.
    pub jobs_prefix: Option<String>,
    /// Where the web server listens: `BIND`, default `127.0.0.1:3000`.
    pub bind: SocketAddr,
    /// Largest upload accepted: `MAX_UPLOAD_BYTES`, default 100 MiB (larger: 413).
    pub max_upload_bytes: u64,
    /// Where uploaded files are kept, under generated names: `UPLOAD_DIR`, default
    /// `data/uploads`. Web and workers must see the same folder.
    pub upload_dir: PathBuf,
    /// Rows per SQL transaction and checkpoint: `IMPORT_BATCH_ROWS`, default 500.
    pub batch_rows: usize,
    /// Test hook: a pause after each row, to make an import slow enough to kill a worker
    /// in the middle of it. `CSV_UPLOAD_ROW_DELAY_MS`, default 0. Never set it in production.
    pub row_delay: Duration,
    /// Job lease of the worker: `WORKER_LEASE_MS`, default 30000. A job whose worker died
    /// is taken over about this long after its last renewal.
    pub lease: Duration,
    /// How to read `05/03/2024`-style dates when neither the file nor its bank's layout
    /// settles it: `DATE_ORDER`, `dmy` (default) or `mdy`. An import read this way says so.
    pub date_order: DateOrder,
    /// Whether to record metrics and serve them at `/metrics` (Prometheus text format):
    /// `METRICS`, default `on` (`off` to disable).
    pub metrics: bool,
    /// How often the worker samples the store-wide gauges (jobs per state, the age of the
    /// oldest ready job): `METRICS_SAMPLE_SECS`, default 15; 0 turns sampling off.
    pub metrics_sample: Duration,
    /// The password of the jobs dashboard at `/admin/jobs` (user `admin`): `ADMIN_PASSWORD`.
    /// Without one the dashboard is not served.
    pub admin_password: Option<String>,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn number<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    match var(name) {
        Some(v) => v
            .trim()
            .parse()
            .with_context(|| format!("{name}={v} is not a valid number")),
        None => Ok(default),
    }
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        let bind = var("BIND").unwrap_or_else(|| "127.0.0.1:3000".into());
        let cfg = Config {
            database_url: var("DATABASE_URL").unwrap_or_else(|| "sqlite://data/app.db".into()),
            jobs_url: var("JOBS_URL")
                .or_else(|| var("REDIS_URL"))
                .unwrap_or_else(|| "sqlite://data/jobs.db".into()),
            jobs_prefix: var("JOBS_PREFIX"),
            bind: bind
                .parse()
                .with_context(|| format!("BIND={bind} is not an address like 127.0.0.1:3000"))?,
            max_upload_bytes: number("MAX_UPLOAD_BYTES", 100 * 1024 * 1024)?,
            upload_dir: var("UPLOAD_DIR")
                .unwrap_or_else(|| "data/uploads".into())
                .into(),
            batch_rows: number("IMPORT_BATCH_ROWS", 500)?,
            row_delay: Duration::from_millis(number("CSV_UPLOAD_ROW_DELAY_MS", 0)?),
            lease: Duration::from_millis(number("WORKER_LEASE_MS", 30_000)?),
            date_order: match var("DATE_ORDER") {
                Some(v) => v
                    .parse()
                    .map_err(|e: String| anyhow::anyhow!("DATE_ORDER={v}: {e}"))?,
                None => DateOrder::DayFirst,
            },
            metrics: match var("METRICS").as_deref().map(str::trim) {
                None | Some("on" | "1" | "true") => true,
                Some("off" | "0" | "false") => false,
                Some(other) => anyhow::bail!("METRICS={other}: use on or off"),
            },
            metrics_sample: Duration::from_secs(number("METRICS_SAMPLE_SECS", 15)?),
            admin_password: var("ADMIN_PASSWORD"),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.max_upload_bytes > 0,
            "MAX_UPLOAD_BYTES must be above 0"
        );
        anyhow::ensure!(
            (1..=10_000).contains(&self.batch_rows),
            "IMPORT_BATCH_ROWS must be between 1 and 10000"
        );
        anyhow::ensure!(
            self.lease >= Duration::from_millis(300),
            "WORKER_LEASE_MS must be at least 300"
        );
        Ok(())
    }
}
