//! A small HTTP/1.1 client for the CLI: one request per connection, over
//! the daemon's unix socket or TCP.

use crate::serve::Listen;
use anyhow::{bail, Context, Result};
use std::io::{Read, Write};

pub struct Client {
    pub listen: Listen,
    pub token: Option<String>,
}

impl Client {
    /// Sends one request; returns the status code and the body.
    pub fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<(u16, Vec<u8>)> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: botyard\r\nConnection: close\r\n");
        if let Some(t) = &self.token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        let body = body.unwrap_or_default();
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        ));
        let mut raw = Vec::new();
        let not_running = |e: std::io::Error, at: String| {
            anyhow::anyhow!(
                "the daemon is not running at {at} ({e}); start it with `botyard serve`"
            )
        };
        match &self.listen {
            Listen::Unix(p) => {
                let mut s = std::os::unix::net::UnixStream::connect(p)
                    .map_err(|e| not_running(e, p.display().to_string()))?;
                s.write_all(req.as_bytes())?;
                s.write_all(body)?;
                s.read_to_end(&mut raw)?;
            }
            Listen::Tcp(a) => {
                let mut s =
                    std::net::TcpStream::connect(a).map_err(|e| not_running(e, a.to_string()))?;
                s.write_all(req.as_bytes())?;
                s.write_all(body)?;
                s.read_to_end(&mut raw)?;
            }
        }
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .context("the daemon sent a malformed response")?;
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut rest = raw[split + 4..].to_vec();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("the daemon sent no status")?;
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            rest = dechunk(&rest)?;
        }
        Ok((status, rest))
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

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let nl = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("bad chunk")?;
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..nl]).trim(), 16)?;
        b = &b[nl + 2..];
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&b[..n.min(b.len())]);
        b = &b[(n + 2).min(b.len())..];
    }
}
