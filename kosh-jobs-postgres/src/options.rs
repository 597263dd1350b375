//! [`PostgresOptions`]: where the database is, which schema, and the backend's settings.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use kosh_jobs_core::Clock;
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;

use crate::error::{PostgresError, Result};

/// How to open a [`crate::PostgresBackend`].
///
/// Its `Debug` output never shows the password.
///
/// ```
/// use kosh_jobs_postgres::PostgresOptions;
/// let opts = PostgresOptions::from_url("postgres://app:s3cret@db.internal/app?schema=jobs")?
///     .max_connections(20)
///     .build()?;
/// assert_eq!(opts.schema(), "jobs");
/// assert!(!format!("{opts:?}").contains("s3cret"));
/// # Ok::<(), kosh_jobs_postgres::PostgresError>(())
/// ```
#[derive(Clone)]
pub struct PostgresOptions {
    pub(crate) connect: PgConnectOptions,
    pub(crate) schema: String,
    pub(crate) clock: Clock,
    /// The size of the backend's own main pool, when set (see [`PostgresOptions::max_connections`]).
    pub(crate) max_connections: Option<u32>,
    /// The application's pool, which the backend then uses as its main pool
    /// ([`PostgresOptions::from_pool`]).
    pub(crate) pool: Option<PgPool>,
    pub(crate) acquire_timeout: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) retention: Option<Duration>,
    /// Whether lifecycle events are carried (`NOTIFY`, see [`crate::PostgresOptionsBuilder::events`]).
    pub(crate) events: bool,
    /// Where it connects, for messages: the URL without its password.
    pub(crate) display: String,
}

impl fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("url", &self.display)
            .field("schema", &self.schema)
            .field("max_connections", &self.max_connections())
            .field("application_pool", &self.pool.is_some())
            .field("acquire_timeout", &self.acquire_timeout)
            .field("poll_interval", &self.poll_interval)
            .field("retention", &self.retention)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl PostgresOptions {
    /// The schema used when none is given: `kosh`.
    pub const DEFAULT_SCHEMA: &'static str = "kosh";
    /// How often a waiting worker looks for work when no notification came: 2 seconds. It
    /// bounds how long a lost notification (the listener's connection dropped) delays a job.
    pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(2);
    /// Connections of the backend's pool: 10.
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;
    /// How long completed jobs are kept: 24 hours.
    pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);
    /// How long an operation waits for a connection: 10 seconds.
    pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

    /// Options from a URL: `postgres://user:password@host:port/database`, also
    /// `postgresql://`, with sqlx's parameters (`sslmode`, ...), `schema=NAME` (default
    /// `kosh`) and `events=true` (lifecycle events, see [`PostgresOptionsBuilder::events`];
    /// `false` by default) in the query string.
    ///
    /// ```
    /// use kosh_jobs_postgres::PostgresOptions;
    /// let opts = PostgresOptions::from_url("postgres://app@db/app?events=true")?.build()?;
    /// assert!(opts.events());
    /// assert!(PostgresOptions::from_url("postgres://app@db/app?events=yes").is_err());
    /// # Ok::<(), kosh_jobs_postgres::PostgresError>(())
    /// ```
    pub fn from_url(url: &str) -> Result<PostgresOptionsBuilder> {
        let (base, schema, events) = split_params(url)?;
        let connect = PgConnectOptions::from_str(&base).map_err(|e| {
            PostgresError::InvalidInput(format!(
                "`{}` is not a postgres URL: {}",
                redact(url),
                redact(&e.to_string())
            ))
        })?;
        let mut b = PostgresOptions::builder(connect);
        b.opts.display = redact(url);
        if let Some(schema) = schema {
            b = b.schema(schema);
        }
        if let Some(on) = events {
            b = b.events(on);
        }
        Ok(b)
    }

    /// Options from sqlx's connection options: the backend opens pools of its own with them.
    /// To have it use the application's pool, see [`PostgresOptions::from_pool`].
    pub fn builder(connect: PgConnectOptions) -> PostgresOptionsBuilder {
        let display = format!(
            "postgres://{}@{}:{}/{}",
            connect.get_username(),
            connect.get_host(),
            connect.get_port(),
            connect.get_database().unwrap_or("")
        );
        PostgresOptionsBuilder {
            opts: PostgresOptions {
                connect,
                schema: Self::DEFAULT_SCHEMA.to_owned(),
                clock: Clock::system(),
                max_connections: None,
                pool: None,
                acquire_timeout: Self::DEFAULT_ACQUIRE_TIMEOUT,
                poll_interval: Self::DEFAULT_POLL_INTERVAL,
                retention: Some(Self::DEFAULT_RETENTION),
                events: false,
                display,
            },
        }
    }

    /// Options for a backend that uses the application's `pool` for its ordinary operations
    /// (pushes, reserves, waits, admin calls), instead of a main pool of its own: see
    /// [`PostgresBackend::from_pool`](crate::PostgresBackend::from_pool), which also says on
    /// which runtime that work runs. The backend still opens, from the pool's connection
    /// options, its lease pool and its listener, so lease renewal never waits for the
    /// application's pool. Operations on the pool wait for a connection as long as the pool
    /// is set to; [`PostgresOptionsBuilder::acquire_timeout`] starts at that too and applies
    /// to the backend's own connections. The pool's size is the application's:
    /// [`PostgresOptionsBuilder::max_connections`] is refused by `build`.
    ///
    /// ```no_run
    /// use kosh_jobs_postgres::{PostgresBackend, PostgresOptions};
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = sqlx::PgPool::connect("postgres://app:secret@localhost/app").await?;
    /// let opts = PostgresOptions::from_pool(pool.clone()).schema("jobs").events(true).build()?;
    /// let backend = PostgresBackend::connect_with(opts).await?;
    /// # Ok(()) }
    /// ```
    pub fn from_pool(pool: PgPool) -> PostgresOptionsBuilder {
        let mut b = PostgresOptions::builder(PgConnectOptions::clone(&pool.connect_options()));
        b.opts.acquire_timeout = pool.options().get_acquire_timeout();
        b.opts.pool = Some(pool);
        b
    }

    /// The most connections of the backend's main pool: the application pool's own limit
    /// for options [`from_pool`](PostgresOptions::from_pool).
    pub fn max_connections(&self) -> u32 {
        match (&self.pool, self.max_connections) {
            (Some(pool), _) => pool.options().get_max_connections(),
            (None, n) => n.unwrap_or(Self::DEFAULT_MAX_CONNECTIONS),
        }
    }

    /// The schema the backend's tables live in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Whether lifecycle events are carried.
    pub fn events(&self) -> bool {
        self.events
    }

    /// Where it connects, without the password.
    pub fn display_url(&self) -> &str {
        &self.display
    }
}

