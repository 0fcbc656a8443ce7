//! Comparing two store trees, skipping equal subtrees by hash.

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
