//! The connection URL: scheme, credentials, hosts, database and the options in its query
//! string. The grammar is documented on [`crate::RedisBackend::connect`].

use std::time::Duration;

use crate::error::RedisError;
use crate::options::Node;

/// The options a URL's query string may set, in the order error messages list them.
pub(crate) const QUERY_KEYS: &[&str] = &[
    "prefix",
    "timeout",
    "keep_completed_for",
    "keep_completed_max",
    "ca_file",
    "coalesce_enqueues",
    "events",
];

/// What one URL says.
pub(crate) struct ParsedUrl {
    /// One node, or several for a cluster URL with a host list.
    pub(crate) nodes: Vec<Node>,
    /// The scheme asked for Redis Cluster.
    pub(crate) cluster: bool,
    /// The options of the query string (`None`: not given).
    pub(crate) query: UrlQuery,
}

/// The options of a URL's query string; each `None` when the URL does not set it.
#[derive(Default)]
pub(crate) struct UrlQuery {
    pub(crate) prefix: Option<String>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) keep_completed_for: Option<Option<Duration>>,
    pub(crate) keep_completed_max: Option<Option<u64>>,
    /// A PEM file of root certificates to trust for `rediss://` (a private CA), read when
    /// the options are built.
    pub(crate) ca_file: Option<String>,
    /// Whether concurrent single enqueues share script calls.
    pub(crate) coalesce_enqueues: Option<bool>,
    /// Whether lifecycle events are carried (`events=true`).
    pub(crate) events: Option<bool>,
}

impl UrlQuery {
    fn is_empty(&self) -> bool {
        self.prefix.is_none()
            && self.timeout.is_none()
            && self.keep_completed_for.is_none()
            && self.keep_completed_max.is_none()
            && self.ca_file.is_none()
            && self.coalesce_enqueues.is_none()
            && self.events.is_none()
    }
}

fn invalid(msg: impl Into<String>) -> RedisError {
    RedisError::Config(msg.into())
}

/// Parses a URL. `seed_only` is for the extra seed nodes of a cluster, which may not carry
/// options. No error message repeats the URL: it may hold a password.
pub(crate) fn parse(raw: &str, seed_only: bool) -> Result<ParsedUrl, RedisError> {
    let raw = raw.trim();
    let (scheme, rest) = raw.split_once("://").ok_or_else(|| {
        invalid(
            "a redis url starts with redis://, rediss://, redis+cluster:// or rediss+cluster://",
        )
    })?;
    let scheme = scheme.to_ascii_lowercase();
    let (tls, cluster) = match scheme.as_str() {
        "redis" => (false, false),
        "rediss" => (true, false),
        "redis+cluster" => (false, true),
        "rediss+cluster" => (true, true),
        other => {
            return Err(invalid(format!(
                "unsupported url scheme `{other}`: use redis://, rediss://, redis+cluster:// or \
                 rediss+cluster://"
            )))
        }
    };
    // The authority ends at the path, the query or the fragment; user info ends at its last
    // `@` (as the `url` crate reads it), so the host list comes after that.
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let hosts: Vec<&str> = hosts.split(',').collect();
    if hosts.len() > 1 && !cluster {
        return Err(invalid(
            "a redis url with several hosts needs the redis+cluster:// or rediss+cluster:// scheme",
        ));
    }
    let mut nodes = Vec::with_capacity(hosts.len());
    let mut query = UrlQuery::default();
    for (i, host) in hosts.iter().enumerate() {
        if host.is_empty() {
            return Err(invalid("the redis url has an empty host"));
        }
        let userinfo = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
        // The first host carries the path and the query; the others are more seeds.
        let tail = if i == 0 { tail } else { "" };
        let url = url::Url::parse(&format!("{scheme}://{userinfo}{host}{tail}"))
            .map_err(|e| invalid(format!("invalid redis url: {e}")))?;
        nodes.push(node(&url, tls)?);
        if i == 0 {
            if url.fragment().is_some() {
                return Err(invalid(
                    "the redis url has a `#` fragment; options go in the query string \
                     (`?prefix=myapp&timeout=2s`)",
                ));
            }
            query = parse_query(&url)?;
        }
    }
    if seed_only && !query.is_empty() {
        return Err(invalid(
            "options go in the query string of the first redis url, not of a cluster seed node",
        ));
    }
    if cluster && nodes.iter().any(|n| n.db != 0) {
        return Err(invalid("redis cluster has only database 0"));
    }
    Ok(ParsedUrl {
        nodes,
        cluster,
        query,
    })
}

