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
//! * [`layer`] and [`diff_layer`]: trees packed as EROFS images of metacopy
//!   stubs redirecting into the store's objects, for overlayfs;
//! * [`materialize`]: a tree written out as a plain directory (copy driver);
//!   [`materialize_root`]: the same as a btrfs snapshot of the image's root;
//! * [`mount_overlay`]: the overlay mount itself;
//! * [`fold_upper`]: an overlay upper dir folded back into a tree;
//!
//! [`walk`] and [`quote_bytes`] come from the store crate and are re-exported
//! here for the crates above.
//!
//! This crate never starts processes.

mod dedupe;
mod diff;
mod erofs;
mod fsck;
mod home;
mod layer;
mod materialize;
mod memtree;
mod merge;
mod overlay;
mod roots;
mod scan;
mod statcache;
mod upper;

pub use dedupe::{can_reflink, dedupe};
pub use diff::{
    diff_memtrees, diff_stat, diff_trees, serialize_path, Change, PathChange, PathDiff, StatRow,
};
pub use fsck::{fsck, Fsck};
pub use home::{OverlayHome, View};
pub use layer::{
    check_layers, diff_layer, layer, layer_file_name, layer_is_intact, layers_root, LayerCheck,
};
pub use materialize::{materialize, materialize_path, MaterializeStats};
pub use memtree::{
    split_path, MemKind, MemNode, MemTree, Meta, MetaRef, NodeId, NodeKind, TreeStats,
};
pub use merge::{merge_trees, Conflict, MergeReport, Side};
pub use overlay::{
    detach_shared, fstype_of, is_layer_mounted_at, is_mount_point, is_overlay_mount, mount_clone,
    mount_clone_idmapped, mount_clone_onto, mount_overlay, mounts_below, unmount, unmount_below,
    OverlaySpec,
};
pub use roots::{gc_roots, materialize_root, roots_dir};
pub use scan::{scan_dir, ScanOptions};
pub use store::btrfs;
pub use store::walk;
pub use store::{quote_bytes, quote_cow, quote_path, quote_short, quote_str};
pub use upper::{fold_upper, xattr_at, FoldStats};
pub use walk::{TooDeep, MAX_DEPTH};
