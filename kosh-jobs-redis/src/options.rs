//! Connection options: URL parsing, defaults, validation.

use std::fmt;
use std::time::Duration;

use kosh_jobs_core::Clock;

use crate::error::RedisError;
use crate::keys::validate_prefix;
use crate::redis_url;

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
/// URLs: `redis://[user[:password]@]host[:port][/db][?options]`, `rediss://…` for TLS
/// (Upstash, Redis Cloud, ElastiCache with in-transit encryption), and
/// `redis+cluster://host1:port1,host2:port2` / `rediss+cluster://…` for Redis Cluster (more
/// seed nodes also with [`RedisOptionsBuilder::cluster_node`]). The query string sets
/// `prefix`, `timeout`, `keep_completed_for`, `keep_completed_max`, `ca_file` (a private
/// CA for `rediss://`, read when the options are built) and `events` (`true` to carry
/// lifecycle [events](kosh_jobs_core::events)); the full grammar is on
/// [`RedisBackend::connect`](crate::RedisBackend::connect). A builder method wins over the
/// same option in the URL. Neither `Debug` nor any error shows the password.
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
///
/// let opts = RedisOptions::from_url("redis://localhost:6379/2?prefix=myapp&timeout=500ms")?;
/// assert_eq!((opts.prefix(), opts.timeout()), ("myapp", Duration::from_millis(500)));
/// # Ok::<(), kosh_jobs_redis::RedisError>(())
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
    pub(crate) coalesce_enqueues: bool,
    pub(crate) events: bool,
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

    pub(crate) fn connection_info(&self) -> Result<redis::ConnectionInfo, RedisError> {
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
        let info = redis::IntoConnectionInfo::into_connection_info(addr)
            .map_err(|e| RedisError::Config(format!("redis client: {e}")))?;
        Ok(info.set_redis_settings(self.settings()))
    }

    /// What a connection sends after it opens: credentials, database, protocol.
    pub(crate) fn settings(&self) -> redis::RedisConnectionInfo {
        // No `CLIENT SETINFO` after connecting: two requests fewer per connection, which
        // hosted Redis bills.
        let mut settings = redis::RedisConnectionInfo::default()
            .set_db(self.db)
            .set_protocol(redis::ProtocolVersion::RESP2)
            .set_skip_set_lib_name();
        if let Some(u) = &self.username {
            settings = settings.set_username(u);
        }
        if let Some(p) = &self.password {
            settings = settings.set_password(p);
        }
        settings
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

impl RedisOptions {
    /// Options from a URL (with the options of its query string), everything else default.
    pub fn from_url(url: &str) -> Result<RedisOptions, RedisError> {
        RedisOptions::builder(url).build()
    }

    /// A builder starting from a URL. The URL is checked by
    /// [`RedisOptionsBuilder::build`].
    pub fn builder(url: impl Into<String>) -> RedisOptionsBuilder {
        RedisOptionsBuilder {
            urls: vec![url.into()],
            cluster: false,
            prefix: None,
            clock: Clock::system(),
            timeout: None,
            keep_completed_for: None,
            keep_completed_max: None,
            tls_root_cert: None,
            coalesce_enqueues: None,
            events: None,
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

    /// How long a connection attempt, a reply or a wait for reconnection may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// How long completed jobs are kept (`None`: no age limit).
    pub fn keep_completed_for(&self) -> Option<Duration> {
        self.keep_completed_for
    }

    /// How many completed jobs each queue keeps at most (`None`: no limit).
    pub fn keep_completed_max(&self) -> Option<u64> {
        self.keep_completed_max
    }

    /// Whether single enqueues made while another enqueue is in flight share one script
    /// call (see [`RedisOptionsBuilder::coalesce_enqueues`]).
    pub fn coalesce_enqueues(&self) -> bool {
        self.coalesce_enqueues
    }

    /// Whether lifecycle events are carried.
    pub fn events(&self) -> bool {
        self.events
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
            .field("coalesce_enqueues", &self.coalesce_enqueues)
            .field("events", &self.events)
            .field(
                "tls_root_cert",
                &self.tls_root_cert.as_ref().map(|_| "<pem>"),
            )
            .finish()
    }
}

/// Builds [`RedisOptions`]; see there for the URL forms and defaults. Each method wins over
/// the same option in the URL's query string.
///
/// ```
/// use kosh_jobs_redis::RedisOptions;
/// let opts = RedisOptions::builder("redis+cluster://127.0.0.1:7000?prefix=from-url")
///     .cluster_node("redis://127.0.0.1:7001")
///     .prefix("myapp")
///     .build()
///     .unwrap();
/// assert!(opts.is_cluster());
/// assert_eq!(opts.addrs(), ["127.0.0.1:7000", "127.0.0.1:7001"]);
/// assert_eq!(opts.prefix(), "myapp");
/// ```
#[derive(Clone)]
#[must_use]
pub struct RedisOptionsBuilder {
    urls: Vec<String>,
    cluster: bool,
    // `None`: as the URL says, else the default.
    prefix: Option<String>,
    clock: Clock,
    timeout: Option<Duration>,
    keep_completed_for: Option<Option<Duration>>,
    keep_completed_max: Option<Option<u64>>,
    tls_root_cert: Option<Vec<u8>>,
    coalesce_enqueues: Option<bool>,
    events: Option<bool>,
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
        self.prefix = Some(prefix.into());
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
        self.timeout = Some(timeout);
        self
    }

    /// Connect to a Redis Cluster (also implied by a `redis+cluster://` URL).
    pub fn cluster(mut self, cluster: bool) -> Self {
        self.cluster = cluster;
        self
    }

    /// Another seed node of the cluster (a URL without options); turns cluster mode on.
    pub fn cluster_node(mut self, url: impl Into<String>) -> Self {
        self.urls.push(url.into());
        self.cluster = true;
        self
    }

    /// How long completed jobs are kept after they finished; `None` keeps them until purged
    /// or pushed out by [`RedisOptionsBuilder::keep_completed_max`]. Default 24 h.
    pub fn keep_completed_for(mut self, age: Option<Duration>) -> Self {
        self.keep_completed_for = Some(age);
        self
    }

    /// How many completed jobs each queue keeps at most (oldest deleted first); `None` for no
    /// limit. Default 10,000.
    pub fn keep_completed_max(mut self, count: Option<u64>) -> Self {
        self.keep_completed_max = Some(count);
        self
    }

    /// Whether single-job enqueues that arrive while another enqueue is in flight are
    /// gathered into one script call per queue (per slot on a cluster), each caller still
    /// getting its own id, `existing` flag or error. Default `true`: many tasks enqueuing one
    /// job each (a busy web process) then approach the speed of a batch, and a lone enqueue
    /// is sent at once, never held back. `false` sends every enqueue as its own call. The
    /// URL option is `coalesce_enqueues=false`.
    pub fn coalesce_enqueues(mut self, on: bool) -> Self {
        self.coalesce_enqueues = Some(on);
        self
    }

    /// Carries lifecycle [events](kosh_jobs_core::events) (Redis pub/sub: one `PUBLISH` per
    /// batch of events, sent without waiting; one connection per subscription). Off by
    /// default, so a worker sends no command for them; the URL option `events=true` does the
    /// same.
    pub fn events(mut self, on: bool) -> Self {
        self.events = Some(on);
        self
    }

    /// PEM root certificates to trust for `rediss://` (a private CA) instead of the web PKI
    /// roots, the default; the URL option `ca_file=/path/ca.pem` does the same from a file.
    /// Checked when built: a PEM without a certificate is an error.
    pub fn tls_root_cert_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_root_cert = Some(pem.into());
        self
    }

    /// Checks everything (the URLs with their options too) and returns the options.
    pub fn build(self) -> Result<RedisOptions, RedisError> {
        let mut nodes = Vec::with_capacity(self.urls.len());
        let mut cluster = self.cluster;
        let mut query = None;
        for (i, url) in self.urls.iter().enumerate() {
            let parsed = redis_url::parse(url, i > 0)?;
            cluster |= parsed.cluster;
            nodes.extend(parsed.nodes);
            query.get_or_insert(parsed.query);
        }
        let query = query.unwrap_or_default();
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
        let prefix = match (self.prefix, query.prefix) {
            (Some(p), _) => p,
            (None, Some(p)) => {
                validate_prefix(&p).map_err(|e| {
                    RedisError::Config(format!("option `prefix` of the redis url: {e}"))
                })?;
                p
            }
            (None, None) => DEFAULT_PREFIX.to_owned(),
        };
        // A prefix from the URL was checked above, with the option named.
        validate_prefix(&prefix).map_err(RedisError::Config)?;
        let timeout = self.timeout.or(query.timeout).unwrap_or(DEFAULT_TIMEOUT);
        if timeout.is_zero() || timeout > MAX_TIMEOUT {
            return Err(RedisError::Config(format!(
                "timeout must be more than zero and at most {} s, got {timeout:?}",
                MAX_TIMEOUT.as_secs(),
            )));
        }
        let all_tls = nodes.iter().all(|n| n.tls);
        let tls_root_cert = match (self.tls_root_cert, query.ca_file) {
            (Some(pem), _) => {
                if !all_tls {
                    return Err(RedisError::Config(
                        "a TLS root certificate needs rediss:// urls".into(),
                    ));
                }
                root_store(&pem, "the certificate given to `tls_root_cert_pem`")?;
                Some(pem)
            }
            (None, Some(path)) => {
                if !all_tls {
                    return Err(RedisError::Config(
                        "option `ca_file` of the redis url needs a rediss:// url (TLS)".into(),
                    ));
                }
                let pem = std::fs::read(&path).map_err(|e| {
                    RedisError::Config(format!(
                        "option `ca_file` of the redis url: cannot read `{path}`: {e}"
                    ))
                })?;
                root_store(
                    &pem,
                    &format!("option `ca_file` of the redis url: `{path}`"),
                )?;
                Some(pem)
            }
            (None, None) => None,
        };
        Ok(RedisOptions {
            nodes,
            cluster,
            prefix,
            clock: self.clock,
            timeout,
            keep_completed_for: self
                .keep_completed_for
                .or(query.keep_completed_for)
                .unwrap_or(Some(DEFAULT_KEEP_COMPLETED_FOR)),
            keep_completed_max: self
                .keep_completed_max
                .or(query.keep_completed_max)
                .unwrap_or(Some(DEFAULT_KEEP_COMPLETED_MAX)),
            tls_root_cert,
            coalesce_enqueues: self
                .coalesce_enqueues
                .or(query.coalesce_enqueues)
                .unwrap_or(true),
            events: self.events.or(query.events).unwrap_or(false),
        })
    }
}

/// The trust anchors in `pem`, for a TLS connection: at least one certificate usable as a
/// root, or an error that names `what`. Options check it when built, so a wrong file fails
/// there and not at the first connection with a message that names nothing.
pub(crate) fn root_store(pem: &[u8], what: &str) -> Result<rustls::RootCertStore, RedisError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| RedisError::Config(format!("{what} is not valid PEM: {e}")))?;
        roots.add(cert).map_err(|e| {
            RedisError::Config(format!(
                "{what} holds a certificate that cannot be trusted as a root: {e}"
            ))
        })?;
    }
    if roots.is_empty() {
        return Err(RedisError::Config(format!(
            "{what} holds no certificate (expected PEM: `-----BEGIN CERTIFICATE-----`)"
        )));
    }
    Ok(roots)
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

    #[test]
    fn url_options_apply_and_builder_methods_win() {
        let url =
            "redis://h/1?prefix=from-url&timeout=2s&keep_completed_for=1h&keep_completed_max=7&coalesce_enqueues=false";
        assert!(RedisOptions::from_url("redis://h")
            .unwrap()
            .coalesce_enqueues());
        let o = RedisOptions::from_url(url).unwrap();
        assert!(!o.coalesce_enqueues());
        assert!(RedisOptions::builder(url)
            .coalesce_enqueues(true)
            .build()
            .unwrap()
            .coalesce_enqueues());
        assert_eq!(o.prefix(), "from-url");
        assert_eq!(o.timeout(), Duration::from_secs(2));
        assert_eq!(o.keep_completed_for(), Some(Duration::from_secs(3600)));
        assert_eq!(o.keep_completed_max(), Some(7));
        let o = RedisOptions::builder(url)
            .prefix("from-code")
            .timeout(Duration::from_millis(300))
            .keep_completed_for(None)
            .keep_completed_max(None)
            .build()
            .unwrap();
        assert_eq!(o.prefix(), "from-code");
        assert_eq!(o.timeout(), Duration::from_millis(300));
        assert_eq!(o.keep_completed_for(), None);
        assert_eq!(o.keep_completed_max(), None);
        let o = RedisOptions::from_url("redis://h").unwrap();
        assert_eq!(o.prefix(), DEFAULT_PREFIX);
        assert_eq!(o.timeout(), DEFAULT_TIMEOUT);
        assert_eq!(o.keep_completed_for(), Some(DEFAULT_KEEP_COMPLETED_FOR));
        assert_eq!(o.keep_completed_max(), Some(DEFAULT_KEEP_COMPLETED_MAX));
    }

    #[test]
    fn url_option_values_are_checked_like_the_builder_methods() {
        for (url, needle) in [
            ("redis://h?prefix=a%7Bb%7D", "option `prefix`"),
            ("redis://h?prefix=", "option `prefix`"),
            ("redis://h?timeout=0s", "timeout must be more than zero"),
            ("redis://h?timeout=2h", "at most 3600 s"),
        ] {
            let e = RedisOptions::from_url(url).unwrap_err().to_string();
            assert!(e.contains(needle), "{url}: {e}");
        }
        // Options belong to the first URL only.
        let e = RedisOptions::builder("redis+cluster://h1:1")
            .cluster_node("redis://h2:2?prefix=x")
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("first redis url"), "{e}");
    }

    #[test]
    fn ca_file_from_the_url_is_read_when_built() {
        let dir = std::env::temp_dir().join(format!(
            "kosh-ca-file-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, TEST_CA_PEM).unwrap();
        let url = format!("rediss://:pw@h:6380?ca_file={}", ca.display());
        let o = RedisOptions::from_url(&url).unwrap();
        assert_eq!(o.tls_root_cert.as_deref(), Some(TEST_CA_PEM.as_bytes()));
        // The builder's certificate wins over the URL's file, which is then not read.
        let missing = dir.join("missing.pem");
        let o = RedisOptions::builder(format!("rediss://h?ca_file={}", missing.display()))
            .tls_root_cert_pem(TEST_CA_PEM)
            .build()
            .unwrap();
        assert_eq!(o.tls_root_cert.as_deref(), Some(TEST_CA_PEM.as_bytes()));
        // Errors name the option and the file, never the password.
        let not_pem = dir.join("not-pem.txt");
        std::fs::write(&not_pem, "hello").unwrap();
        let bad_pem = dir.join("bad.pem");
        std::fs::write(
            &bad_pem,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        for (url, needles) in [
            (
                format!("rediss://:pw@h?ca_file={}", missing.display()),
                vec!["`ca_file`", "cannot read", "missing.pem"],
            ),
            (
                format!("rediss://:pw@h?ca_file={}", not_pem.display()),
                vec!["`ca_file`", "not-pem.txt", "no certificate"],
            ),
            (
                format!("rediss://:pw@h?ca_file={}", bad_pem.display()),
                vec!["`ca_file`", "bad.pem"],
            ),
            (
                format!("redis://:pw@h?ca_file={}", ca.display()),
                vec!["`ca_file`", "rediss://"],
            ),
            ("rediss://:pw@h?ca_file=".to_owned(), vec!["`ca_file`"]),
        ] {
            let e = RedisOptions::from_url(&url).unwrap_err();
            assert!(matches!(e, RedisError::Config(_)), "{e:?}");
            let text = e.to_string();
            for n in needles {
                assert!(text.contains(n), "{url}: `{text}` lacks {n}");
            }
            assert!(!text.contains("pw"), "{text}");
        }
        let e = RedisOptions::builder("rediss://h")
            .tls_root_cert_pem("not a certificate")
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("tls_root_cert_pem"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A self-signed CA certificate (P-256, valid until 2126; its key was thrown away).
    const TEST_CA_PEM: &str = "\
-----BEGIN CERTIFICATE-----
MIIBmjCCAT+gAwIBAgIUfDEDdSpI96DHMcJm1FyrSmMEY+AwCgYIKoZIzj0EAwIw
ITEfMB0GA1UEAwwWa29zaC1qb2JzIHVuaXQgdGVzdCBDQTAgFw0yNjEyMDIyMzU2
MTJaGA8yMTI2MTEwODIzNTYxMlowITEfMB0GA1UEAwwWa29zaC1qb2JzIHVuaXQg
dGVzdCBDQTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABIpa/kroO4+deNKDgcNB
94FcNZsOqsLd+AZz20SUsg1JN+364mzbUwdt/nD7YnwF/aDmOK1Jvn4tsOVLFpes
wxGjUzBRMB0GA1UdDgQWBBRtNOSItyWlwtWvp5kCjtNsGZTT0zAfBgNVHSMEGDAW
gBRtNOSItyWlwtWvp5kCjtNsGZTT0zAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49
BAMCA0kAMEYCIQCaGKMq9wda6d7NkX1Odx/HHwbvtd1T3t2RNmrAXQunkAIhAIb/
ALlep5me4NZsXuAeImGPXtja0DnCrZXqvsXxf/7x
-----END CERTIFICATE-----
";

    #[test]
    fn a_cluster_url_with_a_host_list() {
        let o = RedisOptions::from_url("redis+cluster://:pw@h1:7000,h2:7001?prefix=app").unwrap();
        assert!(o.is_cluster());
        assert_eq!(o.addrs(), ["h1:7000", "h2:7001"]);
        assert_eq!(o.prefix(), "app");
        assert!(o.nodes.iter().all(|n| n.password.as_deref() == Some("pw")));
    }
}
