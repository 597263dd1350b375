//! Opening a connection to one Redis server over a stream this crate watches, so that a
//! connection the server closes (an idle `timeout`, a hosted Redis's idle limit, a restart)
//! is known to be closed at once, before a request is handed to it.
//!
//! The redis crate's own `Client` opens the stream and runs the connection's driver out of
//! sight: a closed connection then shows only as the next request failing, and a caller
//! cannot tell whether that request reached the server. Here the stream is ours: the first
//! end of file or error it reads marks the connection closed, and the next request opens a
//! new one instead of failing.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::error::RedisError;
use crate::options::{root_store, Node};

/// Whether a connection is still open, shared by its handle and its stream.
#[derive(Clone, Debug)]
pub(crate) struct Open(Arc<AtomicBool>);

impl Open {
    fn new() -> Open {
        Open(Arc::new(AtomicBool::new(true)))
    }

    /// False once the stream read its end, failed, or was dropped.
    pub(crate) fn is_open(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Marks it closed; true for the first call only.
    fn close(&self) -> bool {
        self.0.swap(false, Ordering::AcqRel)
    }
}

/// Called once when the server ends the connection or it breaks (not when it is dropped).
pub(crate) type OnClose = Box<dyn FnOnce() + Send + Sync>;

/// What opening a connection to one server needs, prepared once.
pub(crate) struct Opener {
    host: String,
    port: u16,
    tls: Option<tokio_rustls::TlsConnector>,
    settings: redis::RedisConnectionInfo,
}

impl Opener {
    /// For `node`; `root_pem` replaces the built-in trust anchors of a TLS connection.
    pub(crate) fn new(node: &Node, root_pem: Option<&[u8]>) -> Result<Opener, RedisError> {
        let tls = if node.tls {
            let roots = match root_pem {
                Some(pem) => root_store(pem, "the TLS root certificate")?,
                None => {
                    let mut roots = rustls::RootCertStore::empty();
                    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                    roots
                }
            };
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| RedisError::Config(format!("redis TLS: {e}")))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
        } else {
            None
        };
        Ok(Opener {
            host: node.host.clone(),
            port: node.port,
            tls,
            settings: node.settings(),
        })
    }

    /// Opens a connection within `timeout` (connecting, the TLS handshake, credentials and
    /// database); each request then waits at most `response_timeout` for its reply. The
    /// connection's driver runs as a task of its own until the connection closes.
    pub(crate) async fn open(
        &self,
        timeout: Duration,
        response_timeout: Option<Duration>,
        on_close: OnClose,
    ) -> redis::RedisResult<(MultiplexedConnection, Open)> {
        let open = Open::new();
        let config = AsyncConnectionConfig::new().set_response_timeout(response_timeout);
        let opening = async {
            let tcp = connect_tcp(&self.host, self.port).await?;
            match &self.tls {
                None => start(&self.settings, watch(tcp, &open, on_close), config).await,
                Some(tls) => {
                    let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                    let stream = tls.connect(name, tcp).await?;
                    start(&self.settings, watch(stream, &open, on_close), config).await
                }
            }
        };
        let conn = tokio::time::timeout(timeout, opening).await.map_err(|_| {
            redis::RedisError::from(io::Error::new(
                io::ErrorKind::TimedOut,
                "connecting to redis timed out",
            ))
        })??;
        Ok((conn, open))
    }
}

/// TCP keepalive on every connection. A probe after a minute of silence keeps the idle
/// mapping of a NAT or load balancer alive (a worker's wait blocks for up to ten minutes,
/// longer than many of them keep a silent flow), and a peer that vanished without closing
/// is found within about 90 s, not at the next request's timeout. Probes are TCP's own, not
/// Redis commands: a hosted Redis does not bill them.
const KEEPALIVE_TIME: Duration = Duration::from_secs(60);
#[cfg(target_os = "linux")]
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
#[cfg(target_os = "linux")]
const KEEPALIVE_RETRIES: u32 = 3;

async fn connect_tcp(host: &str, port: u16) -> io::Result<TcpStream> {
    let tcp = TcpStream::connect((host, port)).await?;
    let keepalive = socket2::TcpKeepalive::new().with_time(KEEPALIVE_TIME);
    #[cfg(target_os = "linux")]
    let keepalive = keepalive
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    if let Err(e) = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive) {
        tracing::debug!(error = %e, "cannot turn on TCP keepalive for a redis connection");
    }
    Ok(tcp)
}

fn watch<S>(inner: S, open: &Open, on_close: OnClose) -> Watched<S> {
    Watched {
        inner,
        open: open.clone(),
        on_close: Some(on_close),
    }
}

/// Sends the connection's settings and starts its driver.
async fn start<S>(
    settings: &redis::RedisConnectionInfo,
    stream: Watched<S>,
    config: AsyncConnectionConfig,
) -> redis::RedisResult<MultiplexedConnection>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (conn, driver) = MultiplexedConnection::new_with_config(settings, stream, config).await?;
    // The driver ends when the stream does, or when every handle of the connection is gone.
    tokio::spawn(driver);
    Ok(conn)
}

/// A stream that marks its connection closed at its first end of file or error.
struct Watched<S> {
    inner: S,
    open: Open,
    on_close: Option<OnClose>,
}

impl<S> Watched<S> {
    fn ended(&mut self) {
        if self.open.close() {
            if let Some(f) = self.on_close.take() {
                f();
            }
        }
    }
}

impl<S> Drop for Watched<S> {
    fn drop(&mut self) {
        self.open.close();
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let room = buf.remaining() > 0;
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        match &r {
            Poll::Ready(Ok(())) if room && buf.filled().len() == before => self.ended(),
            Poll::Ready(Err(_)) => self.ended(),
            _ => {}
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Err(_))) {
            self.ended();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        if matches!(r, Poll::Ready(Err(_))) {
            self.ended();
        }
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Closed on purpose: no longer usable, but nothing to report.
        self.open.close();
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_probe_a_silent_peer_after_a_minute() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let tcp = connect_tcp("127.0.0.1", port).await.expect("connect");
        let sock = socket2::SockRef::from(&tcp);
        assert!(sock.keepalive().expect("SO_KEEPALIVE"));
        assert_eq!(
            sock.tcp_keepalive_time().expect("TCP_KEEPIDLE"),
            KEEPALIVE_TIME
        );
        #[cfg(target_os = "linux")]
        {
            assert_eq!(
                sock.tcp_keepalive_interval().expect("TCP_KEEPINTVL"),
                KEEPALIVE_INTERVAL
            );
            assert_eq!(
                sock.tcp_keepalive_retries().expect("TCP_KEEPCNT"),
                KEEPALIVE_RETRIES
            );
        }
    }
}
