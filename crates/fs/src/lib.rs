//! botyard's filesystem layer: turning real directories into store trees and
//! trees back into directories overlayfs can stack.
//!
//! * [`MemTree`]: a mutable in-memory tree of metadata and object hashes
//!   (never file data), onto which image layers are applied in order and
//!   which is then written to the store as Merkle trees;
//! * [`scan_dir`]: reads a directory into a [`MemTree`] with all cores,
//!   never following symlinks, storing each file's content once, and skipping
//!   the hashing of files a stat cache shows unchanged;
//! * [`diff_trees`]: what changed between two trees, skipping equal subtrees;
//! * [`layer_dir`] and [`diff_layer_dir`]: trees materialised as metacopy
//!   stubs redirecting into the store's objects, for overlayfs;
//! * [`mount_overlay`]: the overlay mount itself;
//! * [`fold_upper`]: an overlay upper dir folded back into a tree.
//!
//! This crate never starts processes.

mod dedupe;
mod diff;
mod layer_dir;
mod memtree;
mod overlay;
mod scan;
mod statcache;
mod upper;

pub use dedupe::{can_reflink, dedupe};
pub use diff::{diff_memtrees, diff_trees, Change, PathChange, PathDiff};
pub use layer_dir::{
    diff_layer_dir, layer_dir, layers_root, materialize, materialize_path, MaterializeStats,
};
pub use memtree::{split_path, MemKind, MemNode, MemTree, Meta, TreeStats};
pub use overlay::{is_overlay_mount, mount_overlay, unmount, OverlaySpec};
pub use scan::{scan_dir, ScanOptions, Scanner};
pub use upper::{fold_upper, FoldStats};
