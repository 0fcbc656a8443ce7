//! Materialising a tree as a plain, writable directory (the copy driver):
//! each file's data is reflinked from its object where the filesystem can
//! share extents, copied where it cannot.

use crate::scan::FreshCache;
use crate::statcache::{path_key, Stamp};
use anyhow::{Context, Result};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use std::collections::HashMap;
use store::walk::join;
use store::walk::proc_path;
use store::{Entry, EntryKind, Hash, Store};

fn io<T>(r: rustix::io::Result<T>) -> std::io::Result<T> {
    r.map_err(std::io::Error::from)
}

struct Materializer<'a> {
    store: &'a Store,
    /// Hard-link group leader path → the path it was created at.
    links: HashMap<Vec<u8>, Vec<u8>>,
    root: BorrowedFd<'a>,
    stats: MaterializeStats,
    /// Filled when the caller wants a stat cache of what was written.
    stamps: Option<FreshCache>,
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
    /// The root is a btrfs snapshot of the image's root: nothing was
    /// written for it, whatever its size.
    pub snapshot: bool,
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
        stats: Default::default(),
        stamps: None,
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
    Ok(materialize_into(store, tree, fd.as_fd(), false)?.0)
}

/// [`materialize`] into the open directory `dest`; with `stamps`, also the
/// stat cache of every regular file written (what a scan of `dest` right
/// after would find), so the first commit of a clone of it reads nothing.
pub(crate) fn materialize_into(
    store: &Store,
    tree: &Hash,
    dest: BorrowedFd<'_>,
    stamps: bool,
) -> Result<(MaterializeStats, FreshCache)> {
    let mut m = Materializer {
        store,
        links: HashMap::new(),
        root: dest,
        stats: Default::default(),
        stamps: stamps.then(HashMap::new),
    };
    m.tree_into(dest, &store.read_tree(tree)?, b"")?;
    Ok((m.stats, m.stamps.unwrap_or_default()))
}

impl Materializer<'_> {
    fn tree_into(&mut self, dir: BorrowedFd<'_>, tree: &store::Tree, rel: &[u8]) -> Result<()> {
        for e in tree.entries() {
            self.entry(dir, e, &join(rel, &e.name))?;
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
                }
                self.set_meta(dir, name, Some(fd.as_fd()), e)?;
                // A hard-link group's ctime moves as members are linked,
                // so its stamp misses and the scan hashes it: safe.
                if let Some(stamps) = self.stamps.as_mut().filter(|_| f.size > 0) {
                    let st = io(rustix::fs::fstat(&fd))?;
                    stamps.insert(path_key(path), (Stamp::of(&st), f.object));
                }
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
                    Err(rustix::io::Errno::PERM) => {
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
                        k.as_slice(),
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
                        k.as_slice(),
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
