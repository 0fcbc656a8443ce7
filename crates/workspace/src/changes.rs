//! The agent's changes, three ways: what the agent has (the merged view),
//! what the project holds now (the host), and what the agent started from
//! (the base tree in the store).
//!
//! The upper dir only says *which* paths changed (it is hostile input:
//! walked with `O_NOFOLLOW`, never followed); their new state is read
//! through the view. A change is *pending* when the host still holds the
//! base, *in sync* when the host already holds what the agent has, and a
//! *conflict* when the host changed since the base to something else.

use anyhow::Result;
use fs::walk::{components, join, open_dir, open_path, split_parent};
use rustix::fd::OwnedFd;
use rustix::fs::{AtFlags, FileType, Mode as FsMode, OFlags};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use store::{EntryKind, Hash, Store, Tree};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// Fifos, sockets, devices: never synced.
    Other,
}

/// One side of a path: its type, permission bits and content.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Side {
    pub kind: Kind,
    pub mode: u32,
    pub size: u64,
    /// Files: the content hash; directories (when a whole subtree matters):
    /// a digest of everything below.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<Hash>,
    #[serde(skip)]
    pub target: Option<Vec<u8>>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum What {
    Added,
    Modified,
    Deleted,
    /// Permission bits only.
    Chmod,
    /// A file became a directory, a symlink, … or back.
    TypeChanged,
    /// Moved from `from` with its content unchanged.
    Renamed {
        from: String,
    },
}

impl What {
    pub fn letter(&self) -> char {
        match self {
            What::Added => 'A',
            What::Modified => 'M',
            What::Deleted => 'D',
            What::Chmod => 'm',
            What::TypeChanged => 'T',
            What::Renamed { .. } => 'R',
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// The host holds the base: the change can be applied.
    Pending,
    /// The host already holds what the agent has.
    InSync,
    /// The host changed since the base, to something else.
    Conflict,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Change {
    #[serde(serialize_with = "lossy")]
    pub path: Vec<u8>,
    /// The path's exact bytes when they are not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_bytes: Option<Vec<u8>>,
    pub what: What,
    pub state: State,
    pub agent: Option<Side>,
    pub host: Option<Side>,
    pub base: Option<Side>,
    /// Renames: the source path's bytes.
    #[serde(skip)]
    pub from: Option<Vec<u8>>,
    /// At or below a directory the agent renamed (or its old place).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub in_moved_dir: bool,
}

fn lossy<S: serde::Serializer>(p: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(p))
}

impl Change {
    /// The path as a person should see it (quoted when it needs to be).
    pub fn shown(&self) -> String {
        fs::quote_bytes(&self.path)
    }
}

/// Whether `path` is `filter` or below it.
pub(crate) fn under(path: &[u8], filter: &[u8]) -> bool {
    let (p, f) = (components(path), components(filter));
    p.len() >= f.len() && p[..f.len()] == f[..]
}

fn io<T>(r: rustix::io::Result<T>) -> std::io::Result<T> {
    r.map_err(std::io::Error::from)
}

/// What is at `path` below `root`, read without following symlinks. A
/// parent that is a symlink or not a directory makes the path "other"
/// (something botyard will not write through).
pub(crate) fn side_at(root: &OwnedFd, path: &[u8], subtree: bool) -> Result<Option<Side>> {
    let (parent, name) = split_parent(path);
    let dir = match open_path(root, parent, OFlags::RDONLY | OFlags::DIRECTORY) {
        Ok(Some(d)) => d,
        Ok(None) => return Ok(None),
        Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR | rustix::io::Errno::XDEV) => {
            return Ok(Some(Side {
                kind: Kind::Other,
                mode: 0,
                size: 0,
                hash: None,
                target: None,
            }))
        }
        Err(e) => return Err(std::io::Error::from(e).into()),
    };
    side_in(&dir, name, subtree)
}

fn side_in(dir: &OwnedFd, name: &[u8], subtree: bool) -> Result<Option<Side>> {
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(std::io::Error::from(e).into()),
    };
    let mode = st.st_mode & 0o7777;
    let ft = FileType::from_raw_mode(st.st_mode);
    let side = match ft {
        FileType::RegularFile => {
            let fd = io(rustix::fs::openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                FsMode::empty(),
            ))?;
            let (h, size) = store::hash_file(&mut std::fs::File::from(fd))?;
            Side {
                kind: Kind::File,
                mode,
                size,
                hash: Some(h),
                target: None,
            }
        }
        FileType::Symlink => {
            let t = io(rustix::fs::readlinkat(dir, name, Vec::new()))?;
            Side {
                kind: Kind::Symlink,
                mode: 0o777,
                size: t.as_bytes().len() as u64,
                hash: None,
                target: Some(t.into_bytes()),
            }
        }
        FileType::Directory => {
            let hash = if subtree {
                let sub = fs::walk::open_dir_at(dir, name)?;
                let mut lines = Vec::new();
                list_fs(&sub, b"", &mut lines)?;
                Some(digest(lines))
            } else {
                None
            };
            Side {
                kind: Kind::Dir,
                mode,
                size: 0,
                hash,
                target: None,
            }
        }
        _ => Side {
            kind: Kind::Other,
            mode,
            size: 0,
            hash: None,
            target: None,
        },
    };
    Ok(Some(side))
}

