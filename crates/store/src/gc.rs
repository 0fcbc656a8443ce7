//! `gc`: marks what refs reach (trees and objects), sweeps the rest under the
//! exclusive lock, and the per-tree usage figures `df` shares with it.

use crate::hash::Hash;
use crate::progress::{Progress, Unit};
use crate::store::Store;
use crate::tree::EntryKind;
use anyhow::{bail, Context, Result};
use std::collections::{HashMap, HashSet};
use std::fs;

/// What the refs reach: trees, and objects with their sizes.
#[derive(Default)]
pub(crate) struct Reachable {
    pub trees: HashSet<Hash>,
    pub objects: HashMap<Hash, u64>,
}

impl Store {
    /// The roots every reader must keep: the trees of all refs. Fails if a
    /// ref cannot be read, because then nothing can be safely swept.
    pub(crate) fn root_trees(&self) -> Result<Vec<Hash>> {
        let mut roots = Vec::new();
        for (name, r) in self.images()? {
            let r = r.with_context(|| format!("image {name}"))?;
            roots.push(r.tree);
        }
        for (name, r) in self.other_refs()? {
            roots.extend(r.with_context(|| format!("ref {name}"))?);
        }
        Ok(roots)
    }

    /// Walks every tree reachable from `roots`. Trees that cannot be read are
    /// passed to `on_error` and not descended into.
    pub(crate) fn reachable(
        &self,
        roots: &[Hash],
        on_error: &mut dyn FnMut(Hash, anyhow::Error),
    ) -> Reachable {
        let mut out = Reachable::default();
        let mut stack: Vec<Hash> = roots.to_vec();
        while let Some(h) = stack.pop() {
            if !out.trees.insert(h) {
                continue;
            }
            let tree = match self.read_tree(&h) {
                Ok(t) => t,
                Err(e) => {
                    on_error(h, e);
                    continue;
                }
            };
            for e in tree.entries() {
                match &e.kind {
                    EntryKind::Dir(sub) => stack.push(*sub),
                    EntryKind::File(f) if f.size > 0 => {
                        out.objects.insert(f.object, f.size);
                    }
                    _ => {}
                }
            }
        }
        out
    }

    /// Removes every object and tree no ref reaches, and leftovers of killed
    /// writers under `tmp/`. Holds the store lock exclusively, so no import
    /// can be between staging and publishing its ref meanwhile.
    pub fn gc(&self, dry_run: bool, progress: &dyn Progress) -> Result<GcReport> {
        let _lock = self.lock(true, progress)?;
        let roots = self
            .root_trees()
            .context("gc refuses to run while a ref is unreadable; run `botyard fsck`")?;
        progress.phase("marking", None, Unit::Items);
        let mut first_err = None;
        let live = self.reachable(&roots, &mut |h, e| {
            first_err.get_or_insert_with(|| format!("tree {h}: {e:#}"));
        });
        if let Some(e) = first_err {
            bail!("gc refuses to run because a referenced tree is unreadable ({e}); run `botyard fsck`");
        }
        let mut report = GcReport {
            dry_run,
            ..Default::default()
        };
        progress.phase("sweeping", Some(257), Unit::Items);
        // A dead tree stays while a live one is a delta against it.
        let rows = self.tree_db()?.rows()?;
        let mut keep: HashSet<Hash> = live.trees.clone();
        keep.extend(
            rows.iter()
                .filter(|r| live.trees.contains(&r.hash))
                .filter_map(|r| r.base),
        );
        let dead: Vec<_> = rows.iter().filter(|r| !keep.contains(&r.hash)).collect();
        report.trees = dead.len() as u64;
        report.bytes += dead.iter().map(|r| r.stored).sum::<u64>();
        let dead: Vec<Hash> = dead.iter().map(|r| r.hash).collect();
        if !dry_run && !dead.is_empty() {
            self.tree_db()?.remove(&dead)?;
        }
        progress.advance(1);
        let top = self.objects_dir();
        for shard in 0..=255u8 {
            let dir = top.join(format!("{shard:02x}"));
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
            };
            for ent in rd {
                let ent = ent?;
                let name = format!("{shard:02x}{}", ent.file_name().to_string_lossy());
                let keep = match name.parse::<Hash>() {
                    Ok(h) => live.objects.contains_key(&h),
                    Err(_) => false,
                };
                if keep {
                    continue;
                }
                let m = ent.metadata()?;
                report.objects += 1;
                report.bytes += Store::disk_bytes(&m);
                if !dry_run {
                    fs::remove_file(ent.path())
                        .with_context(|| format!("cannot remove {}", ent.path().display()))?;
                }
            }
            progress.advance(1);
        }
        for ent in fs::read_dir(self.tmp_dir())? {
            let ent = ent?;
            report.tmp_entries += 1;
            if !dry_run {
                let p = ent.path();
                crate::walk::remove_path(&p)?;
            }
        }
        if !dry_run {
            self.syncfs()?;
        }
        Ok(report)
    }
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    pub objects: u64,
    pub trees: u64,
    /// Bytes of the objects (on disk) and trees (stored, compressed)
    /// removed, or that would be.
    pub bytes: u64,
    /// Leftovers of interrupted writers under `tmp/`.
    pub tmp_entries: u64,
}

/// Files and bytes under a tree, as a plain copy would hold them (a
/// hard-link group counts once).
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct TreeUsage {
    pub files: u64,
    pub bytes: u64,
}

/// A subtree's usage with its hard-link groups kept apart, so groups that
/// span subtrees are counted once when subtrees are added up.
#[derive(Default, Clone)]
pub struct UsageMemo {
    map: HashMap<Hash, (TreeUsage, std::collections::BTreeMap<Vec<u8>, u64>)>,
}

impl Store {
    /// The objects (with sizes) reachable from `roots`.
    pub fn objects_of(&self, roots: &[Hash]) -> Result<HashMap<Hash, u64>> {
        let mut err = None;
        let r = self.reachable(roots, &mut |h, e| {
            err.get_or_insert_with(|| anyhow::anyhow!("tree {h}: {e:#}"));
        });
        match err {
            Some(e) => Err(e),
            None => Ok(r.objects),
        }
    }

    /// Files and bytes under `root`; `memo` shares the work between calls,
    /// so equal subtrees of many bots are read once.
    pub fn tree_usage(&self, root: &Hash, memo: &mut UsageMemo) -> Result<TreeUsage> {
        let (u, links) = self.usage_inner(root, memo)?;
        Ok(TreeUsage {
            files: u.files + links.len() as u64,
            bytes: u.bytes + links.values().sum::<u64>(),
        })
    }

    fn usage_inner(
        &self,
        root: &Hash,
        memo: &mut UsageMemo,
    ) -> Result<(TreeUsage, std::collections::BTreeMap<Vec<u8>, u64>)> {
        if let Some(u) = memo.map.get(root) {
            return Ok(u.clone());
        }
        let mut u = TreeUsage::default();
        let mut links = std::collections::BTreeMap::new();
        for e in self.read_tree(root)?.entries() {
            match &e.kind {
                EntryKind::Dir(sub) => {
                    let (s, l) = self.usage_inner(sub, memo)?;
                    u.files += s.files;
                    u.bytes += s.bytes;
                    links.extend(l);
                }
                EntryKind::File(f) => match &f.link {
                    Some(l) => {
                        links.insert(l.clone(), f.size);
                    }
                    None => {
                        u.files += 1;
                        u.bytes += f.size;
                    }
                },
                _ => {}
            }
        }
        memo.map.insert(*root, (u, links.clone()));
        Ok((u, links))
    }
}
