//! Which job store, and opening it: the URL from `--url` or the environment (and `.env`),
//! `--prefix`, `--timeout`, and error messages that name the host but never a password.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kosh_jobs::AnyBackend;

use crate::args::Global;
use crate::error::CliError;

/// The environment variables read for the URL, in order.
pub(crate) const URL_VARS: [&str; 3] = ["KOSH_JOBS_URL", "JOBS_URL", "REDIS_URL"];

/// What a URL points at, for checks and messages.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Memory,
    /// A SQLite database; `None` for `sqlite::memory:`.
    Sqlite(Option<PathBuf>),
    /// Redis: the host list as written (`host:port[,host:port]`), and the password, to keep
    /// it out of every message.
    Redis {
        hosts: String,
        password: Option<String>,
    },
    /// Postgres: `host:port/database` as written, and the password, to keep it out of every
    /// message.
    Postgres {
        server: String,
        password: Option<String>,
    },
    Other,
}

impl Target {
    pub(crate) fn of(url: &str) -> Target {
        let url = url.trim();
        let scheme = url
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match scheme.as_str() {
            "memory" => Target::Memory,
            "sqlite" => {
                let rest = &url["sqlite:".len().min(url.len())..];
                let rest = rest.split('?').next().unwrap_or_default();
                let path = rest.strip_prefix("//").unwrap_or(rest);
                match path {
                    ":memory:" | "" => Target::Sqlite(None),
                    p => Target::Sqlite(Some(PathBuf::from(p))),
                }
            }
            "redis" | "rediss" | "redis+cluster" | "rediss+cluster" => {
                let rest = url.split_once("://").map(|(_, r)| r).unwrap_or_default();
                let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
                let authority = &rest[..end];
                let (userinfo, hosts) = match authority.rsplit_once('@') {
                    Some((u, h)) => (Some(u), h),
                    None => (None, authority),
                };
                let password = userinfo
                    .and_then(|u| u.split_once(':'))
                    .map(|(_, p)| p.to_owned())
                    .filter(|p| !p.is_empty());
                let hosts = hosts
                    .split(',')
                    .map(|h| {
                        if h.rsplit_once(':')
                            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
                        {
                            h.to_owned()
                        } else {
                            format!("{h}:6379")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(",");
                Target::Redis { hosts, password }
            }
            "postgres" | "postgresql" => {
                let rest = url.split_once("://").map(|(_, r)| r).unwrap_or_default();
                let end = rest.find(['?', '#']).unwrap_or(rest.len());
                let (userinfo, server) = match rest[..end].rsplit_once('@') {
                    Some((u, s)) => (Some(u), s),
                    None => (None, &rest[..end]),
                };
                let password = userinfo
                    .and_then(|u| u.split_once(':'))
                    .map(|(_, p)| p.to_owned())
                    .filter(|p| !p.is_empty());
                Target::Postgres {
                    server: server.to_owned(),
                    password,
                }
            }
            _ => Target::Other,
        }
    }

    /// `redis at 127.0.0.1:6379`, `the SQLite file data/jobs.db`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Target::Memory => "the memory store".into(),
            Target::Sqlite(Some(p)) => format!("the SQLite file {}", p.display()),
            Target::Sqlite(None) => "an in-memory SQLite database".into(),
            Target::Redis { hosts, .. } => format!("redis at {hosts}"),
            Target::Postgres { server, .. } => format!("postgres at {server}"),
            Target::Other => "the job store".into(),
        }
    }

    /// `text` with the password (as written and percent-decoded) replaced by `***`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let (Target::Redis {
            password: Some(p), ..
        }
        | Target::Postgres {
            password: Some(p), ..
        }) = self
        else {
            return text.to_owned();
        };
        let mut out = text.replace(p.as_str(), "***");
        let decoded = percent_decode(p);
        if !decoded.is_empty() && decoded != *p {
            out = out.replace(&decoded, "***");
        }
        out
    }
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The URL: `--url`, else the first of [`URL_VARS`] set (the environment wins over `.env`).
pub(crate) fn resolve_url(global: &Global) -> Result<String, CliError> {
    if let Some(url) = &global.url {
        return Ok(url.clone());
    }
    load_dotenv()?;
    for var in URL_VARS {
        if let Ok(url) = std::env::var(var) {
            if !url.trim().is_empty() {
                return Ok(url);
            }
        }
    }
    Err(CliError::Usage(format!(
        "no job store given: pass --url (e.g. --url sqlite://data/jobs.db, --url \
         redis://localhost:6379 or --url postgres://localhost/app) or set {}",
        URL_VARS.join(", ")
    )))
}