/// One line per entry below a directory, for subtree digests: the same
/// format from the filesystem and from the store.
type Line = (Vec<u8>, Kind, u32, Vec<u8>);

fn list_fs(dir: &OwnedFd, rel: &[u8], out: &mut Vec<Line>) -> Result<()> {
    struct L<'a> {
        rel: &'a [u8],
        out: &'a mut Vec<Line>,
    }
    impl fs::walk::Visitor for L<'_> {
        fn entry(
            &mut self,
            dir: &OwnedFd,
            name: &[u8],
            path: &[u8],
            _: &rustix::fs::Stat,
        ) -> Result<bool> {
            let Some(s) = side_in(dir, name, false)? else {
                return Ok(false);
            };
            let payload = match (&s.hash, &s.target) {
                (Some(h), _) => h.0.to_vec(),
                (_, Some(t)) => t.clone(),
                _ => Vec::new(),
            };
            self.out
                .push((join(self.rel, path), s.kind, s.mode, payload));
            Ok(s.kind == Kind::Dir)
        }
    }
    fs::walk::walk(dir, fs::MAX_DEPTH, &mut L { rel, out })
}

fn list_tree(store: &Store, tree: &Tree, rel: &[u8], out: &mut Vec<Line>) -> Result<()> {
    let mut stack = vec![(tree.clone(), rel.to_vec())];
    while let Some((t, rel)) = stack.pop() {
        for e in t.entries() {
            let path = join(&rel, &e.name);
            let (kind, mode, payload) = match &e.kind {
                EntryKind::File(f) => (Kind::File, e.mode, f.object.0.to_vec()),
                EntryKind::Dir(_) => (Kind::Dir, e.mode, Vec::new()),
                EntryKind::Symlink(t) => (Kind::Symlink, 0o777, t.clone()),
                _ => (Kind::Other, e.mode, Vec::new()),
            };
            out.push((path.clone(), kind, mode, payload));
            if let EntryKind::Dir(h) = &e.kind {
                stack.push((store.read_tree(h)?, path));
            }
        }
    }
    Ok(())
}

fn digest(mut lines: Vec<Line>) -> Hash {
    lines.sort();
    let mut h = blake3::Hasher::new();
    for (p, k, m, payload) in lines {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(&p);
        h.update(&[k as u8]);
        h.update(&m.to_le_bytes());
        h.update(&(payload.len() as u64).to_le_bytes());
        h.update(&payload);
    }
    h.finalize().into()
}

/// Reads entries of the base tree by path, loading only the directories
/// on the way.
pub(crate) struct Base<'a> {
    store: &'a Store,
    root: Option<Hash>,
    dirs: HashMap<Vec<u8>, Option<Tree>>,
}

