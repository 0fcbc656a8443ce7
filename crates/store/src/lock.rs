use anyhow::{Context, Result};
use rustix::fs::{flock, FlockOperation};
use std::fs::File;
use std::path::Path;

/// The store lock, held shared by everything that adds to the store or reads
/// it as a whole (imports, fsck) and exclusive by `gc`. Released on drop; the
/// kernel releases it when a holder is killed.
pub struct StoreLock {
    _file: File,
    pub exclusive: bool,
}

impl StoreLock {
    pub(crate) fn acquire(path: &Path, exclusive: bool, on_wait: &dyn Fn()) -> Result<StoreLock> {
        let file = open_lock(path, "the store lock")?;
        let (try_op, op) = if exclusive {
            (
                FlockOperation::NonBlockingLockExclusive,
                FlockOperation::LockExclusive,
            )
        } else {
            (
                FlockOperation::NonBlockingLockShared,
                FlockOperation::LockShared,
            )
        };
        if flock(&file, try_op).is_err() {
            on_wait();
            flock(&file, op).with_context(|| format!("cannot lock {}", path.display()))?;
        }
        Ok(StoreLock {
            _file: file,
            exclusive,
        })
    }
}

/// Takes an exclusive lock on the file at `path` (created if missing)
/// without waiting: `None` when another process holds it. The lock lasts
/// as long as the returned file; the kernel drops it when a holder dies.
pub fn try_lock_file(path: &Path) -> Result<Option<File>> {
    let file = open_lock(path, "the lock")?;
    Ok(flock(&file, FlockOperation::NonBlockingLockExclusive)
        .is_ok()
        .then_some(file))
}

/// Opens (creating, never truncating) a file used only to hold a lock.
fn open_lock(path: &Path, what: &str) -> Result<File> {
    File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("cannot open {what} {}", path.display()))
}
