//! A tiny blocking Redis client (RESP2 over TCP, no TLS): enough for `PING`, `INFO`, `FLUSHALL`
//! and `AUTH`/`SELECT`. The bench's own probes go through it, never through the backend under
//! test, so measuring does not disturb (or trust) what is measured.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{bail, Context as _};

/// Where a Redis server is and how to log in, parsed from a `redis://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisAddr {
    /// Host name or address.
    pub host: String,
    /// TCP port (default 6379).
    pub port: u16,
    /// ACL user name, if any.
    pub username: Option<String>,
    /// Password, if any.
    pub password: Option<String>,
    /// Database number (default 0).
    pub db: u32,
}

impl RedisAddr {
    /// Parses `redis://[[user]:password@]host[:port][/db]`. `rediss://` (TLS) is refused:
    /// this client has no TLS, so commands per job cannot be read from such a server.
    pub fn parse(url: &str) -> anyhow::Result<RedisAddr> {
        let rest = url
            .strip_prefix("redis://")
            .with_context(|| format!("`{url}`: the bench probes need a redis:// url"))?;
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((a, r)) => (Some(a), r),
            None => (None, rest),
        };
        let (hostport, db) = match rest.split_once('/') {
            Some((h, d)) if !d.is_empty() => (h, d.parse().context("database number")?),
            Some((h, _)) => (h, 0),
            None => (rest, 0),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6.split_once(']').context("unclosed `[` in the host")?;
            match after.strip_prefix(':') {
                Some(p) => (h, p.parse().context("port")?),
                None => (h, 6379),
            }
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, p.parse().context("port")?),
                None => (hostport, 6379),
            }
        };
        if host.is_empty() {
            bail!("`{url}`: no host");
        }
        let (username, password) = match auth {
            None => (None, None),
            Some(a) => match a.split_once(':') {
                Some((u, p)) => ((!u.is_empty()).then(|| u.to_owned()), Some(p.to_owned())),
                None => (None, Some(a.to_owned())),
            },
        };
        Ok(RedisAddr {
            host: host.to_owned(),
            port,
            username,
            password,
            db,
        })
    }
}

/// A reply, flattened: status and bulk strings as text, integers as their digits, arrays as
/// their elements joined by newlines, nil as an empty string.
pub type Reply = String;

/// One connection.
pub struct Resp {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Resp {
    /// Connects (and logs in and selects the database, if the address says so).
    pub fn connect(addr: &RedisAddr, timeout: Duration) -> anyhow::Result<Resp> {
        let stream = std::net::ToSocketAddrs::to_socket_addrs(&(addr.host.as_str(), addr.port))?
            .find_map(|a| TcpStream::connect_timeout(&a, timeout).ok())
            .with_context(|| format!("cannot connect to {}:{}", addr.host, addr.port))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        let mut conn = Resp {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        };
        match (&addr.username, &addr.password) {
            (Some(u), Some(p)) => {
                conn.command(&["AUTH", u, p])?;
            }
            (None, Some(p)) => {
                conn.command(&["AUTH", p])?;
            }
            _ => {}
        }
        if addr.db != 0 {
            conn.command(&["SELECT", &addr.db.to_string()])?;
        }
        Ok(conn)
    }

    /// Sends one command and reads its reply; a Redis error reply is an `Err`.
    pub fn command(&mut self, args: &[&str]) -> anyhow::Result<Reply> {
        let mut buf = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            buf.extend_from_slice(a.as_bytes());
            buf.extend_from_slice(b"\r\n");
        }
        self.writer.write_all(&buf)?;
        read_reply(&mut self.reader)
    }
}

fn read_reply(r: &mut impl BufRead) -> anyhow::Result<Reply> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        bail!("redis closed the connection");
    }
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line.split_at(line.len().min(1));
    match kind {
        "+" | ":" => Ok(rest.to_owned()),
        "-" => bail!("redis replied with an error: {rest}"),
        "$" => {
            let n: i64 = rest.parse().context("bulk length")?;
            if n < 0 {
                return Ok(String::new());
            }
            let mut buf = vec![0u8; n as usize + 2];
            r.read_exact(&mut buf)?;
            buf.truncate(n as usize);
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
        "*" => {
            let n: i64 = rest.parse().context("array length")?;
            let items = (0..n.max(0))
                .map(|_| read_reply(r))
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok(items.join("\n"))
        }
        _ => bail!("unexpected reply from redis: `{line}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let a = RedisAddr::parse("redis://127.0.0.1:7001").unwrap();
        assert_eq!((a.host.as_str(), a.port, a.db), ("127.0.0.1", 7001, 0));
        let a = RedisAddr::parse("redis://:s3cret@localhost/2").unwrap();
        assert_eq!(a.password.as_deref(), Some("s3cret"));
        assert_eq!((a.port, a.db, a.username), (6379, 2, None));
        let a = RedisAddr::parse("redis://bench:pw@[::1]:6380").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("::1", 6380));
        assert_eq!(a.username.as_deref(), Some("bench"));
        assert!(RedisAddr::parse("rediss://host").is_err());
    }

    #[test]
    fn reads_replies() {
        let mut r: &[u8] = b"*3\r\n+OK\r\n:12\r\n$5\r\nhe\r\nl\r\n";
        assert_eq!(read_reply(&mut r).unwrap(), "OK\n12\nhe\r\nl");
        let mut r: &[u8] = b"-ERR nope\r\n";
        assert!(read_reply(&mut r).is_err());
        let mut r: &[u8] = b"$-1\r\n";
        assert_eq!(read_reply(&mut r).unwrap(), "");
    }
}
