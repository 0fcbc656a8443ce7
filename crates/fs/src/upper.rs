//! Folding an overlay upper dir into a tree.
//!
//! The upper dir is hostile input: it is walked with [`store::walk`]
//! (`O_NOFOLLOW`, no recursion, bounded descriptors and depth), its
//! symlinks are never followed, and it only says *which* paths changed.
//! What they changed to is read through a read-only mount of the same
//! overlay (the `view`), so overlay's own marks (whiteouts, opaque and
//! redirected directories, metacopy copy-ups, the hard-link index) mean
//! exactly what the kernel made of them. A hard-linked file copied up under
//! one name changes all its names, though only one is in the upper; so every
//! member of a group that had a member change is read again from the view.

use crate::memtree::{MemNode, MemTree, NodeId, NodeKind};
use crate::scan::{with_scanner, ScanOptions, Scanner};
use crate::statcache::StatCache;
use anyhow::{Context, Result};
use rustix::fd::OwnedFd;
use rustix::fs::{FileType, Stat};
use std::collections::HashSet;
use std::path::Path;
use store::walk::components as comps;
use store::walk::{self, Visitor, MAX_DEPTH};
use store::{Progress, Staging};

/// The xattr `key` of `name` in `dir`, without following a symlink.
pub fn xattr_at(dir: &OwnedFd, name: &[u8], key: &str) -> Option<Vec<u8>> {
    use std::os::fd::AsFd;
    let p = walk::proc_path(dir.as_fd(), name);
    let mut buf = vec![0u8; 4096];
    let n = rustix::fs::lgetxattr(p.as_c_str(), key, &mut buf[..]).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// What a fold found: entries of the upper, by what they are.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct FoldStats {
    pub changed: u64,
    pub deleted: u64,
}

/// Whether an upper entry is an overlay whiteout (a 0:0 character device,
/// or an empty file marked with `trusted.overlay.whiteout`).
fn is_whiteout(dir: &OwnedFd, name: &[u8], st: &Stat) -> bool {
    match FileType::from_raw_mode(st.st_mode) {
        FileType::CharacterDevice => st.st_rdev == 0,
        FileType::RegularFile => {
            st.st_size == 0 && xattr_at(dir, name, "trusted.overlay.whiteout").is_some()
        }
        _ => false,
    }
}

/// The view's directory at `path`, opened once per directory walked.
struct ViewDirs {
    root: OwnedFd,
    cached: Option<(Vec<u8>, OwnedFd)>,
}

impl ViewDirs {
    fn at(&mut self, path: &[u8]) -> Result<&OwnedFd> {
        if self.cached.as_ref().is_none_or(|(p, _)| p != path) {
            let fd = walk::open_beneath(&self.root, &comps(path))?.with_context(|| {
                format!(
                    "{} is not a directory in the bot's view",
                    crate::quote_short(path)
                )
            })?;
            self.cached = Some((path.to_vec(), fd));
        }
        Ok(&self.cached.as_ref().unwrap().1)
    }
}

struct Fold<'a, 'b, 's> {
    sc: &'a mut Scanner<'s>,
    tree: &'b mut MemTree,
    view: ViewDirs,
    /// Tree nodes of the directories being walked.
    stack: Vec<NodeId>,
    entered: Option<NodeId>,
    stats: FoldStats,
    /// Hard-link groups one of whose members changed.
    touched: HashSet<u64>,
}

fn parent_of(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => &path[..i],
        None => b"",
    }
}

impl Fold<'_, '_, '_> {
    fn forget(&mut self, parent: NodeId, name: &[u8]) {
        if let Some(old) = self.tree.child(parent, name) {
            if let NodeKind::File { group: Some(g), .. } = self.tree.kind(old) {
                self.touched.insert(g);
            }
        }
    }
}

impl Visitor for Fold<'_, '_, '_> {
    fn entry(&mut self, u: &OwnedFd, name: &[u8], path: &[u8], st: &Stat) -> Result<bool> {
        let parent = *self.stack.last().unwrap();
        let shown = || crate::quote_short(path);
        if is_whiteout(u, name, st) {
            self.forget(parent, name);
            if let Some(old) = self.tree.child(parent, name) {
                self.tree.remove_id(old);
            }
            self.stats.deleted += 1;
            return Ok(false);
        }
        let vdir_path = parent_of(path).to_vec();
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            let opaque = xattr_at(u, name, "trusted.overlay.opaque").is_some_and(|x| x == b"y");
            let redirected = xattr_at(u, name, "trusted.overlay.redirect").is_some();
            let was_dir = self
                .tree
                .child(parent, name)
                .is_some_and(|c| self.tree.is_dir(c));
            if opaque || redirected || !was_dir {
                // Its whole content is what the view shows.
                self.forget(parent, name);
                let v = self.view.at(&vdir_path)?;
                self.sc.scan_entry(self.tree, parent, v, name, path)?;
                self.stats.changed += 1;
                return Ok(false);
            }
            let v = self.view.at(&vdir_path)?;
            let meta = self
                .sc
                .meta(v, name)
                .with_context(|| format!("cannot read {}", shown()))?;
            let id = self.tree.put(parent, name, &MemNode::dir(meta))?;
            self.entered = Some(id);
            return Ok(true);
        }
        // A full copy-up or a new file with one name is cloned from the
        // upper (no data copied where the filesystem can reflink);
        // anything else is read through the view.
        let own_data = FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
            && st.st_nlink == 1
            && st.st_size > 0
            && xattr_at(u, name, "trusted.overlay.metacopy").is_none();
        self.forget(parent, name);
        let v = self.view.at(&vdir_path)?;
        if own_data {
            let meta = self
                .sc
                .meta(v, name)
                .with_context(|| format!("cannot read {}", shown()))?;
            self.sc.upper_file(self.tree, parent, u, name, path, meta)?;
        } else {
            self.sc.scan_entry(self.tree, parent, v, name, path)?;
        }
        self.stats.changed += 1;
        Ok(false)
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
    let opts = ScanOptions {
        stat_cache: false,
        one_file_system: false,
        clone: false,
    };
    let u = walk::open_dir(upper)?;
    let v = walk::open_dir(view)?;
    let (stats, _) = with_scanner(
        tree,
        staging,
        progress,
        opts,
        StatCache::default(),
        |sc, tree| {
            let root = tree.root();
            let mut f = Fold {
                sc,
                tree,
                view: ViewDirs {
                    root: v,
                    cached: None,
                },
                stack: vec![root],
                entered: None,
                stats: FoldStats::default(),
                touched: HashSet::new(),
            };
            walk::walk(&u, MAX_DEPTH, &mut f)?;
            // Other names of a changed hard-link group changed with it.
            for g in std::mem::take(&mut f.touched) {
                for &m in groups.get(&g).into_iter().flatten() {
                    if !f.tree.is_live(m) {
                        continue;
                    }
                    let path = f.tree.path(m);
                    let parent = f.tree.parent(m).unwrap();
                    let name = f.tree.name(m).to_vec();
                    let vd = f.view.at(parent_of(&path))?.try_clone()?;
                    f.sc.scan_entry(f.tree, parent, &vd, &name, &path)?;
                }
            }
            Ok(f.stats)
        },
    )?;
    Ok(stats)
}
