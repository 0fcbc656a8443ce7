//! Three-way merge of trees, dpkg-aware: the bot's tree (ours) moved from
//! its old image (base) onto a new image (theirs).
//!
//! A path only the image changed takes the new image's version; a path
//! only the bot changed keeps the bot's. Where both changed:
//! `/var/lib/dpkg/status` is merged package by package (each package the
//! bot installed, removed or upgraded keeps the bot's entry, every other
//! takes the new image's), each package's `info/` files follow the entry
//! that won, the files a package the bot won lists are the bot's, a
//! conffile the bot edited stays the bot's and the new image's version is
//! written beside it as `NAME.dpkg-dist` (as dpkg does), and anything else
//! is a conflict: listed, kept as the bot's, or taken from the image when
//! asked.

use crate::diff::{diff_memtrees, PathChange};
use crate::memtree::{MemKind, MemNode, MemTree, NodeKind};
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use store::{Staging, Store};

const STATUS: &[u8] = b"/var/lib/dpkg/status";
const INFO: &[u8] = b"/var/lib/dpkg/info/";

/// Who a conflict went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Ours,
    Theirs,
}

/// A path both sides changed, with no rule to settle it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Conflict {
    /// As a person should read it (quoted when it needs to be).
    pub path: String,
    pub path_bytes: Vec<u8>,
    pub kept: Side,
}

/// What a merge did.
#[derive(Debug, Default, serde::Serialize)]
pub struct MergeReport {
    /// Paths that took the new image's version.
    pub from_image: u64,
    /// Paths both changed that kept the bot's version by a rule (a package
    /// the bot won, the same change on both sides).
    pub settled: u64,
    pub conflicts: Vec<Conflict>,
    /// Packages whose status entry the bot's side kept (it installed,
    /// removed or upgraded them) while the image changed its own.
    pub packages_kept: Vec<String>,
    /// Conffiles the bot edited: its version stays, the image's is beside
    /// it as `.dpkg-dist`.
    pub dpkg_dist: Vec<String>,
}

fn comps(p: &[u8]) -> Vec<&[u8]> {
    p.split(|&b| b == b'/').filter(|c| !c.is_empty()).collect()
}

fn node_at(t: &MemTree, p: &[u8]) -> Option<MemNode> {
    t.get(&comps(p)).map(|mut n| {
        if let MemKind::File { group, .. } = &mut n.kind {
            *group = None;
        }
        n
    })
}

fn file_bytes(store: &Store, t: &MemTree, p: &[u8]) -> Result<Option<Vec<u8>>> {
    let Some(id) = t.lookup(&comps(p)) else {
        return Ok(None);
    };
    match t.kind(id) {
        NodeKind::File { size: 0, .. } => Ok(Some(Vec::new())),
        NodeKind::File { object, .. } => Ok(Some(
            std::fs::read(store.object_path(&object))
                .with_context(|| format!("cannot read {}", crate::quote_bytes(p)))?,
        )),
        _ => Ok(None),
    }
}

/// One package's stanza of a dpkg status file, by `Package` and
/// `Architecture`.
type Stanzas = BTreeMap<String, String>;

/// Parses a status file; an error names `what` and the line.
fn parse_status(text: &[u8], what: &str) -> Result<Stanzas> {
    let text = std::str::from_utf8(text).map_err(|e| {
        anyhow::anyhow!(
            "{what}: /var/lib/dpkg/status is not UTF-8 (byte {})",
            e.valid_up_to()
        )
    })?;
    let mut out = Stanzas::new();
    let mut cur = String::new();
    let mut key: Option<String> = None;
    let mut arch = String::new();
    let mut start = 1;
    let mut flush = |cur: &mut String,
                     key: &mut Option<String>,
                     arch: &mut String,
                     start: usize|
     -> Result<()> {
        if cur.trim().is_empty() {
            cur.clear();
            return Ok(());
        }
        let Some(k) = key.take() else {
            bail!("{what}: /var/lib/dpkg/status line {start}: a stanza without a Package field");
        };
        out.insert(format!("{k}:{arch}"), std::mem::take(cur));
        arch.clear();
        Ok(())
    };
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.is_empty() {
            flush(&mut cur, &mut key, &mut arch, start)?;
            start = n + 1;
            continue;
        }
        if !line.starts_with([' ', '\t']) && !line.contains(':') {
            bail!("{what}: /var/lib/dpkg/status line {n} is not a field ({}); fix or restore the file", store::quote_str(line));
        }
        if let Some(v) = line.strip_prefix("Package:") {
            key = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("Architecture:") {
            arch = v.trim().to_string();
        }
        cur.push_str(line);
        cur.push('\n');
    }
    flush(&mut cur, &mut key, &mut arch, start)?;
    Ok(out)
}

