//! Bots: named, persistent root filesystems built from an image.
//!
//! A bot is a ref (`refs/bots/ID`: its image, its committed tree) and a
//! directory `bots/ID/` holding the overlay's `upper` (what changed since the
//! last commit), `work`, and the default mount point `root`. Mounted, it is
//! `overlay(upper, lowers = [diff layer of its tree over the image's, the
//! image's layer], data = objects)`. A commit folds the upper into the
//! store, where files the fleet already holds are shared, and empties it.
//! One file per verb. This crate never talks to Kubernetes.

mod bot_adopt;
mod bot_commit;
mod bot_commit_live;
mod bot_create;
mod bot_df;
mod bot_diff;
mod bot_fork;
mod bot_gc;
mod bot_ls;
mod bot_mount;
mod bot_rebase;
mod bot_reset;
mod bot_rm;
mod bot_snapshot;
mod history;
mod image_rm;
mod shared_layer;
mod state;

pub use bot_adopt::{adopt, AdoptOutcome};
pub use bot_commit::{commit, CommitOutcome};
pub use bot_commit_live::{commit_live, LiveOutcome};
pub use bot_create::create;
pub use bot_df::{df, usage, BotUsage, Df, FleetUsage};
pub use bot_diff::{diff, under as diff_path_under};
pub use bot_fork::{fork, make_at, publish_image, Start};
pub use bot_gc::{gc, gc_layers, GcReport, LayerGcReport};
pub use bot_ls::{list, show, using_image, BotInfo};
pub use bot_mount::{mount, mount_all, unmount, MountOptions};
pub use bot_rebase::{rebase, RebaseOptions, RebaseOutcome};
pub use bot_reset::{reset, ResetOutcome};
pub use bot_rm::remove;
pub use bot_snapshot::{load_snapshot, remove_snapshot, snapshot, snapshots, Snapshot, SNAPSHOTS};
pub use history::{gc_history, log, resolve, Commit, HistoryGc, Retention, COMMITS};
pub use image_rm::{remove_images, RemovedImage};
pub use state::{
    runtime_name, set_session_reaper, validate_id, Bot, BotRef, Driver, SessionReaper,
};
