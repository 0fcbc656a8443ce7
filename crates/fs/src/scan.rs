//! Scanning a directory into a [`MemTree`], storing each file's content.
//!
//! Every entry is reached with `openat`/`statat` relative to its parent's
//! descriptor and `O_NOFOLLOW`, so a symlink is recorded, never followed,
//! even if the directory changes during the scan. Files are hashed on all
//! cores; content the store holds is never written again.

use crate::memtree::{MemKind, MemNode, MemTree, Meta};
use crate::statcache::{Stamp, StatCache};
use anyhow::{Context, Result};
use rayon::prelude::*;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use store::{Hash, Progress, Staging, Unit};

#[derive(Clone, Copy, Debug)]
pub struct ScanOptions {
    /// Reuse hashes of files whose stat is unchanged since the last scan of
    /// the same directory into the same store.
    pub stat_cache: bool,
    /// Do not descend into other filesystems mounted below the root (their
    /// mount points are kept as empty directories).
    pub one_file_system: bool,
    /// Store new content as reflinks of the scanned files (the copy
    /// driver's commit; the directory is on the store's filesystem).
    pub clone: bool,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            stat_cache: true,
            one_file_system: true,
            clone: false,
        }
    }
}

/// (device, inode) of a file.
type Inode = (u64, u64);
/// A hard-link group: its id, object and size.
type LinkGroup = (u64, Hash, u64);

struct Ctx<'a> {
    staging: &'a Staging,
    progress: &'a dyn Progress,
    opts: ScanOptions,
    root_dev: u64,
    old: StatCache,
    new: Mutex<HashMap<Vec<u8>, (Stamp, Hash)>>,
    /// (dev, ino) of multiply-linked files → (group, object, size).
    links: Mutex<HashMap<Inode, LinkGroup>>,
    next_group: AtomicU64,
    racy_after_ns: i128,
}

/// Scans `root` into a tree, adding every file's content to `staging`.
pub fn scan_dir(
    root: &Path,
    staging: &Staging,
    opts: ScanOptions,
    progress: &dyn Progress,
) -> Result<MemTree> {
    let canon = std::fs::canonicalize(root)
        .with_context(|| format!("cannot open directory {}", root.display()))?;
    let fd = rustix::fs::open(
        &canon,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(std::io::Error::from)
    .with_context(|| format!("{} is not a readable directory", root.display()))?;
    let st = rustix::fs::fstat(&fd)?;
    let cache_path = staging.store().cache_dir().join(format!(
        "scan-{}",
        &Hash::of(canon.as_os_str().as_encoded_bytes()).to_hex()[..32]
    ));
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    let ctx = Ctx {
        staging,
        progress,
        opts,
        root_dev: st.st_dev,
        old: if opts.stat_cache {
            StatCache::load(&cache_path)
        } else {
            StatCache::default()
        },
        new: Mutex::new(HashMap::new()),
        links: Mutex::new(HashMap::new()),
        next_group: AtomicU64::new(1),
        racy_after_ns: now_ns - 2_000_000_000,
    };
    progress.phase("scanning", None, Unit::Bytes);
    let children = scan_children(&ctx, &fd, &canon, &[])?;
    let mut root_meta = meta_of(&st);
    root_meta.xattrs = read_xattrs_fd(&fd)?;
    let tree = MemTree::from_root(
        MemNode {
            meta: root_meta,
            kind: MemKind::Dir(children),
        },
        ctx.next_group.load(Ordering::Relaxed) + 1,
    );
    if opts.stat_cache {
        let cache = StatCache {
            map: ctx.new.into_inner().unwrap(),
        };
        // A cache that cannot be written only costs the next scan time.
        let _ = store::write_file_atomic(
            &staging.store().tmp_dir(),
            &cache_path,
            &cache.encode(),
            0o600,
        );
    }
    Ok(tree)
}

/// Scans single entries into tree nodes, storing content; used to fold an
/// overlay's upper dir into a tree, reading each changed path through a
/// read-only view of the merged layers.
pub struct Scanner<'a> {
    ctx: Ctx<'a>,
    root: std::path::PathBuf,
}

