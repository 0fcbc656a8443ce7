use anyhow::{Context, Result};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name for a temporary file that no other process or thread will pick.
pub(crate) fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{t:x}", std::process::id())
}

/// Replaces `dest` with `data` so that a crash at any instant leaves either
/// the old file or the new one: write a temporary in `tmp_dir` (same
/// filesystem), fsync it, rename it over `dest`, fsync the directory.
pub fn write_file_atomic(tmp_dir: &Path, dest: &Path, data: &[u8], mode: u32) -> Result<()> {
    write_replacing(tmp_dir, dest, data, mode, true)
}

/// [`write_file_atomic`] without the fsyncs, for files that mean nothing
/// after a reboot (a running sandbox's state, its runtime bundle): a crash
/// of the process still leaves the old file or the new one, never half of
/// one, and nothing waits for the disk.
pub fn replace_file(tmp_dir: &Path, dest: &Path, data: &[u8], mode: u32) -> Result<()> {
    write_replacing(tmp_dir, dest, data, mode, false)
}

fn write_replacing(
    tmp_dir: &Path,
    dest: &Path,
    data: &[u8],
    mode: u32,
    durable: bool,
) -> Result<()> {
    let tmp = tmp_dir.join(unique_name("ref"));
    let res = (|| -> Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(data)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        if durable {
            f.sync_all()
                .with_context(|| format!("cannot sync {}", tmp.display()))?;
        }
        std::fs::rename(&tmp, dest)
            .with_context(|| format!("cannot replace {}", dest.display()))?;
        if let Some(parent) = dest.parent().filter(|_| durable) {
            fsync_dir(parent)?;
        }
        Ok(())
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync directory {}", dir.display()))
}
