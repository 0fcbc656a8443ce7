//! Scanning a directory into a [`MemTree`], storing each file's content.
//!
//! The directory is walked with [`store::walk`]: every entry is reached
//! relative to its parent's descriptor with `O_NOFOLLOW`, no recursion, a
//! bounded number of descriptors. Each regular file is opened once, checked
//! to be the inode that was listed, and handed to a pool of hashing threads
//! (one per core) through a bounded queue, so at most a few files are open
//! at a time however many the tree holds. Content the store holds is never
//! written again.

use crate::memtree::{MemKind, MemNode, MemTree, Meta, NodeId, NodeKind};
use crate::statcache::{path_key, PathKey, Stamp, StatCache};
use anyhow::{Context, Result};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::mpsc;
use std::sync::Mutex;
use store::walk::{self, Visitor, MAX_DEPTH};
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

/// How a regular file's content is taken into the store.
#[derive(Clone, Copy)]
enum How {
    /// Read, hash, and copy what the store lacks (or reflink with `clone`).
    Read,
    /// A bot's own copy-up: hash it, then reflink it into the store.
    CloneKnown,
}

struct Job {
    id: NodeId,
    file: File,
    size: u64,
    sparse: bool,
    how: How,
    /// For the stat cache: the path's key and the file's stamp.
    cache: Option<(PathKey, Stamp)>,
    shown: Vec<u8>,
}

struct Done {
    id: NodeId,
    object: Hash,
    size: u64,
    sparse: bool,
    cache: Option<(PathKey, Stamp)>,
}

/// Scans entries into a tree, handing file contents to hashing threads.
/// Made by [`with_scanner`]; the contents land in the tree when it returns.
pub(crate) struct Scanner<'s> {
    staging: &'s Staging,
    progress: &'s dyn Progress,
    opts: ScanOptions,
    jobs: Option<mpsc::SyncSender<Job>>,
    done: mpsc::Receiver<Done>,
    old: StatCache,
    /// Multiply-linked files seen: → (group, the member that is hashed).
    links: HashMap<Inode, (u64, NodeId)>,
    /// Later members of a group and the member whose content they take.
    followers: Vec<(NodeId, NodeId)>,
    next_group: u64,
    racy_after_ns: i128,
    /// What the next stat cache holds.
    fresh: HashMap<PathKey, (Stamp, Hash)>,
    /// Set by the first failed job, so no more work is queued.
    failed: &'s Mutex<Option<anyhow::Error>>,
}

/// Runs `f` with a [`Scanner`] whose hashing threads fill in the contents
/// of `tree` once `f` is done. `first_group` is the first free hard-link
/// group id of `tree`.
/// The stat cache a scan leaves for the next one.
pub(crate) type FreshCache = HashMap<PathKey, (Stamp, Hash)>;

