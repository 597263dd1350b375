//! Errors of the Redis backend.

use kosh_jobs_core::{BackendError, BoxError};

/// An error of the Redis backend.
///
/// Converts into [`kosh_jobs_core::BackendError`] and [`kosh_jobs_core::Error`]: connection
/// problems become `Unavailable` (worth retrying, and the only kind that is), refused
/// credentials and ACL refusals `PermissionDenied`, invalid URLs and options and bad input
/// `InvalidInput`, data this version does not understand `Incompatible`, a TLS certificate
/// this client does not trust `PermissionDenied` too (retrying does not help either),
/// everything else `Storage`. No variant ever carries the password of the connection URL.
///
/// ```
/// use kosh_jobs_redis::RedisError;
/// use kosh_jobs_core::{BackendError, Error};
///
/// let e = RedisError::Unreachable { addr: "localhost:6379".into(), source: "refused".into() };
/// assert_eq!(e.to_string(), "cannot reach redis at localhost:6379");
/// assert!(BackendError::from(e).is_unavailable());
///
/// let e = RedisError::PermissionDenied { addr: "localhost:6379".into(), source: "WRONGPASS".into() };
/// assert!(!e.is_unavailable());
/// assert!(matches!(Error::from(e), Error::PermissionDenied(_)));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisError {
    /// The connection URL or another option is not valid.
    #[error("invalid redis options: {0}")]
    Config(String),
    /// The server could not be reached.
    #[error("cannot reach redis at {addr}")]
    Unreachable {
        /// `host:port` of the server (never the password).
        addr: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// Redis refused the credentials (a wrong or missing password, an unknown or disabled
    /// user: `WRONGPASS`, `NOAUTH`) or a command or key the backend needs (an ACL without
    /// it: `NOPERM`). Not an outage: retrying does not help until the password or the ACL
    /// changes.
    #[error("redis at {addr} refused access")]
    PermissionDenied {
        /// `host:port` of the server (never the password).
        addr: String,
        /// What Redis said.
        #[source]
        source: BoxError,
    },
    /// The TLS handshake failed because this client refused the server's certificate: it was
    /// issued by a certificate authority the client does not trust (a server with a
    /// certificate of a private CA needs that CA: `?ca_file=/path/ca.pem` in the URL or
    /// [`RedisOptionsBuilder::tls_root_cert_pem`](crate::RedisOptionsBuilder::tls_root_cert_pem)),
    /// it expired, or it was not issued for the host of the URL. Not an outage: retrying does
    /// not help until the certificate or the trusted roots change, so it converts into
    /// `PermissionDenied`.
    #[error(
        "the TLS certificate of redis at {addr} is not trusted ({reason}); for a server with a \
         certificate of a private CA, trust that CA: `?ca_file=/path/ca.pem` in the URL"
    )]
    UntrustedCertificate {
        /// `host:port` of the server (never the password).
        addr: String,
        /// Why the certificate was refused, as the TLS library says it
        /// (`invalid peer certificate: UnknownIssuer`).
        reason: String,
        /// The error of the connection attempt.
        #[source]
        source: BoxError,
    },
    /// The connection broke or a reply did not come in time; the backend reconnects by itself.
    #[error("redis connection lost")]
    ConnectionLost(#[source] BoxError),
    /// Redis is out of memory: its used memory is above `maxmemory` and, with the policy
    /// `noeviction` (the only safe one for jobs), it refuses writes. The script that was
    /// refused stored nothing of its operation; it may succeed once memory is freed (purge
    /// old jobs, shorten retention) or `maxmemory` is raised.
    #[error(
        "redis is out of memory (used memory above `maxmemory`): the operation was refused \
         and nothing of it was stored; free memory or raise `maxmemory`"
    )]
    OutOfMemory(#[source] BoxError),
    /// Redis answered a command with an error.
    #[error("redis command failed")]
    Command(#[source] BoxError),
    /// A reply had a shape this version does not understand.
    #[error("unexpected reply from redis: {0}")]
    Protocol(String),
    /// The keys under the prefix were written in a storage layout this version cannot read.
    #[error("{0}")]
    Incompatible(String),
    /// A job or queue that cannot be stored (checked before anything is sent).
    #[error("{0}")]
    InvalidInput(String),
    /// The backend's own I/O thread could not be started.
    #[error("cannot start the redis backend's I/O thread")]
    Thread(#[source] std::io::Error),
    /// The backend was dropped while an operation was running.
    #[error("redis backend stopped")]
    Stopped,
}

impl RedisError {
    /// Whether retrying later may succeed: only outages, never refused credentials.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            RedisError::Unreachable { .. } | RedisError::ConnectionLost(_) | RedisError::Stopped
        )
    }

    /// Whether Redis refused the credentials or a command ([`RedisError::PermissionDenied`]).
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, RedisError::PermissionDenied { .. })
    }

    /// Refused credentials or a refused certificate: the classes that retrying does not
    /// help, checked first on every path. Any other error comes back as it was.
    fn refusal(e: redis::RedisError, addr: &str) -> Result<Self, redis::RedisError> {
        if is_permission_error(&e) {
            Ok(RedisError::PermissionDenied {
                addr: addr.to_owned(),
                source: Box::new(e),
            })
        } else if let Some(reason) = untrusted_certificate(&e) {
            Ok(RedisError::UntrustedCertificate {
                addr: addr.to_owned(),
                reason,
                source: Box::new(e),
            })
        } else {
            Err(e)
        }
    }

    /// Classifies the error of a first connection attempt to the server(s) at `addr`:
    /// refused credentials, a refused certificate, or else unreachable.
    pub(crate) fn from_connect(e: redis::RedisError, addr: &str) -> Self {
        Self::refusal(e, addr).unwrap_or_else(|e| RedisError::Unreachable {
            addr: addr.to_owned(),
            source: Box::new(e),
        })
    }

    /// A copy of this error for another caller of the same call (the jobs of a coalesced
    /// enqueue share one script call and so its error): the same variant, so it converts
    /// into the same [`BackendError`] kind, with the source's messages kept as text.
    pub(crate) fn copy_for_caller(&self) -> RedisError {
        fn reason(e: &RedisError) -> BoxError {
            use std::error::Error as _;
            let mut parts = Vec::new();
            let mut next = e.source();
            while let Some(s) = next {
                parts.push(s.to_string());
                next = s.source();
            }
            parts.join(": ").into()
        }
        match self {
            RedisError::Config(s) => RedisError::Config(s.clone()),
            RedisError::Unreachable { addr, .. } => RedisError::Unreachable {
                addr: addr.clone(),
                source: reason(self),
            },
            RedisError::PermissionDenied { addr, .. } => RedisError::PermissionDenied {
                addr: addr.clone(),
                source: reason(self),
            },
            RedisError::UntrustedCertificate {
                addr, reason: r, ..
            } => RedisError::UntrustedCertificate {
                addr: addr.clone(),
                reason: r.clone(),
                source: reason(self),
            },
            RedisError::ConnectionLost(_) => RedisError::ConnectionLost(reason(self)),
            RedisError::OutOfMemory(_) => RedisError::OutOfMemory(reason(self)),
            RedisError::Command(_) => RedisError::Command(reason(self)),
            RedisError::Protocol(s) => RedisError::Protocol(s.clone()),
            RedisError::Incompatible(s) => RedisError::Incompatible(s.clone()),
            RedisError::InvalidInput(s) => RedisError::InvalidInput(s.clone()),
            RedisError::Thread(e) => {
                RedisError::Thread(std::io::Error::new(e.kind(), e.to_string()))
            }
            RedisError::Stopped => RedisError::Stopped,
        }
    }

    /// Classifies an error of the `redis` crate from the server at `addr`.
    pub(crate) fn from_redis(e: redis::RedisError, addr: &str) -> Self {
        // Before the connection check: a cluster reports refused credentials of its seed
        // nodes, and the failed TLS handshakes of nodes it connects to, as I/O errors.
        let e = match Self::refusal(e, addr) {
            Ok(refused) => return refused,
            Err(e) => e,
        };
        if is_connection_error(&e) {
            RedisError::ConnectionLost(Box::new(e))
        } else if e.code() == Some("OOM") {
            RedisError::OutOfMemory(Box::new(e))
        } else {
            RedisError::Command(Box::new(e))
        }
    }
}

