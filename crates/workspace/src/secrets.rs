//! The gate's own secret scanner: private keys, cloud and SaaS token shapes,
//! and high-entropy values assigned to secret-looking names. It needs no
//! outside tool, so it cannot silently turn off.

use regex::Regex;
use std::sync::OnceLock;

/// One secret found in a file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Hit {
    /// What it looks like ("AWS access key id", …).
    pub kind: &'static str,
    /// 1-based line number.
    pub line: usize,
    /// The line, with the secret itself masked.
    pub text: String,
}

struct Pattern {
    kind: &'static str,
    re: Regex,
    /// Which capture group is the secret (0: the whole match).
    group: usize,
    /// Only values this unpredictable count (bits per character).
    min_entropy: f64,
}

fn patterns() -> &'static [Pattern] {
    static P: OnceLock<Vec<Pattern>> = OnceLock::new();
    P.get_or_init(|| {
        let p = |kind, re: &str, group, min_entropy| Pattern {
            kind,
            re: Regex::new(re).expect("built-in secret pattern"),
            group,
            min_entropy,
        };
        vec![
            p(
                "private key",
                r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----",
                0,
                0.0,
            ),
            p("AWS access key id", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", 0, 0.0),
            p(
                "AWS secret access key",
                r#"(?i)aws_?secret_?access_?key["']?\s*[:=]\s*["']?([A-Za-z0-9/+=]{40})"#,
                1,
                0.0,
            ),
            p("GCP API key", r"\bAIza[0-9A-Za-z_\-]{35}", 0, 0.0),
            p(
                "GCP service account key",
                r#""private_key_id"\s*:\s*"([0-9a-f]{40})""#,
                1,
                0.0,
            ),
            p(
                "GitHub token",
                r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{50,})",
                0,
                0.0,
            ),
            p("Slack token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}", 0, 0.0),
            p(
                "Slack webhook",
                r"https://hooks\.slack\.com/services/[A-Za-z0-9_/]{20,}",
                0,
                0.0,
            ),
            p("Anthropic API key", r"\bsk-ant-[A-Za-z0-9_\-]{20,}", 0, 0.0),
            p(
                "OpenAI API key",
                r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}",
                0,
                0.0,
            ),
            p(
                "high-entropy secret assignment",
                r#"(?i)[A-Za-z0-9_.\-]*(?:secret|token|passw(?:or)?d|api[_\-]?key|access[_\-]?key|private[_\-]?key|credential)[A-Za-z0-9_.\-]*["']?\s*[:=]\s*["']?([A-Za-z0-9/+_\-=.]{16,})"#,
                1,
                3.5,
            ),
        ]
    })
}

/// Shannon entropy of `s` in bits per character.
fn entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in s.bytes() {
        counts[b as usize] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// Keeps the first four characters of a secret and says how long it was.
fn mask(secret: &str) -> String {
    let head: String = secret.chars().take(4).collect();
    format!(
        "{head}…[{} chars hidden]",
        secret.chars().count().saturating_sub(4)
    )
}

/// Every secret in `text`, at most one per line (the first pattern that
/// matches, in the order above).
pub fn scan(text: &str) -> Vec<Hit> {
    let mut hits = Vec::new();
    for (i, line) in text.lines().enumerate() {
        'patterns: for p in patterns() {
            for c in p.re.captures_iter(line) {
                let m = c.get(p.group).expect("pattern group");
                // An OpenAI-shaped match that is really Anthropic's is
                // reported as Anthropic's (listed first).
                if p.kind == "OpenAI API key" && m.as_str().starts_with("sk-ant-") {
                    continue;
                }
                if entropy(m.as_str()) < p.min_entropy {
                    continue;
                }
                let mut shown = String::new();
                shown.push_str(&line[..m.start()]);
                shown.push_str(&mask(m.as_str()));
                shown.push_str(&line[m.end()..]);
                let shown: String = shown.chars().take(200).collect();
                hits.push(Hit {
                    kind: p.kind,
                    line: i + 1,
                    text: shown.trim().to_string(),
                });
                break 'patterns;
            }
        }
    }
    hits
}

/// `text` with every secret the scanner finds masked (as `sync` shows
/// them), for diffs a person reads.
pub fn mask_all(text: &str) -> std::borrow::Cow<'_, str> {
    let mut out = String::new();
    let mut changed = false;
    for line in text.split_inclusive('\n') {
        let mut spans: Vec<(usize, usize)> = Vec::new();
        for p in patterns() {
            for c in p.re.captures_iter(line) {
                let m = c.get(p.group).expect("pattern group");
                if entropy(m.as_str()) < p.min_entropy {
                    continue;
                }
                if !spans.iter().any(|&(s, e)| m.start() < e && s < m.end()) {
                    spans.push((m.start(), m.end()));
                }
            }
        }
        if spans.is_empty() {
            out.push_str(line);
            continue;
        }
        changed = true;
        spans.sort();
        let mut at = 0;
        for (s, e) in spans {
            out.push_str(&line[at..s]);
            out.push_str(&mask(&line[s..e]));
            at = e;
        }
        out.push_str(&line[at..]);
    }
    if changed {
        std::borrow::Cow::Owned(out)
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// The kinds of secret the scanner knows, for `--help` and the README.
pub fn kinds() -> Vec<&'static str> {
    patterns().iter().map(|p| p.kind).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_kind_and_masks_it() {
        // Built at run time so this file holds no complete token shape.
        let cases = [
            (
                "private key",
                format!("-----BEGIN {}PRIVATE KEY-----", "OPENSSH "),
            ),
            ("AWS access key id", format!("key = AKIA{}", "Q".repeat(16))),
            (
                "AWS secret access key",
                format!(
                    "aws_secret_access_key = {}",
                    "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY12"
                ),
            ),
            (
                "GCP API key",
                format!("AIza{}", "SyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW"),
            ),
            (
                "GitHub token",
                format!("ghp_{}", "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"),
            ),
            (
                "Slack token",
                format!("xoxb-{}", "123456789012-abcdefABCDEF"),
            ),
            (
                "Anthropic API key",
                format!("sk-ant-{}", "api03-AbCdEfGhIjKlMnOpQrStUvWxYz012345"),
            ),
            (
                "OpenAI API key",
                format!("sk-proj-{}", "AbCdEfGhIjKlMnOpQrStUvWxYz012345"),
            ),
            (
                "high-entropy secret assignment",
                format!("DB_PASSWORD=\"{}\"", "q8Zr2vLx9TnW4bYk7Hs3"),
            ),
        ];
        for (kind, line) in cases {
            let text = format!("first line\n{line}\nlast line\n");
            let hits = scan(&text);
            assert_eq!(hits.len(), 1, "{kind}: {hits:?}");
            assert_eq!(hits[0].kind, kind, "{line}");
            assert_eq!(hits[0].line, 2);
            assert!(hits[0].text.contains("chars hidden"), "{hits:?}");
        }
    }

    #[test]
    fn ordinary_code_is_not_a_secret() {
        let text = "let token = next_token();\npassword = \"changeme\"\nfn api_key_name() {}\nsk-learn is a library\n";
        assert!(scan(text).is_empty(), "{:?}", scan(text));
    }
}
