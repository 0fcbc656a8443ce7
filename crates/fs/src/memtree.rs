//! A whole directory tree in memory: metadata and object hashes only, in
//! a compact arena.
//!
//! Every entry is one 64-byte node in a vector; names, symlink targets and
//! xattr sets live in shared arenas (xattr sets interned, so a million
//! files with the same label cost one set); regular files with content add
//! a 56-byte record. Children are found through one hash index keyed by
//! (parent, name). So an entry costs about 90 bytes plus its name, and no
//! operation recurses: building, loading, writing, comparing and dropping
//! a tree are loops, whatever its depth. Trees deeper than [`MAX_DEPTH`]
//! are refused when built.

use anyhow::{bail, Result};
use hashbrown::HashTable;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault};
use store::walk::MAX_DEPTH;
use store::{EntryKind, EntryRef, Hash, KindRef, Staging, TreeEncoder};

type FxBuild = BuildHasherDefault<rustc_hash::FxHasher>;

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

/// [`Meta`] borrowed from a tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetaRef<'a> {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

impl MetaRef<'_> {
    pub fn to_owned(&self) -> Meta {
        Meta {
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            mtime: self.mtime,
            mtime_nsec: self.mtime_nsec,
            xattrs: self.xattrs.to_vec(),
        }
    }
}

/// What an entry is, for putting it into a tree (a directory's children
/// are other nodes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemKind {
    Dir,
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

/// One entry, without children.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemNode {
    pub meta: Meta,
    pub kind: MemKind,
}

impl MemNode {
    pub fn dir(meta: Meta) -> MemNode {
        MemNode {
            meta,
            kind: MemKind::Dir,
        }
    }
    pub fn is_dir(&self) -> bool {
        matches!(self.kind, MemKind::Dir)
    }
}

