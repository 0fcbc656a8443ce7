//! A small HTTP/1.1 client for the CLI: one request per connection, over
//! the daemon's unix socket or TCP.

use crate::serve::Listen;
use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::time::Duration;

pub struct Client {
    pub listen: Listen,
    pub token: Option<String>,
}

/// A connection to the daemon.
trait Conn: Read + Write {
    fn set_timeout(&self, t: Option<Duration>) -> std::io::Result<()>;
}

impl Conn for std::os::unix::net::UnixStream {
    fn set_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        self.set_read_timeout(t)
    }
}

impl Conn for std::net::TcpStream {
    fn set_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        self.set_read_timeout(t)
    }
}

impl Client {
    /// Connects and sends one request.
    fn send(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Box<dyn Conn>> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: botyard\r\nConnection: close\r\n");
        if let Some(t) = &self.token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        let body = body.unwrap_or_default();
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        ));
        let not_running = |e: std::io::Error, at: String| {
            anyhow::anyhow!(
                "the daemon is not running at {at} ({e}); start it with `botyard serve`"
            )
        };
        let mut s: Box<dyn Conn> = match &self.listen {
            Listen::Unix(p) => Box::new(
                std::os::unix::net::UnixStream::connect(p)
                    .map_err(|e| not_running(e, p.display().to_string()))?,
            ),
            Listen::Tcp(a) => Box::new(
                std::net::TcpStream::connect(a).map_err(|e| not_running(e, a.to_string()))?,
            ),
        };
        s.write_all(req.as_bytes())?;
        s.write_all(body)?;
        Ok(s)
    }

    /// Sends one request; returns the status code and the body.
    pub fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<(u16, Vec<u8>)> {
        let mut raw = Vec::new();
        self.send(method, path, body)?.read_to_end(&mut raw)?;
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .context("the daemon sent a malformed response")?;
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut rest = raw[split + 4..].to_vec();
        let status = status_of(&head)?;
        if chunked(&head) {
            let mut out = Vec::new();
            Chunked::new(&rest[..]).read_to_end(&mut out)?;
            rest = out;
        }
        Ok((status, rest))
    }

    /// Reads the server-sent events at `path`, calling `f(event, data)`
    /// for each until it returns false or the stream ends; fails with
    /// [`std::io::ErrorKind::TimedOut`] after `timeout` in all.
    pub fn events(
        &self,
        path: &str,
        timeout: Duration,
        mut f: impl FnMut(&str, &str) -> Result<bool>,
    ) -> Result<()> {
        let conn = self.send("GET", path, None)?;
        let until = std::time::Instant::now() + timeout;
        // Short reads, so the total is checked even while only the
        // daemon's keep-alives come.
        conn.set_timeout(Some(
            timeout.clamp(Duration::from_millis(1), Duration::from_secs(1)),
        ))?;
        let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out");
        let mut r = BufReader::new(conn);
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            match r.read_until(b'\n', &mut head) {
                Ok(0) => bail!("the daemon closed the connection without an answer"),
                Ok(_) => {}
                Err(e) if is_timeout(&e) && std::time::Instant::now() < until => {}
                Err(e) => return Err(e.into()),
            }
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let status = status_of(&head)?;
        let mut body: Box<dyn BufRead> = if chunked(&head) {
            Box::new(BufReader::new(Chunked::new(r)))
        } else {
            Box::new(r)
        };
        if status != 200 {
            let mut raw = Vec::new();
            body.read_to_end(&mut raw)?;
            let v: serde_json::Value = serde_json::from_slice(&raw).unwrap_or_default();
            bail!(
                "{} (HTTP {status})",
                v["error"]
                    .as_str()
                    .unwrap_or("the daemon refused the request")
            );
        }
        let (mut event, mut data) = (String::new(), String::new());
        let mut line = Vec::new();
        loop {
            if std::time::Instant::now() > until {
                return Err(timed_out().into());
            }
            // A read that times out keeps what it got in `line`.
            match body.read_until(b'\n', &mut line) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if is_timeout(&e) => continue,
                Err(e) => return Err(e.into()),
            }
            if !line.ends_with(b"\n") {
                continue;
            }
            let line = String::from_utf8_lossy(&std::mem::take(&mut line)).into_owned();
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if !data.is_empty() && !f(&event, &data)? {
                    return Ok(());
                }
                event.clear();
                data.clear();
            } else if let Some(v) = line.strip_prefix("event:") {
                event = v.trim_start().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
    }

    /// A request whose answer must be 2xx JSON; the daemon's error
    /// message otherwise.
    pub fn json(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<serde_json::Value> {
        let (code, body) = self.request(method, path, body)?;
        let v: serde_json::Value = if body.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&body)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).trim().into())
        };
        if !(200..300).contains(&code) {
            let msg = v["error"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            bail!("{msg} (HTTP {code})");
        }
        Ok(v)
    }
}

/// A read that gave up for the socket's timeout.
fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

fn status_of(head: &str) -> Result<u16> {
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("the daemon sent no status")
}

fn chunked(head: &str) -> bool {
    head.to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
}

/// A body in HTTP/1.1 chunked encoding, read as it comes.
struct Chunked<R> {
    inner: R,
    left: usize,
    done: bool,
    /// A chunk-size line read in part (a read can time out mid-line).
    size_line: Vec<u8>,
}

impl<R: BufRead> Chunked<R> {
    fn new(inner: R) -> Self {
        Chunked {
            inner,
            left: 0,
            done: false,
            size_line: Vec::new(),
        }
    }
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.left == 0 && !self.done {
            if self.inner.read_until(b'\n', &mut self.size_line)? == 0 {
                self.done = true;
                break;
            }
            if !self.size_line.ends_with(b"\n") {
                continue;
            }
            let line = String::from_utf8_lossy(&std::mem::take(&mut self.size_line)).into_owned();
            let size = line.trim().split(';').next().unwrap_or("");
            if size.is_empty() {
                continue; // the line break after a chunk
            }
            self.left = usize::from_str_radix(size, 16).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunk size")
            })?;
            self.done = self.left == 0;
        }
        if self.done {
            return Ok(0);
        }
        let max = buf.len().min(self.left);
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            self.done = true;
        }
        self.left -= n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out its pieces one read at a time; `None` is a read that
    /// times out.
    struct Pieces(std::collections::VecDeque<Option<&'static [u8]>>);

    impl Read for Pieces {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match self.0.pop_front() {
                None => Ok(0),
                Some(None) => Err(std::io::ErrorKind::WouldBlock.into()),
                Some(Some(p)) => {
                    buf[..p.len()].copy_from_slice(p);
                    Ok(p.len())
                }
            }
        }
    }

    #[test]
    fn a_chunked_body_survives_reads_that_time_out_mid_line() {
        let pieces = Pieces(
            [
                Some(&b"5"[..]),
                None,
                Some(b"\r\nhel"),
                None,
                Some(b"lo\r\n1"),
                None,
                Some(b"0\r\n0123456789abcdef\r\n0\r\n\r\n"),
            ]
            .into_iter()
            .collect(),
        );
        let mut c = Chunked::new(BufReader::new(pieces));
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            match c.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if is_timeout(&e) => continue,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(out, b"hello0123456789abcdef");
    }
}
