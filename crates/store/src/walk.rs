//! Walking beneath a directory: the one way botyard reads a tree someone
//! else shaped (an image directory, a bot's upper or root, a workspace).
//!
//! Every entry is reached relative to its parent's descriptor with
//! `O_NOFOLLOW`, so a symlink is never followed, even if the tree changes
//! during the walk. The walk is a loop over an explicit stack, never a
//! recursion, and holds at most [`FD_BUDGET`] directory descriptors however
//! deep the tree: a directory whose descriptor was let go is opened again
//! through `..` of its child and must be the same directory (device and
//! inode) it was. Depth is bounded by the caller; past it the walk stops
//! with [`TooDeep`], naming the path.
//!
//! It also holds the helpers for opening one path beneath a root
//! ([`open_beneath`] a component at a time, [`open_path`] in one
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` call) and for the
//! relative byte paths they take ([`components`], [`join`],
//! [`split_parent`], [`proc_path`]).

use anyhow::{Context, Result};
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat};
use std::path::Path;

/// Directory descriptors a walk keeps open at most.
pub const FD_BUDGET: usize = 64;

/// How deep the trees botyard stores may be: deeper directories are
/// refused with a one-line error (a path that deep cannot even be named to
/// the kernel in one string when its names are long).
pub const MAX_DEPTH: usize = 512;

/// A walk went below [`MAX_DEPTH`] (or the caller's limit).
#[derive(Debug, Clone)]
pub struct TooDeep {
    /// The path where the limit was passed, from the walk's root.
    pub path: Vec<u8>,
    pub limit: usize,
}

impl std::fmt::Display for TooDeep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let first: Vec<&[u8]> = self.path.split(|&b| b == b'/').take(4).collect();
        write!(
            f,
            "{}/… is nested more than {} directories deep, which botyard does not keep",
            crate::quote_bytes(&first.join(&b'/')),
            self.limit
        )
    }
}

impl std::error::Error for TooDeep {}

fn io<T>(r: rustix::io::Result<T>) -> std::io::Result<T> {
    r.map_err(std::io::Error::from)
}

/// The components of a relative byte path (`a//b/` is `a`, `b`).
pub fn components(p: &[u8]) -> Vec<&[u8]> {
    p.split(|&b| b == b'/').filter(|c| !c.is_empty()).collect()
}

/// `rel/name` (or `name` at the root).
pub fn join(rel: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = rel.to_vec();
    if !p.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// A relative path's parent and last name (`a/b/c`: `a/b`, `c`).
pub fn split_parent(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (b"", path),
    }
}

/// `name` in `dir` as a path through `/proc/self/fd`, for the calls that
/// take only a path (the `l*xattr` family): the directory is the one
/// opened, whatever happens to its path meanwhile.
pub fn proc_path(dir: BorrowedFd<'_>, name: &[u8]) -> std::ffi::CString {
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name);
    std::ffi::CString::new(p).unwrap_or_default()
}

