//! Layer dirs: read-only directories that materialise a tree for overlayfs.
//!
//! Every entry is created with its own metadata; a regular file with content
//! is a sparse stub of the right size carrying `trusted.overlay.metacopy` and
//! `trusted.overlay.redirect=/ab/cdef…`, which overlayfs resolves in the data-
//! only lower layer (the store's `objects/`). So a layer dir costs inodes, not
//! data, and is built once per tree per node, shared by every bot using it.
//! An image's own `trusted.overlay.*` xattrs are written escaped
//! (`trusted.overlay.overlay.*`), so they are data, never instructions.

use crate::diff::{diff_trees, Change};
use anyhow::{Context, Result};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use std::collections::{BTreeMap, HashMap};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use store::{Entry, EntryKind, Hash, Store};

const OVL: &[u8] = b"trusted.overlay.";

fn io<T>(r: rustix::io::Result<T>) -> std::io::Result<T> {
    r.map_err(std::io::Error::from)
}

/// The layer dir of a whole tree, built on first use.
pub fn layer_dir(store: &Store, tree: &Hash) -> Result<PathBuf> {
    let name = tree.to_hex();
    build_once(store, &name, |root| {
        let mut m = Materializer {
            store,
            links: HashMap::new(),
            root,
        };
        m.tree_into(root, &store.read_tree(tree)?, b"")
    })
}

/// The layer dir holding only what `tree` changes relative to `base`, for
/// stacking above `base`'s layer dir: changed entries, their parent
/// directories with `tree`'s metadata, and whiteouts for deletions.
pub fn diff_layer_dir(store: &Store, tree: &Hash, base: &Hash) -> Result<PathBuf> {
    let name = format!("{}-over-{}", tree.to_hex(), base.to_hex());
    build_once(store, &name, |root| {
        let changes = diff_trees(store, &store.read_tree(tree)?, &store.read_tree(base)?)?;
        let mut m = Materializer {
            store,
            links: HashMap::new(),
            root,
        };
        m.changes_into(root, &changes, b"")
    })
}

/// Where layer dirs live.
pub fn layers_root(store: &Store) -> PathBuf {
    store.root().join("layers")
}

