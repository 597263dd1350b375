//! Connection options: URL parsing, defaults, validation.

use std::fmt;
use std::time::Duration;

use kosh_jobs_core::Clock;

use crate::error::RedisError;
use crate::keys::validate_prefix;

/// Completed jobs are deleted this long after they finished, by default.
pub const DEFAULT_KEEP_COMPLETED_FOR: Duration = Duration::from_secs(24 * 60 * 60);
/// At most this many completed jobs are kept per queue, by default (oldest deleted first).
pub const DEFAULT_KEEP_COMPLETED_MAX: u64 = 10_000;
/// The key prefix used unless set.
pub const DEFAULT_PREFIX: &str = "kosh";
/// How long a command, a connection attempt or a wait for reconnection may take, by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest [`RedisOptionsBuilder::timeout`] accepted (1 hour): a timeout is a bound on one
/// command or connection attempt, and the connection code adds and multiplies it.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// How to reach Redis and how to store jobs there. Validated when built.
///
/// URLs: `redis://[user[:password]@]host[:port][/db]`, `rediss://…` for TLS (Upstash, Redis
/// Cloud, ElastiCache with in-transit encryption), and `redis+cluster://…` /
/// `rediss+cluster://…` for Redis Cluster (add more seed nodes with
/// [`RedisOptionsBuilder::cluster_node`]). Neither `Debug` nor any error shows the password.
///
/// Retention: completed jobs are deleted [`DEFAULT_KEEP_COMPLETED_FOR`] (24 h) after they
/// finished, and beyond [`DEFAULT_KEEP_COMPLETED_MAX`] (10,000) per queue the oldest go first;
/// failed and cancelled jobs are kept until [`kosh_jobs_core::Backend::purge`]d.
///
/// ```
/// use kosh_jobs_redis::RedisOptions;
/// use std::time::Duration;
///
/// let opts = RedisOptions::builder("rediss://default:s3cret@eu1-example.upstash.io:6379/0")
///     .prefix("myapp")
///     .keep_completed_for(Some(Duration::from_secs(3600)))
///     .build()
///     .unwrap();
/// assert_eq!(opts.prefix(), "myapp");
/// assert!(!format!("{opts:?}").contains("s3cret"));
/// assert!(RedisOptions::from_url("http://localhost").is_err());
/// ```
#[derive(Clone)]
pub struct RedisOptions {
    pub(crate) nodes: Vec<Node>,
    pub(crate) cluster: bool,
    pub(crate) prefix: String,
    pub(crate) clock: Clock,
    pub(crate) timeout: Duration,
    pub(crate) keep_completed_for: Option<Duration>,
    pub(crate) keep_completed_max: Option<u64>,
    pub(crate) tls_root_cert: Option<Vec<u8>>,
}

/// One server address with its credentials.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) tls: bool,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) db: i64,
}

impl Node {
    /// `host:port`, for messages.
    pub(crate) fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    pub(crate) fn connection_info(&self) -> redis::ConnectionInfo {
        let addr = if self.tls {
            redis::ConnectionAddr::TcpTls {
                host: self.host.clone(),
                port: self.port,
                insecure: false,
                tls_params: None,
            }
        } else {
            redis::ConnectionAddr::Tcp(self.host.clone(), self.port)
        };
        redis::ConnectionInfo {
            addr,
            redis: redis::RedisConnectionInfo {
                db: self.db,
                username: self.username.clone(),
                password: self.password.clone(),
                protocol: redis::ProtocolVersion::RESP2,
            },
        }
    }
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("addr", &self.addr())
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("db", &self.db)
            .finish()
    }
}