/// What Redis says when it refuses credentials or a command. A script's own `redis.call` of
/// a forbidden command or key fails with a plain `ERR` and the last sentence; the cluster
/// client reports its seed nodes' refusals inside an I/O error's text.
const REFUSALS: &[&str] = &[
    "NOAUTH",
    "WRONGPASS",
    "NOPERM",
    "AuthenticationFailed",
    "invalid username-password pair",
    "The user executing the script can't",
];

/// Errors that mean Redis refused who we are or what we asked: retrying does not help.
pub(crate) fn is_permission_error(e: &redis::RedisError) -> bool {
    matches!(
        e.kind(),
        redis::ErrorKind::AuthenticationFailed
            | redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm)
    ) || matches!(e.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"))
        || {
            let text = e.to_string();
            REFUSALS.iter().any(|r| text.contains(r))
        }
}

/// What rustls says when it refuses a server's certificate; the cluster client passes the
/// errors of its connections on as text only.
const UNTRUSTED_CERTIFICATE: &str = "invalid peer certificate";

/// Why this client refused the server's TLS certificate, if that is what `e` is: a rustls
/// `InvalidCertificate` error somewhere in its chain (inside the I/O error of the handshake),
/// or its text.
pub(crate) fn untrusted_certificate(e: &redis::RedisError) -> Option<String> {
    use std::error::Error as StdError;
    use std::sync::Arc;
    fn rustls_error<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        // The redis crate keeps an I/O error in an `Arc`; `io::Error` hides its payload from
        // `source()`.
        if let Some(arc) = err.downcast_ref::<Arc<dyn StdError + Send + Sync>>() {
            return rustls_error(&**arc);
        }
        let io = err.downcast_ref::<std::io::Error>()?;
        rustls_error(io.get_ref()?)
    }
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r @ rustls::Error::InvalidCertificate(_)) = rustls_error(err) {
            return Some(r.to_string());
        }
        cur = err.source();
    }
    let text = e.to_string();
    let at = text.find(UNTRUSTED_CERTIFICATE)?;
    let reason = &text[at..];
    // Up to the end of the rustls message (the cluster client may append more).
    let end = reason
        .find(|c: char| !(c.is_alphanumeric() || c == ' ' || c == ':' || c == '_'))
        .unwrap_or(reason.len());
    Some(reason[..end].trim_end().to_owned())
}