pub(crate) fn with_scanner<T>(
    tree: &mut MemTree,
    staging: &Staging,
    progress: &dyn Progress,
    opts: ScanOptions,
    old: StatCache,
    f: impl FnOnce(&mut Scanner<'_>, &mut MemTree) -> Result<T>,
) -> Result<(T, FreshCache)> {
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 16);
    let failed = Mutex::new(None);
    let (done_tx, done_rx) = mpsc::channel::<Done>();
    let (jobs_tx, jobs_rx) = mpsc::sync_channel::<Job>(workers * 2);
    let jobs_rx = Mutex::new(jobs_rx);
    let first_group = tree.next_group_id();
    let (out, next_group, followers, fresh) = std::thread::scope(|s| {
        for _ in 0..workers {
            let done_tx = done_tx.clone();
            let (jobs_rx, failed) = (&jobs_rx, &failed);
            s.spawn(move || loop {
                let job = match jobs_rx.lock().unwrap().recv() {
                    Ok(j) => j,
                    Err(_) => return,
                };
                let shown = job.shown.clone();
                match run_job(staging, progress, opts, job) {
                    Ok(d) => {
                        let _ = done_tx.send(d);
                    }
                    Err(e) => {
                        let mut f = failed.lock().unwrap();
                        if f.is_none() {
                            *f = Some(
                                e.context(format!("cannot read {}", crate::quote_short(&shown))),
                            );
                        }
                    }
                }
            });
        }
        drop(done_tx);
        let mut sc = Scanner {
            staging,
            progress,
            opts,
            jobs: Some(jobs_tx),
            done: done_rx,
            old,
            links: HashMap::new(),
            followers: Vec::new(),
            next_group: first_group,
            racy_after_ns: now_ns - 2_000_000_000,
            fresh: HashMap::new(),
            failed: &failed,
        };
        let out = f(&mut sc, tree);
        sc.jobs = None; // the workers finish the queue, then stop
        let mut applied = Ok(());
        while let Ok(d) = sc.done.recv() {
            if applied.is_ok() {
                applied = sc.apply(tree, d);
            }
        }
        (
            out.and_then(|o| applied.map(|()| o)),
            sc.next_group,
            sc.followers,
            sc.fresh,
        )
    });
    if let Some(e) = failed.into_inner().unwrap() {
        return Err(e);
    }
    let out = out?;
    for (member, leader) in followers {
        if let NodeKind::File {
            object,
            size,
            sparse,
            ..
        } = tree.kind(leader)
        {
            tree.set_content(member, object, size, sparse)?;
        }
    }
    tree.reserve_groups(next_group);
    Ok((out, fresh))
}

fn run_job(
    staging: &Staging,
    progress: &dyn Progress,
    opts: ScanOptions,
    job: Job,
) -> Result<Done> {
    let Job {
        id,
        mut file,
        size,
        sparse,
        how,
        cache,
        ..
    } = job;
    let changed =
        || anyhow::anyhow!("it changed size during the scan; try again once it is stable");
    let object = match how {
        How::CloneKnown => {
            let (h, n) = store::hash_file(&mut file)?;
            if n != size {
                return Err(changed());
            }
            staging.put_clone(&mut file, &h, size, sparse)?;
            h
        }
        How::Read if opts.clone => {
            let (h, n) = staging.put_clone_of(&mut file, sparse)?;
            if n != size {
                return Err(changed());
            }
            h
        }
        How::Read if size <= store::SMALL_FILE => {
            let mut buf = Vec::with_capacity(size as usize);
            file.read_to_end(&mut buf)?;
            if buf.len() as u64 != size {
                return Err(changed());
            }
            staging.put_bytes(&buf, sparse)?
        }
        How::Read => {
            let (h, n) = store::hash_file(&mut file)?;
            if n != size {
                return Err(changed());
            }
            staging.put_file(&mut file, &h, size, sparse)?;
            h
        }
    };
    progress.advance(size);
    Ok(Done {
        id,
        object,
        size,
        sparse,
        cache,
    })
}

pub(crate) fn meta_of(st: &Stat) -> Meta {
    Meta {
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        mtime: st.st_mtime,
        mtime_nsec: st.st_mtime_nsec as u32,
        xattrs: Vec::new(),
    }
}

fn is_sparse(st: &Stat) -> bool {
    let size = st.st_size as u64;
    size > 0 && (st.st_blocks as u64) * 512 + 4096 < size
}

