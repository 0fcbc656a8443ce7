//! Validation of every user-supplied name that becomes a path in the store.

use std::fmt;
use std::str::FromStr;

/// Longest image name, tag or other single name accepted.
pub const MAX_NAME_BYTES: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError(pub String);

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NameError {}

/// Checks one path segment supplied by a user (an id, a tag, a component of
/// an image name): not empty, not `.` or `..`, no separator, no NUL, no
/// control characters, at most `max` bytes. `what` names the thing in the
/// error.
pub fn validate_segment(what: &str, s: &str, max: usize) -> Result<(), NameError> {
    let shown: String = s.chars().take(40).flat_map(char::escape_debug).collect();
    if s.is_empty() || s.trim().is_empty() {
        return Err(NameError(format!(
            "{what} is empty; give a name like 'debian'"
        )));
    }
    if s == "." || s == ".." {
        return Err(NameError(format!(
            "{what} '{shown}' is not allowed: '.' and '..' are path traversal"
        )));
    }
    if s.contains('\0') {
        return Err(NameError(format!("{what} '{shown}' contains a NUL byte")));
    }
    if s.contains('/') || s.contains('\\') {
        return Err(NameError(format!(
            "{what} '{shown}' contains a path separator"
        )));
    }
    if s.len() > max {
        return Err(NameError(format!(
            "{what} '{shown}…' is {} bytes long; the limit is {max}",
            s.len()
        )));
    }
    if s.chars().any(char::is_control) {
        return Err(NameError(format!(
            "{what} '{shown}' contains a control character"
        )));
    }
    Ok(())
}

/// An image name with its tag: `debian:13`, `library/debian:bookworm`.
///
/// The name is one or more `/`-separated components of `[a-z0-9._-]`, each
/// starting with a letter or digit; the tag is `[A-Za-z0-9_.-]`, starting
/// with a letter, digit or `_`. Both are at most 128 bytes. A missing tag is
/// `latest`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImageName {
    pub name: String,
    pub tag: String,
}

impl ImageName {
    /// The ref file path below `refs/images/`: name components joined by `+`
    /// (which names cannot contain), then the tag.
    pub fn ref_rel_path(&self) -> String {
        format!("{}/{}", self.name.replace('/', "+"), self.tag)
    }

    pub fn from_ref_rel(dir: &str, tag: &str) -> Result<ImageName, NameError> {
        format!("{}:{}", dir.replace('+', "/"), tag).parse()
    }
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.tag)
    }
}

impl FromStr for ImageName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let shown: String = s.chars().take(40).flat_map(char::escape_debug).collect();
        if s.contains('\0') {
            return Err(NameError(format!(
                "image name '{shown}' contains a NUL byte"
            )));
        }
        if s.len() > 2 * MAX_NAME_BYTES + 1 {
            return Err(NameError(format!(
                "image name '{shown}…' is {} bytes long; names and tags are limited to {MAX_NAME_BYTES} bytes each",
                s.len()
            )));
        }
        let (name, tag) = match s.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, t),
            _ => (s, "latest"),
        };
        if name.len() > MAX_NAME_BYTES {
            return Err(NameError(format!(
                "image name '{shown}…' is {} bytes long; the limit is {MAX_NAME_BYTES}",
                name.len()
            )));
        }
        if name.is_empty() {
            return Err(NameError(format!(
                "image reference '{shown}' has no name; use NAME:TAG, like debian:12"
            )));
        }
        for comp in name.split('/') {
            if comp.is_empty() || comp == "." || comp == ".." {
                return Err(NameError(format!(
                    "image name '{shown}' has an empty, '.' or '..' component; use NAME:TAG, like debian:12"
                )));
            }
            let ok_first =
                comp.as_bytes()[0].is_ascii_lowercase() || comp.as_bytes()[0].is_ascii_digit();
            let ok_rest = comp
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
            if !ok_first || !ok_rest {
                return Err(NameError(format!(
                    "image name '{shown}' may only use lowercase letters, digits, '.', '_', '-' and '/' between components"
                )));
            }
        }
        if tag.is_empty() || tag.len() > MAX_NAME_BYTES {
            return Err(NameError(format!(
                "tag of '{shown}' must be 1 to {MAX_NAME_BYTES} bytes"
            )));
        }
        let tb = tag.as_bytes();
        if !(tb[0].is_ascii_alphanumeric() || tb[0] == b'_')
            || !tb
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(b))
        {
            return Err(NameError(format!(
                "tag of '{shown}' may only use letters, digits, '.', '_' and '-', and must not start with '.' or '-'"
            )));
        }
        Ok(ImageName {
            name: name.to_string(),
            tag: tag.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_refuses_traversal() {
        let n: ImageName = "debian:13".parse().unwrap();
        assert_eq!((n.name.as_str(), n.tag.as_str()), ("debian", "13"));
        let n: ImageName = "library/debian".parse().unwrap();
        assert_eq!(n.tag, "latest");
        assert_eq!(n.ref_rel_path(), "library+debian/latest");
        assert_eq!(
            ImageName::from_ref_rel("library+debian", "latest").unwrap(),
            n
        );
        for bad in [
            "../x:1", "a/../b:1", "/abs:1", "a//b:1", "a:..", "a:.", "a\0b:1", "A:1", "a:-x", "",
            ":1", "a/./b:1",
        ] {
            assert!(bad.parse::<ImageName>().is_err(), "{bad:?} accepted");
        }
        let long = "a".repeat(129);
        assert!(format!("{long}:1").parse::<ImageName>().is_err());
        assert!(format!("a:{long}").parse::<ImageName>().is_err());
        assert!(format!("{}:1", "a".repeat(128))
            .parse::<ImageName>()
            .is_ok());
    }

    #[test]
    fn segments() {
        for bad in ["", " ", ".", "..", "a/b", "a\0", "a\nb"] {
            assert!(validate_segment("id", bad, 63).is_err(), "{bad:?}");
        }
        assert!(validate_segment("id", &"x".repeat(64), 63).is_err());
        assert!(validate_segment("id", "bot-1", 63).is_ok());
    }
}
