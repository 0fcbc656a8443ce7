use crate::bot_ls::ids;
use crate::history::{gc_history, HistoryGc, Retention};
use crate::state::{Bot, Driver};
use anyhow::{Context, Result};
use fs::walk::du;
use std::collections::HashSet;
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
}

/// Removes layers nothing needs: kept are the layer of every image
/// (so the next bot of it is created in milliseconds) and the layers of
/// every overlay bot's current tree; likewise image roots (btrfs) are kept
/// for the trees of images only. Old diff layers, left by commits and
/// resets, go. Holds the store lock exclusively, like gc, so no layer is
/// being built meanwhile; a bot's layers change only while it is unmounted.
pub fn gc_layers(store: &Store, dry_run: bool, progress: &dyn Progress) -> Result<LayerGcReport> {
    let _lock = store.lock(true, progress)?;
    let mut keep = HashSet::new();
    let mut image_trees = HashSet::new();
    for r in store.images()?.into_iter().filter_map(|(_, r)| r.ok()) {
        keep.insert(fs::layer_file_name(&r.tree, None));
        image_trees.insert(r.tree);
    }
    for id in ids(store)? {
        let r = Bot::new(store, &id)?.load()?;
        if r.driver == Driver::Overlay {
            keep.insert(fs::layer_file_name(&r.image_tree, None));
            keep.insert(fs::layer_file_name(&r.tree, Some(&r.image_tree)));
        }
    }
    let mut report = LayerGcReport {
        roots: fs::gc_roots(store, &image_trees, dry_run)?,
        ..Default::default()
    };
    let root = fs::layers_root(store);
    let Ok(rd) = std::fs::read_dir(&root) else {
        return Ok(report);
    };
    for e in rd {
        let e = e?;
        if keep.contains(e.file_name().to_string_lossy().as_ref()) {
            continue;
        }
        report.layers += 1;
        report.bytes += du(&e.path());
        if !dry_run {
            // Directories are layers of an older store format.
            let p = e.path();
            fs::walk::remove_path(&p).with_context(|| format!("cannot remove {}", p.display()))?;
        }
    }
    Ok(report)
}
