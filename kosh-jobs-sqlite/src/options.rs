//! [`SqliteOptions`]: where the database is and how the backend uses it, validated when built.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kosh_jobs_core::Clock;

use crate::error::SqliteError;

/// How long completed jobs are kept before the backend deletes them by itself.
///
/// The default keeps completed jobs for 24 hours, and at most the newest 10,000 of them, so
/// a busy queue does not grow the file without bound. Failed jobs (the dead set) and
/// cancelled jobs are never pruned by retention: they stay until purged with
/// [`kosh_jobs_core::Backend::purge`] (or [`kosh_jobs_core::Client::purge`]).
///
/// Pruning runs on the backend's writer thread about once a second, a few thousand jobs per
/// transaction. Every process that opens the file applies its own retention to the whole
/// file, so give the processes sharing a file the same setting.
///
/// ```
/// use std::time::Duration;
/// use kosh_jobs_sqlite::Retention;
///
/// let keep_an_hour = Retention::default().max_age(Some(Duration::from_secs(3600)));
/// let keep_all = Retention::keep_all();
/// assert_eq!(keep_all.max_count_value(), None);
/// # let _ = keep_an_hour;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    max_age: Option<Duration>,
    max_count: Option<u64>,
}

impl Retention {
    /// The default maximum age of a completed job: 24 hours.
    pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);
    /// The default maximum number of completed jobs kept: 10,000.
    pub const DEFAULT_MAX_COUNT: u64 = 10_000;

    /// Never delete completed jobs by retention (they are still deleted by `purge`).
    pub const fn keep_all() -> Self {
        Retention {
            max_age: None,
            max_count: None,
        }
    }

    /// Delete completed jobs that finished longer ago than this (`None`: no age limit).
    pub const fn max_age(mut self, age: Option<Duration>) -> Self {
        self.max_age = age;
        self
    }

    /// Keep at most this many completed jobs, the most recently finished (`None`: no limit).
    pub const fn max_count(mut self, count: Option<u64>) -> Self {
        self.max_count = count;
        self
    }

    /// The maximum age, if any.
    pub const fn max_age_value(&self) -> Option<Duration> {
        self.max_age
    }

    /// The maximum count, if any.
    pub const fn max_count_value(&self) -> Option<u64> {
        self.max_count
    }

    /// Whether retention deletes anything at all.
    pub(crate) fn is_active(&self) -> bool {
        self.max_age.is_some() || self.max_count.is_some()
    }
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_age: Some(Self::DEFAULT_MAX_AGE),
            max_count: Some(Self::DEFAULT_MAX_COUNT),
        }
    }
}

/// Where the database lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Location {
    File(PathBuf),
    Memory,
}

/// Validated options of a [`crate::SqliteBackend`]. Built with [`SqliteOptions::builder`],
/// [`SqliteOptions::in_memory`] or [`SqliteOptions::from_url`].
///
/// ```
/// use std::time::Duration;
/// use kosh_jobs_sqlite::SqliteOptions;
///
/// let opts = SqliteOptions::builder("data/jobs.db")
///     .busy_timeout(Duration::from_secs(10))
///     .poll_interval(Duration::from_millis(100))
///     .build()?;
/// assert_eq!(opts.busy_timeout_value(), Duration::from_secs(10));
///
/// let from_url = SqliteOptions::from_url("sqlite://data/jobs.db?busy_timeout_ms=2000")?.build()?;
/// assert_eq!(from_url.path(), Some(std::path::Path::new("data/jobs.db")));
/// # Ok::<(), kosh_jobs_sqlite::SqliteError>(())
/// ```
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    pub(crate) location: Location,
    pub(crate) busy_timeout: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) max_batch: usize,
    pub(crate) retention: Retention,
    pub(crate) prune_interval: Duration,
    pub(crate) prune_chunk: usize,
    pub(crate) create_if_missing: bool,
    pub(crate) clock: Clock,
    pub(crate) events: bool,
}

impl SqliteOptions {
    /// Default busy timeout: how long a connection waits for another one's lock: 5 s.
    pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default interval of the cross-process check for new work (`PRAGMA data_version`),
    /// made only while a worker of this process waits for work: 200 ms.
    pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(200);
    /// Default limit of one group-committed transaction, in jobs touched: 2,048.
    pub const DEFAULT_MAX_BATCH: usize = 2048;

