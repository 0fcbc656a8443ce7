//! Folding an overlay upper dir into a tree.
//!
//! The upper dir is hostile input: it is walked with `openat`/`statat` and
//! `O_NOFOLLOW`, its symlinks are never followed, and it only says *which*
//! paths changed. What they changed to is read through a read-only mount of
//! the same overlay (the `view`), so overlay's own marks (whiteouts, opaque
//! and redirected directories, metacopy copy-ups, the hard-link index) mean
//! exactly what the kernel made of them. A hard-linked file copied up under
//! one name changes all its names, though only one is in the upper; so every
//! member of a group that had a member change is read again from the view.

use crate::memtree::{MemNode, MemTree};
use crate::scan::Scanner;
use anyhow::{Context, Result};
use rustix::fd::OwnedFd;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use std::collections::HashSet;
use std::os::fd::AsRawFd;
use std::path::Path;
use store::{Progress, Staging};

fn open_dir_at(dir: &OwnedFd, name: &[u8]) -> Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(std::io::Error::from)?)
}

fn open_dir(p: &Path) -> Result<OwnedFd> {
    rustix::fs::open(
        p,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(std::io::Error::from)
    .with_context(|| format!("cannot open {}", p.display()))
}

/// The xattr `key` of `name` in `dir`, without following a symlink.
pub fn xattr_at(dir: &OwnedFd, name: &[u8], key: &str) -> Option<Vec<u8>> {
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name);
    let p = std::ffi::CString::new(p).ok()?;
    let mut buf = vec![0u8; 4096];
    let n = rustix::fs::lgetxattr(p.as_c_str(), key, &mut buf[..]).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// What a fold found.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct FoldStats {
    pub changed: u64,
    pub deleted: u64,
}

/// Applies the changes recorded in `upper` to `tree`, reading their new
/// state from `view`. New content goes to `staging`.
pub fn fold_upper(
    tree: &mut MemTree,
    upper: &Path,
    view: &Path,
    staging: &Staging,
    progress: &dyn Progress,
) -> Result<FoldStats> {
    let groups = tree.group_members();
    let scanner = Scanner::new(view, staging, progress, tree.next_group_id());
    let mut stats = FoldStats::default();
    let u = open_dir(upper)?;
    let v = open_dir(view)?;
    let mut scanned: HashSet<Vec<Vec<u8>>> = HashSet::new();
    fold_dir(
        tree,
        &scanner,
        &u,
        &v,
        &mut Vec::new(),
        &mut stats,
        &mut scanned,
    )?;
    for members in groups.values() {
        if !members.iter().any(|m| scanned.contains(m)) {
            continue;
        }
        for m in members {
            let path: Vec<&[u8]> = m.iter().map(|c| c.as_slice()).collect();
            if scanned.contains(m) || tree.get(&path).is_none() {
                continue;
            }
            let (name, parent) = path.split_last().unwrap();
            let mut dir = open_dir(view)?;
            for c in parent {
                dir = open_dir_at(&dir, c)?;
            }
            let node = scanner.entry(&dir, name, &path.join(&b'/'))?;
            tree.remove(&path);
            tree.insert(&path, node)?;
        }
    }
    tree.reserve_groups(scanner.next_group());
    Ok(stats)
}

/// Whether an upper entry is an overlay whiteout (a 0:0 character device,
/// or an empty file marked with `trusted.overlay.whiteout`).
fn is_whiteout(dir: &OwnedFd, name: &[u8], st: &rustix::fs::Stat) -> bool {
    match FileType::from_raw_mode(st.st_mode) {
        FileType::CharacterDevice => st.st_rdev == 0,
        FileType::RegularFile => {
            st.st_size == 0 && xattr_at(dir, name, "trusted.overlay.whiteout").is_some()
        }
        _ => false,
    }
}

fn fold_dir(
    tree: &mut MemTree,
    scanner: &Scanner,
    u: &OwnedFd,
    v: &OwnedFd,
    rel: &mut Vec<Vec<u8>>,
    stats: &mut FoldStats,
    scanned: &mut HashSet<Vec<Vec<u8>>>,
) -> Result<()> {
    let mut names = Vec::new();
    for ent in rustix::fs::Dir::read_from(u).map_err(std::io::Error::from)? {
        let ent = ent.map_err(std::io::Error::from)?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    names.sort();
    for name in names {
        rel.push(name.clone());
        let path: Vec<&[u8]> = rel.iter().map(|c| c.as_slice()).collect();
        let shown = path.join(&b'/');
        let st = rustix::fs::statat(u, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(std::io::Error::from)?;
        if is_whiteout(u, &name, &st) {
            tree.remove(&path);
            stats.deleted += 1;
        } else if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            let opaque = xattr_at(u, &name, "trusted.overlay.opaque").is_some_and(|x| x == b"y");
            let redirected = xattr_at(u, &name, "trusted.overlay.redirect").is_some();
            let was_dir = tree.get(&path).is_some_and(MemNode::is_dir);
            if opaque || redirected || !was_dir {
                // Its whole content is what the view shows.
                let node = scanner.entry(v, &name, &shown)?;
                tree.remove(&path);
                tree.insert(&path, node)?;
                stats.changed += 1;
            } else {
                let meta = scanner.meta(v, &name)?;
                tree.insert(&path, MemNode::dir(meta))?;
                let (su, sv) = (open_dir_at(u, &name)?, open_dir_at(v, &name)?);
                fold_dir(tree, scanner, &su, &sv, rel, stats, scanned)?;
            }
        } else {
            // A full copy-up or a new file with one name is cloned from the
            // upper (no data copied where the filesystem can reflink);
            // anything else is read through the view.
            let own_data = FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
                && st.st_nlink == 1
                && st.st_size > 0
                && xattr_at(u, &name, "trusted.overlay.metacopy").is_none();
            let node = if own_data {
                scanner.upper_file(u, &name, &shown, scanner.meta(v, &name)?)?
            } else {
                scanner.entry(v, &name, &shown)?
            };
            tree.remove(&path);
            tree.insert(&path, node)?;
            stats.changed += 1;
            scanned.insert(rel.clone());
        }
        rel.pop();
    }
    Ok(())
}
