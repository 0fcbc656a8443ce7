//! Moved directories that a sync cannot move as one.
//!
//! A directory the agent renamed is, in the upper, a redirect to its old
//! place in the project. When the rename pairs up as one change (the same
//! subtree under a new name), the sync renames it in the project and then
//! clears the redirect. Otherwise (two directories swapped, a renamed
//! directory whose content also changed) the sync applies the files one by
//! one, and every step changes the project the redirect points into. So
//! before such a sync, each of those directories is made self-contained:
//! the agent's whole view of it is copied into the upper as an opaque
//! directory, which no change to the project can alter. Only while the
//! workspace is unmounted; copying costs the directory's size.

use crate::changes::What;
use crate::state::{Workspace, WorkspaceRef};
use anyhow::{Context, Result};
use fs::walk::{components, open_dir};
use rustix::fd::OwnedFd;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat, Timespec, Timestamps};

fn io<T>(r: rustix::io::Result<T>) -> std::io::Result<T> {
    r.map_err(std::io::Error::from)
}

/// Redirected directories of the upper (not below another one).
fn redirected(upper: &OwnedFd) -> Result<Vec<Vec<u8>>> {
    struct R(Vec<Vec<u8>>);
    impl fs::walk::Visitor for R {
        fn entry(&mut self, dir: &OwnedFd, name: &[u8], path: &[u8], st: &Stat) -> Result<bool> {
            if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                return Ok(false);
            }
            if fs::xattr_at(dir, name, "trusted.overlay.redirect").is_some() {
                self.0.push(path.to_vec());
                return Ok(false);
            }
            Ok(fs::xattr_at(dir, name, "trusted.overlay.opaque").is_none())
        }
    }
    let mut r = R(Vec::new());
    fs::walk::walk(upper, fs::MAX_DEPTH, &mut r)?;
    Ok(r.0)
}

/// Makes every redirected directory that is not one directory rename
/// self-contained (see the module's doc). Returns how many were.
pub(crate) fn flatten_moved_dirs(ws: &Workspace, r: &WorkspaceRef) -> Result<usize> {
    if !ws.upper().exists() {
        return Ok(0);
    }
    let dirs = redirected(&open_dir(&ws.upper())?)?;
    if dirs.is_empty() {
        return Ok(0);
    }
    let view = ws.view(r)?;
    let changes = crate::changes::changes(
        &ws.store,
        r.base_tree,
        &ws.upper(),
        &view.path,
        &r.project,
        &[],
    )?;
    let whole_renames: Vec<&Vec<u8>> = changes
        .iter()
        .filter(|c| matches!(c.what, What::Renamed { .. }))
        .filter(|c| {
            c.agent
                .as_ref()
                .is_some_and(|a| a.kind == crate::changes::Kind::Dir)
        })
        .map(|c| &c.path)
        .collect();
    let todo: Vec<&Vec<u8>> = dirs.iter().filter(|d| !whole_renames.contains(d)).collect();
    if todo.is_empty() {
        return Ok(0);
    }
    // Copied out of the view first (the upper may not change under it).
    let staging = ws.dir().join("flatten");
    fs::walk::remove_path(&staging)?;
    std::fs::create_dir_all(&staging)?;
    let st_fd = open_dir(&staging)?;
    let view_fd = open_dir(&view.path)?;
    for (i, d) in todo.iter().enumerate() {
        let c = components(d);
        let (name, parents) = c.split_last().expect("not the root");
        let Some(parent) = fs::walk::open_beneath(&view_fd, parents)? else {
            continue;
        };
        let slot = i.to_string();
        copy_dir(&parent, name, &st_fd, slot.as_bytes()).with_context(|| {
            format!(
                "cannot set aside the moved directory {}",
                fs::quote_bytes(d)
            )
        })?;
    }
    drop(view_fd);
    drop(view);
    let upper = open_dir(&ws.upper())?;
    for (i, d) in todo.iter().enumerate() {
        let c = components(d);
        let (name, parents) = c.split_last().expect("not the root");
        let Some(parent) = fs::walk::open_beneath(&upper, parents)? else {
            continue;
        };
        let slot = i.to_string();
        if rustix::fs::statat(&st_fd, slot.as_str(), AtFlags::SYMLINK_NOFOLLOW).is_err() {
            continue;
        }
        fs::walk::remove_tree(&parent, name)?;
        io(rustix::fs::renameat(&st_fd, slot.as_str(), &parent, *name))?;
    }
    fs::walk::remove_path(&staging)?;
    Ok(todo.len())
}