/// Reads `./.env` (only the current folder), without overriding variables already set.
fn load_dotenv() -> Result<(), CliError> {
    let path = Path::new(".env");
    if !path.exists() {
        return Ok(());
    }
    dotenvy::from_path(path)
        .map_err(|e| CliError::Failed(format!("cannot read .env in the current folder: {e}")))
}

/// `url` with `prefix=` in its query set to `prefix` (replacing one already there).
pub(crate) fn with_prefix(url: &str, prefix: &str) -> Result<String, CliError> {
    if !matches!(Target::of(url), Target::Redis { .. }) {
        return Err(CliError::Usage(
            "--prefix is for redis URLs (redis://, rediss://, redis+cluster://)".into(),
        ));
    }
    if prefix.is_empty() {
        return Err(CliError::Usage("--prefix must not be empty".into()));
    }
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => (url, ""),
    };
    let mut pairs: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty() && p.split('=').next() != Some("prefix"))
        .map(str::to_owned)
        .collect();
    pairs.push(format!("prefix={}", percent_encode(prefix)));
    Ok(format!("{base}?{}", pairs.join("&")))
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Opens the store for a command. A read-only command never creates a SQLite file: a
/// missing file is an error naming it.
pub(crate) async fn open(
    global: &Global,
    read_only: bool,
) -> Result<(AnyBackend, Target), CliError> {
    let mut url = resolve_url(global)?;
    if let Some(prefix) = &global.prefix {
        url = with_prefix(&url, prefix)?;
    }
    let target = Target::of(&url);
    if read_only {
        if let Target::Sqlite(Some(path)) = &target {
            // The backend's own guard (`create=false`), and a check first for a clear message.
            if !url.contains("create=") {
                url.push(if url.contains('?') { '&' } else { '?' });
                url.push_str("create=false");
            }
            if !path.exists() {
                return Err(CliError::Failed(format!(
                    "no job database at {}: read-only commands do not create one (a worker, \
                     `kosh-jobs enqueue` or the application does); check --url or the working \
                     folder",
                    path.display()
                )));
            }
        }
    }
    let backend = connect(&url, &target, global.timeout).await?;
    Ok((backend, target))
}

async fn connect(url: &str, target: &Target, timeout: Duration) -> Result<AnyBackend, CliError> {
    match tokio::time::timeout(timeout, kosh_jobs::connect(url)).await {
        Ok(Ok(backend)) => Ok(backend),
        Ok(Err(e)) => Err(CliError::from_kosh(
            e,
            target,
            &format!("cannot open {}", target.describe()),
        )),
        Err(_) => Err(CliError::Failed(format!(
            "cannot reach {} within {} (--timeout)",
            target.describe(),
            humantime::format_duration(timeout)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(Target::of("memory:"), Target::Memory);
        assert_eq!(
            Target::of("sqlite://data/jobs.db?busy_timeout_ms=5"),
            Target::Sqlite(Some("data/jobs.db".into()))
        );
        assert_eq!(
            Target::of("sqlite:///abs/jobs.db"),
            Target::Sqlite(Some("/abs/jobs.db".into()))
        );
        assert_eq!(Target::of("sqlite::memory:"), Target::Sqlite(None));
        assert_eq!(
            Target::of("redis://user:s3cr%40t@cache.internal/2?prefix=x"),
            Target::Redis {
                hosts: "cache.internal:6379".into(),
                password: Some("s3cr%40t".into())
            }
        );
        assert_eq!(
            Target::of("redis+cluster://a:7000,b:7001").describe(),
            "redis at a:7000,b:7001"
        );
    }

    #[test]
    fn passwords_are_scrubbed() {
        let t = Target::of("redis://:s3cr%40t@localhost:1");
        assert_eq!(
            t.scrub("auth s3cr@t and s3cr%40t failed"),
            "auth *** and *** failed"
        );
        assert_eq!(Target::Memory.scrub("abc"), "abc");
        let pg = Target::of("postgres://app:pa%24s@db.internal:5433/app?schema=kosh");
        assert_eq!(pg.describe(), "postgres at db.internal:5433/app");
        assert_eq!(pg.scrub("pa$s or pa%24s"), "*** or ***");
        assert_eq!(
            Target::of("postgresql://db/app").describe(),
            "postgres at db/app"
        );
    }

    #[test]
    fn prefix_replaces_the_query_prefix() {
        assert_eq!(
            with_prefix("redis://h:1?prefix=old&timeout=2s", "new app").unwrap(),
            "redis://h:1?timeout=2s&prefix=new%20app"
        );
        assert_eq!(
            with_prefix("redis://h:1", "app").unwrap(),
            "redis://h:1?prefix=app"
        );
        assert!(with_prefix("sqlite://x.db", "app").is_err());
    }
}