/// Parses one URL; the result says whether its scheme asked for cluster mode.
fn parse_url(raw: &str) -> Result<(Node, bool), RedisError> {
    let url =
        url::Url::parse(raw).map_err(|e| RedisError::Config(format!("invalid redis url: {e}")))?;
    let (tls, cluster) = match url.scheme() {
        "redis" => (false, false),
        "rediss" => (true, false),
        "redis+cluster" => (false, true),
        "rediss+cluster" => (true, true),
        other => {
            return Err(RedisError::Config(format!(
                "unsupported url scheme `{other}`: use redis://, rediss://, redis+cluster:// or rediss+cluster://"
            )))
        }
    };
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_owned(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err(RedisError::Config("redis url has no host".into())),
    };
    let port = url.port().unwrap_or(6379);
    let username = match url.username() {
        "" => None,
        u => Some(percent_decode(u).ok_or_else(|| {
            RedisError::Config("the user name of the redis url is not valid UTF-8".into())
        })?),
    };
    let password = match url.password() {
        None => None,
        Some(p) => Some(percent_decode(p).ok_or_else(|| {
            RedisError::Config("the password of the redis url is not valid UTF-8".into())
        })?),
    };
    let db = match url.path().trim_start_matches('/') {
        "" => 0,
        d => d.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            RedisError::Config(format!("redis url path `/{d}` is not a database number"))
        })?,
    };
    if cluster && db != 0 {
        return Err(RedisError::Config(
            "redis cluster has only database 0".into(),
        ));
    }
    Ok((
        Node {
            host,
            port,
            tls,
            username,
            password,
            db,
        },
        cluster,
    ))
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

impl RedisOptions {
    /// Options from a URL, everything else default.
    pub fn from_url(url: &str) -> Result<RedisOptions, RedisError> {
        RedisOptions::builder(url).build()
    }

    /// A builder starting from a URL.
    pub fn builder(url: impl Into<String>) -> RedisOptionsBuilder {
        RedisOptionsBuilder {
            urls: vec![url.into()],
            cluster: false,
            prefix: DEFAULT_PREFIX.to_owned(),
            clock: Clock::system(),
            timeout: DEFAULT_TIMEOUT,
            keep_completed_for: Some(DEFAULT_KEEP_COMPLETED_FOR),
            keep_completed_max: Some(DEFAULT_KEEP_COMPLETED_MAX),
            tls_root_cert: None,
        }
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether these options connect to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// The `host:port` of each configured node (no credentials).
    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(Node::addr).collect()
    }

    /// The clock the backend will read.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }
}

impl fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisOptions")
            .field("nodes", &self.nodes)
            .field("cluster", &self.cluster)
            .field("prefix", &self.prefix)
            .field("clock", &self.clock)
            .field("timeout", &self.timeout)
            .field("keep_completed_for", &self.keep_completed_for)
            .field("keep_completed_max", &self.keep_completed_max)
            .field(
                "tls_root_cert",
                &self.tls_root_cert.as_ref().map(|_| "<pem>"),
            )
            .finish()
    }
}

/// Builds [`RedisOptions`]; see there for the URL forms and defaults.
///
/// ```
/// use kosh_jobs_redis::RedisOptions;
/// let opts = RedisOptions::builder("redis+cluster://127.0.0.1:7000")
///     .cluster_node("redis://127.0.0.1:7001")
///     .build()
///     .unwrap();
/// assert!(opts.is_cluster());
/// assert_eq!(opts.addrs(), ["127.0.0.1:7000", "127.0.0.1:7001"]);
/// ```
#[derive(Clone)]
#[must_use]
pub struct RedisOptionsBuilder {
    urls: Vec<String>,
    cluster: bool,
    prefix: String,
    clock: Clock,
    timeout: Duration,
    keep_completed_for: Option<Duration>,
    keep_completed_max: Option<u64>,
    tls_root_cert: Option<Vec<u8>>,
}