/// Errors after which the connection cannot be trusted any more (or the server is not ready).
/// `READONLY` too: a write reached a replica, as during a failover (a cluster's node that
/// rejoined as a replica while the client's slot map still names it, or a server demoted under
/// a client's feet); the write did not happen and goes through once the client reconnects.
pub(crate) fn is_connection_error(e: &redis::RedisError) -> bool {
    use redis::ServerErrorKind as S;
    e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_io_error()
        || e.is_timeout()
        || matches!(
            e.kind(),
            redis::ErrorKind::Server(
                S::BusyLoading | S::ClusterDown | S::TryAgain | S::MasterDown | S::ReadOnly
            ) | redis::ErrorKind::ClusterConnectionNotFound
        )
}

impl From<RedisError> for BackendError {
    fn from(e: RedisError) -> Self {
        match e {
            RedisError::Config(msg) | RedisError::InvalidInput(msg) => {
                BackendError::InvalidInput(msg)
            }
            RedisError::Protocol(msg) | RedisError::Incompatible(msg) => {
                BackendError::Incompatible(msg)
            }
            e if e.is_permission_denied() => BackendError::permission_denied(e),
            e @ RedisError::UntrustedCertificate { .. } => BackendError::permission_denied(e),
            e if e.is_unavailable() => BackendError::unavailable(e),
            e => BackendError::storage(e),
        }
    }
}

