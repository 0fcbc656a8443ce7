//! Showing names someone else chose (an agent, an image) to a person.
//!
//! A name made only of printable characters is shown as it is. Anything
//! else (control characters such as a newline or an escape, Unicode format
//! characters such as a bidirectional override, invalid UTF-8, `"` or `\`)
//! puts the whole name in double quotes with C-style escapes, as `git`
//! and `ls -b` do, so no name can forge a line of output or move the
//! reviewer's cursor. Output for scripts (`--json`) keeps names exact.

use std::borrow::Cow;
use std::fmt::Write;

fn plain(c: char) -> bool {
    if c == '"' || c == '\\' || c.is_control() {
        return false;
    }
    // Rust's notion of printable: format characters, separators and
    // unassigned code points escape.
    let mut e = c.escape_debug();
    matches!((e.next(), e.next()), (Some(x), None) if x == c) || c == '\''
}

/// `name` as a person should see it: unchanged when harmless, else quoted.
pub fn quote_bytes(name: &[u8]) -> String {
    match quote_cow(name) {
        Cow::Borrowed(s) => s.to_string(),
        Cow::Owned(s) => s,
    }
}

/// [`quote_bytes`], borrowing when nothing needs quoting.
pub fn quote_cow(name: &[u8]) -> Cow<'_, str> {
    if let Ok(s) = std::str::from_utf8(name) {
        if s.chars().all(plain) {
            return Cow::Borrowed(s);
        }
    }
    let mut out = String::with_capacity(name.len() + 8);
    out.push('"');
    for chunk in name.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if plain(c) => out.push(c),
                c if (c as u32) < 0x80 => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out.push('"');
    Cow::Owned(out)
}

/// [`quote_bytes`] of a name or path that may be very long (a deep path):
/// its start and end, with what is between left out.
pub fn quote_short(name: &[u8]) -> String {
    const KEEP: usize = 60;
    if name.len() <= 2 * KEEP + 20 {
        return quote_bytes(name);
    }
    let (head, tail) = (&name[..KEEP], &name[name.len() - KEEP..]);
    format!("{}…{}", quote_bytes(head), quote_bytes(tail))
}

/// A path (`/a/b`) as a person should see it.
pub fn quote_path(p: &std::path::Path) -> String {
    quote_bytes(p.as_os_str().as_encoded_bytes())
}

/// A string someone else chose (already UTF-8), as a person should see it.
pub fn quote_str(s: &str) -> String {
    quote_bytes(s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harmless_names_stay_and_others_are_quoted() {
        for ok in [
            "a",
            "usr/lib/x86_64-linux-gnu",
            "don't",
            "ünïcödé 名前",
            "a b",
        ] {
            assert_eq!(quote_bytes(ok.as_bytes()), ok);
        }
        assert_eq!(quote_bytes(b"x\nD /etc/shadow"), "\"x\\nD /etc/shadow\"");
        assert_eq!(quote_bytes(b"\x1b[2K\x1b[1A"), "\"\\x1b[2K\\x1b[1A\"");
        assert_eq!(quote_bytes(b"bad\xff"), "\"bad\\xff\"");
        assert_eq!(
            quote_bytes("evil\u{202e}txt".as_bytes()),
            "\"evil\\u{202e}txt\""
        );
        assert_eq!(quote_bytes(b"q\"\\"), "\"q\\\"\\\\\"");
        assert_eq!(quote_bytes(b"tab\there\r"), "\"tab\\there\\r\"");
        assert_eq!(quote_bytes(b"del\x7f"), "\"del\\x7f\"");
        // What comes out is one line of printable text.
        for hostile in [&b"a\nb"[..], b"\x00", b"\x9b31m", "\u{2028}".as_bytes()] {
            let q = quote_bytes(hostile);
            assert!(q.chars().all(|c| !c.is_control()), "{q:?}");
        }
    }
}