    /// Options for a database file, created (with its schema, and the folders it goes in)
    /// if missing. A relative path is taken against the current folder when the backend
    /// connects.
    pub fn builder(path: impl Into<PathBuf>) -> SqliteOptionsBuilder {
        SqliteOptionsBuilder::new(Location::File(path.into()))
    }

    /// Options for a private in-memory database, gone when the backend is dropped. For tests:
    /// it is not shared with other backends or processes.
    pub fn in_memory() -> SqliteOptionsBuilder {
        SqliteOptionsBuilder::new(Location::Memory)
    }

    /// Options from a URL.
    ///
    /// - `sqlite://data/jobs.db` (relative path), `sqlite:///var/lib/app/jobs.db` (absolute)
    ///   or `sqlite:data/jobs.db`;
    /// - `sqlite::memory:` (or `sqlite://:memory:`) for a private in-memory database;
    /// - optional query parameters: `busy_timeout_ms` and `poll_interval_ms` (milliseconds),
    ///   `create` (`true` or `false`: whether a missing file is created, see
    ///   [`SqliteOptionsBuilder::create_if_missing`]) and `events` (`true` to carry
    ///   lifecycle events, see [`SqliteOptionsBuilder::events`]), e.g.
    ///   `sqlite://jobs.db?busy_timeout_ms=10000&create=false`; any other is refused, with a
    ///   message that lists these.
    ///
    /// The path is taken literally (no percent-decoding). Every `sqlite::memory:` database is
    /// a new, private one.
    ///
    /// ```
    /// use kosh_jobs_sqlite::{SqliteError, SqliteOptions};
    ///
    /// let err = SqliteOptions::from_url("sqlite://jobs.db?timeout=10").unwrap_err();
    /// assert!(matches!(err, SqliteError::InvalidOptions(_)));
    /// assert!(err.to_string().contains("`timeout` (known: busy_timeout_ms, poll_interval_ms, create, events)"));
    /// ```
    pub fn from_url(url: &str) -> Result<SqliteOptionsBuilder, SqliteError> {
        let bad = |reason: &str| SqliteError::InvalidOptions(format!("url `{url}`: {reason}"));
        let rest = url
            .strip_prefix("sqlite:")
            .ok_or_else(|| bad("expected a url starting with `sqlite:`"))?;
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let target = rest.strip_prefix("//").unwrap_or(rest);
        let mut builder = match target {
            "" => return Err(bad("no database path")),
            ":memory:" => SqliteOptions::in_memory(),
            path => SqliteOptions::builder(path),
        };
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| bad(&format!("query parameter `{pair}` has no value")))?;
            let millis = || -> Result<Duration, SqliteError> {
                value.parse().map(Duration::from_millis).map_err(|_| {
                    bad(&format!(
                        "`{key}` must be a number of milliseconds, not `{value}`"
                    ))
                })
            };
            builder = match key {
                "busy_timeout_ms" => builder.busy_timeout(millis()?),
                "poll_interval_ms" => builder.poll_interval(millis()?),
                "events" => builder.events(match value {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(bad(&format!(
                            "`events` must be `true` or `false`, not `{value}`"
                        )))
                    }
                }),
                "create" => builder.create_if_missing(match value {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(bad(&format!(
                            "`create` must be `true` or `false`, not `{value}`"
                        )))
                    }
                }),
                _ => {
                    return Err(bad(&format!(
                        "unknown query parameter `{key}` (known: busy_timeout_ms, \
                         poll_interval_ms, create, events)"
                    )))
                }
            };
        }
        Ok(builder)
    }

    /// The database file, or `None` for an in-memory database.
    pub fn path(&self) -> Option<&Path> {
        match &self.location {
            Location::File(p) => Some(p),
            Location::Memory => None,
        }
    }

    /// The busy timeout.
    pub fn busy_timeout_value(&self) -> Duration {
        self.busy_timeout
    }

    /// The interval of the cross-process check for new work.
    pub fn poll_interval_value(&self) -> Duration {
        self.poll_interval
    }

    /// The retention of completed jobs.
    pub fn retention_value(&self) -> Retention {
        self.retention
    }

    /// Whether a missing database file is created.
    pub fn create_if_missing_value(&self) -> bool {
        self.create_if_missing
    }

    /// Whether lifecycle events are carried.
    pub fn events_value(&self) -> bool {
        self.events
    }

    /// The clock the backend reads.
    pub fn clock_value(&self) -> &Clock {
        &self.clock
    }

    /// These options with a relative path made absolute against the current folder.
    pub(crate) fn resolve(mut self) -> Result<Self, SqliteError> {
        if let Location::File(p) = &self.location {
            self.location = Location::File(crate::file::absolute(p)?);
        }
        Ok(self)
    }

    /// The path as shown in messages.
    pub(crate) fn display_path(&self) -> PathBuf {
        match &self.location {
            Location::File(p) => p.clone(),
            Location::Memory => PathBuf::from(":memory:"),
        }
    }
}