/// Opens `name` in `dir` with `flags`, never through a symlink.
pub fn open_at(dir: &OwnedFd, name: &[u8], flags: OFlags) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Opens `rel` below `root` with `flags`, in one call that never follows a
/// symlink and never leaves `root` (a path too long for one call goes a
/// component at a time). `Ok(None)`: it does not exist; `Err` with ELOOP
/// or ENOTDIR: a component is a symlink or not a directory; EXDEV: `..`
/// would leave the root.
pub fn open_path(root: &OwnedFd, rel: &[u8], flags: OFlags) -> rustix::io::Result<Option<OwnedFd>> {
    let rel: &[u8] = if rel.is_empty() { b"." } else { rel };
    if rel.len() >= 4000 {
        let c = components(rel);
        let Some((last, parents)) = c.split_last() else {
            return Ok(None);
        };
        let dir = match open_beneath(root, parents) {
            Ok(Some(d)) => d,
            Ok(None) => return Ok(None),
            Err(e) => {
                return Err(rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::IO))
            }
        };
        if !crate::valid_entry_name(last) {
            return Err(rustix::io::Errno::INVAL);
        }
        return match open_at(&dir, last, flags) {
            Ok(fd) => Ok(Some(fd)),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(e),
        };
    }
    match rustix::fs::openat2(
        root,
        rel,
        flags | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Opens a directory the caller named (symlinks in `p` itself are the
/// caller's choice and are followed).
pub fn open_dir(p: &Path) -> Result<OwnedFd> {
    io(rustix::fs::open(
        p,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ))
    .with_context(|| format!("cannot open the directory {}", p.display()))
}

/// Opens the directory `name` in `dir`, never through a symlink.
pub fn open_dir_at(dir: &OwnedFd, name: &[u8]) -> std::io::Result<OwnedFd> {
    io(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ))
}

/// Opens the directory at `comps` below `root` one component at a time,
/// never through a symlink (so any depth works, unlike one path string).
/// `Ok(None)`: something on the way is missing, a symlink or not a directory.
/// A component that is not a plain name (`..`, `.`, empty, with `/` or NUL)
/// is an error: nothing above `root` is ever reached.
pub fn open_beneath(root: &OwnedFd, comps: &[&[u8]]) -> std::io::Result<Option<OwnedFd>> {
    if let Some(c) = comps.iter().find(|c| !crate::valid_entry_name(c)) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not a plain name", crate::quote_short(c)),
        ));
    }
    let mut dir = root.try_clone()?;
    for c in comps {
        match open_dir_at(&dir, c) {
            Ok(d) => dir = d,
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOENT | libc::ELOOP | libc::ENOTDIR)
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Some(dir))
}

