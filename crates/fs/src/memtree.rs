use anyhow::{bail, Result};
use std::collections::{BTreeMap, HashMap};
use store::{Entry, EntryKind, FileData, Hash, Staging, Tree};

/// Metadata every entry carries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

#[derive(Clone, Debug)]
pub enum MemKind {
    Dir(BTreeMap<Vec<u8>, MemNode>),
    /// `group` ties the members of a hard-link group together.
    File {
        object: Hash,
        size: u64,
        sparse: bool,
        group: Option<u64>,
    },
    Symlink(Vec<u8>),
    CharDev {
        major: u32,
        minor: u32,
    },
    BlockDev {
        major: u32,
        minor: u32,
    },
    Fifo,
    Socket,
}

#[derive(Clone, Debug)]
pub struct MemNode {
    pub meta: Meta,
    pub kind: MemKind,
}

impl MemNode {
    pub fn dir(meta: Meta) -> MemNode {
        MemNode {
            meta,
            kind: MemKind::Dir(BTreeMap::new()),
        }
    }
    pub fn is_dir(&self) -> bool {
        matches!(self.kind, MemKind::Dir(_))
    }
}

/// Counts of what a tree holds; hard-linked files count once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TreeStats {
    pub files: u64,
    pub dirs: u64,
    pub others: u64,
    /// Character and block devices (also counted in `others`).
    pub devices: u64,
    pub bytes: u64,
}

