//! Names on the cluster: object names and label values derived from group
//! names, and the directories a group gets on the shared volume.
//!
//! A group name is any safe path segment, so it rarely is a DNS label.
//! Derived names keep what they can of it for people to read, and always
//! end in a hash of the exact name: two groups never share an object, even
//! where the readable part had to be cut or changed. Directories on the
//! shared volume are the names themselves, after refusing what cannot be
//! one: the mapping is the identity, so it is injective by construction.

use anyhow::{bail, Result};

/// The longest DNS label (a Kubernetes object name that is also a label
/// value or a hostname).
pub const DNS_LABEL_MAX: usize = 63;
/// Hex digits of the hash every derived name ends with (40 bits).
const HASH_HEX: usize = 10;
/// The longest segment accepted on the shared volume (most filesystems'
/// NAME_MAX).
pub const SEGMENT_MAX: usize = 255;

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= DNS_LABEL_MAX
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Refuses what is not a DNS label (RFC 1123), naming `what`.
pub fn check_dns_label(what: &str, s: &str) -> Result<()> {
    if !is_dns_label(s) {
        bail!(
            "{what} {} is not a DNS label: use 1 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit",
            store::quote_str(s)
        );
    }
    Ok(())
}

/// Refuses what is not a DNS subdomain (the name of most objects).
pub fn check_dns_subdomain(what: &str, s: &str) -> Result<()> {
    if s.is_empty() || s.len() > 253 || !s.split('.').all(is_dns_label) {
        bail!(
            "{what} {} is not a Kubernetes object name: use lowercase letters, digits, '-' and '.', at most 253",
            store::quote_str(s)
        );
    }
    Ok(())
}

/// The readable part of a derived name: lowercase letters and digits of
/// `name`, every other run of characters one '-'.
fn readable(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

fn hash_of(name: &str) -> String {
    store::Hash::of(name.as_bytes()).to_hex()[..HASH_HEX].to_string()
}

/// A DNS label for `name` of at most `max` bytes: `prefix-readable-hash`,
/// the readable part cut to fit. Different names give different labels
/// (up to a 40-bit hash collision, which the daemon refuses when a group
/// is added).
pub fn derived_label(prefix: &str, name: &str, max: usize) -> String {
    let hash = hash_of(name);
    let fixed = prefix.len() + 1 + HASH_HEX;
    assert!(max <= DNS_LABEL_MAX && fixed < max, "no room for {prefix}");
    let room = max - fixed - 1;
    let mut r = readable(name);
    r.truncate(room);
    let r = r.trim_end_matches('-');
    if r.is_empty() {
        format!("{prefix}-{hash}")
    } else {
        format!("{prefix}-{r}-{hash}")
    }
}

/// The value of the `botyard.dev/group` label of a group's objects.
pub fn group_label(group: &str) -> String {
    derived_label("g", group, DNS_LABEL_MAX)
}

/// The name of a group's bot claim.
pub fn claim_name(group: &str) -> String {
    derived_label("bot", group, DNS_LABEL_MAX)
}

/// The name of one session's Job or pod. A Job's pods add 6 characters to
/// its name and pod names are hostnames, so the whole stays a label.
pub fn session_name(group: &str, session: u64) -> String {
    let s = session.to_string();
    let base = derived_label("botyard", group, DNS_LABEL_MAX - 6 - 1 - s.len());
    format!("{base}-{s}")
}

/// Checks one segment of a path on the shared volume: refused are the
/// empty name, `.` and `..`, separators, NUL and other control characters,
/// and names longer than [`SEGMENT_MAX`] bytes. What passes is used as it
/// is.
pub fn shared_segment<'a>(what: &str, s: &'a str) -> Result<&'a str> {
    let why = if s.is_empty() {
        Some("it is empty")
    } else if s == "." || s == ".." {
        Some("it is . or ..")
    } else if s.contains('/') || s.contains('\\') {
        Some("it holds a separator")
    } else if s.contains('\0') {
        Some("it holds NUL")
    } else if s.chars().any(char::is_control) {
        Some("it holds a control character")
    } else if s.len() > SEGMENT_MAX {
        Some("it is longer than 255 bytes")
    } else {
        None
    };
    if let Some(why) = why {
        bail!(
            "{what} {} cannot name a directory on the shared volume: {why}; pick another",
            store::quote_str(s)
        );
    }
    Ok(s)
}

/// Where a group's IPC directory is on the shared volume.
pub fn ipc_path(group: &str) -> Result<String> {
    Ok(format!(
        "groups/{}/ipc",
        shared_segment("group name", group)?
    ))
}

/// Where a user's workspace is on the shared volume.
pub fn workspace_path(user: &str, workspace: &str) -> Result<String> {
    Ok(format!(
        "users/{}/{}",
        shared_segment("user", user)?,
        shared_segment("workspace", workspace)?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_names_are_labels_and_never_collide() {
        let mut names: Vec<String> = ["web", "Web", "a/b", "a_b", "a b", "a-b", "ünïcode", "", "-"]
            .map(String::from)
            .to_vec();
        names.push("x".repeat(200));
        names.push(format!("{}y", "x".repeat(199)));
        let mut seen = std::collections::HashSet::new();
        for n in &names {
            for l in [group_label(n), claim_name(n), session_name(n, 123456)] {
                assert!(is_dns_label(&l), "{n:?} -> {l:?}");
            }
            assert!(session_name(n, u64::MAX).len() <= DNS_LABEL_MAX - 6);
            assert!(seen.insert(group_label(n)), "{n:?} collides");
        }
        assert_eq!(group_label("My Group"), group_label("My Group"));
        assert!(group_label("My Group").starts_with("g-my-group-"));
    }

    #[test]
    fn shared_segments_refuse_what_seed_002_let_through() {
        for bad in ["", ".", "..", "a/b", "a\\b", "a\0b", "a\nb", "\u{7f}"] {
            assert!(shared_segment("user", bad).is_err(), "{bad:?}");
        }
        assert!(shared_segment("user", &"x".repeat(256)).is_err());
        // a/b is refused, a_b kept as it is: they cannot meet.
        assert_eq!(workspace_path("a_b", "w").unwrap(), "users/a_b/w");
        assert!(workspace_path("a/b", "w").is_err());
        assert_eq!(ipc_path("..x").unwrap(), "groups/..x/ipc");
        let e = ipc_path("..").unwrap_err().to_string();
        assert!(e.contains("group name") && e.contains(". or .."), "{e}");
    }
}
