//! The few btrfs ioctls botyard uses: a subvolume is a directory tree the
//! filesystem can snapshot in O(1), which is how a copy bot's root is made
//! from its image's on btrfs, and how it is removed in O(1).
//!
//! Every call takes the parent directory's descriptor and one name (no
//! path is looked up again), and fails cleanly off btrfs.

use rustix::fd::{AsFd, AsRawFd, BorrowedFd};

const BTRFS_SUPER_MAGIC: i64 = 0x9123_683E;
/// The inode number of every subvolume's root directory.
const FIRST_FREE_OBJECTID: u64 = 256;
const PATH_NAME_MAX: usize = 4087;
const SUBVOL_RDONLY: u64 = 1 << 1;

/// `struct btrfs_ioctl_vol_args`.
#[repr(C)]
struct VolArgs {
    fd: i64,
    name: [u8; PATH_NAME_MAX + 1],
}

const fn iow(nr: u64, size: usize) -> u64 {
    (1 << 30) | ((size as u64) << 16) | (0x94 << 8) | nr
}
const SNAP_CREATE: u64 = iow(1, std::mem::size_of::<VolArgs>());
const SUBVOL_CREATE: u64 = iow(14, std::mem::size_of::<VolArgs>());
const SNAP_DESTROY: u64 = iow(15, std::mem::size_of::<VolArgs>());
const SUBVOL_SETFLAGS: u64 = iow(26, std::mem::size_of::<u64>());

fn args(fd: i64, name: &[u8]) -> std::io::Result<Box<VolArgs>> {
    if name.is_empty() || name.len() > PATH_NAME_MAX || name.contains(&0) || name.contains(&b'/') {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut a = Box::new(VolArgs {
        fd,
        name: [0; PATH_NAME_MAX + 1],
    });
    a.name[..name.len()].copy_from_slice(name);
    Ok(a)
}

fn ioctl<T>(fd: BorrowedFd<'_>, request: u64, arg: *const T) -> std::io::Result<()> {
    // SAFETY: `arg` points at the struct `request` names, alive for the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, arg) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Whether `fd` is on a btrfs filesystem.
pub fn is_btrfs<Fd: AsFd>(fd: Fd) -> bool {
    rustix::fs::fstatfs(fd).is_ok_and(|s| s.f_type == BTRFS_SUPER_MAGIC)
}

/// Whether the directory `fd` is the root of a btrfs subvolume.
pub fn is_subvolume<Fd: AsFd>(fd: Fd) -> bool {
    let fd = fd.as_fd();
    rustix::fs::fstat(fd).is_ok_and(|st| st.st_ino == FIRST_FREE_OBJECTID) && is_btrfs(fd)
}

/// Creates the empty subvolume `name` in `dir`.
pub fn create_subvolume(dir: BorrowedFd<'_>, name: &[u8]) -> std::io::Result<()> {
    let a = args(0, name)?;
    ioctl(dir, SUBVOL_CREATE, &*a)
}

/// Snapshots the subvolume `src` as the new, writable subvolume `name` in
/// `dir` (same filesystem): O(1), every file shared until written.
pub fn snapshot(src: BorrowedFd<'_>, dir: BorrowedFd<'_>, name: &[u8]) -> std::io::Result<()> {
    let a = args(src.as_raw_fd() as i64, name)?;
    ioctl(dir, SNAP_CREATE, &*a)
}

/// Makes the subvolume `fd` read-only: nothing in it can change after.
pub fn set_readonly(fd: BorrowedFd<'_>) -> std::io::Result<()> {
    let flags: u64 = SUBVOL_RDONLY;
    ioctl(fd, SUBVOL_SETFLAGS, &flags)
}

/// Deletes the subvolume `name` in `dir` with everything in it, in O(1)
/// (the filesystem frees its extents in the background). Fails with
/// ENOTEMPTY if a subvolume is nested in it, EINVAL if `name` is not a
/// subvolume, EPERM without CAP_SYS_ADMIN.
pub fn destroy_subvolume(dir: BorrowedFd<'_>, name: &[u8]) -> std::io::Result<()> {
    let a = args(0, name)?;
    ioctl(dir, SNAP_DESTROY, &*a)
}