/// Builds [`SqliteOptions`]; [`SqliteOptionsBuilder::build`] checks them.
///
/// ```
/// use std::time::Duration;
/// use kosh_jobs_sqlite::{Retention, SqliteOptions};
///
/// let err = SqliteOptions::in_memory().poll_interval(Duration::ZERO).build().unwrap_err();
/// assert!(err.to_string().contains("poll_interval"));
///
/// let ok = SqliteOptions::in_memory()
///     .retention(Retention::default().max_count(Some(1_000)))
///     .max_batch(512)
///     .build()?;
/// # let _ = ok;
/// # Ok::<(), kosh_jobs_sqlite::SqliteError>(())
/// ```
#[derive(Clone, Debug)]
#[must_use = "call .build() to get the options"]
pub struct SqliteOptionsBuilder {
    opts: SqliteOptions,
}

impl SqliteOptionsBuilder {
    fn new(location: Location) -> Self {
        SqliteOptionsBuilder {
            opts: SqliteOptions {
                location,
                busy_timeout: SqliteOptions::DEFAULT_BUSY_TIMEOUT,
                poll_interval: SqliteOptions::DEFAULT_POLL_INTERVAL,
                max_batch: SqliteOptions::DEFAULT_MAX_BATCH,
                retention: Retention::default(),
                prune_interval: Duration::from_secs(1),
                prune_chunk: 2_000,
                create_if_missing: true,
                clock: Clock::system(),
                events: false,
            },
        }
    }

