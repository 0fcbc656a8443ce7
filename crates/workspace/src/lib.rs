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
mod ws_create;
mod ws_diff;
mod ws_list;
mod ws_mount;
mod ws_reset;
mod ws_rm;
mod ws_status;
mod ws_sync;
mod ws_watch;

pub use audit::{read_log, run_watcher, stop_watcher, watcher_running, Event, Log};
pub use changes::{changes, Change, Kind, Side, State, What};
pub use policy::{parse_size, Policy, DEFAULT_POLICY};
pub use secrets::{kinds as secret_kinds, scan as scan_secrets, Hit};
pub use state::{validate_name, Mode, Workspace, WorkspaceRef};
pub use ws_create::{create, CreateOptions};
pub use ws_diff::{diff, is_text, render, DiffEntry, LineStat, Renderer};
pub use ws_list::{list, show, WorkspaceInfo};
pub use ws_mount::{mount, unmount};
pub use ws_reset::{reset, reset_plan};
pub use ws_rm::rm;
pub use ws_status::{status, Status};
pub use ws_sync::{
    render_item, sync, Decision, Item, Outcome, Resolve, SyncOptions, SyncReport, Verdict,
};
pub use ws_watch::watch;
