//! The botyard store: one directory holding every file the fleet keeps, once.
//!
//! * **objects**: file contents named by the BLAKE3 hash of the bytes alone
//!   (`objects/ab/cdef…`), read-only and never modified in place;
//! * **trees**: directory listings carrying all metadata (mode, owner, mtime,
//!   xattrs, links, devices), hashed like git trees so equal subtrees are
//!   shared, kept compressed in one database (`trees.db`), a new version of
//!   a directory as a delta against an older one;
//! * **refs**: small JSON files naming trees (`refs/images/NAME/TAG`), replaced
//!   atomically.
//!
//! Writers stage new objects in a private directory under `tmp/` and
//! publish them with renames, then their trees in one transaction ([`Staging`]); a ref is written only after the
//! data it names is durable. Writers hold the store lock shared, `gc` holds it
//! exclusive, so a sweep can never delete what an import is about to reference.
//! It also holds the two helpers every crate above it shares for input
//! someone else shaped: [`walk`] (beneath a directory, no symlink followed,
//! no recursion, descriptors bounded) and [`quote_bytes`] (names shown
//! safely to a person). This crate never mounts anything and knows nothing
//! of bots.

mod atomic;
pub mod btrfs;
mod df;
mod error;
mod fsck;
mod gc;
mod hash;
mod lock;
mod names;
mod progress;
mod quote;
mod refs;
mod size;
mod staging;
mod store;
mod tree;
mod treedb;
pub mod walk;

pub use atomic::{replace_file, write_file_atomic};
pub use df::{DfReport, ImageUsage};
pub use error::{error, is_kind, kind_of, ErrorKind, KindError};
pub use fsck::{FsckProblem, FsckReport};
pub use gc::{GcReport, TreeUsage, UsageMemo};
pub use hash::{Hash, HashParseError};
pub use lock::{try_lock_file, StoreLock};
pub use names::{validate_segment, ImageName, NameError, MAX_NAME_BYTES};
pub use progress::{NoProgress, Progress, Unit};
pub use quote::{quote_bytes, quote_cow, quote_path, quote_short, quote_str};
pub use refs::ImageRef;
pub use size::parse_size;
pub use staging::{hash_file, is_sparse, Staging, StagingStats, SMALL_FILE};
pub use store::{default_store_path, now_rfc3339, Store, STORE_MARKER};
pub use tree::{
    known_xattr_namespace, valid_entry_name, Entry, EntryKind, EntryRef, FileData, KindRef, Tree,
    TreeEncoder, TreeError, NAME_MAX, PATH_MAX, XATTRS_MAX, XATTR_VALUE_MAX,
};

/// Adds a hint to an error that came from a full filesystem, so every
/// command reports ENOSPC the same way.
pub fn is_no_space(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .and_then(|io| io.raw_os_error())
            .is_some_and(|code| code == libc::ENOSPC || code == libc::EDQUOT)
    })
}