/// Copies the directory `name` of `from` (the view) into `to` as `as_name`,
/// marked opaque: owners, modes, times and contents, at any depth.
fn copy_dir(from: &OwnedFd, name: &[u8], to: &OwnedFd, as_name: &[u8]) -> Result<()> {
    let st = io(rustix::fs::statat(from, name, AtFlags::SYMLINK_NOFOLLOW))?;
    io(rustix::fs::mkdirat(to, as_name, Mode::from_raw_mode(0o700)))?;
    let top = fs::walk::open_dir_at(to, as_name)?;
    io(rustix::fs::fsetxattr(
        &top,
        "trusted.overlay.opaque",
        b"y",
        rustix::fs::XattrFlags::empty(),
    ))?;
    struct C {
        /// Copies of the directories being walked.
        stack: Vec<OwnedFd>,
        pending: Option<(OwnedFd, Stat)>,
        /// Directories to give their metadata once filled.
        done: Vec<(OwnedFd, Stat)>,
    }
    impl fs::walk::Visitor for C {
        fn entry(&mut self, dir: &OwnedFd, name: &[u8], _: &[u8], st: &Stat) -> Result<bool> {
            let to = self.stack.last().unwrap();
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => {
                    io(rustix::fs::mkdirat(to, name, Mode::from_raw_mode(0o700)))?;
                    self.pending = Some((fs::walk::open_dir_at(to, name)?, *st));
                    return Ok(true);
                }
                FileType::RegularFile => {
                    let src = io(rustix::fs::openat(
                        dir,
                        name,
                        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    ))?;
                    let dst = io(rustix::fs::openat(
                        to,
                        name,
                        OFlags::WRONLY
                            | OFlags::CREATE
                            | OFlags::EXCL
                            | OFlags::NOFOLLOW
                            | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o600),
                    ))?;
                    let mut out = std::fs::File::from(dst);
                    std::io::copy(&mut std::fs::File::from(src), &mut out)?;
                    set_meta(&out.into(), st)?;
                }
                FileType::Symlink => {
                    let t = io(rustix::fs::readlinkat(dir, name, Vec::new()))?;
                    io(rustix::fs::symlinkat(t.as_bytes(), to, name))?;
                    let _ = rustix::fs::chownat(
                        to,
                        name,
                        Some(rustix::fs::Uid::from_raw(st.st_uid)),
                        Some(rustix::fs::Gid::from_raw(st.st_gid)),
                        AtFlags::SYMLINK_NOFOLLOW,
                    );
                }
                // Fifos, sockets, devices: never synced; not kept here.
                _ => {}
            }
            Ok(false)
        }
        fn enter(&mut self, _: &OwnedFd, _: &[u8]) -> Result<()> {
            let (fd, st) = self.pending.take().unwrap();
            self.done.push((fd.try_clone()?, st));
            self.stack.push(fd);
            Ok(())
        }
        fn leave(&mut self, _: &OwnedFd, _: &[u8], _: &[u8]) -> Result<()> {
            self.stack.pop();
            let (fd, st) = self.done.pop().unwrap();
            set_meta(&fd, &st)
        }
    }
    let src = fs::walk::open_dir_at(from, name)?;
    let mut c = C {
        stack: vec![top.try_clone()?],
        pending: None,
        done: Vec::new(),
    };
    fs::walk::walk(&src, fs::MAX_DEPTH, &mut c)?;
    set_meta(&top, &st)
}

fn set_meta(fd: &OwnedFd, st: &Stat) -> Result<()> {
    io(rustix::fs::fchown(
        fd,
        Some(rustix::fs::Uid::from_raw(st.st_uid)),
        Some(rustix::fs::Gid::from_raw(st.st_gid)),
    ))?;
    io(rustix::fs::fchmod(
        fd,
        Mode::from_raw_mode(st.st_mode & 0o7777),
    ))?;
    let t = |s: i64, ns: i64| Timespec {
        tv_sec: s,
        tv_nsec: ns as _,
    };
    io(rustix::fs::futimens(
        fd,
        &Timestamps {
            last_access: t(st.st_atime, st.st_atime_nsec as i64),
            last_modification: t(st.st_mtime, st.st_mtime_nsec as i64),
        },
    ))?;
    Ok(())
}