/// [`MemKind`] borrowed from a tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind<'a> {
    Dir,
    File {
        object: Hash,
        size: u64,
        sparse: bool,
        group: Option<u64>,
    },
    Symlink(&'a [u8]),
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

impl NodeKind<'_> {
    /// One word for listings and diffs.
    pub fn label(&self) -> &'static str {
        match self {
            NodeKind::Dir => "dir",
            NodeKind::File { .. } => "file",
            NodeKind::Symlink(_) => "symlink",
            NodeKind::CharDev { .. } => "chardev",
            NodeKind::BlockDev { .. } => "blockdev",
            NodeKind::Fifo => "fifo",
            NodeKind::Socket => "socket",
        }
    }
    pub fn size(&self) -> u64 {
        match self {
            NodeKind::File { size, .. } => *size,
            _ => 0,
        }
    }
    fn to_owned(self) -> MemKind {
        match self {
            NodeKind::Dir => MemKind::Dir,
            NodeKind::File {
                object,
                size,
                sparse,
                group,
            } => MemKind::File {
                object,
                size,
                sparse,
                group,
            },
            NodeKind::Symlink(t) => MemKind::Symlink(t.to_vec()),
            NodeKind::CharDev { major, minor } => MemKind::CharDev { major, minor },
            NodeKind::BlockDev { major, minor } => MemKind::BlockDev { major, minor },
            NodeKind::Fifo => MemKind::Fifo,
            NodeKind::Socket => MemKind::Socket,
        }
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

/// An entry's place in a tree.
pub type NodeId = u32;
const NIL: u32 = u32::MAX;

const T_DIR: u8 = 0;
const T_FILE: u8 = 1;
const T_SYMLINK: u8 = 2;
const T_CHR: u8 = 3;
const T_BLK: u8 = 4;
const T_FIFO: u8 = 5;
const T_SOCK: u8 = 6;
/// Removed: still linked from its parent's list, skipped everywhere.
const T_DEAD: u8 = 7;

#[derive(Clone)]
struct Node {
    mtime: i64,
    parent: u32,
    first: u32,
    next: u32,
    name_off: u32,
    uid: u32,
    gid: u32,
    nsec: u32,
    xattrs: u32,
    /// Files: index of the content record (NIL: empty, no group);
    /// symlinks: target offset; devices: major.
    a: u32,
    /// Symlinks: target length; devices: minor.
    b: u32,
    /// The layer that last put this node or something below it.
    gen: u32,
    mode: u16,
    depth: u16,
    name_len: u8,
    tag: u8,
}

#[derive(Clone)]
struct FileRec {
    object: Hash,
    size: u64,
    group: u64,
    sparse: bool,
}

type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// A whole directory tree in memory: metadata and hashes only.
#[derive(Clone)]
pub struct MemTree {
    nodes: Vec<Node>,
    names: Vec<u8>,
    targets: Vec<u8>,
    files: Vec<FileRec>,
    xsets: Vec<Xattrs>,
    xindex: HashMap<Xattrs, u32>,
    index: HashTable<u32>,
    next_group: u64,
    gen: u32,
}

impl Default for MemTree {
    fn default() -> Self {
        MemTree::new(Meta {
            mode: 0o755,
            ..Default::default()
        })
    }
}

fn key_hash(parent: u32, name: &[u8]) -> u64 {
    FxBuild::default().hash_one((parent, name))
}

fn too_big() -> anyhow::Error {
    anyhow::anyhow!(
        "the tree is too large to hold in memory (over 4 GiB of names or 4 billion entries)"
    )
}

impl MemTree {
    pub fn new(root_meta: Meta) -> MemTree {
        let mut t = MemTree {
            nodes: Vec::new(),
            names: Vec::new(),
            targets: Vec::new(),
            files: Vec::new(),
            xsets: vec![Vec::new()],
            xindex: HashMap::new(),
            index: HashTable::new(),
            next_group: 1,
            gen: 0,
        };
        t.nodes.push(Node {
            mtime: 0,
            parent: NIL,
            first: NIL,
            next: NIL,
            name_off: 0,
            uid: 0,
            gid: 0,
            nsec: 0,
            xattrs: 0,
            a: NIL,
            b: 0,
            gen: 0,
            mode: 0,
            depth: 0,
            name_len: 0,
            tag: T_DIR,
        });
        t.set_meta(0, &root_meta);
        t
    }

    /// The root directory.
    pub fn root(&self) -> NodeId {
        0
    }

    /// Live entries below the root.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn name(&self, id: NodeId) -> &[u8] {
        let n = &self.nodes[id as usize];
        &self.names[n.name_off as usize..n.name_off as usize + n.name_len as usize]
    }

    pub fn parent(&self, id: NodeId) -> Option<NodeId> {
        let p = self.nodes[id as usize].parent;
        (p != NIL).then_some(p)
    }

    /// Components below the root (0 for the root).
    pub fn depth(&self, id: NodeId) -> usize {
        self.nodes[id as usize].depth as usize
    }

    pub fn is_dir(&self, id: NodeId) -> bool {
        self.nodes[id as usize].tag == T_DIR
    }

    /// Whether `id` is still in the tree (not removed or replaced).
    pub fn is_live(&self, id: NodeId) -> bool {
        self.nodes.get(id as usize).is_some_and(|n| n.tag != T_DEAD)
    }

    pub fn meta(&self, id: NodeId) -> MetaRef<'_> {
        let n = &self.nodes[id as usize];
        MetaRef {
            mode: n.mode as u32,
            uid: n.uid,
            gid: n.gid,
            mtime: n.mtime,
            mtime_nsec: n.nsec,
            xattrs: &self.xsets[n.xattrs as usize],
        }
    }

    pub fn kind(&self, id: NodeId) -> NodeKind<'_> {
        let n = &self.nodes[id as usize];
        match n.tag {
            T_DIR => NodeKind::Dir,
            T_FILE if n.a == NIL => NodeKind::File {
                object: Hash::empty(),
                size: 0,
                sparse: false,
                group: None,
            },
            T_FILE => {
                let f = &self.files[n.a as usize];
                NodeKind::File {
                    object: f.object,
                    size: f.size,
                    sparse: f.sparse,
                    group: (f.group != 0).then_some(f.group),
                }
            }
            T_SYMLINK => {
                NodeKind::Symlink(&self.targets[n.a as usize..n.a as usize + n.b as usize])
            }
            T_CHR => NodeKind::CharDev {
                major: n.a,
                minor: n.b,
            },
            T_BLK => NodeKind::BlockDev {
                major: n.a,
                minor: n.b,
            },
            T_FIFO => NodeKind::Fifo,
            T_SOCK => NodeKind::Socket,
            _ => unreachable!("a removed node is never handed out"),
        }
    }

    /// An entry as a value (its children are not part of it).
    pub fn node(&self, id: NodeId) -> MemNode {
        MemNode {
            meta: self.meta(id).to_owned(),
            kind: self.kind(id).to_owned(),
        }
    }

    /// The child `name` of the directory `dir`.
    pub fn child(&self, dir: NodeId, name: &[u8]) -> Option<NodeId> {
        let h = key_hash(dir, name);
        self.index
            .find(h, |&id| {
                self.nodes[id as usize].parent == dir && self.name(id) == name
            })
            .copied()
    }

    /// The children of `dir`, sorted by name.
    pub fn children(&self, dir: NodeId) -> Vec<NodeId> {
        let mut out = Vec::new();
        let mut c = self.nodes[dir as usize].first;
        while c != NIL {
            if self.nodes[c as usize].tag != T_DEAD {
                out.push(c);
            }
            c = self.nodes[c as usize].next;
        }
        out.sort_unstable_by(|&a, &b| self.name(a).cmp(self.name(b)));
        out
    }

    /// The node at `path` (components below the root).
    pub fn lookup(&self, path: &[&[u8]]) -> Option<NodeId> {
        let mut n = 0;
        for c in path {
            if !self.is_dir(n) {
                return None;
            }
            n = self.child(n, c)?;
        }
        Some(n)
    }

    /// The entry at `path`, as a value.
    pub fn get(&self, path: &[&[u8]]) -> Option<MemNode> {
        self.lookup(path).map(|id| self.node(id))
    }

    /// The path of `id` from the root, `/`-joined, without a leading `/`.
    pub fn path(&self, id: NodeId) -> Vec<u8> {
        let mut parts = Vec::new();
        let mut n = id;
        while n != 0 {
            parts.push(self.name(n));
            n = self.nodes[n as usize].parent;
        }
        parts.reverse();
        parts.join(&b'/')
    }

    fn intern_xattrs(&mut self, x: &[(Vec<u8>, Vec<u8>)]) -> u32 {
        if x.is_empty() {
            return 0;
        }
        if let Some(&i) = self.xindex.get(x) {
            return i;
        }
        let i = self.xsets.len() as u32;
        self.xsets.push(x.to_vec());
        self.xindex.insert(x.to_vec(), i);
        i
    }

    fn set_meta(&mut self, id: NodeId, m: &Meta) {
        let x = self.intern_xattrs(&m.xattrs);
        let n = &mut self.nodes[id as usize];
        n.mode = (m.mode & 0o7777) as u16;
        n.uid = m.uid;
        n.gid = m.gid;
        n.mtime = m.mtime;
        n.nsec = m.mtime_nsec;
        n.xattrs = x;
    }

    /// Sets the root directory's metadata.
    pub fn set_root_meta(&mut self, m: &Meta) {
        self.set_meta(0, m);
    }

    fn set_kind(&mut self, id: NodeId, k: &MemKind) -> Result<()> {
        let (tag, a, b) = match k {
            MemKind::Dir => (T_DIR, NIL, 0),
            MemKind::File {
                object,
                size,
                sparse,
                group,
            } => {
                if *size == 0 && !*sparse && group.is_none() {
                    (T_FILE, NIL, 0)
                } else {
                    let rec = FileRec {
                        object: *object,
                        size: *size,
                        group: group.unwrap_or(0),
                        sparse: *sparse,
                    };
                    let cur = self.nodes[id as usize].a;
                    if self.nodes[id as usize].tag == T_FILE && cur != NIL {
                        self.files[cur as usize] = rec;
                        (T_FILE, cur, 0)
                    } else {
                        let i = u32::try_from(self.files.len()).map_err(|_| too_big())?;
                        self.files.push(rec);
                        (T_FILE, i, 0)
                    }
                }
            }
            MemKind::Symlink(t) => {
                let off = u32::try_from(self.targets.len()).map_err(|_| too_big())?;
                let len = u32::try_from(t.len()).map_err(|_| too_big())?;
                self.targets.extend_from_slice(t);
                (T_SYMLINK, off, len)
            }
            MemKind::CharDev { major, minor } => (T_CHR, *major, *minor),
            MemKind::BlockDev { major, minor } => (T_BLK, *major, *minor),
            MemKind::Fifo => (T_FIFO, 0, 0),
            MemKind::Socket => (T_SOCK, 0, 0),
        };
        let n = &mut self.nodes[id as usize];
        n.tag = tag;
        n.a = a;
        n.b = b;
        Ok(())
    }

    /// Sets the content of the file `id` (a scan's hashing finished).
    pub fn set_content(&mut self, id: NodeId, object: Hash, size: u64, sparse: bool) -> Result<()> {
        if !self.is_live(id) {
            return Ok(()); // replaced meanwhile
        }
        let group = match self.kind(id) {
            NodeKind::File { group, .. } => group,
            _ => bail!("not a regular file"),
        };
        self.set_kind(
            id,
            &MemKind::File {
                object,
                size,
                sparse,
                group,
            },
        )
    }

    fn new_child(&mut self, parent: NodeId, name: &[u8], node: &MemNode) -> Result<NodeId> {
        if !store::valid_entry_name(name) {
            bail!("{} is not a valid name", crate::quote_bytes(name));
        }
        let depth = self.nodes[parent as usize].depth as usize + 1;
        if depth > MAX_DEPTH {
            let mut path = self.path(parent);
            path.push(b'/');
            path.extend_from_slice(name);
            return Err(store::walk::TooDeep {
                path,
                limit: MAX_DEPTH,
            }
            .into());
        }
        let id = u32::try_from(self.nodes.len())
            .ok()
            .filter(|&i| i != NIL)
            .ok_or_else(too_big)?;
        let name_off = u32::try_from(self.names.len()).map_err(|_| too_big())?;
        self.names.extend_from_slice(name);
        let first = self.nodes[parent as usize].first;
        self.nodes.push(Node {
            mtime: 0,
            parent,
            first: NIL,
            next: first,
            name_off,
            uid: 0,
            gid: 0,
            nsec: 0,
            xattrs: 0,
            a: NIL,
            b: 0,
            gen: self.gen,
            mode: 0,
            depth: depth as u16,
            name_len: name.len() as u8,
            tag: T_DIR,
        });
        self.nodes[parent as usize].first = id;
        self.set_meta(id, &node.meta);
        self.set_kind(id, &node.kind)?;
        let nodes = &self.nodes;
        let names = &self.names;
        self.index.insert_unique(key_hash(parent, name), id, |&i| {
            let n = &nodes[i as usize];
            key_hash(
                n.parent,
                &names[n.name_off as usize..n.name_off as usize + n.name_len as usize],
            )
        });
        Ok(id)
    }

    /// Puts `node` as `name` in the directory `parent`. A directory over a
    /// directory only updates its metadata (as `tar -x` does); anything else
    /// replaces what was there.
    pub fn put(&mut self, parent: NodeId, name: &[u8], node: &MemNode) -> Result<NodeId> {
        if !self.is_dir(parent) {
            bail!(
                "{} is not a directory",
                crate::quote_bytes(&self.path(parent))
            );
        }
        if let Some(old) = self.child(parent, name) {
            if self.is_dir(old) && node.is_dir() {
                self.set_meta(old, &node.meta);
                self.nodes[old as usize].gen = self.gen;
                return Ok(old);
            }
            self.remove_id(old);
        }
        self.new_child(parent, name, node)
    }

    /// The directory at `path`, creating missing ones as plain 0755
    /// directories (archives may omit them). A non-directory on the way is
    /// an error: botyard never resolves through symlinks.
    fn dir_at(&mut self, path: &[&[u8]]) -> Result<NodeId> {
        let mut n = 0;
        self.nodes[0].gen = self.gen;
        for c in path {
            n = match self.child(n, c) {
                Some(x) if self.is_dir(x) => x,
                Some(_) => bail!("{} is not a directory", crate::quote_bytes(c)),
                None => self.new_child(
                    n,
                    c,
                    &MemNode::dir(Meta {
                        mode: 0o755,
                        ..Default::default()
                    }),
                )?,
            };
            self.nodes[n as usize].gen = self.gen;
        }
        Ok(n)
    }

    /// Puts `node` at `path`, creating missing parents (see [`Self::put`]).
    pub fn insert(&mut self, path: &[&[u8]], node: MemNode) -> Result<NodeId> {
        let Some((last, parent)) = path.split_last() else {
            if node.is_dir() {
                self.set_meta(0, &node.meta);
                return Ok(0);
            }
            bail!("the root must be a directory");
        };
        if path.len() > MAX_DEPTH {
            bail!(
                "it is nested more than {MAX_DEPTH} directories deep, which botyard does not keep"
            );
        }
        let dir = self.dir_at(parent)?;
        self.put(dir, last, &node)
    }

    /// Removes `path` if present; returns whether it was.
    pub fn remove(&mut self, path: &[&[u8]]) -> bool {
        match self.lookup(path) {
            Some(0) | None => false,
            Some(id) => {
                self.remove_id(id);
                true
            }
        }
    }

    /// Removes the entry `id` and everything below it.
    pub fn remove_id(&mut self, id: NodeId) {
        if id == 0 || self.nodes[id as usize].tag == T_DEAD {
            return;
        }
        let mut stack = vec![id];
        while let Some(n) = stack.pop() {
            let mut c = self.nodes[n as usize].first;
            while c != NIL {
                if self.nodes[c as usize].tag != T_DEAD {
                    stack.push(c);
                }
                c = self.nodes[c as usize].next;
            }
            let h = key_hash(self.nodes[n as usize].parent, self.name(n));
            if let Ok(e) = self.index.find_entry(h, |&i| i == n) {
                e.remove();
            }
            self.nodes[n as usize].tag = T_DEAD;
        }
    }

    /// Starts a new layer: what it puts is told apart from what earlier
    /// layers put (for opaque directories).
    pub fn begin_layer(&mut self) {
        self.gen += 1;
    }

    /// Keeps only the children of directory `path` that the current layer
    /// put (or put something below): an OCI opaque directory.
    pub fn keep_current_layer(&mut self, path: &[&[u8]]) {
        let Some(dir) = self.lookup(path).filter(|&d| self.is_dir(d)) else {
            return;
        };
        for c in self.children(dir) {
            if self.nodes[c as usize].gen != self.gen {
                self.remove_id(c);
            }
        }
    }

    /// Makes `path` a hard link to the regular file at `target`.
    pub fn link(&mut self, path: &[&[u8]], target: &[&[u8]]) -> Result<()> {
        let Some(t) = self.lookup(target) else {
            bail!("hard link target does not exist")
        };
        let NodeKind::File { group, .. } = self.kind(t) else {
            bail!("hard link target is not a regular file")
        };
        let g = match group {
            Some(g) => g,
            None => self.new_group(),
        };
        let mut node = self.node(t);
        if let MemKind::File { group, .. } = &mut node.kind {
            *group = Some(g);
        }
        self.set_kind(t, &node.kind)?;
        self.insert(path, node)?;
        Ok(())
    }

    pub fn new_group(&mut self) -> u64 {
        self.next_group += 1;
        self.next_group
    }

    /// Makes later groups start above `n` (after a scanner used ids up to it).
    pub fn reserve_groups(&mut self, n: u64) {
        self.next_group = self.next_group.max(n + 1);
    }

    pub fn next_group_id(&self) -> u64 {
        self.next_group + 1
    }

    /// Forgets every hard-link group (the files stay, as separate files).
    pub fn clear_groups(&mut self) {
        for f in &mut self.files {
            f.group = 0;
        }
    }

    /// The members of every hard-link group.
    pub fn group_members(&self) -> HashMap<u64, Vec<NodeId>> {
        let mut out: HashMap<u64, Vec<NodeId>> = HashMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if n.tag == T_FILE && n.a != NIL && self.files[n.a as usize].group != 0 {
                out.entry(self.files[n.a as usize].group)
                    .or_default()
                    .push(i as NodeId);
            }
        }
        out
    }

    /// Visits every live entry in tree order (depth first, names sorted),
    /// the root excluded; `f` gets the entry and its path.
    pub fn for_each(&self, mut f: impl FnMut(NodeId, &[u8]) -> Result<()>) -> Result<()> {
        let mut stack: Vec<(Vec<NodeId>, usize)> = vec![(self.children(0), 0)];
        let mut lens = vec![0usize];
        let mut path = Vec::new();
        while let Some((kids, i)) = stack.last_mut() {
            let Some(&c) = kids.get(*i) else {
                stack.pop();
                path.truncate(lens.pop().unwrap());
                continue;
            };
            *i += 1;
            let base = path.len();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(self.name(c));
            f(c, &path)?;
            if self.is_dir(c) {
                lens.push(base);
                stack.push((self.children(c), 0));
            } else {
                path.truncate(base);
            }
        }
        Ok(())
    }

    /// Copies `other`'s entry `id` (and what is below it) to `path`,
    /// replacing what was there; hard-link groups are not carried over.
    pub fn graft(&mut self, path: &[&[u8]], other: &MemTree, id: NodeId) -> Result<()> {
        let mut top = other.node(id);
        if let MemKind::File { group, .. } = &mut top.kind {
            *group = None;
        }
        if let Some(old) = self.lookup(path).filter(|&o| o != 0) {
            self.remove_id(old);
        }
        let at = self.insert(path, top)?;
        if other.is_dir(id) {
            self.graft_children(at, other, id)?;
        }
        Ok(())
    }

    /// A copy of the entry `id` and what is below it, as a tree of its own
    /// (the entry becomes its root).
    pub fn extract(&self, id: NodeId) -> MemTree {
        let mut t = MemTree::new(self.meta(id).to_owned());
        let _ = t.graft_children(0, self, id);
        t
    }

    fn graft_children(&mut self, at: NodeId, other: &MemTree, id: NodeId) -> Result<()> {
        let mut stack = vec![(id, at)];
        while let Some((from, to)) = stack.pop() {
            for c in other.children(from) {
                let mut n = other.node(c);
                if let MemKind::File { group, .. } = &mut n.kind {
                    *group = None;
                }
                let made = self.new_child(to, other.name(c), &n)?;
                if other.is_dir(c) {
                    stack.push((c, made));
                }
            }
        }
        Ok(())
    }

    /// Writes every directory as a store tree, bottom-up; returns the root
    /// tree's hash and what the tree holds.
    pub fn write(&self, staging: &Staging) -> Result<(Hash, TreeStats)> {
        // A group's canonical path is its first member in tree order.
        let mut leaders: HashMap<u64, (NodeId, Vec<u8>, u32)> = HashMap::new();
        self.for_each(|id, path| {
            if let NodeKind::File { group: Some(g), .. } = self.kind(id) {
                leaders.entry(g).or_insert_with(|| (id, path.to_vec(), 0)).2 += 1;
            }
            Ok(())
        })?;
        let mut stats = TreeStats::default();
        // Post-order: a directory is encoded once all its subdirectories are.
        struct Frame {
            dir: NodeId,
            kids: Vec<NodeId>,
            next: usize,
        }
        let mut done: HashMap<NodeId, Hash> = HashMap::new();
        let mut stack = vec![Frame {
            dir: 0,
            kids: self.children(0),
            next: 0,
        }];
        let mut root = None;
        while let Some(f) = stack.last_mut() {
            if let Some(&c) = f.kids.get(f.next) {
                f.next += 1;
                if self.is_dir(c) {
                    stack.push(Frame {
                        dir: c,
                        kids: self.children(c),
                        next: 0,
                    });
                }
                continue;
            }
            let f = stack.pop().unwrap();
            let mut enc = TreeEncoder::with_capacity(f.kids.len());
            for &c in &f.kids {
                let m = self.meta(c);
                let sub;
                let link;
                let kind = match self.kind(c) {
                    NodeKind::Dir => {
                        stats.dirs += 1;
                        sub = done.remove(&c).expect("subdirectories are written first");
                        KindRef::Dir(&sub)
                    }
                    NodeKind::File {
                        object,
                        size,
                        sparse,
                        group,
                    } => {
                        link = group
                            .and_then(|g| leaders.get(&g))
                            .filter(|l| l.2 > 1)
                            .map(|l| (l.0, l.1.as_slice()));
                        // A hard-link group counts once, at its leader.
                        if link.is_none_or(|(leader, _)| leader == c) {
                            stats.files += 1;
                            stats.bytes += size;
                        }
                        sub = object;
                        KindRef::File {
                            object: &sub,
                            size,
                            sparse,
                            link: link.map(|l| l.1),
                        }
                    }
                    NodeKind::Symlink(t) => KindRef::Symlink(t),
                    NodeKind::CharDev { major, minor } => KindRef::CharDev { major, minor },
                    NodeKind::BlockDev { major, minor } => KindRef::BlockDev { major, minor },
                    NodeKind::Fifo => KindRef::Fifo,
                    NodeKind::Socket => KindRef::Socket,
                };
                match kind {
                    KindRef::Dir(_) | KindRef::File { .. } => {}
                    KindRef::CharDev { .. } | KindRef::BlockDev { .. } => {
                        stats.others += 1;
                        stats.devices += 1;
                    }
                    _ => stats.others += 1,
                }
                enc.push(&EntryRef {
                    name: self.name(c),
                    mode: m.mode,
                    uid: m.uid,
                    gid: m.gid,
                    mtime: m.mtime,
                    mtime_nsec: m.mtime_nsec,
                    xattrs: m.xattrs,
                    kind,
                })
                .map_err(|e| anyhow::anyhow!("{}: {e}", crate::quote_bytes(&self.path(c))))?;
            }
            let h = staging.put_tree_bytes(Some(&self.path(f.dir)), &enc.finish())?;
            if f.dir == 0 {
                root = Some(h);
            } else {
                done.insert(f.dir, h);
            }
        }
        Ok((root.expect("the root is written last"), stats))
    }

    /// Loads a stored tree (metadata and hashes only).
    pub fn load(store: &store::Store, root: &Hash) -> Result<MemTree> {
        let mut t = MemTree::default();
        let mut groups: HashMap<Vec<u8>, u64> = HashMap::new();
        let mut stack = vec![(*root, 0u32)];
        while let Some((h, dir)) = stack.pop() {
            for e in store.read_tree(&h)?.into_entries() {
                let meta = Meta {
                    mode: e.mode,
                    uid: e.uid,
                    gid: e.gid,
                    mtime: e.mtime,
                    mtime_nsec: e.mtime_nsec,
                    xattrs: e.xattrs,
                };
                let (kind, sub) = match e.kind {
                    EntryKind::Dir(sub) => (MemKind::Dir, Some(sub)),
                    EntryKind::File(f) => {
                        let group = f.link.map(|l| match groups.get(&l) {
                            Some(&g) => g,
                            None => {
                                let g = t.new_group();
                                groups.insert(l, g);
                                g
                            }
                        });
                        (
                            MemKind::File {
                                object: f.object,
                                size: f.size,
                                sparse: f.sparse,
                                group,
                            },
                            None,
                        )
                    }
                    EntryKind::Symlink(x) => (MemKind::Symlink(x), None),
                    EntryKind::CharDev { major, minor } => {
                        (MemKind::CharDev { major, minor }, None)
                    }
                    EntryKind::BlockDev { major, minor } => {
                        (MemKind::BlockDev { major, minor }, None)
                    }
                    EntryKind::Fifo => (MemKind::Fifo, None),
                    EntryKind::Socket => (MemKind::Socket, None),
                };
                let id = t.new_child(dir, &e.name, &MemNode { meta, kind })?;
                if let Some(sub) = sub {
                    stack.push((sub, id));
                }
            }
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(size: u64) -> MemNode {
        MemNode {
            meta: Meta {
                mode: 0o644,
                ..Default::default()
            },
            kind: MemKind::File {
                object: Hash::of(&size.to_le_bytes()),
                size,
                sparse: false,
                group: None,
            },
        }
    }

    #[test]
    fn insert_replace_remove_and_layers() {
        let mut t = MemTree::default();
        t.insert(&[b"a", b"b", b"f"], file(3)).unwrap();
        assert!(t.lookup(&[b"a", b"b"]).is_some_and(|d| t.is_dir(d)));
        assert_eq!(t.get(&[b"a", b"b", b"f"]).unwrap(), file(3));
        // A file over a directory replaces it and its subtree.
        t.insert(&[b"a"], file(1)).unwrap();
        assert!(t.lookup(&[b"a", b"b"]).is_none());
        assert_eq!(t.len(), 1);
        assert!(t.insert(&[b"a", b"x"], file(1)).is_err());
        t.begin_layer();
        t.insert(&[b"d", b"new"], file(2)).unwrap();
        t.begin_layer();
        t.insert(&[b"d", b"newer"], file(2)).unwrap();
        t.keep_current_layer(&[b"d"]);
        let d = t.lookup(&[b"d"]).unwrap();
        let names: Vec<&[u8]> = t.children(d).iter().map(|&c| t.name(c)).collect();
        assert_eq!(names, vec![&b"newer"[..]]);
        assert!(t.remove(&[b"d"]));
        assert!(!t.remove(&[b"d"]));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn depth_is_bounded() {
        let mut t = MemTree::default();
        let ok: Vec<&[u8]> = vec![b"a"; MAX_DEPTH];
        t.insert(&ok, file(1)).unwrap();
        let deep: Vec<&[u8]> = vec![b"a"; MAX_DEPTH + 1];
        let e = t.insert(&deep, file(1)).unwrap_err().to_string();
        assert!(e.contains("deep"), "{e}");
    }

    #[test]
    fn a_node_is_small() {
        assert!(std::mem::size_of::<Node>() <= 64);
    }
}