/// The names in a directory, sorted, without `.` and `..`.
pub fn read_names(dir: &OwnedFd) -> std::io::Result<Vec<Vec<u8>>> {
    // A descriptor of its own: reading moves the directory's offset.
    let fd = io(rustix::fs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ))?;
    let mut out = Vec::new();
    for e in io(rustix::fs::Dir::read_from(&fd))? {
        let e = io(e)?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(n.to_vec());
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// What a walk calls back. Paths are from the walk's root, `/`-joined,
/// without a leading `/`.
pub trait Visitor {
    /// An entry of the directory `dir`; return true to walk into it (only
    /// honoured for directories).
    fn entry(&mut self, dir: &OwnedFd, name: &[u8], path: &[u8], st: &Stat) -> Result<bool>;
    /// A directory the walk went into, opened, before its entries.
    fn enter(&mut self, _own: &OwnedFd, _path: &[u8]) -> Result<()> {
        Ok(())
    }
    /// A directory all of whose entries were visited; `parent` holds it
    /// as `name` (for removing it, or finishing it bottom-up).
    fn leave(&mut self, _parent: &OwnedFd, _name: &[u8], _path: &[u8]) -> Result<()> {
        Ok(())
    }
}

struct Frame {
    fd: Option<OwnedFd>,
    dev: u64,
    ino: u64,
    /// Entries still to visit, in reverse order.
    names: Vec<Vec<u8>>,
    /// Length of the path buffer before this directory's own name.
    base_len: usize,
    name: Vec<u8>,
}

fn same_dir(fd: &OwnedFd, dev: u64, ino: u64) -> std::io::Result<bool> {
    let st = io(rustix::fs::fstat(fd))?;
    Ok(st.st_dev == dev && st.st_ino == ino)
}

/// Walks everything below `root` depth first, entries of a directory in
/// name order, calling `v`. Directories deeper than `max_depth` below the
/// root stop the walk with a [`TooDeep`] error. Entries that vanish during
/// the walk are skipped; a directory replaced during the walk is an error.
pub fn walk(root: &OwnedFd, max_depth: usize, v: &mut dyn Visitor) -> Result<()> {
    walk_with(root, max_depth, false, v)
}

/// Opens the directory `name` in `dir` without crossing into another mount.
fn open_dir_same_mount(dir: &OwnedFd, name: &[u8]) -> std::io::Result<OwnedFd> {
    io(rustix::fs::openat2(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        rustix::fs::ResolveFlags::BENEATH
            | rustix::fs::ResolveFlags::NO_XDEV
            | rustix::fs::ResolveFlags::NO_SYMLINKS,
    ))
}

fn mount_point_error(e: std::io::Error, shown: String) -> anyhow::Error {
    if e.raw_os_error() == Some(libc::EXDEV) {
        anyhow::anyhow!("{shown} is a mount point; unmount it first (nothing below it was touched)")
    } else {
        anyhow::Error::from(e).context(format!("cannot open {shown}"))
    }
}

/// [`walk`]; with `same_mount`, a directory that is a mount point is an
/// error rather than walked into (what removal needs: it must never reach
/// into something mounted below the tree).
fn walk_with(
    root: &OwnedFd,
    max_depth: usize,
    same_mount: bool,
    v: &mut dyn Visitor,
) -> Result<()> {
    let st = io(rustix::fs::fstat(root))?;
    let mut names = read_names(root).context("cannot read a directory")?;
    names.reverse();
    let mut stack = vec![Frame {
        fd: Some(root.try_clone()?),
        dev: st.st_dev,
        ino: st.st_ino,
        names,
        base_len: 0,
        name: Vec::new(),
    }];
    let mut path: Vec<u8> = Vec::new();
    let shown = |p: &[u8]| crate::quote_short(p);
    while !stack.is_empty() {
        let depth = stack.len();
        let top = stack.last_mut().unwrap();
        let Some(name) = top.names.pop() else {
            // Done with this directory: back to its parent.
            let done = stack.pop().unwrap();
            let Some(parent) = stack.last_mut() else {
                break;
            };
            let child_fd = done.fd.expect("the top of the walk is always open");
            if parent.fd.is_none() {
                let up = io(rustix::fs::openat(
                    &child_fd,
                    "..",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ))?;
                if !same_dir(&up, parent.dev, parent.ino)? {
                    anyhow::bail!(
                        "{} was moved during the walk; try again once the tree is still",
                        shown(&path[..done.base_len])
                    );
                }
                parent.fd = Some(up);
            }
            drop(child_fd);
            let pfd = parent.fd.as_ref().unwrap();
            v.leave(pfd, &done.name, &path)?;
            path.truncate(done.base_len);
            continue;
        };
        let dir = top.fd.as_ref().expect("the top of the walk is always open");
        let base_len = path.len();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(&name);
        let st = match rustix::fs::statat(dir, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) => {
                path.truncate(base_len);
                continue;
            }
            Err(e) => {
                return Err(std::io::Error::from(e))
                    .with_context(|| format!("cannot read {}", shown(&path)))
            }
        };
        let descend = v.entry(dir, &name, &path, &st)?;
        if !(descend && FileType::from_raw_mode(st.st_mode) == FileType::Directory) {
            path.truncate(base_len);
            continue;
        }
        if depth > max_depth {
            return Err(TooDeep {
                path: path.clone(),
                limit: max_depth,
            }
            .into());
        }
        let child = if same_mount {
            open_dir_same_mount(dir, &name).map_err(|e| mount_point_error(e, shown(&path)))?
        } else {
            open_dir_at(dir, &name).with_context(|| format!("cannot open {}", shown(&path)))?
        };
        if !same_dir(&child, st.st_dev, st.st_ino)? {
            anyhow::bail!(
                "{} was replaced during the walk; try again once the tree is still",
                shown(&path)
            );
        }
        let mut names =
            read_names(&child).with_context(|| format!("cannot read {}", shown(&path)))?;
        names.reverse();
        v.enter(&child, &path)?;
        // Let go of the descriptor furthest up once over budget; it is
        // opened again through `..` on the way back.
        if stack.len() >= FD_BUDGET {
            let i = stack.len() - FD_BUDGET;
            stack[i].fd = None;
        }
        stack.push(Frame {
            fd: Some(child),
            dev: st.st_dev,
            ino: st.st_ino,
            names,
            base_len,
            name,
        });
    }
    Ok(())
}

