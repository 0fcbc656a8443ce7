use crate::audit::Event;
use crate::changes::{State, What};
use crate::state::{Mode, Workspace};
use crate::workspace_log::read_log;
use crate::workspace_ls::{info, WorkspaceInfo};
use anyhow::Result;
use std::collections::BTreeMap;
use store::Store;

#[derive(Debug, serde::Serialize)]
pub struct Status {
    #[serde(flatten)]
    pub info: WorkspaceInfo,
    /// Changes waiting to be synced, by kind: added, modified, deleted, …
    pub pending: BTreeMap<&'static str, u64>,
    /// Changes the project already holds (dropped from the upper at unmount).
    pub in_sync: u64,
    /// Paths the project changed since the agent started, to something else.
    pub conflicts: Vec<String>,
    /// The latest audit events, oldest first.
    pub recent_events: Vec<Event>,
}

fn what_name(w: &What) -> &'static str {
    match w {
        What::Added => "added",
        What::Modified => "modified",
        What::Deleted => "deleted",
        What::Chmod => "chmod",
        What::TypeChanged => "type_changed",
        What::Renamed { .. } => "renamed",
    }
}

pub fn status(store: &Store, name: &str, recent: usize) -> Result<Status> {
    let ws = Workspace::new(store, name)?;
    let r = ws.load()?;
    let mut pending = BTreeMap::new();
    let mut in_sync = 0;
    let mut conflicts = Vec::new();
    if r.mode != Mode::Unsafe {
        let view = ws.view(&r)?;
        for c in crate::changes::changes(
            &ws.store,
            r.base_tree,
            &ws.upper(),
            &view.path,
            &r.project,
            &[],
        )? {
            match c.state {
                State::Pending => *pending.entry(what_name(&c.what)).or_insert(0) += 1,
                State::InSync => in_sync += 1,
                State::Conflict => conflicts.push(c.shown()),
            }
        }
    }
    let log = read_log(&ws.audit_log())?;
    let recent_events = log[log.len().saturating_sub(recent)..].to_vec();
    Ok(Status {
        info: info(&ws, r),
        pending,
        in_sync,
        conflicts,
        recent_events,
    })
}
