//! Copy bots' roots. On btrfs each image tree is written once, as a
//! read-only subvolume (`cache/roots/TREE`), and every copy bot of it is a
//! snapshot of that subvolume: made in O(1) whatever the image's size, its
//! files sharing every extent with the image (which shares them with the
//! store's objects) until the bot writes. The bot also starts with the
//! image root's stat cache, so its first commit reads only what it changed.
//! Elsewhere (XFS, ext4, or without the privilege to make subvolumes) the
//! root is written file by file by [`materialize`](crate::materialize).

use crate::materialize::materialize_into;
use crate::scan::scan_cache_path;
use crate::statcache::StatCache;
use crate::MaterializeStats;
use anyhow::{Context, Result};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use store::btrfs;
use store::walk;
use store::{Hash, Store};

/// Where the image roots live.
pub fn roots_dir(store: &Store) -> PathBuf {
    store.cache_dir().join("roots")
}

fn stamps_path(store: &Store, tree: &Hash) -> PathBuf {
    roots_dir(store).join(format!("{}.stat", tree.to_hex()))
}

/// Writes `tree` as a new, plain, writable directory at `dest`, which must
/// not exist: a snapshot of the tree's image root on btrfs (building that
/// root first if this node has none), else a directory written file by
/// file (reflinked from the objects where the filesystem can share
/// extents). Either way the result is the same tree.
pub fn materialize_root(store: &Store, tree: &Hash, dest: &Path) -> Result<MaterializeStats> {
    let (parent, name) = match (dest.parent(), dest.file_name()) {
        (Some(p), Some(n)) => (p, n.as_encoded_bytes()),
        _ => anyhow::bail!("cannot write a root at {}", dest.display()),
    };
    let pfd = walk::open_dir(parent)?;
    if btrfs::is_btrfs(&pfd) {
        // gc removes unneeded roots under the exclusive lock.
        let _lock = store.lock(false, &store::NoProgress)?;
        if let Some((root, stamps)) = image_root(store, tree)? {
            let t0 = coarse_now_ns();
            match btrfs::snapshot(root.as_fd(), pfd.as_fd(), name) {
                Ok(()) => {
                    seed_scan_cache(store, dest, stamps, t0);
                    return Ok(MaterializeStats {
                        snapshot: true,
                        ..Default::default()
                    });
                }
                Err(e) if is_no_space(&e) => {
                    return Err(e)
                        .with_context(|| format!("cannot snapshot into {}", dest.display()))
                }
                // Another filesystem below the store, say: write it out.
                Err(_) => {}
            }
        }
    }
    rustix::fs::mkdirat(&pfd, name, Mode::from_raw_mode(0o755))
        .map_err(std::io::Error::from)
        .with_context(|| format!("cannot create {}", dest.display()))?;
    forget_scan_cache(store, dest);
    let fd = walk::open_at(&pfd, name, OFlags::RDONLY | OFlags::DIRECTORY)?;
    Ok(materialize_into(store, tree, fd.as_fd(), false)?.0)
}

fn is_no_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// The realtime clock as file timestamps take it (the coarse clock).
fn coarse_now_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// Gives the new root at `dest` its image root's stat cache. Only stamps
/// older than `t0` (read before the snapshot) are kept: any write after
/// the snapshot moves a file's ctime to `t0` or later, so it cannot match.
fn seed_scan_cache(store: &Store, dest: &Path, mut stamps: StatCache, t0: i64) {
    let Ok(canon) = std::fs::canonicalize(dest) else {
        return;
    };
    stamps
        .map
        .retain(|_, (s, _)| s.ctime_ns < t0 && s.mtime_ns < t0);
    // Without the cache the first commit only reads more.
    let _ = store::write_file_atomic(
        &store.tmp_dir(),
        &scan_cache_path(store, &canon),
        &stamps.encode(),
        0o600,
    );
}