impl fmt::Debug for RedisOptionsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // URLs may hold passwords: show only how many there are.
        f.debug_struct("RedisOptionsBuilder")
            .field("urls", &self.urls.len())
            .field("cluster", &self.cluster)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisOptionsBuilder {
    /// The prefix of every key (default `kosh`): several applications, or test runs, can share
    /// one Redis database under different prefixes. ASCII letters, digits, `-`, `_`, `.`, `:`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The clock (default: the system clock). Tests pass [`Clock::manual`].
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// How long a connection attempt, a command's reply, or a wait for reconnection may take
    /// before the operation fails as unavailable (default 5 s, at most [`MAX_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connect to a Redis Cluster (also implied by a `redis+cluster://` URL).
    pub fn cluster(mut self, cluster: bool) -> Self {
        self.cluster = cluster;
        self
    }

    /// Another seed node of the cluster; turns cluster mode on.
    pub fn cluster_node(mut self, url: impl Into<String>) -> Self {
        self.urls.push(url.into());
        self.cluster = true;
        self
    }

    /// How long completed jobs are kept after they finished; `None` keeps them until purged
    /// or pushed out by [`RedisOptionsBuilder::keep_completed_max`]. Default 24 h.
    pub fn keep_completed_for(mut self, age: Option<Duration>) -> Self {
        self.keep_completed_for = age;
        self
    }

    /// How many completed jobs each queue keeps at most (oldest deleted first); `None` for no
    /// limit. Default 10,000.
    pub fn keep_completed_max(mut self, count: Option<u64>) -> Self {
        self.keep_completed_max = count;
        self
    }

    /// A PEM root certificate to trust for `rediss://` (a private CA); by default the web PKI
    /// roots are trusted.
    pub fn tls_root_cert_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_root_cert = Some(pem.into());
        self
    }

    /// Checks everything and returns the options.
    pub fn build(self) -> Result<RedisOptions, RedisError> {
        let mut nodes = Vec::with_capacity(self.urls.len());
        let mut cluster = self.cluster;
        for url in &self.urls {
            let (node, c) = parse_url(url)?;
            cluster |= c;
            nodes.push(node);
        }
        if nodes.len() > 1 && !cluster {
            return Err(RedisError::Config(
                "several nodes are only allowed in cluster mode".into(),
            ));
        }
        if cluster && nodes.iter().any(|n| n.db != 0) {
            return Err(RedisError::Config(
                "redis cluster has only database 0".into(),
            ));
        }
        validate_prefix(&self.prefix).map_err(RedisError::Config)?;
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            return Err(RedisError::Config(format!(
                "timeout must be more than zero and at most {} s, got {:?}",
                MAX_TIMEOUT.as_secs(),
                self.timeout
            )));
        }
        if self.tls_root_cert.is_some() && !nodes.iter().all(|n| n.tls) {
            return Err(RedisError::Config(
                "a TLS root certificate needs rediss:// urls".into(),
            ));
        }
        Ok(RedisOptions {
            nodes,
            cluster,
            prefix: self.prefix,
            clock: self.clock,
            timeout: self.timeout,
            keep_completed_for: self.keep_completed_for,
            keep_completed_max: self.keep_completed_max,
            tls_root_cert: self.tls_root_cert,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_credentials_db_and_tls() {
        let o = RedisOptions::from_url("rediss://alice:p%40ss@example.com:6380/3").unwrap();
        let n = &o.nodes[0];
        assert_eq!(n.host, "example.com");
        assert_eq!(n.port, 6380);
        assert!(n.tls);
        assert_eq!(n.username.as_deref(), Some("alice"));
        assert_eq!(n.password.as_deref(), Some("p@ss"));
        assert_eq!(n.db, 3);
        let o = RedisOptions::from_url("redis://:secret@localhost").unwrap();
        assert_eq!(o.nodes[0].username, None);
        assert_eq!(o.nodes[0].password.as_deref(), Some("secret"));
        assert_eq!(o.nodes[0].port, 6379);
        assert_eq!(o.nodes[0].db, 0);
    }

    #[test]
    fn rejects_bad_urls_without_echoing_the_password() {
        for bad in [
            "http://u:topsecret@localhost",
            "redis://u:topsecret@localhost/x",
            "redis://u:topsecret@localhost/-1",
            "redis+cluster://u:topsecret@localhost/2",
            "not a url topsecret",
        ] {
            let e = RedisOptions::from_url(bad).unwrap_err();
            assert!(!e.to_string().contains("topsecret"), "{e}");
            assert!(!format!("{e:?}").contains("topsecret"), "{e:?}");
        }
        assert!(RedisOptions::builder("redis://localhost")
            .prefix("a{b}")
            .build()
            .is_err());
        assert!(RedisOptions::builder("redis://localhost")
            .timeout(Duration::ZERO)
            .build()
            .is_err());
        // A huge timeout would overflow the connection code's arithmetic: refused when built.
        let e = RedisOptions::builder("redis://localhost")
            .timeout(Duration::MAX)
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("at most 3600 s"), "{e}");
        assert!(RedisOptions::builder("redis://localhost")
            .timeout(MAX_TIMEOUT)
            .build()
            .is_ok());
    }

    #[test]
    fn debug_never_shows_the_password() {
        let b = RedisOptions::builder("redis://user:hunter2@localhost:1234/1");
        assert!(!format!("{b:?}").contains("hunter2"));
        let o = b.build().unwrap();
        let d = format!("{o:?}");
        assert!(!d.contains("hunter2"), "{d}");
        assert!(d.contains("localhost:1234"), "{d}");
    }
}