/// The node of a single-host URL.
fn node(url: &url::Url, tls: bool) -> Result<Node, RedisError> {
    let host = match url.host() {
        Some(url::Host::Domain(d)) if !d.is_empty() => d.to_owned(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        _ => return Err(invalid("the redis url has no host")),
    };
    let port = url.port().unwrap_or(6379);
    let username = match url.username() {
        "" => None,
        u => Some(percent_decode(u).ok_or_else(|| {
            invalid("the user name of the redis url is not valid percent-encoded UTF-8")
        })?),
    };
    let password = match url.password() {
        None => None,
        Some(p) => Some(percent_decode(p).ok_or_else(|| {
            invalid("the password of the redis url is not valid percent-encoded UTF-8")
        })?),
    };
    let db =
        match url.path().trim_start_matches('/') {
            "" => 0,
            d => d.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                invalid(format!("redis url path `/{d}` is not a database number"))
            })?,
        };
    Ok(Node {
        host,
        port,
        tls,
        username,
        password,
        db,
    })
}

/// The options of the query string; an unknown key, a repeated one or a bad value is an
/// error that names the key.
fn parse_query(url: &url::Url) -> Result<UrlQuery, RedisError> {
    let mut q = UrlQuery::default();
    let mut seen: Vec<String> = Vec::new();
    for (key, value) in url.query_pairs() {
        let key = key.into_owned();
        if seen.contains(&key) {
            return Err(invalid(format!(
                "option `{key}` appears twice in the redis url"
            )));
        }
        let bad = |expected: &str| {
            invalid(format!(
                "option `{key}` of the redis url must be {expected}, not `{value}`"
            ))
        };
        match key.as_str() {
            "prefix" => q.prefix = Some(value.clone().into_owned()),
            "timeout" => {
                q.timeout = Some(
                    parse_duration(&value)
                        .ok_or_else(|| bad("a duration such as `500ms`, `2s` or `1m`"))?,
                )
            }
            "keep_completed_for" => {
                q.keep_completed_for = Some(match value.as_ref() {
                    "none" => None,
                    v => Some(parse_duration(v).ok_or_else(|| {
                        bad("a duration such as `30m`, `24h` or `7d`, or `none`")
                    })?),
                })
            }
            "keep_completed_max" => {
                q.keep_completed_max = Some(match value.as_ref() {
                    "none" => None,
                    v => Some(
                        v.parse::<u64>()
                            .map_err(|_| bad("a number of jobs, or `none`"))?,
                    ),
                })
            }
            "ca_file" => {
                if value.is_empty() {
                    return Err(bad("the path of a PEM file of CA certificates"));
                }
                q.ca_file = Some(value.clone().into_owned())
            }
            "coalesce_enqueues" => {
                q.coalesce_enqueues = Some(match value.as_ref() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad("`true` or `false`")),
                })
            }
            "events" => {
                q.events = Some(match value.as_ref() {
                    "true" | "on" | "1" => true,
                    "false" | "off" | "0" => false,
                    _ => return Err(bad("`true` or `false`")),
                })
            }
            _ => {
                return Err(invalid(format!(
                    "unknown option `{key}` in the redis url; the options are {}",
                    QUERY_KEYS.join(", ")
                )))
            }
        }
        seen.push(key);
    }
    Ok(q)
}

/// `500ms`, `2s`, `1m`, `3h`, `7d`: a whole number and a unit.
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    if n.is_empty() {
        return None;
    }
    let n: u64 = n.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        "d" => n.checked_mul(86_400).map(Duration::from_secs),
        _ => None,
    }
}