impl<'a> Scanner<'a> {
    /// `root` names the scanned tree in errors; `first_group` is the first
    /// free hard-link group id of the tree the nodes go into.
    pub fn new(
        root: &Path,
        staging: &'a Staging,
        progress: &'a dyn Progress,
        first_group: u64,
    ) -> Scanner<'a> {
        Scanner {
            ctx: Ctx {
                staging,
                progress,
                opts: ScanOptions {
                    stat_cache: false,
                    one_file_system: false,
                    clone: false,
                },
                root_dev: 0,
                old: StatCache::default(),
                new: Mutex::new(HashMap::new()),
                links: Mutex::new(HashMap::new()),
                next_group: AtomicU64::new(first_group),
                racy_after_ns: 0,
            },
            root: root.to_path_buf(),
        }
    }

    /// Scans `name` in `dirfd` (recursively for a directory).
    pub fn entry(&self, dirfd: &OwnedFd, name: &[u8], rel: &[u8]) -> Result<MemNode> {
        scan_entry(&self.ctx, dirfd, name, &self.root, rel)
            .with_context(|| format!("cannot read {}", show(&self.root, rel)))
    }

    /// A regular file of an overlay upper dir (a full copy-up or a new
    /// file), stored as a reflink of the upper's file where the filesystem
    /// can clone: its content hashed from `dir`/`name`, its metadata as the
    /// view shows it.
    pub fn upper_file(
        &self,
        dir: &OwnedFd,
        name: &[u8],
        rel: &[u8],
        meta: Meta,
    ) -> Result<MemNode> {
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(std::io::Error::from)
        .with_context(|| format!("cannot read {}", show(&self.root, rel)))?;
        let st = rustix::fs::fstat(&fd)?;
        let size = st.st_size as u64;
        let sparse = size > 0 && (st.st_blocks as u64) * 512 + 4096 < size;
        let mut f = File::from(fd);
        let (object, n) = store::hash_file(&mut f)?;
        if n != size {
            anyhow::bail!("{} changed during the commit", show(&self.root, rel));
        }
        self.ctx.staging.put_clone(&mut f, &object, size, sparse)?;
        self.ctx.progress.advance(size);
        Ok(MemNode {
            meta,
            kind: MemKind::File {
                object,
                size,
                sparse,
                group: None,
            },
        })
    }

    /// Metadata (with xattrs) of `name` in `dirfd`, without content.
    pub fn meta(&self, dirfd: &OwnedFd, name: &[u8]) -> Result<Meta> {
        let st = rustix::fs::statat(dirfd, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(std::io::Error::from)?;
        let mut m = meta_of(&st);
        m.xattrs = read_xattrs_at(dirfd, name)?;
        Ok(m)
    }

    /// The next free hard-link group id.
    pub fn next_group(&self) -> u64 {
        self.ctx.next_group.load(Ordering::Relaxed)
    }
}

fn meta_of(st: &Stat) -> Meta {
    Meta {
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        mtime: st.st_mtime,
        mtime_nsec: st.st_mtime_nsec as u32,
        xattrs: Vec::new(),
    }
}

fn show(dir: &Path, rel: &[u8]) -> String {
    use std::os::unix::ffi::OsStrExt;
    dir.join(std::ffi::OsStr::from_bytes(rel))
        .display()
        .to_string()
}