/// A stanza's conffiles, from its `Conffiles:` field.
fn conffiles(stanza: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in stanza.lines() {
        if line.starts_with("Conffiles:") {
            inside = true;
        } else if inside && line.starts_with(' ') {
            if let Some(p) = line.split_whitespace().next() {
                out.push(p.to_string());
            }
        } else {
            inside = false;
        }
    }
    out
}

/// The package an `info/` file belongs to (`NAME.list`, `NAME:ARCH.md5sums`).
fn info_package(p: &[u8]) -> Option<String> {
    let name = std::str::from_utf8(p.strip_prefix(INFO)?).ok()?;
    let stem = name.rsplit_once('.')?.0;
    Some(stem.split(':').next().unwrap_or(stem).to_string())
}

fn package_name(key: &str) -> &str {
    key.split(':').next().unwrap_or(key)
}

/// Merges `ours` (on `base`) onto `theirs`; the result is `ours`, changed
/// in place. Nothing is stored but a merged status file.
pub fn merge_trees(
    store: &Store,
    staging: &Staging,
    base: &MemTree,
    theirs: &MemTree,
    mut ours: MemTree,
    take_theirs: bool,
) -> Result<(MemTree, MergeReport)> {
    let mut report = MergeReport::default();
    let image_changes = diff_memtrees(theirs, base);
    let bot_changes: BTreeMap<Vec<u8>, PathChange> = diff_memtrees(&ours, base)
        .into_iter()
        .map(|d| (d.path, d.change))
        .collect();
    let bot_paths: BTreeSet<Vec<u8>> = bot_changes.keys().cloned().collect();
    let both_status =
        bot_changes.contains_key(STATUS) && image_changes.iter().any(|d| d.path == STATUS);

    // The dpkg database, package by package: who won each.
    let mut winner: HashMap<String, Side> = HashMap::new();
    let mut merged_status = None;
    let mut conffile_set = BTreeSet::new();
    if both_status {
        let b = parse_status(
            &file_bytes(store, base, STATUS)?.unwrap_or_default(),
            "the old image",
        )?;
        let t = parse_status(
            &file_bytes(store, theirs, STATUS)?.unwrap_or_default(),
            "the new image",
        )?;
        let o = parse_status(
            &file_bytes(store, &ours, STATUS)?.unwrap_or_default(),
            "the bot",
        )?;
        let keys: BTreeSet<&String> = b.keys().chain(t.keys()).chain(o.keys()).collect();
        let mut out = String::new();
        for k in keys {
            let bot_left_it = o.get(k) == b.get(k);
            let (side, entry) = if bot_left_it {
                (Side::Theirs, t.get(k))
            } else {
                (Side::Ours, o.get(k))
            };
            let name = package_name(k).to_string();
            if side == Side::Ours && t.get(k) != b.get(k) {
                report.packages_kept.push(name.clone());
            }
            // A package the bot changed wins its info files everywhere.
            if side == Side::Ours || !winner.contains_key(&name) {
                winner.insert(name, side);
            }
            if let Some(e) = entry {
                for c in conffiles(e) {
                    conffile_set.insert(c.into_bytes());
                }
                out.push_str(e);
                out.push('\n');
            }
        }
        merged_status = Some(out);
    }
    // What the packages the bot won list: those paths are the bot's.
    let mut owned_by_bot: BTreeSet<Vec<u8>> = BTreeSet::new();
    if let Some(info) = ours.lookup(&comps(INFO)) {
        let lists: Vec<Vec<u8>> = ours
            .children(info)
            .into_iter()
            .map(|c| ours.name(c).to_vec())
            .filter(|n| n.ends_with(b".list"))
            .collect();
        for name in lists {
            let p = [INFO, &name].concat();
            let won = info_package(&p).is_some_and(|pkg| winner.get(&pkg) == Some(&Side::Ours));
            if !won {
                continue;
            }
            if let Some(list) = file_bytes(store, &ours, &p)? {
                for l in list.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                    owned_by_bot.insert(l.to_vec());
                }
            }
        }
    }
    for d in &image_changes {
        let p = &d.path;
        if both_status && p.as_slice() == STATUS {
            continue;
        }
        let mut prefix = p.clone();
        prefix.push(b'/');
        let ancestor_gone = comps(p).len() > 1
            && (1..comps(p).len()).any(|n| {
                let a: Vec<u8> = comps(p)[..n]
                    .iter()
                    .flat_map(|c| [b"/".as_slice(), c].concat())
                    .collect();
                matches!(
                    bot_changes.get(&a),
                    Some(PathChange::Deleted | PathChange::TypeChanged)
                )
            });
        let below = matches!(d.change, PathChange::Deleted | PathChange::TypeChanged)
            && bot_paths
                .range::<Vec<u8>, _>(&prefix..)
                .next()
                .is_some_and(|q| q.starts_with(&prefix));
        let touched = bot_changes.contains_key(p) || ancestor_gone || below;
        let theirs_node = node_at(theirs, p);
        if !touched {
            apply(&mut ours, p, theirs_node)?;
            report.from_image += 1;
            continue;
        }
        let ours_node = node_at(&ours, p);
        // Directories merge entry by entry; their own metadata (an mtime)
        // and an image's metadata-only change of what the bot changed are
        // the bot's, with no conflict to report.
        let both_dirs = ours_node.as_ref().is_some_and(|n| n.is_dir())
            && theirs_node.as_ref().is_some_and(|n| n.is_dir());
        if ours_node == theirs_node || both_dirs || d.change == PathChange::Metadata {
            report.settled += 1;
            continue;
        }
        if let Some(pkg) = info_package(p) {
            match winner.get(&pkg) {
                Some(Side::Theirs) => {
                    apply(&mut ours, p, theirs_node)?;
                    report.from_image += 1;
                    continue;
                }
                Some(Side::Ours) => {
                    report.settled += 1;
                    continue;
                }
                None => {}
            }
        }
        let is_file = |n: &Option<MemNode>| {
            matches!(
                n,
                Some(MemNode {
                    kind: MemKind::File { .. },
                    ..
                })
            )
        };
        if conffile_set.contains(p.as_slice())
            && is_file(&theirs_node)
            && is_file(&node_at(&ours, p))
        {
            let mut dist = p.clone();
            dist.extend_from_slice(b".dpkg-dist");
            apply(&mut ours, &dist, theirs_node)?;
            report.dpkg_dist.push(crate::quote_bytes(&dist));
            continue;
        }
        if owned_by_bot.contains(p.as_slice()) {
            report.settled += 1;
            continue;
        }
        let kept = if take_theirs {
            apply(&mut ours, p, theirs_node)?;
            Side::Theirs
        } else {
            Side::Ours
        };
        report.conflicts.push(Conflict {
            path: crate::quote_bytes(p),
            path_bytes: p.clone(),
            kept,
        });
    }
    if let Some(text) = merged_status {
        let object = staging.put_bytes(text.as_bytes(), false)?;
        let mut node = node_at(theirs, STATUS)
            .or_else(|| node_at(&ours, STATUS))
            .context("no dpkg status to merge")?;
        node.kind = MemKind::File {
            object,
            size: text.len() as u64,
            sparse: false,
            group: None,
        };
        ours.insert(&comps(STATUS), node)?;
    }
    Ok((ours, report))
}

/// Puts `node` at `p` in `t`, or removes `p` when it is `None`.
fn apply(t: &mut MemTree, p: &[u8], node: Option<MemNode>) -> Result<()> {
    match node {
        Some(n) => {
            t.insert(&comps(p), n)?;
        }
        None => {
            t.remove(&comps(p));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_files_parse_by_package_and_name_bad_lines() {
        let s = b"Package: a\nArchitecture: amd64\nStatus: install ok installed\nConffiles:\n /etc/a.conf 0123\n /etc/a2 4567\n\nPackage: b\nArchitecture: all\n";
        let st = parse_status(s, "t").unwrap();
        assert_eq!(st.keys().collect::<Vec<_>>(), vec!["a:amd64", "b:all"]);
        assert_eq!(conffiles(&st["a:amd64"]), vec!["/etc/a.conf", "/etc/a2"]);
        let e = parse_status(b"Package: a\nbroken line\n", "the bot")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("the bot"), "{e}");
        assert_eq!(
            info_package(b"/var/lib/dpkg/info/libc6:amd64.list").as_deref(),
            Some("libc6")
        );
        assert_eq!(
            info_package(b"/var/lib/dpkg/info/jq.md5sums").as_deref(),
            Some("jq")
        );
    }
}