/// Percent-decoding of URL user info (`%40` → `@`).
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("3h"), Some(Duration::from_secs(3 * 3600)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(7 * 86_400)));
        for bad in [
            "",
            "2",
            "s",
            "-1s",
            "1.5s",
            "2 s",
            "2S",
            "2sec",
            "1x",
            "99999999999999999999s",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(parse_duration(&format!("{}d", u64::MAX)), None);
    }

    #[test]
    fn cluster_host_lists() {
        let p = parse(
            "rediss+cluster://u:p%2Cw@h1:7000,[::1]:7001,10.0.0.3/?prefix=app",
            false,
        )
        .unwrap();
        assert!(p.cluster);
        let addrs: Vec<String> = p.nodes.iter().map(Node::addr).collect();
        assert_eq!(addrs, ["h1:7000", "[::1]:7001", "10.0.0.3:6379"]);
        for n in &p.nodes {
            assert!(n.tls);
            assert_eq!(n.username.as_deref(), Some("u"));
            assert_eq!(n.password.as_deref(), Some("p,w"));
        }
        assert_eq!(p.query.prefix.as_deref(), Some("app"));
        // A password with `@` and `,` still ends at the last `@`.
        let p = parse("redis+cluster://:a@b,c@h1:1,h2:2", false).unwrap();
        assert_eq!(p.nodes.len(), 2);
        assert_eq!(p.nodes[1].password.as_deref(), Some("a@b,c"));
    }

    #[test]
    fn host_list_errors() {
        for (url, needle) in [
            ("redis://h1:1,h2:2", "redis+cluster://"),
            ("redis+cluster://h1:1,,h2:2", "empty host"),
            ("redis+cluster://h1:1,", "empty host"),
            ("redis+cluster://h1:1,h2:x", "invalid redis url"),
            ("redis+cluster://h1/3", "only database 0"),
        ] {
            let e = parse(url, false).err().expect(url).to_string();
            assert!(e.contains(needle), "{url}: {e}");
        }
    }

    #[test]
    fn query_options() {
        let p = parse(
            "redis://h/1?prefix=my-app&timeout=250ms&keep_completed_for=none&keep_completed_max=5",
            false,
        )
        .unwrap();
        assert_eq!(p.nodes[0].db, 1);
        assert_eq!(p.query.prefix.as_deref(), Some("my-app"));
        assert_eq!(p.query.timeout, Some(Duration::from_millis(250)));
        assert_eq!(p.query.keep_completed_for, Some(None));
        assert_eq!(p.query.keep_completed_max, Some(Some(5)));
        let p = parse(
            "redis://h?keep_completed_for=7d&keep_completed_max=none",
            false,
        )
        .unwrap();
        assert_eq!(
            p.query.keep_completed_for,
            Some(Some(Duration::from_secs(7 * 86_400)))
        );
        assert_eq!(p.query.keep_completed_max, Some(None));
        // A file path, percent-decoded; read later, when the options are built.
        let p = parse("rediss://h?ca_file=/etc/my%20certs/ca.pem", false).unwrap();
        assert_eq!(p.query.ca_file.as_deref(), Some("/etc/my certs/ca.pem"));
        assert!(parse("rediss://h?ca_file=ca.pem", true).is_err());
        assert!(parse("redis://h", false).unwrap().query.is_empty());
        assert!(parse("redis://h?prefix=x", true).is_err());
    }

    #[test]
    fn query_errors_name_the_key() {
        for (url, needles) in [
            (
                "redis://:pw@h?colour=red",
                &[
                    "`colour`",
                    "prefix, timeout, keep_completed_for, keep_completed_max, ca_file, \
                     coalesce_enqueues",
                ][..],
            ),
            ("redis://:pw@h?timeout=2", &["`timeout`", "`500ms`", "`2`"]),
            (
                "redis://:pw@h?coalesce_enqueues=no",
                &["`coalesce_enqueues`", "`true` or `false`", "`no`"],
            ),
            ("redis://:pw@h?timeout=", &["`timeout`"]),
            ("redis://:pw@h?timeout", &["`timeout`"]),
            (
                "redis://:pw@h?keep_completed_max=-1",
                &["`keep_completed_max`"],
            ),
            (
                "redis://:pw@h?keep_completed_for=soon",
                &["`keep_completed_for`"],
            ),
            ("redis://:pw@h?prefix=a&prefix=b", &["`prefix`", "twice"]),
            ("rediss://:pw@h?ca_file=", &["`ca_file`", "PEM file"]),
            (
                "rediss://:pw@h?ca_file=a&ca_file=b",
                &["`ca_file`", "twice"],
            ),
            ("redis://:pw@h#frag", &["fragment"]),
        ] {
            let e = parse(url, false).err().expect(url).to_string();
            for n in needles {
                assert!(e.contains(n), "{url}: `{e}` lacks {n}");
            }
            assert!(!e.contains("pw"), "{e}");
        }
    }
}