/// Removes `name` in `dir` and everything below it, at any depth, with a
/// bounded number of descriptors and never through a symlink. Returns the
/// number of entries removed; missing is not an error (0).
pub fn remove_tree(dir: &OwnedFd, name: &[u8]) -> Result<u64> {
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) => return Ok(0),
        Err(e) => return Err(std::io::Error::from(e).into()),
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        io(rustix::fs::unlinkat(dir, name, AtFlags::empty()))
            .with_context(|| format!("cannot remove {}", shown_name(name)))?;
        return Ok(1);
    }
    let sub = open_dir_same_mount(dir, name).map_err(|e| mount_point_error(e, shown_name(name)))?;
    if destroyed_subvolume(dir, name, &sub) {
        return Ok(1);
    }
    let n = remove_contents(&sub)?;
    io(rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR))
        .with_context(|| format!("cannot remove the directory {}", shown_name(name)))?;
    Ok(n + 1)
}

/// The inode number of a btrfs subvolume's root.
const SUBVOLUME_ROOT_INO: u64 = 256;

/// Deletes `name` in `dir`, opened as `sub` (not a mount point), if it is a
/// btrfs subvolume that can go in one call; false leaves it to the walk
/// (not a subvolume, one nested in it, or no privilege).
fn destroyed_subvolume(dir: &OwnedFd, name: &[u8], sub: &OwnedFd) -> bool {
    crate::btrfs::is_subvolume(sub) && crate::btrfs::destroy_subvolume(dir.as_fd(), name).is_ok()
}

fn shown_name(n: &[u8]) -> String {
    crate::quote_bytes(n)
}

/// Removes everything in the directory `dir`, keeping `dir` itself; never
/// crosses into a filesystem mounted below it (that is an error, and what
/// is mounted is left alone).
pub fn remove_contents(dir: &OwnedFd) -> Result<u64> {
    struct Remover(u64);
    impl Visitor for Remover {
        fn entry(&mut self, dir: &OwnedFd, name: &[u8], path: &[u8], st: &Stat) -> Result<bool> {
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                // A btrfs subvolume (a copy bot's root) goes in one call.
                if st.st_ino == SUBVOLUME_ROOT_INO {
                    let sub = open_dir_same_mount(dir, name)
                        .map_err(|e| mount_point_error(e, crate::quote_short(path)))?;
                    if destroyed_subvolume(dir, name, &sub) {
                        self.0 += 1;
                        return Ok(false);
                    }
                }
                return Ok(true);
            }
            match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
                Ok(()) | Err(rustix::io::Errno::NOENT) => {}
                Err(e) => {
                    return Err(std::io::Error::from(e))
                        .with_context(|| format!("cannot remove {}", crate::quote_short(path)))
                }
            }
            self.0 += 1;
            Ok(false)
        }
        fn leave(&mut self, parent: &OwnedFd, name: &[u8], path: &[u8]) -> Result<()> {
            io(rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR))
                .with_context(|| format!("cannot remove {}", crate::quote_short(path)))?;
            self.0 += 1;
            Ok(())
        }
    }
    let mut r = Remover(0);
    walk_with(dir, usize::MAX, true, &mut r)?;
    Ok(r.0)
}

/// Empties the directory at `p` (creating it if missing), at any depth;
/// never follows a symlink inside it.
pub fn empty_dir(p: &Path) -> Result<()> {
    match std::fs::symlink_metadata(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(p).with_context(|| format!("cannot create {}", p.display()))?;
            return Ok(());
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", p.display())),
        Ok(m) if !m.is_dir() => anyhow::bail!("{} is not a directory", p.display()),
        Ok(_) => {}
    }
    let fd = io(rustix::fs::open(
        p,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ))
    .with_context(|| format!("cannot open {}", p.display()))?;
    remove_contents(&fd).with_context(|| format!("cannot empty {}", p.display()))?;
    Ok(())
}

