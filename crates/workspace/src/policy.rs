//! The sync gate's policy: which changes may reach the project.

use anyhow::{bail, Context, Result};
use globset::{GlobBuilder, GlobMatcher};
use std::path::Path;

/// The built-in policy, as `botyard workspace policy --default` prints it.
pub const DEFAULT_POLICY: &str = r#"# botyard workspace policy (TOML). Every field is optional; a missing one
# keeps the value shown here.

# "deny": everything may sync except what `deny` matches.
# "allowlist": only what `allow` matches may sync (and `deny` still applies).
mode = "deny"

# Globs. A pattern without "/" matches a file or directory name anywhere
# ("*.pem", ".env*"); a pattern with "/" matches a path below any directory
# (".git/**" also catches sub/.git/config), or from the project root only
# when it starts with "/" ("/build/**"). "**" crosses directories, "*"
# does not.
deny = [".git/**", ".env*", "*.pem", "*.key", "id_*", "*.p12", "*.pfx", "*.jks", "*.keystore"]
allow = []

# Larger files are rejected ("10MB", "512KiB", or bytes).
max_file_size = "10MB"

# These changes wait for a person: `sync --interactive`, or `sync --approve`.
approve_binaries = true
approve_new_executables = true

# A file in which the built-in scanner finds a secret (private keys; AWS,
# GCP, GitHub, Slack, OpenAI and Anthropic token shapes; high-entropy
# values assigned to secret-looking names) is blocked, and the line shown.
scan_secrets = true
"#;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    mode: Option<String>,
    deny: Option<Vec<String>>,
    allow: Option<Vec<String>>,
    max_file_size: Option<toml::Value>,
    approve_binaries: Option<bool>,
    approve_new_executables: Option<bool>,
    scan_secrets: Option<bool>,
}

#[derive(Debug)]
struct Pattern {
    text: String,
    /// Matched against each path component (no "/" in the pattern), or
    /// against the path and each of its ancestors.
    by_name: bool,
    /// Only from the project root (a leading "/").
    anchored: bool,
    m: GlobMatcher,
}

#[derive(Debug)]
pub struct Policy {
    pub allowlist: bool,
    deny: Vec<Pattern>,
    allow: Vec<Pattern>,
    pub max_file_size: u64,
    pub approve_binaries: bool,
    pub approve_new_executables: bool,
    pub scan_secrets: bool,
}

fn pattern(p: &str, field: &str) -> Result<Pattern> {
    let anchored = p.starts_with('/');
    let glob = p.trim_start_matches('/');
    let m = GlobBuilder::new(glob)
        .literal_separator(true)
        .build()
        .with_context(|| format!("policy field {field}: bad glob '{p}'"))?
        .compile_matcher();
    Ok(Pattern {
        text: p.to_string(),
        by_name: !anchored && !glob.contains('/'),
        anchored,
        m,
    })
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        if self.by_name {
            return path.split('/').any(|c| self.m.is_match(c));
        }
        // Where the match may start: the root, or below any directory.
        let starts: Vec<usize> = if self.anchored {
            vec![0]
        } else {
            std::iter::once(0)
                .chain(path.match_indices('/').map(|(i, _)| i + 1))
                .collect()
        };
        starts.into_iter().any(|start| {
            let sub = &path[start..];
            // The path itself or any of its ancestors.
            let mut end = sub.len();
            loop {
                if self.m.is_match(&sub[..end]) {
                    return true;
                }
                match sub[..end].rfind('/') {
                    Some(i) => end = i,
                    None => return false,
                }
            }
        })
    }
}

pub use store::parse_size;

impl Policy {
    pub fn builtin() -> Policy {
        Policy::parse(DEFAULT_POLICY).expect("the built-in policy parses")
    }

    /// The policy in `file`, or the built-in one. Read at every use, so an
    /// edit takes effect at the next sync and a broken file is reported
    /// then.
    pub fn load(file: Option<&Path>) -> Result<Policy> {
        let Some(file) = file else {
            return Ok(Policy::builtin());
        };
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the policy file {}", file.display()))?;
        Policy::parse(&text).map_err(|e| {
            anyhow::anyhow!(
                "policy file {}: {e}; compare with `botyard workspace policy --default`",
                file.display()
            )
        })
    }

