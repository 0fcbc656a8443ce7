//! Sharing extents between identical files: `FIDEDUPERANGE` (the kernel
//! compares the bytes itself and shares them only if equal, atomically
//! against concurrent writers) and a probe for reflink support.

use anyhow::Result;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

#[repr(C)]
struct DedupeRange {
    src_offset: u64,
    src_length: u64,
    dest_count: u16,
    reserved1: u16,
    reserved2: u32,
    dest_fd: i64,
    dest_offset: u64,
    bytes_deduped: u64,
    status: i32,
    reserved: u32,
}

/// `_IOWR(0x94, 54, struct file_dedupe_range)`; the struct header is 24 bytes.
const FIDEDUPERANGE: libc::c_ulong = 0xC018_9436;
/// Filesystems cap one call (btrfs at 16 MiB).
const CHUNK: u64 = 16 << 20;

/// Makes `dest` share `src`'s extents where their bytes are equal. Returns
/// the bytes now shared; 0 where the filesystem cannot share (ext4).
pub fn dedupe(src: &File, dest: &File, len: u64) -> Result<u64> {
    let mut done = 0u64;
    let mut off = 0u64;
    while off < len {
        let n = CHUNK.min(len - off);
        let mut arg = DedupeRange {
            src_offset: off,
            src_length: n,
            dest_count: 1,
            reserved1: 0,
            reserved2: 0,
            dest_fd: dest.as_raw_fd() as i64,
            dest_offset: off,
            bytes_deduped: 0,
            status: 0,
            reserved: 0,
        };
        // SAFETY: `arg` is a file_dedupe_range with room for exactly the one
        // destination it names, alive for the duration of the call.
        let rc = unsafe {
            libc::ioctl(
                src.as_raw_fd(),
                FIDEDUPERANGE as _,
                &mut arg as *mut DedupeRange,
            )
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EOPNOTSUPP)
                | Some(libc::EINVAL)
                | Some(libc::EXDEV)
                | Some(libc::ENOTTY) => return Ok(done),
                _ => return Err(e.into()),
            }
        }
        // status 0 = deduped, 1 = bytes differ (FILE_DEDUPE_RANGE_DIFFERS), <0 = -errno.
        if arg.status != 0 {
            return Ok(done);
        }
        done += arg.bytes_deduped;
        off += n;
    }
    Ok(done)
}

/// Whether files in `dir` can share extents (`FICLONE` works there).
pub fn can_reflink(dir: &Path) -> bool {
    let a = dir.join(format!(".reflink-probe-{}-a", std::process::id()));
    let b = dir.join(format!(".reflink-probe-{}-b", std::process::id()));
    let ok = (|| -> std::io::Result<bool> {
        std::fs::write(&a, vec![1u8; 4096])?;
        let src = File::open(&a)?;
        let dst = File::create(&b)?;
        Ok(rustix::fs::ioctl_ficlone(&dst, &src).is_ok())
    })()
    .unwrap_or(false);
    let _ = std::fs::remove_file(&a);
    let _ = std::fs::remove_file(&b);
    ok
}