fn build_once(
    store: &Store,
    name: &str,
    fill: impl FnOnce(BorrowedFd<'_>) -> Result<()>,
) -> Result<PathBuf> {
    let root = layers_root(store);
    let dest = root.join(name);
    // Built in tmp/ and renamed into place, so an existing one is complete.
    if dest.is_dir() {
        return Ok(dest);
    }
    // gc empties tmp/ under the exclusive lock; hold it shared meanwhile.
    let _lock = store.lock(false, &store::NoProgress)?;
    std::fs::create_dir_all(&root)?;
    let tmp = store
        .tmp_dir()
        .join(format!("layer-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp)?;
    let res = (|| -> Result<()> {
        let fd = io(rustix::fs::open(
            &tmp,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ))?;
        fill(fd.as_fd())?;
        Ok(())
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e).context(
            "cannot build a layer dir (it needs root for trusted xattrs, owners and devices)",
        );
    }
    match std::fs::rename(&tmp, &dest) {
        Ok(()) => {}
        // Built meanwhile by someone else: theirs is as good as ours.
        Err(_) if dest.is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        Err(e) => {
            return Err(e).with_context(|| format!("cannot move a layer dir to {}", dest.display()))
        }
    }
    Ok(dest)
}

struct Materializer<'a> {
    store: &'a Store,
    /// Hard-link group leader path → the path it was created at.
    links: HashMap<Vec<u8>, Vec<u8>>,
    root: BorrowedFd<'a>,
}

fn join(rel: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = rel.to_vec();
    if !p.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

fn escape(name: &[u8]) -> Vec<u8> {
    match name.strip_prefix(OVL) {
        Some(rest) => [OVL, b"overlay.", rest].concat(),
        None => name.to_vec(),
    }
}

fn proc_path(dir: BorrowedFd<'_>, name: &[u8]) -> std::ffi::CString {
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name);
    std::ffi::CString::new(p).unwrap()
}

impl Materializer<'_> {
    fn tree_into(&mut self, dir: BorrowedFd<'_>, tree: &store::Tree, rel: &[u8]) -> Result<()> {
        for e in tree.entries() {
            self.entry(dir, e, &join(rel, &e.name))?;
        }
        Ok(())
    }

    fn changes_into(
        &mut self,
        dir: BorrowedFd<'_>,
        changes: &BTreeMap<Vec<u8>, Change>,
        rel: &[u8],
    ) -> Result<()> {
        for (name, c) in changes {
            let path = join(rel, name);
            match c {
                Change::Deleted(_) => {
                    io(rustix::fs::mknodat(
                        dir,
                        name.as_slice(),
                        rustix::fs::FileType::CharacterDevice,
                        Mode::empty(),
                        0,
                    ))
                    .with_context(|| {
                        format!(
                            "cannot create a whiteout for {}",
                            String::from_utf8_lossy(&path)
                        )
                    })?;
                }
                Change::Added(e) | Change::Replaced { new: e, .. } => self.entry(dir, e, &path)?,
                Change::Dir { new, children, .. } => {
                    let sub = self.mkdir(dir, name)?;
                    self.changes_into(sub.as_fd(), children, &path)?;
                    self.set_meta(dir, name, Some(sub.as_fd()), new)?;
                }
            }
        }
        Ok(())
    }

    fn mkdir(&self, dir: BorrowedFd<'_>, name: &[u8]) -> Result<OwnedFd> {
        io(rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700)))?;
        Ok(io(rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ))?)
    }

    fn entry(&mut self, dir: BorrowedFd<'_>, e: &Entry, path: &[u8]) -> Result<()> {
        let name = e.name.as_slice();
        let shown = || String::from_utf8_lossy(path).into_owned();
        match &e.kind {
            EntryKind::Dir(h) => {
                let sub = self.mkdir(dir, name)?;
                let t = self.store.read_tree(h)?;
                self.tree_into(sub.as_fd(), &t, path)?;
                self.set_meta(dir, name, Some(sub.as_fd()), e)?;
            }
            EntryKind::File(f) => {
                if let Some(leader) = &f.link {
                    if let Some(first) = self.links.get(leader) {
                        io(rustix::fs::linkat(
                            self.root,
                            first.as_slice(),
                            dir,
                            name,
                            AtFlags::empty(),
                        ))
                        .with_context(|| format!("cannot link {}", shown()))?;
                        return Ok(());
                    }
                    self.links.insert(leader.clone(), path.to_vec());
                }
                let fd = io(rustix::fs::openat(
                    dir,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                ))
                .with_context(|| format!("cannot create {}", shown()))?;
                if f.size > 0 {
                    io(rustix::fs::ftruncate(&fd, f.size))?;
                    io(rustix::fs::fsetxattr(
                        &fd,
                        "trusted.overlay.metacopy",
                        b"",
                        XattrFlags::empty(),
                    ))
                    .with_context(|| {
                        format!("cannot mark {} as a metacopy stub (needs root)", shown())
                    })?;
                    let redirect = format!("/{}", f.object.rel_path());
                    io(rustix::fs::fsetxattr(
                        &fd,
                        "trusted.overlay.redirect",
                        redirect.as_bytes(),
                        XattrFlags::empty(),
                    ))?;
                }
                self.set_meta(dir, name, Some(fd.as_fd()), e)?;
            }
            EntryKind::Symlink(t) => {
                io(rustix::fs::symlinkat(t.as_slice(), dir, name))?;
                self.set_meta(dir, name, None, e)?;
            }
            EntryKind::CharDev { major, minor } | EntryKind::BlockDev { major, minor } => {
                let ft = if matches!(e.kind, EntryKind::CharDev { .. }) {
                    rustix::fs::FileType::CharacterDevice
                } else {
                    rustix::fs::FileType::BlockDevice
                };
                io(rustix::fs::mknodat(
                    dir,
                    name,
                    ft,
                    Mode::from_raw_mode(0o600),
                    rustix::fs::makedev(*major, *minor),
                ))
                .with_context(|| format!("cannot create device {} (needs root)", shown()))?;
                self.set_meta(dir, name, None, e)?;
            }
            EntryKind::Fifo => {
                io(rustix::fs::mknodat(
                    dir,
                    name,
                    rustix::fs::FileType::Fifo,
                    Mode::from_raw_mode(0o600),
                    0,
                ))?;
                self.set_meta(dir, name, None, e)?;
            }
            EntryKind::Socket => {
                io(rustix::fs::mknodat(
                    dir,
                    name,
                    rustix::fs::FileType::Socket,
                    Mode::from_raw_mode(0o600),
                    0,
                ))?;
                self.set_meta(dir, name, None, e)?;
            }
        }
        Ok(())
    }

    /// Owner, then mode (chown clears setuid), then xattrs (chown clears
    /// security.capability), then times (last, as everything else moves them).
    fn set_meta(
        &self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        fd: Option<BorrowedFd<'_>>,
        e: &Entry,
    ) -> Result<()> {
        let uid = Some(rustix::fs::Uid::from_raw(e.uid));
        let gid = Some(rustix::fs::Gid::from_raw(e.gid));
        let t = Timespec {
            tv_sec: e.mtime,
            tv_nsec: e.mtime_nsec as _,
        };
        let times = Timestamps {
            last_access: t,
            last_modification: t,
        };
        match fd {
            Some(fd) => {
                io(rustix::fs::fchown(fd, uid, gid))?;
                io(rustix::fs::fchmod(fd, Mode::from_raw_mode(e.mode)))?;
                for (k, v) in &e.xattrs {
                    io(rustix::fs::fsetxattr(
                        fd,
                        escape(k).as_slice(),
                        v,
                        XattrFlags::empty(),
                    ))?;
                }
                io(rustix::fs::futimens(fd, &times))?;
            }
            None => {
                io(rustix::fs::chownat(
                    dir,
                    name,
                    uid,
                    gid,
                    AtFlags::SYMLINK_NOFOLLOW,
                ))?;
                if !matches!(e.kind, EntryKind::Symlink(_)) {
                    io(rustix::fs::chmodat(
                        dir,
                        name,
                        Mode::from_raw_mode(e.mode),
                        AtFlags::empty(),
                    ))?;
                }
                let p = proc_path(dir, name);
                for (k, v) in &e.xattrs {
                    io(rustix::fs::lsetxattr(
                        p.as_c_str(),
                        escape(k).as_slice(),
                        v,
                        XattrFlags::empty(),
                    ))?;
                }
                io(rustix::fs::utimensat(
                    dir,
                    name,
                    &times,
                    AtFlags::SYMLINK_NOFOLLOW,
                ))?;
            }
        }
        Ok(())
    }
}
