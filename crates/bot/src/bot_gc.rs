use crate::bot_ls::ids;
use crate::history::{gc_history, HistoryGc, Retention};
use crate::state::{Bot, Driver};
use anyhow::{Context, Result};
use fs::walk::du;
use std::collections::{HashMap, HashSet};
use store::{Progress, Store};

/// What [`gc`] removed (or would): history records, the store's sweep
/// and the layers.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GcReport {
    #[serde(flatten)]
    pub store: store::GcReport,
    pub layers: LayerGcReport,
    pub history: HistoryGc,
}

/// Removes what nothing needs: history records past `keep` and those no
/// bot reaches, then layers (a layer going away leaves nothing else
/// unreachable, but the store's sweep should see the final set of refs),
/// then the store's unreachable objects and trees and the leftovers of
/// interrupted writes.
pub fn gc(
    store: &Store,
    keep: Retention,
    dry_run: bool,
    progress: &dyn Progress,
) -> Result<GcReport> {
    let history = {
        // No commit may be between its record and its bot's ref meanwhile.
        let _lock = store.lock(true, progress)?;
        gc_history(store, keep, dry_run)?
    };
    let layers = gc_layers(store, dry_run, progress)?;
    Ok(GcReport {
        store: store.gc(dry_run, progress)?,
        layers,
        history,
    })
}

/// What [`gc_layers`] removed (or would).
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct LayerGcReport {
    pub layers: u64,
    pub bytes: u64,
    /// Image roots of copy bots on btrfs (`cache/roots/`) of trees no
    /// image names any more. What they free is counted with the objects:
    /// their extents are the objects'.
    pub roots: u64,
    /// Shared mounts of image layers (`mounts/`) that no mounted bot
    /// stacks any more: left by a killed command or a bot unmounted by hand.
    pub shared_mounts: u64,
}

/// Removes layers nothing needs: kept are the layer of every image
/// (so the next bot of it is created in milliseconds) and the diff layers
/// of mounted bots; likewise image roots (btrfs) are kept for the trees of
/// images only. A diff layer is a cache of a bot's tree: that of a bot at
/// rest goes too, and its next mount builds it again (tens of
/// milliseconds for thousands of changed files), so idle bots cost only
/// their trees and objects. Holds the store lock exclusively, like gc, so
/// no layer is being built meanwhile, and the lock of every bot whose
/// layer it removes, so none is being mounted.
pub fn gc_layers(store: &Store, dry_run: bool, progress: &dyn Progress) -> Result<LayerGcReport> {
    let _lock = store.lock(true, progress)?;
    let mut keep = HashSet::new();
    let mut image_trees = HashSet::new();
    for r in store.images()?.into_iter().filter_map(|(_, r)| r.ok()) {
        keep.insert(fs::layer_file_name(&r.tree, None));
        image_trees.insert(r.tree);
    }
    let mut users: HashMap<String, Vec<Bot>> = HashMap::new();
    for id in ids(store)? {
        let bot = Bot::new(store, &id)?;
        let r = bot.load()?;
        if r.driver == Driver::Overlay {
            keep.insert(fs::layer_file_name(&r.image_tree, None));
            users
                .entry(fs::layer_file_name(&r.tree, Some(&r.image_tree)))
                .or_default()
                .push(bot);
        }
    }
    let mut report = LayerGcReport {
        roots: fs::gc_roots(store, &image_trees, dry_run)?,
        ..Default::default()
    };
    let root = fs::layers_root(store);
    let Ok(rd) = std::fs::read_dir(&root) else {
        report.shared_mounts = crate::shared_layer::gc_shared(store, dry_run)?;
        return Ok(report);
    };
    for e in rd {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if keep.contains(&name) {
            continue;
        }
        // Held until the layer is gone: no user can mount meanwhile.
        let mut held = Vec::new();
        if let Some(bots) = users.get(&name) {
            for bot in bots {
                match bot.try_lock_bare()? {
                    Some(l) if bot.mounted_at().is_none() => held.push(l),
                    _ => break,
                }
            }
            if held.len() < bots.len() {
                continue;
            }
        }
        report.layers += 1;
        report.bytes += du(&e.path());
        if !dry_run {
            // Directories are layers of an older store format.
            let p = e.path();
            fs::walk::remove_path(&p).with_context(|| format!("cannot remove {}", p.display()))?;
        }
    }
    report.shared_mounts = crate::shared_layer::gc_shared(store, dry_run)?;
    Ok(report)
}
