//! Connections: one multiplexed connection for every command of the process, reconnected in
//! the background with backoff; a small pool of connections used only for blocking waits.

use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Value};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::error::{is_connection_error, is_permission_error, RedisError};
use crate::open::{OnClose, Open, Opener};
use crate::options::RedisOptions;
use crate::scripts::LuaScript;

/// The longest single `BLPOP`; longer waits block again.
pub(crate) const MAX_BLOCK: Duration = Duration::from_secs(3600);
/// Reconnection backoff.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

enum Mode {
    Single(Box<Opener>),
    Cluster {
        client: Box<ClusterClient>,
        blocking: Box<ClusterClient>,
    },
}

#[derive(Clone)]
enum Link {
    Single(MultiplexedConnection, Open),
    Cluster(ClusterConnection),
}

impl Link {
    /// False once the server closed a single server's connection (a cluster connection
    /// reopens its own).
    fn is_open(&self) -> bool {
        match self {
            Link::Single(_, open) => open.is_open(),
            Link::Cluster(_) => true,
        }
    }

    async fn send(&self, cmd: &Cmd) -> redis::RedisResult<Value> {
        let v = match self {
            Link::Single(c, _) => c.clone().req_packed_command(cmd).await?,
            Link::Cluster(c) => c.clone().req_packed_command(cmd).await?,
        };
        // Error replies come back as values; only the top level can be one here.
        match v {
            Value::ServerError(e) => Err(e.into()),
            v => Ok(v),
        }
    }
}

enum State {
    /// A link, open or (until the next request reopens it) closed by the server.
    Up { link: Link, gen: u64 },
    /// Reconnecting in the background.
    Down,
}

/// A connection used for one blocking wait at a time.
enum Blocker {
    Single {
        conn: MultiplexedConnection,
        /// A list only this connection pops, so it can be woken on purpose.
        own_key: String,
        open: Open,
    },
    Cluster(ClusterConnection),
}

/// What a blocking wait ended with.
pub(crate) enum Woken {
    /// A wake-up token was popped.
    Token(String),
    /// The server-side timeout passed.
    Timeout,
    /// A leftover element of the connection's own list (from an earlier wake-up that crossed
    /// a real one): nothing happened.
    Stale,
    /// The other future (clock deadline, cancellation) finished first.
    Other,
}

fn woken(v: &Value, own_key: &str) -> Woken {
    match v {
        Value::Array(a) if a.len() == 2 => {
            if matches!(&a[0], Value::BulkString(k) if k == own_key.as_bytes()) {
                return Woken::Stale;
            }
            match &a[1] {
                Value::BulkString(b) => Woken::Token(String::from_utf8_lossy(b).into_owned()),
                _ => Woken::Token(String::new()),
            }
        }
        _ => Woken::Timeout,
    }
}