fn scan_children(
    ctx: &Ctx,
    dirfd: &OwnedFd,
    root: &Path,
    rel: &[u8],
) -> Result<BTreeMap<Vec<u8>, MemNode>> {
    let mut names = Vec::new();
    let dir = rustix::fs::Dir::read_from(dirfd)
        .map_err(std::io::Error::from)
        .with_context(|| format!("cannot read directory {}", show(root, rel)))?;
    for ent in dir {
        let ent = ent
            .map_err(std::io::Error::from)
            .with_context(|| format!("cannot read {}", show(root, rel)))?;
        let name = ent.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    let nodes: Vec<Result<(Vec<u8>, MemNode)>> = names
        .into_par_iter()
        .map(|name| {
            let mut child_rel = rel.to_vec();
            if !child_rel.is_empty() {
                child_rel.push(b'/');
            }
            child_rel.extend_from_slice(&name);
            let node = scan_entry(ctx, dirfd, &name, root, &child_rel)
                .with_context(|| format!("cannot import {}", show(root, &child_rel)))?;
            Ok((name, node))
        })
        .collect();
    nodes.into_iter().collect()
}

fn scan_entry(ctx: &Ctx, dirfd: &OwnedFd, name: &[u8], root: &Path, rel: &[u8]) -> Result<MemNode> {
    let st =
        rustix::fs::statat(dirfd, name, AtFlags::SYMLINK_NOFOLLOW).map_err(std::io::Error::from)?;
    let mut meta = meta_of(&st);
    let kind = match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => {
            let fd = rustix::fs::openat(
                dirfd,
                name,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(std::io::Error::from)?;
            let fst = rustix::fs::fstat(&fd)?;
            if fst.st_ino != st.st_ino {
                anyhow::bail!(
                    "it was replaced during the scan; import again once the directory is stable"
                );
            }
            meta.xattrs = read_xattrs_fd(&fd)?;
            file_node(ctx, File::from(fd), &fst, rel)?
        }
        FileType::Directory => {
            let fd = rustix::fs::openat(
                dirfd,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(std::io::Error::from)?;
            meta.xattrs = read_xattrs_fd(&fd)?;
            if ctx.opts.one_file_system && st.st_dev != ctx.root_dev {
                ctx.progress.note(&format!(
                    "{} is another filesystem; kept as an empty directory",
                    show(root, rel)
                ));
                MemKind::Dir(BTreeMap::new())
            } else {
                MemKind::Dir(scan_children(ctx, &fd, root, rel)?)
            }
        }
        other => {
            meta.xattrs = read_xattrs_at(dirfd, name)?;
            match other {
                FileType::Symlink => {
                    let t = rustix::fs::readlinkat(dirfd, name, Vec::new())
                        .map_err(std::io::Error::from)?;
                    MemKind::Symlink(t.into_bytes())
                }
                FileType::CharacterDevice | FileType::BlockDevice => {
                    let major = rustix::fs::major(st.st_rdev);
                    let minor = rustix::fs::minor(st.st_rdev);
                    if other == FileType::CharacterDevice {
                        MemKind::CharDev { major, minor }
                    } else {
                        MemKind::BlockDev { major, minor }
                    }
                }
                FileType::Fifo => MemKind::Fifo,
                FileType::Socket => MemKind::Socket,
                _ => anyhow::bail!("it has an unknown file type"),
            }
        }
    };
    Ok(MemNode { meta, kind })
}

fn file_node(ctx: &Ctx, mut f: File, st: &Stat, rel: &[u8]) -> Result<MemKind> {
    let size = st.st_size as u64;
    let sparse = size > 0 && (st.st_blocks as u64) * 512 + 4096 < size;
    let multi = st.st_nlink > 1;
    let key = (st.st_dev, st.st_ino);
    if multi {
        if let Some((g, h, s)) = ctx.links.lock().unwrap().get(&key).copied() {
            return Ok(MemKind::File {
                object: h,
                size: s,
                sparse,
                group: Some(g),
            });
        }
    }
    let stamp = Stamp {
        ino: st.st_ino,
        size,
        mtime_ns: st.st_mtime as i128 * 1_000_000_000 + st.st_mtime_nsec as i128,
        ctime_ns: st.st_ctime as i128 * 1_000_000_000 + st.st_ctime_nsec as i128,
    };
    let cached = ctx
        .old
        .map
        .get(rel)
        .filter(|(s, h)| *s == stamp && ctx.staging.has_object(h, size))
        .map(|(_, h)| *h);
    let h = match cached {
        Some(h) => h,
        None => {
            let h = if ctx.opts.clone {
                let (h, n) = ctx.staging.put_clone_of(&mut f, sparse)?;
                if n != size {
                    anyhow::bail!("it changed size during the scan; try again once it is stable");
                }
                h
            } else if size <= store::SMALL_FILE {
                let mut buf = Vec::with_capacity(size as usize);
                f.read_to_end(&mut buf)?;
                if buf.len() as u64 != size {
                    anyhow::bail!(
                        "it changed size during the scan; import again once it is stable"
                    );
                }
                ctx.staging.put_bytes(&buf, sparse)?
            } else {
                let (h, n) = store::hash_file(&mut f)?;
                if n != size {
                    anyhow::bail!(
                        "it changed size during the scan; import again once it is stable"
                    );
                }
                ctx.staging.put_file(&mut f, &h, size, sparse)?;
                h
            };
            ctx.progress.advance(size);
            h
        }
    };
    if ctx.opts.stat_cache
        && stamp.ctime_ns < ctx.racy_after_ns
        && stamp.mtime_ns < ctx.racy_after_ns
    {
        ctx.new.lock().unwrap().insert(rel.to_vec(), (stamp, h));
    }
    let group = if multi {
        let mut links = ctx.links.lock().unwrap();
        let g = links
            .entry(key)
            .or_insert_with(|| (ctx.next_group.fetch_add(1, Ordering::Relaxed), h, size))
            .0;
        Some(g)
    } else {
        None
    };
    Ok(MemKind::File {
        object: h,
        size,
        sparse,
        group,
    })
}

fn ignore_unsupported<T: Default>(r: rustix::io::Result<T>) -> std::io::Result<T> {
    match r {
        Ok(v) => Ok(v),
        Err(rustix::io::Errno::NOTSUP) | Err(rustix::io::Errno::NODATA) => Ok(T::default()),
        Err(e) => Err(e.into()),
    }
}

/// Reads all xattrs through a descriptor (regular files and directories).
pub(crate) fn read_xattrs_fd<Fd: AsFd>(fd: Fd) -> std::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let fd = fd.as_fd();
    let list = read_sized(|b| ignore_unsupported(rustix::fs::flistxattr(fd, b)))?;
    let mut out = Vec::new();
    for name in list.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cname = std::ffi::CString::new(name).unwrap();
        let v = read_sized(|b| ignore_unsupported(rustix::fs::fgetxattr(fd, cname.as_c_str(), b)))?;
        out.push((name.to_vec(), v));
    }
    out.sort();
    Ok(out)
}

