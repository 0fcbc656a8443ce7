//! Which host directories a session may mount: an allowlist kept outside
//! any project (`~/.config/botyard/mount-allowlist.json`), read at every
//! use so an edit (or a mistake) shows at once.
//!
//! Blocked names match whole path components, after symlinks are resolved,
//! in the source path and anywhere inside a mounted directory.

use anyhow::{bail, Context, Result};
use rustix::fd::{AsRawFd, OwnedFd};
use rustix::fs::OFlags;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Names never mounted, wherever they appear.
pub const DEFAULT_BLOCKED: &[&str] = &[
    ".ssh",
    ".gnupg",
    ".gpg",
    ".aws",
    ".azure",
    ".gcloud",
    ".kube",
    ".docker",
    "credentials",
    ".env",
    ".netrc",
    ".npmrc",
    ".pypirc",
    "id_rsa",
    "id_ed25519",
    "private_key",
    ".secret",
];

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct AllowedRoot {
    pub path: PathBuf,
    /// Whether mounts below this root may be read-write.
    #[serde(default)]
    pub allow_read_write: bool,
}

#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Allowlist {
    #[serde(default)]
    pub allowed_roots: Vec<AllowedRoot>,
    /// Added to [`DEFAULT_BLOCKED`].
    #[serde(default)]
    pub blocked_names: Vec<String>,
    /// Runs not marked `--main` get every extra mount read-only.
    #[serde(default = "yes")]
    pub non_main_read_only: bool,
    /// Where it was read from (not in the file).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

fn yes() -> bool {
    true
}

/// A mount request from the command line: `SRC:DST[:ro]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub source: PathBuf,
    /// Relative to the sandbox's mount base (`/mnt`).
    pub dest: PathBuf,
    pub read_only: bool,
}

/// Where extra mounts go in the sandbox.
pub const MOUNT_BASE: &str = "/mnt";

impl std::str::FromStr for MountSpec {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<MountSpec> {
        let parts: Vec<&str> = s.split(':').collect();
        let (src, dst, ro) = match parts.as_slice() {
            [src, dst] => (*src, *dst, false),
            [src, dst, "ro"] => (*src, *dst, true),
            [src, dst, "rw"] => (*src, *dst, false),
            _ => bail!("--mount {s}: write SRC:DST or SRC:DST:ro (DST relative to {MOUNT_BASE}, no ':' in either)"),
        };
        if src.is_empty() || dst.is_empty() {
            bail!("--mount {s}: both SRC and DST are needed");
        }
        let dest = PathBuf::from(dst);
        for c in dest.components() {
            match c {
                Component::Normal(_) => {}
                _ => bail!(
                    "--mount {s}: the sandbox path must be relative to {MOUNT_BASE}, without '..' (like data or src/lib)"
                ),
            }
        }
        Ok(MountSpec {
            source: PathBuf::from(src),
            dest,
            read_only: ro,
        })
    }
}

/// The default allowlist file: `$BOTYARD_MOUNT_ALLOWLIST`, else
/// `~/.config/botyard/mount-allowlist.json`.
pub fn default_path() -> PathBuf {
    if let Some(p) = std::env::var_os("BOTYARD_MOUNT_ALLOWLIST") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/root".into());
    home.join(".config/botyard/mount-allowlist.json")
}