    /// How long a connection waits for a lock held by another connection (another process
    /// writing) before the operation fails as unavailable. Default 5 s.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.opts.busy_timeout = timeout;
        self
    }

    /// How often a waiting worker checks cheaply (`PRAGMA data_version`) whether another
    /// process changed the database. Only while a worker waits. Default 200 ms.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.opts.poll_interval = interval;
        self
    }

    /// The most jobs one group-committed transaction touches. Default 2,048.
    pub fn max_batch(mut self, jobs: usize) -> Self {
        self.opts.max_batch = jobs;
        self
    }

    /// How long completed jobs are kept. Default: [`Retention::default`].
    pub fn retention(mut self, retention: Retention) -> Self {
        self.opts.retention = retention;
        self
    }

    /// Whether a missing database file is created (with its schema, and the folders it goes
    /// in). Default `true`. With `false`, opening a file that does not exist fails with
    /// [`SqliteError::Missing`] and creates nothing: for tools that only look at an existing
    /// database (URL: `?create=false`). An existing file of an older schema is still
    /// migrated.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), kosh_jobs_sqlite::SqliteError> {
    /// use kosh_jobs_sqlite::{SqliteBackend, SqliteError, SqliteOptions};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("nothing/here.db");
    /// let opts = SqliteOptions::builder(&path).create_if_missing(false).build()?;
    /// let err = SqliteBackend::connect_with(opts).await.unwrap_err();
    /// assert!(matches!(err, SqliteError::Missing { .. }));
    /// assert!(!path.parent().unwrap().exists());
    /// # Ok(()) }
    /// ```
    pub fn create_if_missing(mut self, create: bool) -> Self {
        self.opts.create_if_missing = create;
        self
    }

    /// Carries lifecycle [events](kosh_jobs_core::events) between the processes using the
    /// file: publishers append them to a bounded table (`kosh_events`, the last 10,000
    /// batches), subscribers read it every 100 ms while they subscribe. Off by default (then
    /// nothing is written for them); the URL parameter `events=true` does the same.
    pub fn events(mut self, on: bool) -> Self {
        self.opts.events = on;
        self
    }

    /// The clock every time-based decision reads. Default [`Clock::system`]; tests use
    /// [`Clock::manual`].
    pub fn clock(mut self, clock: Clock) -> Self {
        self.opts.clock = clock;
        self
    }

    /// Checks the options.
    pub fn build(self) -> Result<SqliteOptions, SqliteError> {
        let o = self.opts;
        let invalid = |m: String| Err(SqliteError::InvalidOptions(m));
        if let Location::File(p) = &o.location {
            if p.as_os_str().is_empty() {
                return invalid("the database path is empty".into());
            }
        }
        if o.busy_timeout.is_zero() || o.busy_timeout > Duration::from_secs(24 * 3600) {
            return invalid(format!(
                "busy_timeout must be between 1 ms and 24 h, not {:?}",
                o.busy_timeout
            ));
        }
        if o.poll_interval < Duration::from_millis(1) || o.poll_interval > Duration::from_secs(60) {
            return invalid(format!(
                "poll_interval must be between 1 ms and 60 s, not {:?}",
                o.poll_interval
            ));
        }
        if o.max_batch == 0 || o.max_batch > 100_000 {
            return invalid(format!(
                "max_batch must be between 1 and 100000, not {}",
                o.max_batch
            ));
        }
        if let Some(n) = o.retention.max_count {
            if i64::try_from(n).is_err() {
                return invalid(format!("retention max_count {n} is too large"));
            }
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let o = SqliteOptions::from_url("sqlite://data/jobs.db")
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(o.location, Location::File("data/jobs.db".into()));
        let o = SqliteOptions::from_url("sqlite:///abs/jobs.db")
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(o.location, Location::File("/abs/jobs.db".into()));
        let o = SqliteOptions::from_url("sqlite:rel.db")
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(o.location, Location::File("rel.db".into()));
        for m in ["sqlite::memory:", "sqlite://:memory:"] {
            let o = SqliteOptions::from_url(m).unwrap().build().unwrap();
            assert_eq!(o.location, Location::Memory);
        }
        let o = SqliteOptions::from_url("sqlite://j.db?busy_timeout_ms=100&poll_interval_ms=50")
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(o.busy_timeout, Duration::from_millis(100));
        assert_eq!(o.poll_interval, Duration::from_millis(50));
        assert!(o.create_if_missing);
        let o = SqliteOptions::from_url("sqlite://j.db?create=false")
            .unwrap()
            .build()
            .unwrap();
        assert!(!o.create_if_missing_value());
    }

    #[test]
    fn bad_urls_say_why() {
        for (url, needle) in [
            ("redis://x", "sqlite:"),
            ("sqlite://", "no database path"),
            ("sqlite://j.db?foo=1", "unknown query parameter `foo`"),
            ("sqlite://j.db?busy_timeout_ms=x", "milliseconds"),
            ("sqlite://j.db?busy_timeout_ms", "no value"),
            ("sqlite://j.db?create=no", "`true` or `false`"),
            ("sqlite://j.db?foo=1", "poll_interval_ms, create, events)"),
            (
                "sqlite://j.db?events=yes",
                "`events` must be `true` or `false`",
            ),
        ] {
            let err = SqliteOptions::from_url(url).unwrap_err().to_string();
            assert!(err.contains(needle), "{url}: {err}");
        }
        let err = SqliteOptions::from_url("sqlite://j.db?busy_timeout_ms=0")
            .unwrap()
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("busy_timeout"), "{err}");
    }

    #[test]
    fn validation() {
        assert!(SqliteOptions::builder("").build().is_err());
        assert!(SqliteOptions::in_memory().max_batch(0).build().is_err());
        assert!(SqliteOptions::in_memory()
            .retention(Retention::default().max_count(Some(u64::MAX)))
            .build()
            .is_err());
        assert!(SqliteOptions::in_memory().build().is_ok());
    }
}
