use crate::state::{Mode, Workspace};
use anyhow::{bail, Context, Result};
use store::Store;

/// Removes a workspace: its upper (the agent's unsynced changes), its log
/// and its ref. The project is never touched. Refused while mounted, or
/// while the upper holds changes, unless `force`.
pub fn rm(store: &Store, name: &str, force: bool) -> Result<()> {
    let ws = Workspace::new(store, name)?;
    let _lock = ws.lock()?;
    let r = ws.load()?;
    if let Some(p) = ws.mounted_at() {
        if !force {
            bail!(
                "workspace {name} is mounted at {}; unmount it first or pass --force",
                p.display()
            );
        }
        crate::audit::stop_watcher(&ws);
        fs::unmount(&p)?;
    }
    if r.mode != Mode::Unsafe && !force {
        let has_changes = std::fs::read_dir(ws.upper())
            .map(|mut d| d.next().is_some())
            .unwrap_or(false);
        if has_changes {
            bail!(
                "workspace {name} holds changes not synced to the project (see `botyard workspace status {name}`); sync or reset them, or pass --force to discard them"
            );
        }
    }
    store.remove_ref("workspaces", name)?;
    if let Some(m) = fs::mounts_below(&ws.dir()).first() {
        bail!(
            "{} is still mounted; unmount it, then remove the workspace",
            m.display()
        );
    }
    fs::walk::remove_path(&ws.dir())
        .with_context(|| format!("cannot remove {}", ws.dir().display()))?;
    Ok(())
}
