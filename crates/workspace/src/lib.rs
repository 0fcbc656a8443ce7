//! Workspaces: a host project shown to an agent through an overlay.
//!
//! The project is the read-only lower layer and the agent's writes land in
//! the workspace's upper dir. A watcher process keeps an audit log of every
//! change while the workspace is mounted; the upper dir, not the log, is the
//! authoritative change set. The sync gate compares each change three ways
//! (agent, host now, and the base the agent started from, kept as a tree in
//! the store), checks it against a policy with a built-in secret scanner, and
//! applies edits, deletions and renames to the project one file at a time,
//! atomically. One file per verb.

mod apply;
mod audit;
mod changes;
mod flatten;
mod policy;
mod secrets;
mod state;
mod workspace_create;
mod workspace_diff;
mod workspace_log;
mod workspace_ls;
mod workspace_mount;
mod workspace_reset;
mod workspace_rm;
mod workspace_status;
mod workspace_sync;
mod workspace_watch;

pub use audit::{run_watcher, stop_watcher, watcher_running, Event, Log};
pub use changes::{changes, Change, Kind, Side, State, What};
pub use policy::{parse_size, Policy, DEFAULT_POLICY};
pub use secrets::{kinds as secret_kinds, scan as scan_secrets, Hit};
pub use state::{validate_name, Mode, Workspace, WorkspaceRef};
pub use workspace_create::{create, CreateOptions};
pub use workspace_diff::{diff, is_text, render, DiffEntry, LineStat, Renderer};
pub use workspace_log::{read_log, LogTail};
pub use workspace_ls::{list, show, WorkspaceInfo};
pub use workspace_mount::{mount, unmount};
pub use workspace_reset::{reset, reset_plan};
pub use workspace_rm::rm;
pub use workspace_status::{status, Status};
pub use workspace_sync::{
    render_item, sync, Decision, Item, Outcome, Resolve, SyncOptions, SyncReport, Verdict,
};
pub use workspace_watch::watch;