impl<'a> Base<'a> {
    pub fn new(store: &'a Store, root: Option<Hash>) -> Base<'a> {
        Base {
            store,
            root,
            dirs: HashMap::new(),
        }
    }

    fn dir(&mut self, path: &[u8]) -> Result<Option<Tree>> {
        if let Some(t) = self.dirs.get(path) {
            return Ok(t.clone());
        }
        let t = if path.is_empty() {
            match self.root {
                Some(h) => Some(self.store.read_tree(&h)?),
                None => None,
            }
        } else {
            let (parent, name) = split_parent(path);
            match self.dir(parent)? {
                Some(t) => match t.get(name).map(|e| &e.kind) {
                    Some(EntryKind::Dir(h)) => Some(self.store.read_tree(h)?),
                    _ => None,
                },
                None => None,
            }
        };
        self.dirs.insert(path.to_vec(), t.clone());
        Ok(t)
    }

    pub fn entry(&mut self, path: &[u8]) -> Result<Option<store::Entry>> {
        let (parent, name) = split_parent(path);
        Ok(self.dir(parent)?.and_then(|t| t.get(name).cloned()))
    }

    pub fn side(&mut self, path: &[u8], subtree: bool) -> Result<Option<Side>> {
        let Some(e) = self.entry(path)? else {
            return Ok(None);
        };
        Ok(Some(match &e.kind {
            EntryKind::File(f) => Side {
                kind: Kind::File,
                mode: e.mode,
                size: f.size,
                hash: Some(f.object),
                target: None,
            },
            EntryKind::Dir(h) => {
                let hash = if subtree {
                    let mut lines = Vec::new();
                    list_tree(self.store, &self.store.read_tree(h)?, b"", &mut lines)?;
                    Some(digest(lines))
                } else {
                    None
                };
                Side {
                    kind: Kind::Dir,
                    mode: e.mode,
                    size: 0,
                    hash,
                    target: None,
                }
            }
            EntryKind::Symlink(t) => Side {
                kind: Kind::Symlink,
                mode: 0o777,
                size: t.len() as u64,
                hash: None,
                target: Some(t.clone()),
            },
            _ => Side {
                kind: Kind::Other,
                mode: e.mode,
                size: 0,
                hash: None,
                target: None,
            },
        }))
    }
}

/// Which paths the upper dir says changed, and where renamed directories
/// came from (overlay's redirect).
#[derive(Default)]
struct Candidates {
    paths: BTreeSet<Vec<u8>>,
    /// Renamed directory → its origin.
    redirects: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Opaque or renamed directories: the view below them is the truth.
    whole: Vec<Vec<u8>>,
}

fn walk_upper(upper: &OwnedFd, view: &OwnedFd, base: &mut Base, c: &mut Candidates) -> Result<()> {
    struct W<'a, 'b> {
        view: &'a OwnedFd,
        base: &'a mut Base<'b>,
        c: &'a mut Candidates,
    }
    impl fs::walk::Visitor for W<'_, '_> {
        fn entry(
            &mut self,
            upper: &OwnedFd,
            name: &[u8],
            path: &[u8],
            st: &rustix::fs::Stat,
        ) -> Result<bool> {
            let c = &mut *self.c;
            c.paths.insert(path.to_vec());
            if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                return Ok(false);
            }
            let opaque =
                fs::xattr_at(upper, name, "trusted.overlay.opaque").is_some_and(|v| v == b"y");
            let redirect = fs::xattr_at(upper, name, "trusted.overlay.redirect");
            let in_base = matches!(
                self.base.entry(path)?.map(|e| e.kind),
                Some(EntryKind::Dir(_))
            );
            if !(opaque || redirect.is_some() || !in_base) {
                return Ok(true);
            }
            let path = path.to_vec();
            if let Some(r) = &redirect {
                // Absolute from the root, or a name in the same parent.
                let origin = match r.strip_prefix(b"/") {
                    Some(abs) => abs.to_vec(),
                    None => join(split_parent(&path).0, r),
                };
                c.redirects.insert(path.clone(), origin);
            }
            c.whole.push(path.clone());
            if let Ok(Some(sub)) = open_path(self.view, &path, OFlags::RDONLY | OFlags::DIRECTORY) {
                let mut lines = Vec::new();
                list_names(&sub, &path, &mut lines)?;
                c.paths.extend(lines);
            }
            // What the base held here is gone from the view: an opaque
            // directory hides it, a renamed one shows another's content.
            if opaque || redirect.is_some() {
                if let Some(e) = self.base.entry(&path)? {
                    if let EntryKind::Dir(h) = e.kind {
                        let store = self.base.store;
                        let mut lines = Vec::new();
                        list_tree(store, &store.read_tree(&h)?, &path, &mut lines)?;
                        c.paths.extend(lines.into_iter().map(|l| l.0));
                    }
                }
            }
            Ok(false)
        }
    }
    fs::walk::walk(upper, fs::MAX_DEPTH, &mut W { view, base, c })
}

