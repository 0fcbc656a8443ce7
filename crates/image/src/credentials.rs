//! Registry credentials from a Docker config file (`~/.docker/config.json`,
//! or a `kubernetes.io/dockerconfigjson` Secret's `.dockerconfigjson`).
//! They live in memory only: never in a log, a ref or the store, and their
//! `Debug` hides the password.

use anyhow::{bail, Context, Result};
use std::path::Path;

/// A login for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub(crate) password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credentials {{ username: {:?}, password: <hidden> }}",
            self.username
        )
    }
}

#[derive(serde::Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: std::collections::HashMap<String, Entry>,
}

#[derive(serde::Deserialize)]
struct Entry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// The registry part of a config key: `https://host:port/v1/` is
/// `host:port`.
fn host_of(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.trim().bytes().filter(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The credentials `text` (a Docker config) holds for `registry`, if any.
pub fn credentials_for(text: &str, registry: &str) -> Result<Option<Credentials>> {
    let not_config = |why: String| {
        anyhow::anyhow!("not a Docker config file ({why}); it needs an \"auths\" object")
    };
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| not_config(e.to_string()))?;
    if !v.is_object() {
        return Err(not_config("not a JSON object".into()));
    }
    let c: DockerConfig = serde_json::from_value(v).map_err(|e| not_config(e.to_string()))?;
    let Some((_, e)) = c.auths.iter().find(|(k, _)| host_of(k) == registry) else {
        return Ok(None);
    };
    if let (Some(u), Some(p)) = (&e.username, &e.password) {
        return Ok(Some(Credentials {
            username: u.clone(),
            password: p.clone(),
        }));
    }
    let Some(auth) = &e.auth else {
        bail!("the entry for {registry} has neither auth nor username and password");
    };
    let raw = decode_base64(auth)
        .and_then(|b| String::from_utf8(b).ok())
        .with_context(|| format!("the auth of {registry} is not base64 of USER:PASSWORD"))?;
    let Some((u, p)) = raw.split_once(':') else {
        bail!("the auth of {registry} is not base64 of USER:PASSWORD");
    };
    Ok(Some(Credentials {
        username: u.to_string(),
        password: p.to_string(),
    }))
}

/// [`credentials_for`] of the file at `path`.
pub fn credentials_from_file(path: &Path, registry: &str) -> Result<Option<Credentials>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the auth file {}", path.display()))?;
    credentials_for(&text, registry).with_context(|| format!("auth file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_are_found_by_registry_and_never_shown() {
        let text = r#"{"auths": {"https://reg.example:5000/v1/": {"auth": "Ym90OnMzY3JldA=="},
                     "other.example": {"username": "u", "password": "p"}}}"#;
        let c = credentials_for(text, "reg.example:5000").unwrap().unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("bot", "s3cret")
        );
        assert!(!format!("{c:?}").contains("s3cret"));
        assert_eq!(
            credentials_for(text, "other.example")
                .unwrap()
                .unwrap()
                .password,
            "p"
        );
        assert!(credentials_for(text, "nobody.example").unwrap().is_none());
        assert!(credentials_for("[]", "x").is_err());
        assert!(credentials_for(r#"{"auths": {"x": {"auth": "!!"}}}"#, "x").is_err());
        assert!(credentials_for(r#"{"auths": {"x": {"auth": "bm9jb2xvbg=="}}}"#, "x").is_err());
    }
}
