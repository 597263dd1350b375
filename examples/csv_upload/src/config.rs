//! Configuration from the environment (and a `.env` file, read by the binary at start).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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

    /// Makes the relative paths absolute, taken from `base` (see [`base_dir`]): the upload
    /// folder and the files of `sqlite:` URLs (`sqlite://data/app.db`). Other URLs, and
    /// `sqlite::memory:`, stay as they are.
    pub fn resolve_paths(&mut self, base: &Path) {
        if self.upload_dir.is_relative() {
            self.upload_dir = base.join(&self.upload_dir);
        }
        self.database_url = absolute_sqlite_url(&self.database_url, base);
        self.jobs_url = absolute_sqlite_url(&self.jobs_url, base);
    }

    /// Where the data is, for the start-up message: the upload folder and the SQLite
    /// files, as written in the configuration (absolute after [`Config::resolve_paths`]).
    pub fn data_paths(&self) -> Vec<(&'static str, PathBuf)> {
        let mut out = vec![("uploads", self.upload_dir.clone())];
        if let Some(f) = sqlite_file(&self.database_url) {
            out.push(("app database", f));
        }
        if let Some(f) = sqlite_file(&self.jobs_url) {
            out.push(("job queue", f));
        }
        out
    }

    /// The one folder all the data is in (`data/`: `app.db`, `jobs.db`, `uploads/`), when
    /// there is one.
    pub fn data_folder(&self) -> Option<PathBuf> {
        let dir = self.upload_dir.parent()?.to_path_buf();
        self.data_paths()
            .iter()
            .all(|(_, p)| p.starts_with(&dir))
            .then_some(dir)
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

/// The folder relative paths in the configuration are taken from.
///
/// Run by `cargo run` (which tells the program its crate's folder in `CARGO_MANIFEST_DIR`),
/// that is this crate's folder, `examples/csv_upload/`: `cargo run -p csv_upload` uses the
/// same `data/` from wherever in the workspace it is started. Otherwise (an installed
/// binary, under systemd or in a container) it is the working directory.
pub fn base_dir() -> PathBuf {
    let here = env!("CARGO_MANIFEST_DIR");
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    match std::env::var_os("CARGO_MANIFEST_DIR") {
        Some(dir) if Path::new(&dir) == Path::new(here) => PathBuf::from(dir),
        _ => cwd,
    }
}

/// `url` with the file of a `sqlite:` URL made absolute from `base`.
pub fn absolute_sqlite_url(url: &str, base: &Path) -> String {
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return url.to_owned();
    };
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    if path.is_empty() || path.starts_with(':') || Path::new(path).is_absolute() {
        return url.to_owned();
    }
    let mut out = format!("sqlite://{}", base.join(path).display());
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// The file a `sqlite:` URL names, if it names one.
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.starts_with(':')).then(|| PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_sqlite_files_are_made_absolute() {
        let base = Path::new("/srv/app");
        assert_eq!(
            absolute_sqlite_url("sqlite://data/app.db", base),
            "sqlite:///srv/app/data/app.db"
        );
        assert_eq!(
            absolute_sqlite_url("sqlite:data/jobs.db?events=true", base),
            "sqlite:///srv/app/data/jobs.db?events=true"
        );
        assert_eq!(
            absolute_sqlite_url("sqlite:///var/lib/app.db", base),
            "sqlite:///var/lib/app.db"
        );
        assert_eq!(
            absolute_sqlite_url("sqlite::memory:", base),
            "sqlite::memory:"
        );
        assert_eq!(
            absolute_sqlite_url("redis://h:6379", base),
            "redis://h:6379"
        );
        assert_eq!(absolute_sqlite_url("memory:", base), "memory:");
        assert_eq!(
            sqlite_file("sqlite:///srv/app/data/jobs.db?events=true"),
            Some(PathBuf::from("/srv/app/data/jobs.db"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("redis://h"), None);
    }

    #[test]
    fn the_upload_folder_too() {
        let mut c = Config {
            database_url: "sqlite://data/app.db".into(),
            jobs_url: "redis://localhost:6379".into(),
            jobs_prefix: None,
            bind: "127.0.0.1:3000".parse().expect("address"),
            max_upload_bytes: 1,
            upload_dir: "data/uploads".into(),
            batch_rows: 1,
            row_delay: Duration::ZERO,
            lease: Duration::from_secs(1),
            date_order: DateOrder::DayFirst,
            metrics: false,
            metrics_sample: Duration::ZERO,
            admin_password: None,
        };
        c.resolve_paths(Path::new("/srv/app"));
        assert_eq!(c.upload_dir, Path::new("/srv/app/data/uploads"));
        assert_eq!(c.database_url, "sqlite:///srv/app/data/app.db");
        assert_eq!(c.jobs_url, "redis://localhost:6379");
        c.resolve_paths(Path::new("/elsewhere"));
        assert_eq!(
            c.upload_dir,
            Path::new("/srv/app/data/uploads"),
            "once absolute, kept"
        );
    }

    #[test]
    fn under_cargo_the_crates_folder() {
        // The test binary is run by cargo, with this crate's folder.
        if std::env::var_os("CARGO_MANIFEST_DIR").is_some() {
            assert_eq!(base_dir(), Path::new(env!("CARGO_MANIFEST_DIR")));
        }
    }
}