/// Reads the xattrs of an entry that must not be opened (symlinks, devices,
/// fifos, sockets): through its parent's descriptor in /proc, without
/// following the entry itself.
pub(crate) fn read_xattrs_at(
    dirfd: &OwnedFd,
    name: &[u8],
) -> std::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    use std::os::fd::AsRawFd;
    let mut p = format!("/proc/self/fd/{}/", dirfd.as_raw_fd()).into_bytes();
    p.extend_from_slice(name);
    let path = std::ffi::CString::new(p).unwrap();
    let list = read_sized(|b| ignore_unsupported(rustix::fs::llistxattr(path.as_c_str(), b)))?;
    let mut out = Vec::new();
    for n in list.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cname = std::ffi::CString::new(n).unwrap();
        let v = read_sized(|b| {
            ignore_unsupported(rustix::fs::lgetxattr(path.as_c_str(), cname.as_c_str(), b))
        })?;
        out.push((n.to_vec(), v));
    }
    out.sort();
    Ok(out)
}

/// Calls a size-then-fill syscall, retrying if the value grew in between.
fn read_sized(mut f: impl FnMut(&mut [u8]) -> std::io::Result<usize>) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        match f(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) && buf.len() < (1 << 20) => {
                let l = buf.len() * 4;
                buf.resize(l, 0);
            }
            Err(e) => return Err(e),
        }
    }
}