impl Allowlist {
    /// Reads the allowlist at `path`; a missing file allows nothing.
    pub fn load(path: &Path) -> Result<Allowlist> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Allowlist {
                    non_main_read_only: true,
                    source: Some(path.to_path_buf()),
                    ..Default::default()
                })
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read the mount allowlist {}", path.display()))
            }
        };
        let mut a: Allowlist = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "mount allowlist {} line {}: {}; fix it (see the README's example)",
                path.display(),
                e.line(),
                e
            )
        })?;
        a.source = Some(path.to_path_buf());
        Ok(a)
    }

    fn blocked(&self) -> impl Iterator<Item = &str> {
        DEFAULT_BLOCKED
            .iter()
            .copied()
            .chain(self.blocked_names.iter().map(|s| s.as_str()))
    }

    fn blocked_component(&self, p: &Path) -> Option<String> {
        p.components().find_map(|c| match c {
            Component::Normal(n) => {
                let n = n.to_string_lossy();
                self.blocked().any(|b| b == n).then(|| n.into_owned())
            }
            _ => None,
        })
    }

    /// Checks one mount: opens its source once (symlinks in the given path
    /// followed), checks what was opened (its real path against the roots
    /// and blocked names, everything below it for blocked names), and
    /// returns that open object, to be mounted as it is: a path swapped
    /// after the check changes nothing.
    pub fn check(&self, m: &MountSpec, main: bool) -> Result<CheckedMount> {
        let file = self
            .source
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "the mount allowlist".into());
        let fd = rustix::fs::open(
            &m.source,
            OFlags::PATH | OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(std::io::Error::from)
        .with_context(|| format!("mount source {} does not exist", m.source.display()))?;
        let src = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .with_context(|| format!("cannot resolve the mount source {}", m.source.display()))?;
        if !src.is_absolute() || src.to_string_lossy().ends_with(" (deleted)") {
            bail!(
                "mount source {} went away while it was checked",
                m.source.display()
            );
        }
        if let Some(name) = self.blocked_component(&src) {
            bail!(
                "mount source {} resolves to {}, which goes through the blocked name {name}",
                m.source.display(),
                src.display()
            );
        }
        if let Some(allow) = &self.source {
            let allow = std::fs::canonicalize(allow).unwrap_or_else(|_| allow.clone());
            if allow.starts_with(&src) {
                bail!(
                    "mount source {} holds the mount allowlist itself, which is never mountable",
                    src.display()
                );
            }
        }
        let root = self
            .allowed_roots
            .iter()
            .filter_map(|r| {
                std::fs::canonicalize(&r.path)
                    .ok()
                    .map(|p| (p, r.allow_read_write))
            })
            .filter(|(p, _)| src.starts_with(p))
            .max_by_key(|(p, _)| p.components().count());
        let Some((_, rw_allowed)) = root else {
            bail!(
                "mount source {} is not below any allowed root; add a root to {file}",
                src.display()
            );
        };
        let st = rustix::fs::fstat(&fd)?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory {
            let dir = rustix::fs::openat(
                &fd,
                ".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .map_err(std::io::Error::from)?;
            if let Some(found) = self.find_blocked_inside(&dir)? {
                bail!(
                    "mounted directory {} contains the blocked name {}; mount a directory without it",
                    src.display(),
                    src.join(std::ffi::OsStr::from_bytes(&found)).display()
                );
            }
        }
        let read_only = m.read_only || !rw_allowed || (!main && self.non_main_read_only);
        Ok(CheckedMount {
            source: fd,
            resolved: src,
            dest: m.dest.clone(),
            read_only,
        })
    }

    /// The first blocked name anywhere below `dir` (symlinks not followed:
    /// in the sandbox they resolve inside it), at any depth.
    fn find_blocked_inside(&self, dir: &OwnedFd) -> Result<Option<Vec<u8>>> {
        struct F<'a> {
            a: &'a Allowlist,
            found: Option<Vec<u8>>,
        }
        impl fs::walk::Visitor for F<'_> {
            fn entry(
                &mut self,
                _: &OwnedFd,
                name: &[u8],
                path: &[u8],
                _: &rustix::fs::Stat,
            ) -> Result<bool> {
                if self.found.is_some() {
                    return Ok(false);
                }
                let n = String::from_utf8_lossy(name);
                if self.a.blocked().any(|b| b == n) {
                    self.found = Some(path.to_vec());
                    return Ok(false);
                }
                Ok(true)
            }
        }
        let mut f = F {
            a: self,
            found: None,
        };
        fs::walk::walk(dir, usize::MAX, &mut f)?;
        Ok(f.found)
    }
}

/// A mount that passed the allowlist: the opened source, to be mounted as
/// it is ([`fs::mount_clone`]).
#[derive(Debug)]
pub struct CheckedMount {
    pub source: OwnedFd,
    /// Where the source was when checked, for messages.
    pub resolved: PathBuf,
    pub dest: PathBuf,
    pub read_only: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_specs_parse_strictly() {
        let m: MountSpec = "/data:data:ro".parse().unwrap();
        assert_eq!(m.dest, PathBuf::from("data"));
        assert!(m.read_only);
        for bad in [
            "/data", "/a:/abs", "/a:../up", "/a:b:c:d", "/a:b:x", ":b", "/a:",
        ] {
            assert!(bad.parse::<MountSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn blocked_names_are_whole_components() {
        let a = Allowlist::default();
        assert!(a
            .blocked_component(Path::new("/home/u/.ssh/keys"))
            .is_some());
        assert!(a.blocked_component(Path::new("/home/u/.sshfoo")).is_none());
        assert!(a.blocked_component(Path::new("/home/u/my.env")).is_none());
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// A mount spec that parses never puts its mount outside the
            /// sandbox's mount base.
            #[test]
            fn mount_specs_stay_below_the_base(s in "[/a-z.:]{0,24}") {
                if let Ok(m) = s.parse::<MountSpec>() {
                    prop_assert!(m.dest.components().all(|c| matches!(c, Component::Normal(_))), "{s} -> {:?}", m.dest);
                    prop_assert!(!m.dest.as_os_str().is_empty());
                }
            }

            /// Any allowlist file is read or refused, never a panic; none
            /// can unblock the names blocked by default.
            #[test]
            fn any_allowlist_file_loads_or_is_refused(
                text in prop_oneof![
                    any::<String>(),
                    "\\{\"allowed_roots\": \\[\\{\"path\": \"[/a-z.]{0,12}\", \"allow_read_write\": (true|false)\\}\\], \"blocked_names\": \\[\"[a-z.*]{0,6}\"\\], \"non_main_read_only\": (true|false)\\}",
                ]
            ) {
                let t = tempfile::tempdir().unwrap();
                let p = t.path().join("allow.json");
                std::fs::write(&p, &text).unwrap();
                if let Ok(a) = Allowlist::load(&p) {
                    for b in DEFAULT_BLOCKED {
                        prop_assert!(a.blocked_component(&Path::new("/home/u").join(b)).is_some(), "{text} unblocked {b}");
                    }
                }
            }
        }
    }
}