fn list_names(dir: &OwnedFd, rel: &[u8], out: &mut Vec<Vec<u8>>) -> Result<()> {
    struct N<'a> {
        rel: &'a [u8],
        out: &'a mut Vec<Vec<u8>>,
    }
    impl fs::walk::Visitor for N<'_> {
        fn entry(
            &mut self,
            _: &OwnedFd,
            _: &[u8],
            path: &[u8],
            _: &rustix::fs::Stat,
        ) -> Result<bool> {
            self.out.push(join(self.rel, path));
            Ok(true)
        }
    }
    fs::walk::walk(dir, fs::MAX_DEPTH, &mut N { rel, out })
}

fn same(a: &Option<Side>, b: &Option<Side>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            a.kind == b.kind
                && a.mode == b.mode
                && a.target == b.target
                && (a.kind == Kind::Dir && (a.hash.is_none() || b.hash.is_none())
                    || a.hash == b.hash)
        }
        _ => false,
    }
}

fn what(base: &Option<Side>, agent: &Option<Side>) -> Option<What> {
    Some(match (base, agent) {
        (None, None) => return None,
        (None, Some(_)) => What::Added,
        (Some(_), None) => What::Deleted,
        (Some(b), Some(a)) if b.kind != a.kind => What::TypeChanged,
        (Some(b), Some(a)) if b.hash != a.hash && a.kind == Kind::File => What::Modified,
        (Some(b), Some(a)) if b.target != a.target => What::Modified,
        (Some(b), Some(a)) if b.mode != a.mode => What::Chmod,
        _ => return None,
    })
}

/// Everything the agent changed (at or below `filters`, if any), each with
/// its state against the host.
pub fn changes(
    store: &Store,
    base_tree: Option<Hash>,
    upper: &Path,
    view: &Path,
    project: &Path,
    filters: &[Vec<u8>],
) -> Result<Vec<Change>> {
    let mut base = Base::new(store, base_tree);
    let view_fd = open_dir(view)?;
    let host_fd = open_dir(project)?;
    let mut c = Candidates::default();
    if upper.exists() {
        walk_upper(&open_dir(upper)?, &view_fd, &mut base, &mut c)?;
    }
    let mut out = Vec::new();
    for path in &c.paths {
        if !filters.is_empty() && !filters.iter().any(|f| under(path, f)) {
            continue;
        }
        // Inside a directory that is deleted or replaced as a whole, the
        // directory's own change says it all.
        let mut agent = side_at(&view_fd, path, false)?;
        let mut b = base.side(path, false)?;
        let Some(w) = what(&b, &agent) else { continue };
        let mut host = side_at(&host_fd, path, false)?;
        // A directory going away (or changing type) takes its subtree:
        // compare whole subtrees then.
        let whole = matches!(w, What::Deleted | What::TypeChanged)
            && (b.as_ref().is_some_and(|s| s.kind == Kind::Dir)
                || host.as_ref().is_some_and(|s| s.kind == Kind::Dir));
        if whole {
            b = base.side(path, true)?;
            host = side_at(&host_fd, path, true)?;
            agent = side_at(&view_fd, path, true)?;
        }
        let state = if same(&agent, &host) {
            State::InSync
        } else if same(&host, &b) {
            State::Pending
        } else {
            State::Conflict
        };
        out.push(Change {
            path_bytes: std::str::from_utf8(path).is_err().then(|| path.clone()),
            path: path.clone(),
            what: w,
            state,
            agent,
            host,
            base: b,
            from: None,
            in_moved_dir: false,
        });
    }
    drop_below_deleted(&mut out);
    pair_renames(&mut out, &c, &mut base, &view_fd)?;
    for x in &mut out {
        x.in_moved_dir = c.redirects.iter().any(|(to, from)| {
            std::iter::once(&x.path)
                .chain(x.from.iter())
                .any(|p| under(p, to) || under(p, from))
        });
    }
    Ok(out)
}