impl Scanner<'_> {
    fn apply(&mut self, tree: &mut MemTree, d: Done) -> Result<()> {
        tree.set_content(d.id, d.object, d.size, d.sparse)?;
        if let Some((key, stamp)) = d.cache {
            self.fresh.insert(key, (stamp, d.object));
        }
        Ok(())
    }

    /// Takes in what the hashing threads finished, so results never pile up.
    fn drain(&mut self, tree: &mut MemTree) -> Result<()> {
        while let Ok(d) = self.done.try_recv() {
            self.apply(tree, d)?;
        }
        Ok(())
    }

    fn queue(&mut self, job: Job) -> Result<()> {
        if let Some(e) = self.failed.lock().unwrap().take() {
            return Err(e);
        }
        self.jobs
            .as_ref()
            .expect("the scanner is live")
            .send(job)
            .map_err(|_| anyhow::anyhow!("the hashing threads stopped"))
    }

    /// Metadata (with xattrs) of `name` in `dir`, without content.
    pub fn meta(&self, dir: &OwnedFd, name: &[u8]) -> Result<Meta> {
        let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(std::io::Error::from)?;
        let mut m = meta_of(&st);
        m.xattrs = read_xattrs_at(dir, name)?;
        Ok(m)
    }

    /// Puts the entry `name` of `dir` (statted as `st`) into `tree` under
    /// `parent`, replacing what was there; a regular file's content is
    /// queued for hashing. Returns the node, and whether it is a directory
    /// to walk into.
    #[allow(clippy::too_many_arguments)]
    fn put_entry(
        &mut self,
        tree: &mut MemTree,
        parent: NodeId,
        dir: &OwnedFd,
        name: &[u8],
        path: &[u8],
        st: &Stat,
        root_dev: u64,
    ) -> Result<(NodeId, bool)> {
        let mut meta = meta_of(st);
        let ft = FileType::from_raw_mode(st.st_mode);
        let kind = match ft {
            FileType::RegularFile => {
                let fd = rustix::fs::openat(
                    dir,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(std::io::Error::from)?;
                let fst = rustix::fs::fstat(&fd)?;
                if fst.st_ino != st.st_ino || fst.st_dev != st.st_dev {
                    anyhow::bail!(
                        "it was replaced during the scan; try again once the directory is stable"
                    );
                }
                meta.xattrs = read_xattrs_fd(&fd)?;
                return self
                    .put_file(
                        tree,
                        parent,
                        name,
                        path,
                        meta,
                        File::from(fd),
                        &fst,
                        How::Read,
                    )
                    .map(|id| (id, false));
            }
            FileType::Directory => {
                meta.xattrs = read_xattrs_at(dir, name)?;
                let other_fs = self.opts.one_file_system && st.st_dev != root_dev;
                if other_fs {
                    self.progress.note(&format!(
                        "{} is another filesystem; kept as an empty directory",
                        crate::quote_short(path)
                    ));
                }
                let id = tree.put(parent, name, &MemNode::dir(meta))?;
                // A directory over a directory keeps the old children.
                for c in tree.children(id) {
                    tree.remove_id(c);
                }
                return Ok((id, !other_fs));
            }
            FileType::Symlink => {
                meta.xattrs = read_xattrs_at(dir, name)?;
                let t =
                    rustix::fs::readlinkat(dir, name, Vec::new()).map_err(std::io::Error::from)?;
                MemKind::Symlink(t.into_bytes())
            }
            FileType::CharacterDevice | FileType::BlockDevice => {
                meta.xattrs = read_xattrs_at(dir, name)?;
                let major = rustix::fs::major(st.st_rdev);
                let minor = rustix::fs::minor(st.st_rdev);
                if ft == FileType::CharacterDevice {
                    MemKind::CharDev { major, minor }
                } else {
                    MemKind::BlockDev { major, minor }
                }
            }
            FileType::Fifo => {
                meta.xattrs = read_xattrs_at(dir, name)?;
                MemKind::Fifo
            }
            FileType::Socket => {
                meta.xattrs = read_xattrs_at(dir, name)?;
                MemKind::Socket
            }
            _ => anyhow::bail!("it has an unknown file type"),
        };
        Ok((tree.put(parent, name, &MemNode { meta, kind })?, false))
    }

    #[allow(clippy::too_many_arguments)]
    fn put_file(
        &mut self,
        tree: &mut MemTree,
        parent: NodeId,
        name: &[u8],
        path: &[u8],
        meta: Meta,
        file: File,
        st: &Stat,
        how: How,
    ) -> Result<NodeId> {
        let size = st.st_size as u64;
        let sparse = is_sparse(st);
        let key = (st.st_dev, st.st_ino);
        let node = |object: Hash, group: Option<u64>| MemNode {
            meta: meta.clone(),
            kind: MemKind::File {
                object,
                size,
                sparse,
                group,
            },
        };
        if st.st_nlink > 1 {
            if let Some(&(g, leader)) = self.links.get(&key) {
                let id = tree.put(parent, name, &node(Hash::empty(), Some(g)))?;
                self.followers.push((id, leader));
                return Ok(id);
            }
        }
        let group = (st.st_nlink > 1).then(|| {
            self.next_group += 1;
            self.next_group
        });
        let id = tree.put(parent, name, &node(Hash::empty(), group))?;
        if let Some(g) = group {
            self.links.insert(key, (g, id));
        }
        let stamp = Stamp::of(st);
        if size == 0 {
            return Ok(id);
        }
        let key = self.opts.stat_cache.then(|| path_key(path));
        let cacheable = key.is_some()
            && (stamp.ctime_ns as i128) < self.racy_after_ns
            && (stamp.mtime_ns as i128) < self.racy_after_ns;
        if let Some(key) = key {
            let hit = self
                .old
                .map
                .get(&key)
                .filter(|(s, h)| *s == stamp && self.staging.has_object(h, size))
                .map(|(_, h)| *h);
            if let Some(h) = hit {
                tree.set_content(id, h, size, sparse)?;
                if cacheable {
                    self.fresh.insert(key, (stamp, h));
                }
                return Ok(id);
            }
        }
        self.drain(tree)?;
        self.queue(Job {
            id,
            file,
            size,
            sparse,
            how,
            cache: key.filter(|_| cacheable).map(|k| (k, stamp)),
            shown: path.to_vec(),
        })?;
        Ok(id)
    }

    /// Puts the entry `name` of `dir` into `tree` under `parent` with
    /// everything below it, replacing what was there. `path` names it in
    /// errors and is its path in the tree.
    pub fn scan_entry(
        &mut self,
        tree: &mut MemTree,
        parent: NodeId,
        dir: &OwnedFd,
        name: &[u8],
        path: &[u8],
    ) -> Result<NodeId> {
        let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(std::io::Error::from)
            .with_context(|| format!("cannot read {}", crate::quote_short(path)))?;
        let (id, descend) = self
            .put_entry(tree, parent, dir, name, path, &st, st.st_dev)
            .with_context(|| format!("cannot read {}", crate::quote_short(path)))?;
        if descend {
            let sub = walk::open_dir_at(dir, name)?;
            let limit = MAX_DEPTH.saturating_sub(tree.depth(id));
            self.scan_below(tree, id, &sub, path, st.st_dev, limit)?;
        }
        Ok(id)
    }

    fn scan_below(
        &mut self,
        tree: &mut MemTree,
        top: NodeId,
        dir: &OwnedFd,
        prefix: &[u8],
        root_dev: u64,
        limit: usize,
    ) -> Result<()> {
        struct V<'a, 'b, 's> {
            sc: &'a mut Scanner<'s>,
            tree: &'b mut MemTree,
            stack: Vec<NodeId>,
            entered: Option<NodeId>,
            prefix: &'a [u8],
            root_dev: u64,
            full: Vec<u8>,
        }
        impl V<'_, '_, '_> {
            fn full(&mut self, path: &[u8]) -> &[u8] {
                self.full.clear();
                self.full.extend_from_slice(self.prefix);
                if !self.prefix.is_empty() {
                    self.full.push(b'/');
                }
                self.full.extend_from_slice(path);
                &self.full
            }
        }
        impl Visitor for V<'_, '_, '_> {
            fn entry(
                &mut self,
                dir: &OwnedFd,
                name: &[u8],
                path: &[u8],
                st: &Stat,
            ) -> Result<bool> {
                let parent = *self.stack.last().unwrap();
                let full = self.full(path).to_vec();
                let (id, descend) = self
                    .sc
                    .put_entry(self.tree, parent, dir, name, &full, st, self.root_dev)
                    .with_context(|| format!("cannot read {}", crate::quote_short(&full)))?;
                self.entered = Some(id);
                Ok(descend)
            }
            fn enter(&mut self, _own: &OwnedFd, _path: &[u8]) -> Result<()> {
                self.stack.push(self.entered.take().unwrap());
                Ok(())
            }
            fn leave(&mut self, _parent: &OwnedFd, _name: &[u8], _path: &[u8]) -> Result<()> {
                self.stack.pop();
                Ok(())
            }
        }
        let mut v = V {
            sc: self,
            tree,
            stack: vec![top],
            entered: None,
            prefix,
            root_dev,
            full: Vec::new(),
        };
        walk::walk(dir, limit, &mut v).map_err(|e| match e.downcast::<walk::TooDeep>() {
            Ok(mut deep) => {
                let mut p = prefix.to_vec();
                if !p.is_empty() {
                    p.push(b'/');
                }
                p.extend_from_slice(&deep.path);
                deep.path = p;
                deep.limit = MAX_DEPTH;
                deep.into()
            }
            Err(e) => e,
        })
    }

    /// A regular file of an overlay upper dir (a full copy-up or a new
    /// file), stored as a reflink of the upper's file where the filesystem
    /// can clone: its content from `dir`/`name`, its metadata as given
    /// (what the view shows).
    pub fn upper_file(
        &mut self,
        tree: &mut MemTree,
        parent: NodeId,
        dir: &OwnedFd,
        name: &[u8],
        path: &[u8],
        meta: Meta,
    ) -> Result<NodeId> {
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(std::io::Error::from)
        .with_context(|| format!("cannot read {}", crate::quote_short(path)))?;
        let st = rustix::fs::fstat(&fd)?;
        let mut st1 = st;
        st1.st_nlink = 1; // an upper file with one name is its own
        let saved = self.opts.stat_cache;
        self.opts.stat_cache = false;
        let r = self.put_file(
            tree,
            parent,
            name,
            path,
            meta,
            File::from(fd),
            &st1,
            How::CloneKnown,
        );
        self.opts.stat_cache = saved;
        r
    }
}