/// Splits a relative path into validated components, dropping `.` and empty
/// components (`./a//b` is `a/b`). Absolute paths and `..` are refused: the
/// caller names the source in its error.
pub fn split_path(p: &[u8]) -> Result<Vec<&[u8]>> {
    if p.first() == Some(&b'/') {
        bail!("absolute path");
    }
    let mut out = Vec::new();
    for c in p.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => bail!("'..' component"),
            c if c.contains(&0) => bail!("NUL byte"),
            c if c.len() > store::NAME_MAX => bail!("a name longer than 255 bytes"),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// A whole directory tree in memory: metadata and hashes only.
pub struct MemTree {
    pub root: MemNode,
    next_group: u64,
}

impl Default for MemTree {
    fn default() -> Self {
        MemTree::new(Meta {
            mode: 0o755,
            ..Default::default()
        })
    }
}

impl MemTree {
    pub fn new(root_meta: Meta) -> MemTree {
        MemTree {
            root: MemNode::dir(root_meta),
            next_group: 1,
        }
    }

    pub fn new_group(&mut self) -> u64 {
        self.next_group += 1;
        self.next_group
    }

    pub fn get(&self, path: &[&[u8]]) -> Option<&MemNode> {
        let mut n = &self.root;
        for c in path {
            match &n.kind {
                MemKind::Dir(ch) => n = ch.get(*c)?,
                _ => return None,
            }
        }
        Some(n)
    }

    /// The directory children of `path`, creating missing parents as plain
    /// 0755 directories (archives may omit them). A non-directory on the way
    /// is an error: botyard never resolves through symlinks.
    fn dir_mut(&mut self, path: &[&[u8]]) -> Result<&mut BTreeMap<Vec<u8>, MemNode>> {
        let mut n = &mut self.root;
        for c in path {
            let MemKind::Dir(ch) = &mut n.kind else {
                unreachable!()
            };
            let child = ch.entry(c.to_vec()).or_insert_with(|| {
                MemNode::dir(Meta {
                    mode: 0o755,
                    ..Default::default()
                })
            });
            if !child.is_dir() {
                bail!("'{}' is not a directory", String::from_utf8_lossy(c));
            }
            n = child;
        }
        let MemKind::Dir(ch) = &mut n.kind else {
            unreachable!()
        };
        Ok(ch)
    }

    /// Puts `node` at `path`. A directory over a directory only updates its
    /// metadata (as `tar -x` does); anything else replaces what was there.
    pub fn insert(&mut self, path: &[&[u8]], node: MemNode) -> Result<()> {
        let Some((last, parent)) = path.split_last() else {
            if let MemKind::Dir(_) = node.kind {
                self.root.meta = node.meta;
                return Ok(());
            }
            bail!("the root must be a directory");
        };
        let dir = self.dir_mut(parent)?;
        match dir.get_mut(*last) {
            Some(existing) if existing.is_dir() && node.is_dir() => existing.meta = node.meta,
            _ => {
                dir.insert(last.to_vec(), node);
            }
        }
        Ok(())
    }

    /// Removes `path` if present; returns whether it was.
    pub fn remove(&mut self, path: &[&[u8]]) -> bool {
        let Some((last, parent)) = path.split_last() else {
            return false;
        };
        let mut n = &mut self.root;
        for c in parent {
            match &mut n.kind {
                MemKind::Dir(ch) => match ch.get_mut(*c) {
                    Some(x) => n = x,
                    None => return false,
                },
                _ => return false,
            }
        }
        match &mut n.kind {
            MemKind::Dir(ch) => ch.remove(*last).is_some(),
            _ => false,
        }
    }

    /// Keeps only the children of directory `path` that `keep` accepts (used
    /// for opaque directories).
    pub fn retain_children(&mut self, path: &[&[u8]], mut keep: impl FnMut(&[u8]) -> bool) {
        let mut n = &mut self.root;
        for c in path {
            match &mut n.kind {
                MemKind::Dir(ch) => match ch.get_mut(*c) {
                    Some(x) => n = x,
                    None => return,
                },
                _ => return,
            }
        }
        if let MemKind::Dir(ch) = &mut n.kind {
            ch.retain(|k, _| keep(k));
        }
    }

    /// Makes `path` a hard link to the regular file at `target`.
    pub fn link(&mut self, path: &[&[u8]], target: &[&[u8]]) -> Result<()> {
        let Some(t) = self.get(target) else {
            bail!("hard link target does not exist")
        };
        let MemKind::File { group, .. } = &t.kind else {
            bail!("hard link target is not a regular file")
        };
        let g = match group {
            Some(g) => *g,
            None => self.new_group(),
        };
        let mut node = self.get(target).unwrap().clone();
        if let MemKind::File { group, .. } = &mut node.kind {
            *group = Some(g);
        }
        self.set_group(target, g);
        self.insert(path, node)
    }

    fn set_group(&mut self, path: &[&[u8]], g: u64) {
        let mut n = &mut self.root;
        for c in path {
            match &mut n.kind {
                MemKind::Dir(ch) => n = ch.get_mut(*c).unwrap(),
                _ => return,
            }
        }
        if let MemKind::File { group, .. } = &mut n.kind {
            *group = Some(g);
        }
    }

    /// Writes every directory as a store tree, bottom-up; returns the root
    /// tree's hash and what the tree holds.
    pub fn write(&self, staging: &Staging) -> Result<(Hash, TreeStats)> {
        // A group's canonical path is its first member in tree order.
        let mut groups: HashMap<u64, (Vec<u8>, u32)> = HashMap::new();
        let mut path = Vec::new();
        collect_groups(&self.root, &mut path, &mut groups);
        let mut stats = TreeStats::default();
        let h = write_dir(&self.root, &mut path, staging, &groups, &mut stats)?;
        Ok((h, stats))
    }
}

fn collect_groups(n: &MemNode, path: &mut Vec<u8>, groups: &mut HashMap<u64, (Vec<u8>, u32)>) {
    let MemKind::Dir(ch) = &n.kind else { return };
    for (name, child) in ch {
        let len = path.len();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(name);
        match &child.kind {
            MemKind::File { group: Some(g), .. } => {
                groups.entry(*g).or_insert_with(|| (path.clone(), 0)).1 += 1
            }
            MemKind::Dir(_) => collect_groups(child, path, groups),
            _ => {}
        }
        path.truncate(len);
    }
}

fn write_dir(
    n: &MemNode,
    path: &mut Vec<u8>,
    staging: &Staging,
    groups: &HashMap<u64, (Vec<u8>, u32)>,
    stats: &mut TreeStats,
) -> Result<Hash> {
    let MemKind::Dir(ch) = &n.kind else {
        unreachable!()
    };
    let mut entries = Vec::with_capacity(ch.len());
    for (name, child) in ch {
        let len = path.len();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(name);
        let kind = match &child.kind {
            MemKind::Dir(_) => {
                stats.dirs += 1;
                EntryKind::Dir(write_dir(child, path, staging, groups, stats)?)
            }
            MemKind::File {
                object,
                size,
                sparse,
                group,
            } => {
                let link = group
                    .and_then(|g| groups.get(&g))
                    .filter(|(_, n)| *n > 1)
                    .map(|(p, _)| p.clone());
                // A hard-link group counts once, at its leader.
                if link.as_ref().is_none_or(|l| l == path) {
                    stats.files += 1;
                    stats.bytes += size;
                }
                EntryKind::File(FileData {
                    object: *object,
                    size: *size,
                    sparse: *sparse,
                    link,
                })
            }
            MemKind::Symlink(t) => EntryKind::Symlink(t.clone()),
            MemKind::CharDev { major, minor } => EntryKind::CharDev {
                major: *major,
                minor: *minor,
            },
            MemKind::BlockDev { major, minor } => EntryKind::BlockDev {
                major: *major,
                minor: *minor,
            },
            MemKind::Fifo => EntryKind::Fifo,
            MemKind::Socket => EntryKind::Socket,
        };
        path.truncate(len);
        if !matches!(child.kind, MemKind::Dir(_) | MemKind::File { .. }) {
            stats.others += 1;
        }
        if matches!(
            child.kind,
            MemKind::CharDev { .. } | MemKind::BlockDev { .. }
        ) {
            stats.devices += 1;
        }
        let m = &child.meta;
        entries.push(Entry {
            name: name.clone(),
            mode: m.mode & 0o7777,
            uid: m.uid,
            gid: m.gid,
            mtime: m.mtime,
            mtime_nsec: m.mtime_nsec,
            xattrs: m.xattrs.clone(),
            kind,
        });
    }
    let tree = Tree::from_entries(entries)?;
    staging.put_tree(&tree)
}

impl MemTree {
    /// A tree from an already built root; `next_group` must exceed every
    /// hard-link group used in it.
    pub fn from_root(root: MemNode, next_group: u64) -> MemTree {
        MemTree { root, next_group }
    }
}

impl MemTree {
    /// Loads a stored tree (metadata and hashes only).
    pub fn load(store: &store::Store, root: &Hash) -> Result<MemTree> {
        let mut groups: HashMap<Vec<u8>, u64> = HashMap::new();
        let mut next = 1u64;
        let children = load_dir(store, root, &mut groups, &mut next)?;
        Ok(MemTree {
            root: MemNode {
                meta: Meta {
                    mode: 0o755,
                    ..Default::default()
                },
                kind: MemKind::Dir(children),
            },
            next_group: next + 1,
        })
    }

    /// The members of every hard-link group, as paths of components.
    pub fn group_members(&self) -> HashMap<u64, Vec<Vec<Vec<u8>>>> {
        fn walk(n: &MemNode, path: &mut Vec<Vec<u8>>, out: &mut HashMap<u64, Vec<Vec<Vec<u8>>>>) {
            let MemKind::Dir(ch) = &n.kind else { return };
            for (name, c) in ch {
                path.push(name.clone());
                match &c.kind {
                    MemKind::File { group: Some(g), .. } => {
                        out.entry(*g).or_default().push(path.clone())
                    }
                    MemKind::Dir(_) => walk(c, path, out),
                    _ => {}
                }
                path.pop();
            }
        }
        let mut out = HashMap::new();
        walk(&self.root, &mut Vec::new(), &mut out);
        out
    }

    /// Makes later groups start above `n` (after a scanner used ids up to it).
    pub fn reserve_groups(&mut self, n: u64) {
        self.next_group = self.next_group.max(n + 1);
    }

    pub fn next_group_id(&self) -> u64 {
        self.next_group + 1
    }
}

fn load_dir(
    store: &store::Store,
    h: &Hash,
    groups: &mut HashMap<Vec<u8>, u64>,
    next: &mut u64,
) -> Result<BTreeMap<Vec<u8>, MemNode>> {
    let t = store.read_tree(h)?;
    let mut out = BTreeMap::new();
    for e in t.into_entries() {
        let meta = Meta {
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            mtime: e.mtime,
            mtime_nsec: e.mtime_nsec,
            xattrs: e.xattrs,
        };
        let kind = match e.kind {
            EntryKind::Dir(sub) => MemKind::Dir(load_dir(store, &sub, groups, next)?),
            EntryKind::File(f) => {
                let group = f.link.map(|l| {
                    *groups.entry(l).or_insert_with(|| {
                        *next += 1;
                        *next
                    })
                });
                MemKind::File {
                    object: f.object,
                    size: f.size,
                    sparse: f.sparse,
                    group,
                }
            }
            EntryKind::Symlink(t) => MemKind::Symlink(t),
            EntryKind::CharDev { major, minor } => MemKind::CharDev { major, minor },
            EntryKind::BlockDev { major, minor } => MemKind::BlockDev { major, minor },
            EntryKind::Fifo => MemKind::Fifo,
            EntryKind::Socket => MemKind::Socket,
        };
        out.insert(e.name, MemNode { meta, kind });
    }
    Ok(out)
}