/// Builds [`PostgresOptions`]; checked by [`PostgresOptionsBuilder::build`].
#[derive(Debug, Clone)]
pub struct PostgresOptionsBuilder {
    opts: PostgresOptions,
}

impl PostgresOptionsBuilder {
    /// The schema of the backend's tables (default `kosh`): 1 to 48 characters of lowercase
    /// ASCII letters, digits and `_`, not starting with a digit.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.opts.schema = schema.into();
        self
    }

    /// The clock (default: the system clock; tests pass a manual one).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.opts.clock = clock;
        self
    }

    /// The most connections the backend's main pool opens (default 10), besides the
    /// listener's and the two kept for heartbeats, finishes and releases (so at most `n + 3`
    /// in all). Not for options [`from_pool`](PostgresOptions::from_pool): the application's
    /// pool has its own size.
    pub fn max_connections(mut self, n: u32) -> Self {
        self.opts.max_connections = Some(n);
        self
    }

    /// How long an operation waits for a connection before failing as unavailable (default
    /// 10 s). With [`PostgresOptions::from_pool`]: how long the backend's own connections
    /// wait (default: the pool's acquire timeout); operations on the application's pool wait
    /// as that pool is set to.
    pub fn acquire_timeout(mut self, d: Duration) -> Self {
        self.opts.acquire_timeout = d;
        self
    }

    /// How often a waiting worker looks for work without a notification (default 2 s).
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.opts.poll_interval = d;
        self
    }

    /// How long completed jobs are kept (default 24 hours); `None` keeps them until purged.
    /// A reserving backend deletes older ones about once a minute, 1,000 rows per
    /// statement. Failed and cancelled jobs stay until purged.
    pub fn retention(mut self, keep: Option<Duration>) -> Self {
        self.opts.retention = keep;
        self
    }

    /// Carries lifecycle [events](kosh_jobs_core::events) between the processes using the
    /// schema, by `LISTEN`/`NOTIFY` on the channel `kosh_events.<schema>`; the URL parameter
    /// `events=true` does the same. Off by default: publishing costs one statement (one
    /// `pg_notify` per event) per batch of events on a connection of the main pool, and
    /// Postgres delivers every notification to every listening process through its shared
    /// notification queue, which a busy system feels. Subscribing costs one connection per
    /// process, shared by all its subscriptions and open only while one exists.
    ///
    /// A notification's payload is limited to 8000 bytes: an event too big for one is sent
    /// without its progress (a `Progress` event then carries none: read the job's progress
    /// with `status`), and with its error cut to fit, marked at the end.
    pub fn events(mut self, on: bool) -> Self {
        self.opts.events = on;
        self
    }

    /// Checks the options.
    pub fn build(self) -> Result<PostgresOptions> {
        validate_schema(&self.opts.schema)?;
        if self.opts.max_connections == Some(0) {
            return Err(PostgresError::InvalidInput(
                "max_connections must be at least 1".into(),
            ));
        }
        if self.opts.pool.is_some() && self.opts.max_connections.is_some() {
            return Err(PostgresError::InvalidInput(
                "max_connections sizes the backend's own pool; a backend on the application's \
                 pool uses that pool's size"
                    .into(),
            ));
        }
        if self.opts.poll_interval.is_zero() {
            return Err(PostgresError::InvalidInput(
                "poll_interval must be more than zero".into(),
            ));
        }
        Ok(self.opts)
    }
}