/// Paths below a directory that is deleted or replaced by a non-directory
/// go with it.
fn drop_below_deleted(out: &mut Vec<Change>) {
    let gone: Vec<Vec<u8>> = out
        .iter()
        .filter(|c| {
            c.base.as_ref().is_some_and(|b| b.kind == Kind::Dir)
                && c.agent.as_ref().is_none_or(|a| a.kind != Kind::Dir)
        })
        .map(|c| c.path.clone())
        .collect();
    out.retain(|c| !gone.iter().any(|g| c.path != *g && under(&c.path, g)));
}

/// A deleted file and an added file with the same content are a rename;
/// a renamed directory (overlay's redirect) whose subtree is unchanged is
/// one rename too.
fn pair_renames(
    out: &mut Vec<Change>,
    c: &Candidates,
    base: &mut Base,
    view: &OwnedFd,
) -> Result<()> {
    // Directories.
    for (to, from) in &c.redirects {
        let (Some(ti), Some(fi)) = (
            out.iter()
                .position(|x| &x.path == to && x.what == What::Added),
            out.iter()
                .position(|x| &x.path == from && x.what == What::Deleted),
        ) else {
            continue;
        };
        let agent = side_at(view, to, true)?;
        let b = base.side(from, true)?;
        if agent.as_ref().map(|s| &s.hash) != b.as_ref().map(|s| &s.hash) || agent.is_none() {
            continue;
        }
        let from_change = out[fi].clone();
        let state = rename_state(&from_change, &out[ti]);
        let t = &mut out[ti];
        t.what = What::Renamed {
            from: String::from_utf8_lossy(from).into_owned(),
        };
        t.from = Some(from.clone());
        t.agent = agent;
        t.base = b;
        t.state = state;
        let to = to.clone();
        out.retain(|x| x.path != *from && !(x.path != to && under(&x.path, &to)));
    }
    // Files.
    let mut added: HashMap<Hash, Vec<usize>> = HashMap::new();
    for (i, x) in out.iter().enumerate() {
        if x.what == What::Added {
            if let Some(Side {
                kind: Kind::File,
                hash: Some(h),
                size,
                ..
            }) = &x.agent
            {
                if *size > 0 {
                    added.entry(*h).or_default().push(i);
                }
            }
        }
    }
    let mut remove = Vec::new();
    for fi in 0..out.len() {
        if out[fi].what != What::Deleted {
            continue;
        }
        let Some(Side {
            kind: Kind::File,
            hash: Some(h),
            ..
        }) = out[fi].base.clone()
        else {
            continue;
        };
        let Some(ti) = added.get_mut(&h).and_then(|v| v.pop()) else {
            continue;
        };
        let state = rename_state(&out[fi], &out[ti]);
        let from = out[fi].path.clone();
        let from_base = out[fi].base.clone();
        let t = &mut out[ti];
        t.what = What::Renamed {
            from: String::from_utf8_lossy(&from).into_owned(),
        };
        t.base = from_base;
        t.from = Some(from);
        t.state = state;
        remove.push(fi);
    }
    remove.sort();
    for i in remove.into_iter().rev() {
        out.remove(i);
    }
    Ok(())
}

/// A rename is pending when the host still has the source as it was and
/// nothing at the destination, in sync when it already moved.
fn rename_state(from: &Change, to: &Change) -> State {
    match (from.state, to.state) {
        (State::InSync, State::InSync) => State::InSync,
        (State::Conflict, _) | (_, State::Conflict) => State::Conflict,
        _ => State::Pending,
    }
}