    pub fn parse(text: &str) -> Result<Policy> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start].matches('\n').count() + 1)
                .map(|l| format!("line {l}: "))
                .unwrap_or_default();
            anyhow::anyhow!("{line}{}", e.message().trim())
        })?;
        let defaults: RawPolicy = toml::from_str(DEFAULT_POLICY).expect("built-in policy");
        let allowlist = match raw.mode.or(defaults.mode).as_deref() {
            Some("deny") => false,
            Some("allowlist") => true,
            other => bail!("mode must be \"deny\" or \"allowlist\", not {other:?}"),
        };
        let deny = raw
            .deny
            .or(defaults.deny)
            .unwrap_or_default()
            .iter()
            .map(|p| pattern(p, "deny"))
            .collect::<Result<_>>()?;
        let allow = raw
            .allow
            .or(defaults.allow)
            .unwrap_or_default()
            .iter()
            .map(|p| pattern(p, "allow"))
            .collect::<Result<_>>()?;
        let max_file_size = match raw.max_file_size.or(defaults.max_file_size) {
            Some(toml::Value::String(s)) => parse_size(&s)?,
            Some(toml::Value::Integer(n)) if n >= 0 => n as u64,
            other => bail!("max_file_size must be a size like \"10MB\", not {other:?}"),
        };
        Ok(Policy {
            allowlist,
            deny,
            allow,
            max_file_size,
            approve_binaries: raw
                .approve_binaries
                .or(defaults.approve_binaries)
                .unwrap_or(true),
            approve_new_executables: raw
                .approve_new_executables
                .or(defaults.approve_new_executables)
                .unwrap_or(true),
            scan_secrets: raw.scan_secrets.or(defaults.scan_secrets).unwrap_or(true),
        })
    }

    /// Why `path` may not sync at all, if it may not.
    pub fn path_refused(&self, path: &str) -> Option<String> {
        if let Some(p) = self.deny.iter().find(|p| p.matches(path)) {
            return Some(format!("denied by the policy ({})", p.text));
        }
        if self.allowlist && !self.allow.iter().any(|p| p.matches(path)) {
            return Some("not on the policy's allow list".to_string());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_denies_what_it_says() {
        let p = Policy::builtin();
        for denied in [
            ".git/config",
            "sub/.git/HEAD",
            ".env",
            "app/.env.local",
            "certs/server.pem",
            "a.key",
            "home/.ssh/id_ed25519",
            "store.p12",
            "x.pfx",
            "k.jks",
            "release.keystore",
        ] {
            assert!(
                p.path_refused(denied).is_some(),
                "{denied} should be denied"
            );
        }
        for allowed in [
            "src/main.rs",
            "README.md",
            "docs/environment.md",
            "keys.txt",
            "monkey",
        ] {
            assert_eq!(p.path_refused(allowed), None, "{allowed}");
        }
        assert_eq!(p.max_file_size, 10_000_000);
    }

    #[test]
    fn allowlist_and_errors() {
        let p = Policy::parse("mode = \"allowlist\"\nallow = [\"/src/**\", \"*.md\"]\n").unwrap();
        assert_eq!(p.path_refused("src/a/b.rs"), None);
        assert!(
            p.path_refused("vendor/src/a.rs").is_some(),
            "anchored at the root"
        );
        assert_eq!(p.path_refused("notes/x.md"), None);
        assert!(p.path_refused("Cargo.toml").is_some());
        assert!(p.path_refused("src/.env").is_some(), "deny still applies");
        let e = Policy::parse("mode = \"deny\"\ndny = []\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("dny"), "{e}");
        let e = Policy::parse("max_file_size = \"10 parsecs\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("size unit"), "{e}");
        assert_eq!(parse_size("512KiB").unwrap(), 524288);
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Any policy text parses or is refused with a message, never
            /// a panic.
            #[test]
            fn any_policy_parses_or_is_refused(
                text in prop_oneof![
                    any::<String>(),
                    "mode = \"(deny|allowlist|x)\"\ndeny = \\[\"[a-z*/.\\[\\]{}!]{0,10}\"\\]\nmax_file_size = \"[0-9]{0,4}(MB|kb|x|)\"\n",
                ],
                path in "[a-z./]{0,16}",
            ) {
                match Policy::parse(&text) {
                    Ok(p) => {
                        let _ = p.path_refused(&path);
                    }
                    Err(e) => prop_assert!(!e.to_string().is_empty()),
                }
            }

            #[test]
            fn sizes_parse_or_are_refused(s in "[0-9. ]{0,8}[a-zA-Z]{0,3}") {
                let _ = parse_size(&s);
            }
        }
    }
}
