//! Comparing two store trees, skipping equal subtrees by hash.

use crate::memtree::{MemKind, MemNode, MemTree};
use anyhow::Result;
use std::collections::BTreeMap;
use store::{Entry, EntryKind, Store, Tree};

/// How one name differs between a tree and its base.
#[derive(Clone, Debug)]
pub enum Change {
    /// In the base, not in the tree.
    Deleted(Entry),
    /// In the tree, not in the base (a directory brings its whole subtree).
    Added(Entry),
    /// Both have it, not both directories, and they differ.
    Replaced { old: Entry, new: Entry },
    /// Both are directories with different contents or metadata.
    Dir {
        old: Entry,
        new: Entry,
        children: BTreeMap<Vec<u8>, Change>,
    },
}

/// The differences of `tree` from `base`, by name, recursively.
pub fn diff_trees(store: &Store, tree: &Tree, base: &Tree) -> Result<BTreeMap<Vec<u8>, Change>> {
    let mut out = BTreeMap::new();
    for e in tree.entries() {
        match base.get(&e.name) {
            None => {
                out.insert(e.name.clone(), Change::Added(e.clone()));
            }
            Some(b) if b == e => {}
            Some(b) => match (&b.kind, &e.kind) {
                (EntryKind::Dir(bh), EntryKind::Dir(eh)) => {
                    let children = if bh == eh {
                        BTreeMap::new()
                    } else {
                        diff_trees(store, &store.read_tree(eh)?, &store.read_tree(bh)?)?
                    };
                    out.insert(
                        e.name.clone(),
                        Change::Dir {
                            old: b.clone(),
                            new: e.clone(),
                            children,
                        },
                    );
                }
                _ => {
                    out.insert(
                        e.name.clone(),
                        Change::Replaced {
                            old: b.clone(),
                            new: e.clone(),
                        },
                    );
                }
            },
        }
    }
    for b in base.entries() {
        if tree.get(&b.name).is_none() {
            out.insert(b.name.clone(), Change::Deleted(b.clone()));
        }
    }
    Ok(out)
}

/// How one path differs between two trees, for people and scripts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PathChange {
    Added,
    Deleted,
    /// Same kind, other content (bytes, symlink target, device numbers).
    Modified,
    /// Same kind and content; owner, mode, mtime or xattrs differ.
    Metadata,
    /// A file became a directory, a symlink, ... or the reverse.
    TypeChanged,
}

impl PathChange {
    pub fn letter(&self) -> char {
        match self {
            PathChange::Added => 'A',
            PathChange::Deleted => 'D',
            PathChange::Modified => 'M',
            PathChange::Metadata => 'm',
            PathChange::TypeChanged => 'T',
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct PathDiff {
    /// The path from the root, starting with `/` (lossy for non-UTF-8 names).
    pub path: String,
    pub change: PathChange,
    pub kind: &'static str,
    pub old_kind: Option<&'static str>,
    /// Bytes of a regular file after and before (0 otherwise).
    pub size: u64,
    pub old_size: u64,
}

fn label(k: &MemKind) -> &'static str {
    match k {
        MemKind::Dir(_) => "dir",
        MemKind::File { .. } => "file",
        MemKind::Symlink(_) => "symlink",
        MemKind::CharDev { .. } => "chardev",
        MemKind::BlockDev { .. } => "blockdev",
        MemKind::Fifo => "fifo",
        MemKind::Socket => "socket",
    }
}

fn size_of(k: &MemKind) -> u64 {
    match k {
        MemKind::File { size, .. } => *size,
        _ => 0,
    }
}

fn same_content(a: &MemKind, b: &MemKind) -> bool {
    match (a, b) {
        (
            MemKind::File {
                object: x, size: s, ..
            },
            MemKind::File {
                object: y, size: t, ..
            },
        ) => x == y && s == t,
        (MemKind::Symlink(x), MemKind::Symlink(y)) => x == y,
        (MemKind::CharDev { major: a, minor: b }, MemKind::CharDev { major: c, minor: d })
        | (MemKind::BlockDev { major: a, minor: b }, MemKind::BlockDev { major: c, minor: d }) => {
            a == c && b == d
        }
        _ => true,
    }
}

/// Every path that differs between `new` and `old`, in path order.
pub fn diff_memtrees(new: &MemTree, old: &MemTree) -> Vec<PathDiff> {
    let mut out = Vec::new();
    diff_nodes(Some(&new.root), Some(&old.root), &mut Vec::new(), &mut out);
    out
}

fn push(
    out: &mut Vec<PathDiff>,
    path: &[u8],
    change: PathChange,
    new: Option<&MemNode>,
    old: Option<&MemNode>,
) {
    out.push(PathDiff {
        path: format!("/{}", String::from_utf8_lossy(path)),
        change,
        kind: label(&new.or(old).unwrap().kind),
        old_kind: old.map(|o| label(&o.kind)),
        size: new.map(|n| size_of(&n.kind)).unwrap_or(0),
        old_size: old.map(|o| size_of(&o.kind)).unwrap_or(0),
    });
}

fn diff_nodes(
    new: Option<&MemNode>,
    old: Option<&MemNode>,
    path: &mut Vec<u8>,
    out: &mut Vec<PathDiff>,
) {
    let empty = BTreeMap::new();
    let nch = match new.map(|n| &n.kind) {
        Some(MemKind::Dir(c)) => c,
        _ => &empty,
    };
    let och = match old.map(|o| &o.kind) {
        Some(MemKind::Dir(c)) => c,
        _ => &empty,
    };
    let mut names: Vec<&Vec<u8>> = nch.keys().chain(och.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let len = path.len();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(name);
        let (n, o) = (nch.get(name), och.get(name));
        match (n, o) {
            (Some(n), None) => {
                push(out, path, PathChange::Added, Some(n), None);
                diff_nodes(Some(n), None, path, out);
            }
            (None, Some(o)) => {
                push(out, path, PathChange::Deleted, None, Some(o));
                diff_nodes(None, Some(o), path, out);
            }
            (Some(n), Some(o)) => {
                if std::mem::discriminant(&n.kind) != std::mem::discriminant(&o.kind) {
                    push(out, path, PathChange::TypeChanged, Some(n), Some(o));
                } else if !same_content(&n.kind, &o.kind) {
                    push(out, path, PathChange::Modified, Some(n), Some(o));
                } else if n.meta != o.meta {
                    push(out, path, PathChange::Metadata, Some(n), Some(o));
                }
                if n.is_dir() || o.is_dir() {
                    diff_nodes(
                        Some(n).filter(|x| x.is_dir()),
                        Some(o).filter(|x| x.is_dir()),
                        path,
                        out,
                    );
                }
            }
            (None, None) => {}
        }
        path.truncate(len);
    }
}
