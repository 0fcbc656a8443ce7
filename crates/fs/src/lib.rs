//! botyard's filesystem layer: turning real directories into store trees.
//!
//! * [`MemTree`]: a mutable in-memory tree of metadata and object hashes
//!   (never file data), onto which image layers are applied in order and
//!   which is then written to the store as Merkle trees;
//! * [`scan_dir`]: reads a directory into a [`MemTree`] with all cores,
//!   never following symlinks, storing each file's content once, and skipping
//!   the hashing of files a stat cache shows unchanged.
//!
//! This crate never starts processes.

mod memtree;
mod scan;
mod statcache;

pub use memtree::{split_path, MemKind, MemNode, MemTree, Meta, TreeStats};
pub use scan::{scan_dir, ScanOptions};