/// Checks a schema name (see [`PostgresOptionsBuilder::schema`]).
pub(crate) fn validate_schema(schema: &str) -> Result<()> {
    let ok = !schema.is_empty()
        && schema.len() <= 48
        && !schema.starts_with(|c: char| c.is_ascii_digit())
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(PostgresError::InvalidInput(format!(
            "schema name `{schema}` must be 1 to 48 characters of lowercase ASCII letters, \
             digits and `_`, not starting with a digit"
        )))
    }
}

/// The URL without the parameters of this crate, and their values: `schema` and `events`.
fn split_params(url: &str) -> Result<(String, Option<String>, Option<bool>)> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), None, None));
    };
    let mut schema = None;
    let mut events = None;
    let mut rest: Vec<&str> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("schema", value)) => schema = Some(value.to_owned()),
            Some(("events", value)) => {
                events = Some(match value {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(PostgresError::InvalidInput(format!(
                            "`events` must be `true` or `false`, not `{value}`"
                        )))
                    }
                })
            }
            _ => rest.push(pair),
        }
    }
    let base = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((base, schema, events))
}

/// `url` with the password of its user info replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let after = &url[scheme_end + 3..];
    let authority_end = after.find(['/', '?']).unwrap_or(after.len());
    let authority = &after[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &after[at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(
            redact("postgres://u:p%40ss@h:5/db?schema=x"),
            "postgres://u:***@h:5/db?schema=x"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
    }

    #[test]
    fn schema_comes_from_the_query_string() {
        let (base, schema, events) =
            split_params("postgres://h/db?sslmode=disable&schema=jobs").unwrap();
        assert_eq!(base, "postgres://h/db?sslmode=disable");
        assert_eq!(schema.as_deref(), Some("jobs"));
        assert_eq!(events, None);
        let o = PostgresOptions::from_url("postgresql://h/db")
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(o.schema(), "kosh");
        assert!(PostgresOptions::from_url("postgres://h/db?schema=Bad-Name")
            .unwrap()
            .build()
            .is_err());
    }

    #[test]
    fn events_are_off_unless_the_url_or_the_builder_says() {
        let off = PostgresOptions::from_url("postgres://h/db")
            .unwrap()
            .build()
            .unwrap();
        assert!(!off.events());
        let (base, schema, events) =
            split_params("postgres://h/db?events=true&sslmode=disable").unwrap();
        assert_eq!(
            (base.as_str(), schema, events),
            ("postgres://h/db?sslmode=disable", None, Some(true))
        );
        let on = PostgresOptions::from_url("postgres://h/db?schema=s&events=true")
            .unwrap()
            .build()
            .unwrap();
        assert!(on.events());
        assert_eq!(on.schema(), "s");
        let overridden = PostgresOptions::from_url("postgres://h/db?events=true")
            .unwrap()
            .events(false)
            .build()
            .unwrap();
        assert!(!overridden.events());
        let err = PostgresOptions::from_url("postgres://u:pw@h/db?events=1").unwrap_err();
        assert!(
            err.to_string()
                .contains("`events` must be `true` or `false`"),
            "{err}"
        );
    }
}