/// The process's connection to Redis (a server or a cluster).
pub(crate) struct Conn {
    mode: Mode,
    timeout: Duration,
    addr: String,
    state: Mutex<State>,
    up: watch::Sender<u64>,
    blockers: Mutex<Vec<Blocker>>,
    blockers_made: std::sync::atomic::AtomicU64,
    /// Prefix of the lists that wake this process's own blocked connections.
    own_key_prefix: String,
    /// Set while reconnection attempts fail because Redis refuses the credentials (the
    /// password or the user changed): operations report that, not an outage.
    refused: Mutex<Option<redis::RedisError>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks leaves consistent data (plain assignments).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Conn {
    /// Connects; must run on the I/O runtime (the connection's driver task lives there).
    pub(crate) async fn connect(opts: &RedisOptions) -> Result<Arc<Conn>, RedisError> {
        let addr = opts.addrs().join(",");
        let tls = opts.nodes.iter().any(|n| n.tls);
        if tls {
            // rustls needs a process-wide crypto provider; another one may be installed already.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let certs = opts
            .tls_root_cert
            .as_ref()
            .map(|pem| redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone()),
            });
        let config_err = |e: redis::RedisError| RedisError::Config(format!("redis client: {e}"));
        let mode = if opts.cluster {
            let infos = opts
                .nodes
                .iter()
                .map(|n| n.connection_info())
                .collect::<Result<Vec<_>, _>>()?;
            let build = |response: Duration| {
                let mut b = redis::cluster::ClusterClientBuilder::new(infos.clone())
                    .connection_timeout(opts.timeout)
                    .response_timeout(response)
                    .retries(2);
                if let Some(first) = opts.nodes.first() {
                    if let Some(u) = &first.username {
                        b = b.username(u.clone());
                    }
                    if let Some(p) = &first.password {
                        b = b.password(p.clone());
                    }
                    if first.tls {
                        b = b.tls(redis::cluster::TlsMode::Secure);
                    }
                }
                if let Some(c) = &certs {
                    b = b.certs(c.clone());
                }
                b.build().map_err(config_err)
            };
            Mode::Cluster {
                client: Box::new(build(opts.timeout)?),
                blocking: Box::new(build(MAX_BLOCK + opts.timeout)?),
            }
        } else {
            let node = opts
                .nodes
                .first()
                .ok_or_else(|| RedisError::Config("no redis url given".into()))?;
            Mode::Single(Box::new(Opener::new(node, opts.tls_root_cert.as_deref())?))
        };
        let (up, _) = watch::channel(0);
        let conn = Conn {
            mode,
            timeout: opts.timeout,
            addr,
            state: Mutex::new(State::Down),
            up,
            blockers: Mutex::new(Vec::new()),
            blockers_made: std::sync::atomic::AtomicU64::new(0),
            own_key_prefix: format!("{{{}}}:unblock:{:016x}:", opts.prefix, fastrand::u64(..)),
            refused: Mutex::new(None),
        };
        let conn = Arc::new(conn);
        let link = conn
            .open_link(1, true)
            .await
            .map_err(|e| RedisError::from_connect(e, &conn.addr))?;
        *lock(&conn.state) = State::Up { link, gen: 1 };
        conn.up.send_replace(1);
        Ok(conn)
    }

