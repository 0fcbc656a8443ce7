//! Comparing two store trees, skipping equal subtrees by hash.

use crate::memtree::{MemTree, NodeId, NodeKind};
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
    /// Every kind, in the order `--stat` lists them.
    pub const ALL: [PathChange; 5] = [
        PathChange::Added,
        PathChange::Modified,
        PathChange::Deleted,
        PathChange::Metadata,
        PathChange::TypeChanged,
    ];

    /// Its name in JSON and in `--stat`.
    pub fn name(&self) -> &'static str {
        match self {
            PathChange::Added => "added",
            PathChange::Deleted => "deleted",
            PathChange::Modified => "modified",
            PathChange::Metadata => "metadata",
            PathChange::TypeChanged => "type-changed",
        }
    }

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

#[derive(Clone, Debug)]
pub struct PathDiff {
    /// The path from the root, starting with `/`, as bytes (names are
    /// whatever the bot or image chose).
    pub path: Vec<u8>,
    pub change: PathChange,
    pub kind: &'static str,
    pub old_kind: Option<&'static str>,
    /// Bytes of a regular file after and before (0 otherwise).
    pub size: u64,
    pub old_size: u64,
}

impl PathDiff {
    /// The path as a person should see it (quoted when it needs to be).
    pub fn shown(&self) -> String {
        crate::quote_bytes(&self.path)
    }
}

/// A path for scripts: a string when it is UTF-8, else also its bytes.
pub fn serialize_path<S: serde::Serializer>(
    path: &[u8],
    key: &'static str,
    map: &mut S::SerializeMap,
) -> Result<(), S::Error> {
    use serde::ser::SerializeMap;
    map.serialize_entry(key, &String::from_utf8_lossy(path))?;
    if std::str::from_utf8(path).is_err() {
        map.serialize_entry(&format!("{key}_bytes"), path)?;
    }
    Ok(())
}

impl serde::Serialize for PathDiff {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        serialize_path::<S>(&self.path, "path", &mut m)?;
        m.serialize_entry("change", &self.change)?;
        m.serialize_entry("kind", self.kind)?;
        m.serialize_entry("old_kind", &self.old_kind)?;
        m.serialize_entry("size", &self.size)?;
        m.serialize_entry("old_size", &self.old_size)?;
        m.end()
    }
}

fn same_content(a: &NodeKind, b: &NodeKind) -> bool {
    match (a, b) {
        (
            NodeKind::File {
                object: x, size: s, ..
            },
            NodeKind::File {
                object: y, size: t, ..
            },
        ) => x == y && s == t,
        (NodeKind::Symlink(x), NodeKind::Symlink(y)) => x == y,
        (NodeKind::CharDev { major: a, minor: b }, NodeKind::CharDev { major: c, minor: d })
        | (NodeKind::BlockDev { major: a, minor: b }, NodeKind::BlockDev { major: c, minor: d }) => {
            a == c && b == d
        }
        _ => true,
    }
}

/// Every path that differs between `new` and `old`, in path order (a loop,
/// not a recursion, whatever the depth).
pub fn diff_memtrees(new: &MemTree, old: &MemTree) -> Vec<PathDiff> {
    let mut out = Vec::new();
    // Pairs of directories to compare: (new dir, old dir, path).
    let mut stack: Vec<(Option<NodeId>, Option<NodeId>, Vec<u8>)> =
        vec![(Some(new.root()), Some(old.root()), Vec::new())];
    while let Some((n, o, path)) = stack.pop() {
        let nk = n.map(|n| new.children(n)).unwrap_or_default();
        let ok = o.map(|o| old.children(o)).unwrap_or_default();
        // Merge the two sorted lists; push subdirectories in reverse so
        // they come out in order.
        let mut later = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < nk.len() || j < ok.len() {
            let ord = match (nk.get(i), ok.get(j)) {
                (Some(&a), Some(&b)) => new.name(a).cmp(old.name(b)),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            let (a, b) = match ord {
                std::cmp::Ordering::Less => {
                    i += 1;
                    (Some(nk[i - 1]), None)
                }
                std::cmp::Ordering::Greater => {
                    j += 1;
                    (None, Some(ok[j - 1]))
                }
                std::cmp::Ordering::Equal => {
                    i += 1;
                    j += 1;
                    (Some(nk[i - 1]), Some(ok[j - 1]))
                }
            };
            let name = a
                .map(|a| new.name(a))
                .unwrap_or_else(|| old.name(b.unwrap()));
            let mut p = path.clone();
            p.push(b'/');
            p.extend_from_slice(name);
            let ak = a.map(|a| new.kind(a));
            let bk = b.map(|b| old.kind(b));
            let change = match (&ak, &bk) {
                (Some(_), None) => Some(PathChange::Added),
                (None, Some(_)) => Some(PathChange::Deleted),
                (Some(x), Some(y)) => {
                    if std::mem::discriminant(x) != std::mem::discriminant(y) {
                        Some(PathChange::TypeChanged)
                    } else if !same_content(x, y) {
                        Some(PathChange::Modified)
                    } else if new.meta(a.unwrap()) != old.meta(b.unwrap()) {
                        Some(PathChange::Metadata)
                    } else {
                        None
                    }
                }
                (None, None) => None,
            };
            if let Some(change) = change {
                out.push(PathDiff {
                    path: p.clone(),
                    change,
                    kind: ak.or(bk).unwrap().label(),
                    old_kind: bk.map(|k| k.label()),
                    size: ak.map(|k| k.size()).unwrap_or(0),
                    old_size: bk.map(|k| k.size()).unwrap_or(0),
                });
            }
            let ad = a.filter(|&a| new.is_dir(a));
            let bd = b.filter(|&b| old.is_dir(b));
            if ad.is_some() || bd.is_some() {
                later.push((ad, bd, p));
            }
        }
        stack.extend(later);
    }
    out.sort_by(|a, b| path_order(&a.path, &b.path));
    out
}

/// Orders paths so a directory's entries come right after it (tree order).
fn path_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let ca = a.split(|&c| c == b'/');
    let cb = b.split(|&c| c == b'/');
    ca.cmp(cb)
}

/// How many paths of one kind of change, and their bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StatRow {
    pub change: PathChange,
    pub paths: u64,
    pub bytes: u64,
}

/// The totals of `diffs` per kind of change, every kind listed.
pub fn diff_stat(diffs: &[PathDiff]) -> Vec<StatRow> {
    PathChange::ALL
        .iter()
        .map(|&change| {
            let of = diffs.iter().filter(|d| d.change == change);
            StatRow {
                change,
                paths: of.clone().count() as u64,
                bytes: of.map(|d| d.size).sum(),
            }
        })
        .collect()
}