/// Drops the stat cache left at `dest` by an earlier directory there.
fn forget_scan_cache(store: &Store, dest: &Path) {
    if let Ok(canon) = std::fs::canonicalize(dest) {
        let _ = std::fs::remove_file(scan_cache_path(store, &canon));
    }
}

/// The read-only image root of `tree` and its stamps, built if missing;
/// `None` when this store cannot make subvolumes (no privilege).
fn image_root(store: &Store, tree: &Hash) -> Result<Option<(OwnedFd, StatCache)>> {
    let dir = roots_dir(store);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dfd = walk::open_dir(&dir)?;
    let hex = tree.to_hex();
    if let Some(fd) = open_root(&dfd, &hex) {
        // A no-op unless its maker died right after publishing it.
        btrfs::set_readonly(fd.as_fd()).context("cannot make the image root read-only")?;
        return Ok(Some((fd, StatCache::load(&stamps_path(store, tree)))));
    }
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let staged = format!(
        "root-{hex}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let tmp = walk::open_dir(&store.tmp_dir())?;
    if btrfs::create_subvolume(tmp.as_fd(), staged.as_bytes()).is_err() {
        return Ok(None);
    }
    let built = (|| -> Result<()> {
        let fd = walk::open_at(&tmp, staged.as_bytes(), OFlags::RDONLY | OFlags::DIRECTORY)?;
        let (_, stamps) = materialize_into(store, tree, fd.as_fd(), true)
            .with_context(|| format!("cannot write the image root of tree {hex}"))?;
        store::write_file_atomic(
            &store.tmp_dir(),
            &stamps_path(store, tree),
            &StatCache { map: stamps }.encode(),
            0o600,
        )?;
        Ok(())
    })();
    let published = built.and_then(|()| {
        match rustix::fs::renameat(&tmp, staged.as_bytes(), &dfd, hex.as_bytes()) {
            Ok(()) => Ok(true),
            // Another writer published the same root first: use theirs.
            Err(rustix::io::Errno::EXIST | rustix::io::Errno::NOTEMPTY) => Ok(false),
            Err(e) => Err(std::io::Error::from(e))
                .with_context(|| format!("cannot publish the image root {}", dir.display())),
        }
    });
    if !matches!(published, Ok(true)) {
        let _ = walk::remove_tree(&tmp, staged.as_bytes());
    }
    published?;
    let fd = open_root(&dfd, &hex).context("the image root went away while it was made")?;
    // Only now: a read-only subvolume cannot be renamed. Complete already,
    // so a crash before this leaves a root that is right, only writable.
    btrfs::set_readonly(fd.as_fd()).context("cannot make the image root read-only")?;
    Ok(Some((fd, StatCache::load(&stamps_path(store, tree)))))
}

fn open_root(dir: &OwnedFd, hex: &str) -> Option<OwnedFd> {
    walk::open_at(dir, hex.as_bytes(), OFlags::RDONLY | OFlags::DIRECTORY)
        .ok()
        .filter(|fd| btrfs::is_subvolume(fd))
}

/// Removes the image roots (and their stamps) of trees not in `keep`, or
/// with `dry_run` only counts them. The caller holds the store lock
/// exclusively. Bots made from a root are independent of it.
pub fn gc_roots(store: &Store, keep: &HashSet<Hash>, dry_run: bool) -> Result<u64> {
    let dir = roots_dir(store);
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Ok(0);
    };
    let mut removed = 0;
    for e in rd {
        let e = e?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        let tree = name.strip_suffix(".stat").unwrap_or(&name);
        if tree.parse::<Hash>().is_ok_and(|h| keep.contains(&h)) {
            continue;
        }
        if !name.ends_with(".stat") {
            removed += 1;
        }
        if !dry_run {
            let p = e.path();
            walk::remove_path(&p).with_context(|| format!("cannot remove {}", p.display()))?;
        }
    }
    Ok(removed)
}
