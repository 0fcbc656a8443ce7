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
            data: false,
            stats: Default::default(),
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
            data: false,
            stats: Default::default(),
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
    /// Real content (reflinked or copied from the objects) instead of
    /// metacopy stubs.
    data: bool,
    stats: MaterializeStats,
}

/// What [`materialize`] did.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct MaterializeStats {
    /// Files whose data was reflinked from the objects (no data written).
    pub cloned: u64,
    /// Files whose data had to be copied (the filesystem cannot reflink).
    pub copied: u64,
    pub copied_bytes: u64,
    /// Device nodes that could not be created (no CAP_MKNOD).
    pub skipped_devices: u64,
}

/// Writes the entry at `path` of `tree` (and what is below it) into the
/// directory `root`, whose parent directories of `path` must exist. Used to
/// reset one path of a copy bot. Returns false if `tree` has no such entry.
pub fn materialize_path(
    store: &Store,
    tree: &Hash,
    path: &[&[u8]],
    root: &std::path::Path,
) -> Result<bool> {
    let Some((name, parents)) = path.split_last() else {
        anyhow::bail!("the root is not a path")
    };
    let mut t = store.read_tree(tree)?;
    for c in parents {
        match t.get(c).map(|e| &e.kind) {
            Some(EntryKind::Dir(h)) => t = store.read_tree(h)?,
            _ => return Ok(false),
        }
    }
    let Some(e) = t.get(name).cloned() else {
        return Ok(false);
    };
    let rootfd = io(rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ))?;
    let mut dir = rootfd.try_clone()?;
    for c in parents {
        dir = io(rustix::fs::openat(
            &dir,
            *c,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ))
        .with_context(|| {
            format!(
                "the parent of {} is gone; reset the parent instead",
                String::from_utf8_lossy(&path.join(&b'/'))
            )
        })?;
    }
    let mut m = Materializer {
        store,
        links: HashMap::new(),
        root: rootfd.as_fd(),
        data: true,
        stats: Default::default(),
    };
    m.entry(dir.as_fd(), &e, &path.join(&b'/'))?;
    Ok(true)
}

/// Writes `tree` into the empty directory `dest` as a plain, writable
/// directory: each file's data is reflinked from its object (`FICLONE`: XFS
/// with reflink, btrfs) or copied where the filesystem cannot share extents
/// (ext4). Used by the copy driver.
pub fn materialize(store: &Store, tree: &Hash, dest: &std::path::Path) -> Result<MaterializeStats> {
    let fd = io(rustix::fs::open(
        dest,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ))
    .with_context(|| format!("cannot open {}", dest.display()))?;
    let mut m = Materializer {
        store,
        links: HashMap::new(),
        root: fd.as_fd(),
        data: true,
        stats: Default::default(),
    };
    m.tree_into(fd.as_fd(), &store.read_tree(tree)?, b"")?;
    Ok(m.stats)
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
                if f.size > 0 && self.data {
                    let mut src = std::fs::File::open(self.store.object_path(&f.object))
                        .with_context(|| {
                            format!(
                                "object {} of {} is missing; run `botyard fsck`",
                                f.object,
                                shown()
                            )
                        })?;
                    if rustix::fs::ioctl_ficlone(&fd, &src).is_ok() {
                        self.stats.cloned += 1;
                    } else {
                        let mut out = std::fs::File::from(fd.try_clone()?);
                        std::io::copy(&mut src, &mut out)
                            .with_context(|| format!("cannot write {}", shown()))?;
                        self.stats.copied += 1;
                        self.stats.copied_bytes += f.size;
                    }
                } else if f.size > 0 {
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
                let made = rustix::fs::mknodat(
                    dir,
                    name,
                    ft,
                    Mode::from_raw_mode(0o600),
                    rustix::fs::makedev(*major, *minor),
                );
                match made {
                    // A plain directory can live without its device nodes.
                    Err(rustix::io::Errno::PERM) if self.data => {
                        self.stats.skipped_devices += 1;
                        return Ok(());
                    }
                    other => io(other).with_context(|| {
                        format!("cannot create device {} (needs root)", shown())
                    })?,
                }
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

    /// Overlay's own xattr names are escaped in stubs, where overlayfs would
    /// read them; a plain directory keeps them as they are.
    fn xattr_name(&self, k: &[u8]) -> Vec<u8> {
        if self.data {
            k.to_vec()
        } else {
            escape(k)
        }
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
                        self.xattr_name(k).as_slice(),
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
                        self.xattr_name(k).as_slice(),
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