/// Where the stat cache of scans of the directory `canon` (canonical) lives.
pub(crate) fn scan_cache_path(store: &store::Store, canon: &Path) -> std::path::PathBuf {
    store.cache_dir().join(format!(
        "scan-{}",
        &Hash::of(canon.as_os_str().as_encoded_bytes()).to_hex()[..32]
    ))
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
    let fd = walk::open_dir(&canon)?;
    let st = rustix::fs::fstat(&fd)?;
    let cache_path = scan_cache_path(staging.store(), &canon);
    let old = if opts.stat_cache {
        StatCache::load(&cache_path)
    } else {
        StatCache::default()
    };
    let mut root_meta = meta_of(&st);
    root_meta.xattrs = read_xattrs_fd(&fd)?;
    let mut tree = MemTree::new(root_meta);
    progress.phase("scanning", None, Unit::Bytes);
    let ((), fresh) = with_scanner(&mut tree, staging, progress, opts, old, |sc, tree| {
        let root = tree.root();
        sc.scan_below(tree, root, &fd, b"", st.st_dev, MAX_DEPTH)
    })
    .with_context(|| format!("cannot import {}", root.display()))?;
    if opts.stat_cache {
        let cache = StatCache { map: fresh };
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
    use std::os::fd::AsFd;
    let path = store::walk::proc_path(dirfd.as_fd(), name);
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