/// So that `RedisBackend::connect(url).await?` works in a function returning
/// [`kosh_jobs_core::Error`]; the same mapping as into [`BackendError`].
impl From<RedisError> for kosh_jobs_core::Error {
    fn from(e: RedisError) -> Self {
        kosh_jobs_core::Error::from(BackendError::from(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(text: &str) -> redis::RedisError {
        // The way the crate makes errors from a reply's text.
        let (code, detail) = text.split_once(' ').unwrap_or((text, ""));
        redis::make_extension_error(code.to_owned(), Some(detail.to_owned()))
    }

    /// What a failover answers (a write on a replica, a cluster without a master for a slot)
    /// is an outage: the caller may retry; never a storage error.
    #[test]
    fn failover_replies_are_unavailable() {
        use redis::ServerErrorKind as S;
        for kind in [
            S::ReadOnly,
            S::ClusterDown,
            S::TryAgain,
            S::MasterDown,
            S::BusyLoading,
        ] {
            let e = redis::RedisError::from((redis::ErrorKind::Server(kind), "failing over"));
            let e = RedisError::from_redis(e, "h:1");
            assert!(e.is_unavailable(), "{kind:?}: {e:?}");
            assert!(BackendError::from(e).is_unavailable(), "{kind:?}");
        }
        let other = redis::RedisError::from((
            redis::ErrorKind::Server(S::ResponseError),
            "wrong number of arguments",
        ));
        assert!(!RedisError::from_redis(other, "h:1").is_unavailable());
    }

    #[test]
    fn refusals_are_permission_denied_never_unavailable() {
        for text in [
            "NOAUTH Authentication required.",
            "WRONGPASS invalid username-password pair or user is disabled.",
            "NOPERM this user has no permissions to run the 'evalsha' command",
            "ERR The user executing the script can't run this command or subcommand script: x",
        ] {
            let e = RedisError::from_redis(server_error(text), "h:1");
            assert!(e.is_permission_denied(), "{text}: {e:?}");
            assert_eq!(e.to_string(), "redis at h:1 refused access");
            let b = BackendError::from(e);
            assert!(matches!(b, BackendError::PermissionDenied(_)), "{text}");
            assert!(!b.is_unavailable());
        }
        let auth = redis::RedisError::from((
            redis::ErrorKind::AuthenticationFailed,
            "Password authentication failed",
        ));
        assert!(RedisError::from_redis(auth, "h:1").is_permission_denied());
        // The cluster client wraps a seed node's refusal in an I/O error.
        let wrapped = redis::RedisError::from((
            redis::ErrorKind::Io,
            "Failed to create initial connections",
            "Password authentication failed - AuthenticationFailed".to_owned(),
        ));
        assert!(RedisError::from_redis(wrapped, "h:1").is_permission_denied());
    }

    #[test]
    fn untrusted_certificates_are_permission_denied_never_unavailable() {
        use rustls::{CertificateError, Error as TlsError};
        // As tokio-rustls reports a refused certificate: an I/O error around the rustls one.
        let handshake = |c: CertificateError| {
            redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                TlsError::InvalidCertificate(c),
            ))
        };
        for (e, reason) in [
            (
                handshake(CertificateError::UnknownIssuer),
                "invalid peer certificate: UnknownIssuer",
            ),
            (
                handshake(CertificateError::Expired),
                "invalid peer certificate: Expired",
            ),
            // The cluster client's text-only report.
            (
                redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "Failed to create initial connections",
                    "h:1: invalid peer certificate: UnknownIssuer (os error)".to_owned(),
                )),
                "invalid peer certificate: UnknownIssuer",
            ),
        ] {
            for e in [
                RedisError::from_connect(e.clone(), "h:1"),
                RedisError::from_redis(e, "h:1"),
            ] {
                match &e {
                    RedisError::UntrustedCertificate {
                        addr, reason: r, ..
                    } => {
                        assert_eq!((addr.as_str(), r.as_str()), ("h:1", reason))
                    }
                    other => panic!("{other:?}"),
                }
                let text = e.to_string();
                assert!(
                    text.contains("TLS certificate of redis at h:1 is not trusted")
                        && text.contains(reason)
                        && text.contains("ca_file"),
                    "{text}"
                );
                assert!(!e.is_unavailable());
                let b = BackendError::from(e);
                assert!(matches!(b, BackendError::PermissionDenied(_)), "{b:?}");
            }
        }
        // A handshake that broke off is an outage, not a refused certificate.
        let reset =
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(RedisError::from_connect(reset.clone(), "h:1").is_unavailable());
        assert!(RedisError::from_redis(reset, "h:1").is_unavailable());
        let other_tls = redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            TlsError::HandshakeNotComplete,
        ));
        assert!(RedisError::from_connect(other_tls, "h:1").is_unavailable());
    }

    #[test]
    fn other_errors_keep_their_kinds() {
        let io = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        let e = RedisError::from_redis(io, "h:1");
        assert!(e.is_unavailable() && !e.is_permission_denied(), "{e:?}");
        let oom = server_error("OOM command not allowed when used memory > 'maxmemory'.");
        assert!(matches!(
            RedisError::from_redis(oom, "h:1"),
            RedisError::OutOfMemory(_)
        ));
        let other = server_error("ERR unknown command");
        assert!(matches!(
            BackendError::from(RedisError::from_redis(other, "h:1")),
            BackendError::Storage(_)
        ));
        let e = kosh_jobs_core::Error::from(RedisError::Config("unknown option `x`".into()));
        assert!(matches!(e, kosh_jobs_core::Error::InvalidInput(ref m) if m.contains("`x`")));
    }
}
