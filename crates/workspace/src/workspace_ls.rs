use crate::audit::watcher_running;
use crate::state::{Mode, Workspace, WorkspaceRef};
use anyhow::Result;
use store::Store;

/// A workspace as `ls` and `show` print it.
#[derive(Debug, serde::Serialize)]
pub struct WorkspaceInfo {
    #[serde(flatten)]
    pub r: WorkspaceRef,
    pub mounted_at: Option<String>,
    pub watcher_pid: Option<i32>,
    /// Bytes in the upper dir (the agent's changes not yet dropped).
    pub upper_bytes: u64,
}

pub fn show(store: &Store, name: &str) -> Result<WorkspaceInfo> {
    let ws = Workspace::new(store, name)?;
    let r = ws.load()?;
    Ok(info(&ws, r))
}

pub(crate) fn info(ws: &Workspace, r: WorkspaceRef) -> WorkspaceInfo {
    let upper_bytes = if r.mode == Mode::Unsafe {
        0
    } else {
        du(&ws.upper())
    };
    WorkspaceInfo {
        mounted_at: ws.mounted_at().map(|p| p.display().to_string()),
        watcher_pid: watcher_running(ws),
        upper_bytes,
        r,
    }
}

pub fn list(store: &Store) -> Result<Vec<WorkspaceInfo>> {
    let mut out = Vec::new();
    for name in Workspace::names(store)? {
        let ws = Workspace::new(store, &name)?;
        out.push(info(&ws, ws.load()?));
    }
    Ok(out)
}

/// Bytes allocated below `p` (no symlinks followed, any depth).
pub(crate) fn du(p: &std::path::Path) -> u64 {
    fs::walk::du(p)
}