    /// The configured node addresses, for messages.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.mode, Mode::Cluster { .. })
    }

    /// Opens the link of generation `gen`; `probe` checks with a `PING` that the server
    /// serves it.
    async fn open_link(self: &Arc<Self>, gen: u64, probe: bool) -> redis::RedisResult<Link> {
        match &self.mode {
            Mode::Single(opener) => {
                let addr = self.addr.clone();
                let on_close: OnClose = Box::new(move || {
                    debug!(%addr, gen, "redis closed the connection; the next request opens a new one");
                });
                let (mut c, open) = opener
                    .open(self.timeout, Some(self.timeout), on_close)
                    .await?;
                // Without a password Redis accepts the connection and refuses every command:
                // find out now, not at the first job. Not when reopening a link the server
                // closed while idle: the same settings worked before, a wrong password
                // still fails its `AUTH`, and a hosted Redis bills each `PING`.
                if probe {
                    if let Value::ServerError(e) = c.req_packed_command(&redis::cmd("PING")).await?
                    {
                        return Err(e.into());
                    }
                }
                Ok(Link::Single(c, open))
            }
            Mode::Cluster { client, .. } => {
                let c = tokio::time::timeout(self.timeout * 3, client.get_async_connection())
                    .await
                    .map_err(|_| {
                        redis::RedisError::from(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "cluster connection timed out",
                        ))
                    })??;
                Ok(Link::Cluster(c))
            }
        }
    }

    /// The current link, waiting up to the timeout for a reconnection in progress (less
    /// when Redis refuses the credentials meanwhile).
    /// A link the server closed is opened again first.
    async fn link(self: &Arc<Self>) -> Result<(Link, u64), RedisError> {
        let mut rx = self.up.subscribe();
        if let Some(l) = self.current() {
            return Ok(l);
        }
        self.reopen_closed();
        let _ = tokio::time::timeout(self.timeout, async {
            while self.current().is_none() && lock(&self.refused).is_none() {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        self.current().ok_or_else(|| self.down_error())
    }

    /// Why there is no link now: Redis refuses the credentials, or it is unreachable.
    fn down_error(&self) -> RedisError {
        match &*lock(&self.refused) {
            Some(e) => RedisError::PermissionDenied {
                addr: self.addr.clone(),
                source: Box::new(e.clone()),
            },
            None => RedisError::ConnectionLost(
                format!("redis at {} is unreachable; reconnecting", self.addr).into(),
            ),
        }
    }

    /// The link, if it is up and open.
    fn current(&self) -> Option<(Link, u64)> {
        match &*lock(&self.state) {
            State::Up { link, gen } if link.is_open() => Some((link.clone(), *gen)),
            _ => None,
        }
    }

    /// Whether the main connection is up (or closed by the server while idle, which the
    /// next request reopens).
    pub(crate) fn is_up(&self) -> bool {
        matches!(&*lock(&self.state), State::Up { .. })
    }

    /// After the server closed the link (an idle timeout): opens a new one in the
    /// background, which the caller waits for. Nothing was sent on the closed link, so no
    /// request is lost or repeated.
    fn reopen_closed(self: &Arc<Self>) {
        let mut st = lock(&self.state);
        if let State::Up { link, gen } = &*st {
            if !link.is_open() {
                let gen = *gen;
                *st = State::Down;
                drop(st);
                tokio::spawn(reconnect(Arc::downgrade(self), gen, Reconnect::Reopen));
            }
        }
    }

    /// Waits until the main connection is up again, or `limit` passed.
    pub(crate) async fn wait_up(&self, limit: Duration) {
        let mut rx = self.up.subscribe();
        let _ = tokio::time::timeout(limit, async {
            while !self.is_up() {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
    }

    /// Sends one command.
    pub(crate) async fn query(self: &Arc<Self>, cmd: &Cmd) -> Result<Value, RedisError> {
        let (link, gen) = self.link().await?;
        match link.send(cmd).await {
            Ok(v) => Ok(v),
            Err(e) => {
                if is_connection_error(&e) {
                    self.mark_down(gen, &e);
                }
                Err(RedisError::from_redis(e, &self.addr))
            }
        }
    }

    /// Runs a script by SHA; after `NOSCRIPT` (first use, or a restarted server) runs it with
    /// `EVAL`, which loads it into the server's script cache for the next `EVALSHA`.
    pub(crate) async fn script(
        self: &Arc<Self>,
        script: &LuaScript,
        keys: &[&str],
        args: ScriptArgs,
    ) -> Result<Value, RedisError> {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(script.sha()).arg(keys.len()).arg(keys);
        args.append_to(&mut cmd);
        match self.query(&cmd).await {
            Err(RedisError::Command(e))
                if e.downcast_ref::<redis::RedisError>().is_some_and(|e| {
                    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
                }) =>
            {
                debug!(script = script.name(), "script not loaded; sending it");
                let mut eval = redis::cmd("EVAL");
                eval.arg(script.code()).arg(keys.len()).arg(keys);
                args.append_to(&mut eval);
                self.query(&eval).await
            }
            other => other,
        }
    }

    /// Called after a connection error: marks the link down (once per link) and reconnects in
    /// the background.
    fn mark_down(self: &Arc<Self>, gen: u64, e: &redis::RedisError) {
        if self.is_cluster() {
            // The cluster connection finds its nodes again by itself.
            return;
        }
        let mut st = lock(&self.state);
        if matches!(&*st, State::Up { gen: g, .. } if *g == gen) {
            *st = State::Down;
            drop(st);
            warn!(addr = %self.addr, error = %e, "redis connection lost; reconnecting in the background");
            lock(&self.blockers).clear();
            tokio::spawn(reconnect(Arc::downgrade(self), gen, Reconnect::Lost));
        }
    }

    /// Blocks on the wake-up lists `keys` for up to `server_timeout`, or until `other`
    /// finishes. When `other` wins, the blocked connection is woken through a list of its own.
    pub(crate) async fn block_pop<F>(
        self: &Arc<Self>,
        keys: Vec<String>,
        server_timeout: Duration,
        other: F,
    ) -> Result<Woken, RedisError>
    where
        F: Future<Output = ()>,
    {
        let secs = server_timeout.clamp(Duration::from_millis(10), MAX_BLOCK);
        let secs = format!("{:.3}", secs.as_secs_f64());
        let guard = self.timeout + server_timeout.min(MAX_BLOCK);
        tokio::pin!(other);
        match &self.mode {
            Mode::Single(_) => {
                let (conn, own_key, open) = match self.take_blocker().await? {
                    Blocker::Single {
                        conn,
                        own_key,
                        open,
                    } => (conn, own_key, open),
                    Blocker::Cluster(_) => return Err(wrong_mode()),
                };
                let mut cmd = redis::cmd("BLPOP");
                cmd.arg(&keys).arg(&own_key).arg(&secs);
                let mut c = conn.clone();
                let blpop = async move { c.req_packed_command(&cmd).await };
                tokio::pin!(blpop);
                // Already over before blocking: send nothing.
                let over = std::future::poll_fn(|cx| {
                    std::task::Poll::Ready(other.as_mut().poll(cx).is_ready())
                })
                .await;
                if over {
                    self.put_blocker(Blocker::Single {
                        conn,
                        own_key,
                        open,
                    });
                    return Ok(Woken::Other);
                }
                tokio::select! {
                    r = tokio::time::timeout(guard, &mut blpop) => {
                        match r {
                            Ok(Ok(v)) => {
                                let w = woken(&v, &own_key);
                                self.put_blocker(Blocker::Single {
                        conn,
                        own_key,
                        open,
                    });
                                Ok(w)
                            }
                            Ok(Err(e)) => Err(RedisError::from_redis(e, &self.addr)),
                            Err(_) => Err(RedisError::ConnectionLost("blocking wait got no reply".into())),
                        }
                    }
                    _ = &mut other => {
                        // Wake our own connection through its own list: unlike `CLIENT
                        // UNBLOCK`, this also works if the `BLPOP` has not reached the
                        // server yet (the element waits for it).
                        let mut push = redis::cmd("RPUSH");
                        push.arg(&own_key).arg("x");
                        if self.query(&push).await.is_ok() {
                            if let Ok(Ok(_)) = tokio::time::timeout(self.timeout, &mut blpop).await {
                                self.put_blocker(Blocker::Single {
                        conn,
                        own_key,
                        open,
                    });
                            }
                        }
                        Ok(Woken::Other)
                    }
                }
            }
            Mode::Cluster { .. } => {
                // Queues of a cluster live in different slots: one blocking connection each.
                let mut waits = Vec::with_capacity(keys.len());
                for key in keys {
                    let conn = match self.take_blocker().await? {
                        Blocker::Cluster(c) => c,
                        Blocker::Single { .. } => return Err(wrong_mode()),
                    };
                    let mut cmd = redis::cmd("BLPOP");
                    cmd.arg(&key).arg(&secs);
                    waits.push(Box::pin(async move {
                        let mut c = conn.clone();
                        let r = tokio::time::timeout(guard, c.req_packed_command(&cmd)).await;
                        (conn, r)
                    }));
                }
                let any = futures_select_all(waits);
                tokio::select! {
                    (conn, r) = any => match r {
                        Ok(Ok(v)) => {
                            self.put_blocker(Blocker::Cluster(conn));
                            Ok(woken(&v, ""))
                        }
                        Ok(Err(e)) => Err(RedisError::from_redis(e, &self.addr)),
                        Err(_) => Err(RedisError::ConnectionLost("blocking wait got no reply".into())),
                    },
                    // Dropping the other connections closes them, which unblocks the server side.
                    _ = &mut other => Ok(Woken::Other),
                }
            }
        }
    }

    async fn take_blocker(&self) -> Result<Blocker, RedisError> {
        while let Some(b) = lock(&self.blockers).pop() {
            match &b {
                // Closed by the server while it waited in the pool.
                Blocker::Single { open, .. } if !open.is_open() => continue,
                _ => return Ok(b),
            }
        }
        if !self.is_up() {
            return Err(self.down_error());
        }
        match &self.mode {
            Mode::Single(opener) => {
                // No response timeout: a `BLPOP` blocks for as long as it was asked to (the
                // caller bounds it). A closed one is found by its failed wait, or in the pool.
                let (conn, open) = opener
                    .open(self.timeout, None, Box::new(|| {}))
                    .await
                    .map_err(|e| RedisError::from_redis(e, &self.addr))?;
                let n = self
                    .blockers_made
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let own_key = format!("{}{n}", self.own_key_prefix);
                Ok(Blocker::Single {
                    conn,
                    own_key,
                    open,
                })
            }
            Mode::Cluster { blocking, .. } => {
                let c = tokio::time::timeout(self.timeout * 3, blocking.get_async_connection())
                    .await
                    .map_err(|_| RedisError::ConnectionLost("cluster connection timed out".into()))?
                    .map_err(|e| RedisError::from_redis(e, &self.addr))?;
                Ok(Blocker::Cluster(c))
            }
        }
    }

    fn put_blocker(&self, b: Blocker) {
        let mut pool = lock(&self.blockers);
        if pool.len() < 16 {
            pool.push(b);
        }
    }
}

/// A pool only ever holds blockers of its own mode; this is never returned in practice.
fn wrong_mode() -> RedisError {
    RedisError::Protocol("blocking connection of the wrong mode".into())
}

/// Resolves with the first of several futures.
async fn futures_select_all<F, T>(futs: Vec<std::pin::Pin<Box<F>>>) -> T
where
    F: Future<Output = T>,
{
    let mut futs = futs;
    std::future::poll_fn(move |cx| {
        for f in futs.iter_mut() {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(cx) {
                return std::task::Poll::Ready(v);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// Why a link is opened again.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reconnect {
    /// A request found it broken (already logged).
    Lost,
    /// The server closed it, likely while idle: a new one is expected to open at once.
    Reopen,
}

/// Reconnects with exponential backoff until it succeeds or the connection is dropped.
async fn reconnect(conn: Weak<Conn>, gen: u64, why: Reconnect) {
    let started = Instant::now();
    let mut delay = BACKOFF_MIN;
    let mut attempts = 0u32;
    loop {
        let Some(c) = conn.upgrade() else { return };
        attempts += 1;
        // The first attempt to reopen a closed link sends no probe; retries after it failed do.
        let probe = why == Reconnect::Lost || attempts > 1;
        match c.open_link(gen + 1, probe).await {
            Ok(link) => {
                *lock(&c.refused) = None;
                *lock(&c.state) = State::Up { link, gen: gen + 1 };
                c.up.send_replace(gen + 1);
                if why == Reconnect::Reopen && attempts == 1 {
                    debug!(addr = %c.addr, after = ?started.elapsed(), "redis connection reopened");
                } else {
                    info!(
                        addr = %c.addr,
                        after = ?started.elapsed(),
                        attempts,
                        "redis connection restored"
                    );
                }
                return;
            }
            Err(e) if is_permission_error(&e) => {
                let first = lock(&c.refused).replace(e.clone()).is_none();
                if first {
                    warn!(addr = %c.addr, error = %e, "redis refuses the credentials; retrying in the background");
                }
                // Wake the operations waiting for the link: they fail as refused now.
                c.up.send_modify(|_| {});
            }
            Err(e) => {
                *lock(&c.refused) = None;
                if why == Reconnect::Reopen && attempts == 1 {
                    warn!(addr = %c.addr, error = %e, "redis connection lost; reconnecting in the background");
                } else {
                    debug!(addr = %c.addr, error = %e, attempts, "redis still unreachable");
                }
            }
        }
        drop(c);
        // A little jitter so that many processes do not reconnect in lockstep.
        let jitter = Duration::from_millis(u64::from(started.elapsed().subsec_nanos() % 97));
        tokio::time::sleep(delay + jitter).await;
        delay = (delay * 2).min(BACKOFF_MAX);
    }
}

/// Arguments of a script call, appended after its keys.
#[derive(Default)]
pub(crate) struct ScriptArgs {
    args: Vec<ArgValue>,
}

enum ArgValue {
    Str(String),
    Int(i64),
}

impl ScriptArgs {
    pub(crate) fn with_capacity(n: usize) -> Self {
        ScriptArgs {
            args: Vec::with_capacity(n),
        }
    }
    pub(crate) fn str(&mut self, s: impl Into<String>) -> &mut Self {
        self.args.push(ArgValue::Str(s.into()));
        self
    }
    pub(crate) fn int(&mut self, i: i64) -> &mut Self {
        self.args.push(ArgValue::Int(i));
        self
    }
    fn append_to(&self, cmd: &mut Cmd) {
        for a in &self.args {
            match a {
                ArgValue::Str(s) => cmd.arg(s.as_bytes()),
                ArgValue::Int(i) => cmd.arg(*i),
            };
        }
    }
}
