//! What the CLI asks of the daemon, beyond one request: finding it and its
//! token, the body of a message, splitting an agent's command line, waiting
//! for a message to end, and following its output as it comes.

use crate::client::Client;
use crate::db::FINAL_STATES;
use crate::serve::Listen;
use anyhow::{bail, Context, Result};
use std::time::{Duration, Instant};
use store::Store;

impl Client {
    /// A client for the daemon at `addr` (`unix:PATH` or `tcp:HOST:PORT`),
    /// by default the store's unix socket. TCP needs the token: from
    /// `BOTYARD_TOKEN`, else from the store's token file.
    pub fn resolve(store: &Store, addr: Option<&str>) -> Result<Client> {
        let listen: Listen = match addr {
            Some(s) => s.parse()?,
            None => Listen::Unix(crate::serve::default_socket(store)),
        };
        let token = match &listen {
            Listen::Tcp(_) => Some(match std::env::var("BOTYARD_TOKEN") {
                Ok(t) => t,
                Err(_) => std::fs::read_to_string(crate::serve::token_path(store))
                    .context("no BOTYARD_TOKEN and no token file; TCP needs the daemon's token")?
                    .trim()
                    .to_string(),
            }),
            Listen::Unix(_) => None,
        };
        Ok(Client { listen, token })
    }

    /// Polls message `id` until it is done or failed (then returns it), or
    /// errs after `limit`.
    pub fn wait_message(&self, id: i64, limit: Duration) -> Result<serde_json::Value> {
        let t = Instant::now();
        loop {
            let v = self.json("GET", &format!("/v1/messages/{id}"), None)?;
            let state = v["state"].as_str().unwrap_or("");
            if FINAL_STATES.contains(&state) {
                return Ok(v);
            }
            if t.elapsed() > limit {
                bail!(
                    "message {id} is still {} after {}",
                    v["state"],
                    humantime::format_duration(limit)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Follows message `id`'s events (`state`, `output` with the agent's
    /// output as it came, `lagged` when some was left out) until it ends,
    /// calling `on` with each event's name and data; returns the ended
    /// message.
    pub fn follow(
        &self,
        id: i64,
        limit: Duration,
        mut on: impl FnMut(&str, &serde_json::Value) -> Result<()>,
    ) -> Result<serde_json::Value> {
        let mut result = None;
        self.events(
            &format!("/v1/messages/{id}/events"),
            limit,
            |event, data| {
                let v: serde_json::Value = serde_json::from_str(data).unwrap_or_default();
                if event == "result" {
                    result = Some(v);
                    return Ok(false);
                }
                on(event, &v)?;
                Ok(true)
            },
        )
        .map_err(|e| {
            let timed_out = e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
            });
            if timed_out {
                anyhow::anyhow!(
                    "message {id} has not ended after {}; `botyard message wait {id}` waits again",
                    humantime::format_duration(limit)
                )
            } else {
                e
            }
        })?;
        result.with_context(|| format!("the daemon ended the event stream of message {id} before the message ended; `botyard message wait {id}` waits again"))
    }
}

/// A message's body: the bytes as they are when they are JSON, else
/// `{"text": ...}`.
pub fn message_body(raw: Vec<u8>) -> Vec<u8> {
    if serde_json::from_slice::<serde::de::IgnoredAny>(&raw).is_ok() {
        raw
    } else {
        serde_json::json!({"text": String::from_utf8_lossy(&raw)})
            .to_string()
            .into_bytes()
    }
}

/// Splits a command line the way a POSIX shell does for words (quotes and
/// backslashes; no expansion).
pub fn shell_words(s: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut have = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.extend(chars.next());
                have = true;
            }
            '\'' => {
                have = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => bail!("--agent has an unclosed ' quote"),
                    }
                }
            }
            '"' => {
                have = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => cur.extend(chars.next()),
                        Some(x) => cur.push(x),
                        None => bail!("--agent has an unclosed double quote"),
                    }
                }
            }
            c if c.is_whitespace() => {
                if have {
                    out.push(std::mem::take(&mut cur));
                    have = false;
                }
            }
            c => {
                cur.push(c);
                have = true;
            }
        }
    }
    if have {
        out.push(cur);
    }
    if out.is_empty() {
        bail!("--agent is empty; give the command the group runs");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_like_a_shell() {
        assert_eq!(
            shell_words(r#"sh -c 'echo "a b"' x\ y "q\"d" ''"#).unwrap(),
            vec!["sh", "-c", "echo \"a b\"", "x y", "q\"d", ""]
        );
        assert!(shell_words("a 'b").is_err());
        assert!(shell_words("a \"b").is_err());
        assert!(shell_words("   ").is_err());
    }

    #[test]
    fn a_body_that_is_not_json_becomes_text() {
        assert_eq!(message_body(b"{\"a\":1}".to_vec()), b"{\"a\":1}");
        assert_eq!(message_body(b"hi".to_vec()), br#"{"text":"hi"}"#);
    }
}