/// Moves every entry of the directory `dir` into a new directory under
/// `trash_parent` (on the same filesystem) and returns that directory:
/// `dir` is empty at once, keeping its own attributes, and what it held
/// can be removed later (see [`remove_in_background`]). Renames only, so
/// the time does not grow with what the entries hold.
pub fn set_aside_contents(dir: &Path, trash_parent: &Path) -> Result<std::path::PathBuf> {
    let from = io(rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ))
    .with_context(|| format!("cannot open {}", dir.display()))?;
    let trash = trash_parent.join(crate::atomic::unique_name("trash"));
    std::fs::create_dir(&trash).with_context(|| format!("cannot create {}", trash.display()))?;
    let to = open_dir(&trash)?;
    for name in read_names(&from).with_context(|| format!("cannot read {}", dir.display()))? {
        io(rustix::fs::renameat(
            &from,
            name.as_slice(),
            &to,
            name.as_slice(),
        ))
        .with_context(|| format!("cannot move {} out of {}", shown_name(&name), dir.display()))?;
    }
    Ok(trash)
}

/// The removal [`remove_in_background`] started last.
static REMOVING: std::sync::Mutex<Option<std::thread::JoinHandle<()>>> =
    std::sync::Mutex::new(None);

/// Removes `p` (as [`remove_path`]) on a thread of its own, after the
/// removal started before it ends, so a caller goes on with its next piece
/// of work meanwhile; `hold` (a store lock, say) is dropped when it is
/// done. A failure leaves `p` for whoever cleans its parent (gc empties
/// the store's `tmp/`). [`wait_for_removals`] waits.
pub fn remove_in_background<H: Send + 'static>(p: std::path::PathBuf, hold: H) {
    let mut slot = REMOVING.lock().unwrap_or_else(|e| e.into_inner());
    let before = slot.take();
    *slot = Some(std::thread::spawn(move || {
        if let Some(b) = before {
            let _ = b.join();
        }
        let _ = remove_path(&p);
        drop(hold);
    }));
}

/// Waits for every removal [`remove_in_background`] started.
pub fn wait_for_removals() {
    let last = REMOVING.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(h) = last {
        let _ = h.join();
    }
}

/// Removes the directory (or file) at `p` and everything below it, at any
/// depth. Missing is not an error.
pub fn remove_path(p: &Path) -> Result<()> {
    let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else {
        anyhow::bail!("refusing to remove {}", p.display());
    };
    let parent = match open_dir(if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    }) {
        Ok(d) => d,
        Err(_) if !p.exists() && std::fs::symlink_metadata(p).is_err() => return Ok(()),
        Err(e) => return Err(e),
    };
    remove_tree(&parent, name.as_encoded_bytes())
        .with_context(|| format!("cannot remove {}", p.display()))?;
    Ok(())
}

/// Disk bytes of `p` and everything below it (what `du` counts), at any
/// depth, never following a symlink.
pub fn du(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => m.blocks() * 512 + du_below(p),
        Ok(m) => m.blocks() * 512,
        Err(_) => 0,
    }
}

