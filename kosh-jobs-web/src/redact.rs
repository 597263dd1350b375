//! A store's URL as the dashboard may show it: no password, no options but the key prefix.

/// `url` without its user information (user and password) and without its query string,
/// except a `prefix=` option, which names the application's keys and is no secret.
///
/// ```
/// use kosh_jobs_web::redact_url;
/// assert_eq!(redact_url("redis://:s3cret@cache:6379/2?prefix=app&timeout=2s"), "redis://cache:6379/2?prefix=app");
/// assert_eq!(redact_url("rediss://user:p%40ss@a:1,b:2"), "rediss://a:1,b:2");
/// assert_eq!(redact_url("sqlite://data/jobs.db?busy_timeout_ms=50"), "sqlite://data/jobs.db");
/// assert_eq!(redact_url("memory:"), "memory:");
/// ```
pub fn redact_url(url: &str) -> String {
    let url = url.trim();
    let url = url.split('#').next().unwrap_or_default();
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(end);
            let hosts = authority
                .rsplit_once('@')
                .map_or(authority, |(_, hosts)| hosts);
            format!("{scheme}://{hosts}{path}")
        }
        None => base
            .rsplit_once('@')
            .map_or(base, |(_, rest)| rest)
            .to_owned(),
    };
    let prefix = query.and_then(|q| {
        q.split('&')
            .find(|p| p.starts_with("prefix="))
            .filter(|p| p.len() > "prefix=".len())
    });
    if let Some(p) = prefix {
        out.push('?');
        out.push_str(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_survive() {
        for url in [
            "redis://:hunter2@localhost:6379",
            "redis://default:hunter2@localhost:6379/0?prefix=x",
            "rediss+cluster://u:hunter2@a:7000,b:7001",
            "redis://localhost:6379?password=hunter2",
            "weird:u:hunter2@host",
            "redis://u:hunter2@h/0#hunter2",
        ] {
            let r = redact_url(url);
            assert!(!r.contains("hunter2"), "{url} -> {r}");
        }
        assert_eq!(redact_url("redis://h:1?prefix="), "redis://h:1");
        assert_eq!(redact_url("sqlite::memory:"), "sqlite::memory:");
    }
}