/// Entries of the upper whose merged state the project already holds
/// (whatever the base says): files, symlinks and whiteouts compared one by
/// one, directories marked opaque or redirected compared whole. Plain
/// directories are left to the caller's pruning.
pub(crate) fn in_sync_paths(upper: &Path, view: &Path, project: &Path) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    if !upper.exists() {
        return Ok(out);
    }
    let (u, v, h) = (open_dir(upper)?, open_dir(view)?, open_dir(project)?);
    struct S<'a> {
        view: &'a OwnedFd,
        host: &'a OwnedFd,
        out: &'a mut Vec<Vec<u8>>,
    }
    impl fs::walk::Visitor for S<'_> {
        fn entry(
            &mut self,
            upper: &OwnedFd,
            name: &[u8],
            path: &[u8],
            st: &rustix::fs::Stat,
        ) -> Result<bool> {
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                let marked = fs::xattr_at(upper, name, "trusted.overlay.opaque").is_some()
                    || fs::xattr_at(upper, name, "trusted.overlay.redirect").is_some();
                if !marked {
                    return Ok(true);
                }
                if same(
                    &side_at(self.view, path, true)?,
                    &side_at(self.host, path, true)?,
                ) {
                    self.out.push(path.to_vec());
                }
            } else if same(
                &side_at(self.view, path, false)?,
                &side_at(self.host, path, false)?,
            ) {
                self.out.push(path.to_vec());
            }
            Ok(false)
        }
    }
    fs::walk::walk(
        &u,
        fs::MAX_DEPTH,
        &mut S {
            view: &v,
            host: &h,
            out: &mut out,
        },
    )?;
    Ok(out)
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;
    use std::path::PathBuf;

    /// Where an open descriptor really is.
    fn where_is(fd: &OwnedFd) -> PathBuf {
        use std::os::fd::AsRawFd;
        std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap()
    }

    fn path() -> impl Strategy<Value = Vec<u8>> {
        let comp = prop_oneof![
            Just(&b"a"[..]),
            Just(&b"b"[..]),
            Just(&b".."[..]),
            Just(&b"."[..]),
            Just(&b"esc"[..]),
            Just(&b"abs"[..]),
            Just(&b""[..]),
        ];
        (
            any::<bool>(),
            any::<bool>(),
            proptest::collection::vec(comp, 0..12),
        )
            .prop_map(|(lead, long, comps)| {
                let mut p = Vec::new();
                if lead {
                    p.push(b'/');
                }
                // Past the kernel's one-string limit, so the component at a
                // time path is taken too.
                if long {
                    p.extend(b"./".repeat(2100));
                }
                p.extend(comps.join(&b'/'));
                p
            })
    }

    proptest! {
        /// No path, however written, opens anything outside the project.
        #[test]
        fn no_path_opens_anything_outside_the_project(p in path()) {
            thread_local! {
                static SETUP: (tempfile::TempDir, PathBuf) = {
                    let t = tempfile::tempdir().unwrap();
                    let proj = t.path().join("proj");
                    std::fs::create_dir_all(proj.join("a/b")).unwrap();
                    std::fs::create_dir_all(t.path().join("outside/a")).unwrap();
                    std::os::unix::fs::symlink("../outside", proj.join("esc")).unwrap();
                    std::os::unix::fs::symlink("/etc", proj.join("a/abs")).unwrap();
                    let proj = std::fs::canonicalize(proj).unwrap();
                    (t, proj)
                };
            }
            SETUP.with(|(_, proj)| {
                let root = open_dir(proj).unwrap();
                for flags in [OFlags::RDONLY | OFlags::DIRECTORY, OFlags::PATH] {
                    if let Ok(Some(fd)) = open_path(&root, &p, flags) {
                        let at = where_is(&fd);
                        prop_assert!(at.starts_with(proj), "{} opened {}", String::from_utf8_lossy(&p), at.display());
                    }
                }
                Ok(())
            })?;
        }
    }
}
