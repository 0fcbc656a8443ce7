use crate::changes::Change;
use crate::state::{Mode, Workspace};
use anyhow::{bail, Result};
use store::Store;

/// The changes a reset of `paths` (all when empty) would discard.
pub fn reset_plan(store: &Store, name: &str, paths: &[Vec<u8>]) -> Result<Vec<Change>> {
    let ws = Workspace::new(store, name)?;
    let r = ws.load()?;
    if r.mode == Mode::Unsafe {
        bail!("workspace {name} is in unsafe mode: its changes are already in the project, with nothing to reset");
    }
    let view = ws.view(&r)?;
    crate::changes::changes(
        &ws.store,
        r.base_tree,
        &ws.upper(),
        &view.path,
        &r.project,
        paths,
    )
}

/// Discards the agent's changes at or below `paths` (all when empty) from
/// the upper. The workspace must be unmounted: overlayfs does not allow its
/// upper to change under a live mount. Returns how many were discarded.
pub fn reset(store: &Store, name: &str, paths: &[Vec<u8>]) -> Result<usize> {
    let ws = Workspace::new(store, name)?;
    let _lock = ws.lock()?;
    let r = ws.load()?;
    if let Some(p) = ws.mounted_at() {
        bail!(
            "workspace {name} is mounted at {}; unmount it first (overlayfs forbids changing its upper while mounted)",
            p.display()
        );
    }
    let changes = reset_plan(store, name, paths)?;
    if paths.is_empty() {
        for d in [ws.upper(), ws.work()] {
            fs::walk::empty_dir(&d)?;
        }
        return Ok(changes.len());
    }
    let drop: Vec<Vec<u8>> = changes
        .iter()
        .flat_map(|c| std::iter::once(c.path.clone()).chain(c.from.clone()))
        .collect();
    crate::workspace_sync::drop_from_upper(&ws, &r, &drop)?;
    Ok(changes.len())
}