/// Disk bytes of what the directory `p` holds (what `du` counts, its own
/// blocks left out), at any depth, never following a symlink. Unreadable
/// parts count as nothing.
pub fn du_below(p: &Path) -> u64 {
    struct Du(u64);
    impl Visitor for Du {
        fn entry(&mut self, _: &OwnedFd, _: &[u8], _: &[u8], st: &Stat) -> Result<bool> {
            self.0 += st.st_blocks as u64 * 512;
            Ok(true)
        }
    }
    let Ok(fd) = io(rustix::fs::open(
        p,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )) else {
        return 0;
    };
    let mut d = Du(0);
    let _ = walk(&fd, usize::MAX, &mut d);
    d.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the workspace's path property test: a `..` component
    /// climbed out of the root.
    #[test]
    fn open_beneath_never_climbs_out() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("root/a")).unwrap();
        let root = open_dir(&t.path().join("root")).unwrap();
        for comps in [
            &[&b".."[..]][..],
            &[b"a", b"..", b".."],
            &[b"."],
            &[b""],
            &[b"a/b"],
        ] {
            let e = open_beneath(&root, comps).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{comps:?}");
        }
        assert!(open_beneath(&root, &[b"a"]).unwrap().is_some());
    }

    #[test]
    fn a_directory_set_aside_is_empty_at_once_and_its_entries_go_later() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let (dir, trash_parent) = (t.path().join("upper"), t.path().join("tmp"));
        std::fs::create_dir_all(dir.join("usr/lib")).unwrap();
        std::fs::create_dir(&trash_parent).unwrap();
        std::fs::write(dir.join("usr/lib/f"), b"x").unwrap();
        std::fs::write(dir.join(".hidden"), b"y").unwrap();
        std::os::unix::fs::symlink("/nowhere", dir.join("link")).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o710)).unwrap();
        let trash = set_aside_contents(&dir, &trash_parent).unwrap();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o710, "the directory itself keeps its attributes");
        let mut moved = read_names(&open_dir(&trash).unwrap()).unwrap();
        moved.sort();
        assert_eq!(
            moved,
            vec![b".hidden".to_vec(), b"link".to_vec(), b"usr".to_vec()]
        );
        assert_eq!(std::fs::read(trash.join("usr/lib/f")).unwrap(), b"x");
        remove_in_background(trash.clone(), ());
        wait_for_removals();
        assert!(!trash.exists());
        assert_eq!(std::fs::read_dir(&trash_parent).unwrap().count(), 0);
    }

    fn deep(root: &Path, depth: usize) {
        let top = open_dir(root).unwrap();
        let mut d = top;
        for i in 0..depth {
            rustix::fs::mkdirat(&d, "a", Mode::from_raw_mode(0o755)).unwrap();
            if i % 100 == 0 {
                rustix::fs::openat(
                    &d,
                    "f",
                    OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o644),
                )
                .unwrap();
            }
            d = open_dir_at(&d, b"a").unwrap();
        }
    }

    #[test]
    fn a_deep_tree_is_walked_and_removed_with_few_descriptors() {
        let tmp = tempfile::tempdir().unwrap();
        deep(tmp.path(), 5000);
        struct Count(usize, usize);
        impl Visitor for Count {
            fn entry(&mut self, _: &OwnedFd, _: &[u8], path: &[u8], _: &Stat) -> Result<bool> {
                self.0 += 1;
                self.1 = self.1.max(path.split(|&b| b == b'/').count());
                Ok(true)
            }
        }
        let root = open_dir(tmp.path()).unwrap();
        let mut c = Count(0, 0);
        walk(&root, usize::MAX, &mut c).unwrap();
        assert_eq!((c.0, c.1), (5000 + 50, 5000));
        let err = walk(&root, MAX_DEPTH, &mut Count(0, 0)).unwrap_err();
        assert!(err.downcast_ref::<TooDeep>().is_some(), "{err:#}");
        assert_eq!(remove_contents(&root).unwrap(), 5050);
        assert!(read_names(&root).unwrap().is_empty());
    }

    #[test]
    fn removal_never_reaches_into_a_mount() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIPPED: mounting a tmpfs needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let m = tmp.path().join("a/mnt");
        std::fs::create_dir_all(&m).unwrap();
        rustix::mount::mount(
            "tmpfs",
            &m,
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            None,
        )
        .unwrap();
        std::fs::write(m.join("precious"), "keep").unwrap();
        let err = remove_path(&tmp.path().join("a")).unwrap_err();
        let kept = m.join("precious").exists();
        let _ = rustix::mount::unmount(&m, rustix::mount::UnmountFlags::DETACH);
        assert!(format!("{err:#}").contains("mount point"), "{err:#}");
        assert!(kept, "removal reached into a mounted filesystem");
    }
}
