//! Mounting overlayfs with the new mount API, one layer at a time
//! (`lowerdir+`, `datadir+`), so no path is ever parsed out of an option
//! string. Needs kernel ≥ 6.8 and root.

use anyhow::{bail, Context, Result};
use rustix::fd::{AsRawFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::mount::{
    fsconfig_create, fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, move_mount,
    FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, UnmountFlags,
};
use std::path::{Path, PathBuf};

/// The layers of one overlay mount, top first.
#[derive(Clone, Debug, Default)]
pub struct OverlaySpec {
    /// Writable upper and work dirs; none for a read-only view.
    pub upper: Option<(PathBuf, PathBuf)>,
    pub lowers: Vec<PathBuf>,
    /// Layer images among `lowers` that many overlays stack (an image's
    /// layer, under every bot of the image), each with where its one mount
    /// is kept: overlays over one EROFS mount share its superblock, so the
    /// layer's metadata is read and cached once for all of them. The
    /// caller decides when that mount goes ([`detach_shared`]).
    pub shared: Vec<(PathBuf, PathBuf)>,
    /// Data-only lower layers (redirect targets of metacopy stubs).
    pub data: Vec<PathBuf>,
    /// Mount read-only (with an upper dir: a consistent view of a bot that
    /// is not mounted elsewhere).
    pub readonly: bool,
    /// The lowers are a user's directory, not botyard's layers: overlay
    /// must not act on `trusted.overlay.*` xattrs found in them (no
    /// metacopy), and no index ties the upper to the lowers' identity.
    pub user_lower: bool,
    /// Honour setuid and setgid bits (the mount is `nosuid` otherwise):
    /// anyone who can reach the mount could run an image's setuid-root
    /// program as root.
    pub allow_suid: bool,
    /// Honour device nodes (the mount is `nodev` otherwise): anyone who
    /// can reach the mount could open an image's devices with the modes the
    /// image gave them.
    pub allow_dev: bool,
}

/// A mount failure's error: the kernel's errno explained, with a kind
/// where a caller decides on it.
fn kernel_error(what: String, e: rustix::io::Errno) -> anyhow::Error {
    let text = if what.is_empty() {
        kernel_hint(e)
    } else {
        format!("{what}: {}", kernel_hint(e))
    };
    match e {
        rustix::io::Errno::BUSY => store::error(store::ErrorKind::InUse, text),
        rustix::io::Errno::STALE => store::error(store::ErrorKind::StaleLowers, text),
        _ => anyhow::anyhow!(text),
    }
}

fn kernel_hint(e: rustix::io::Errno) -> String {
    match e {
        rustix::io::Errno::PERM | rustix::io::Errno::ACCESS => "mounting needs root (CAP_SYS_ADMIN)".into(),
        rustix::io::Errno::NOSYS | rustix::io::Errno::NODEV => {
            "this kernel lacks overlayfs or the new mount API; the overlay driver needs Linux ≥ 6.8 (use --driver copy)".into()
        }
        rustix::io::Errno::BUSY => "its upper or work dir is in use by another overlay mount".into(),
        rustix::io::Errno::STALE => {
            "the upper dir was made against other lower layers (stale origin)".into()
        }
        rustix::io::Errno::INVAL => {
            "the kernel refused the overlay options; the overlay driver needs Linux ≥ 6.8 with metacopy and data-only layers (use --driver copy)"
                .into()
        }
        other => format!("{other}"),
    }
}

/// Forgets which lower layers an upper dir was made against (the upper
/// root's origin and the work dir's index), so it can be stacked on rebuilt
/// ones. Its files keep their content and metadata.
pub fn forget_lowers(upper: &Path, work: &Path) -> Result<()> {
    match rustix::fs::removexattr(upper, "trusted.overlay.origin") {
        Ok(()) | Err(rustix::io::Errno::NODATA) => {}
        Err(e) => {
            return Err(std::io::Error::from(e))
                .with_context(|| format!("cannot reset {}", upper.display()))
        }
    }
    for sub in ["index", "work"] {
        let p = work.join(sub);
        if p.exists() {
            std::fs::remove_dir_all(&p).with_context(|| format!("cannot reset {}", p.display()))?;
        }
    }
    Ok(())
}

/// Mounts the overlay at `target`.
pub fn mount_overlay(spec: &OverlaySpec, target: &Path) -> Result<()> {
    // A killed process's overlay releases its upper dir ("in use") only when
    // the kernel has finished tearing it down, a moment after the process
    // is gone; wait for that rather than fail.
    let mut tries = 0;
    loop {
        match mount_once(spec, target) {
            Err(e) if tries < 50 && store::is_kind(&e, store::ErrorKind::InUse) => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            // Lower layers rebuilt from the store are equal in content but
            // not in identity; the upper stays valid on top of them.
            // (Overlay's index checks the upper root's origin.)
            Err(e) if tries < 50 && store::is_kind(&e, store::ErrorKind::StaleLowers) => {
                let (upper, work) = spec
                    .upper
                    .as_ref()
                    .expect("only an upper dir has an origin");
                forget_lowers(upper, work)?;
                tries = 50;
            }
            other => return other,
        }
    }
}

fn mount_once(spec: &OverlaySpec, target: &Path) -> Result<()> {
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)
        .map_err(|e| kernel_error(String::new(), e))?;
    let set = |k: &str, v: &Path| {
        fsconfig_set_string(&fs, k, v)
            .map_err(|e| kernel_error(format!("overlay option {k}={}", v.display()), e))
    };
    // Layer images are mounted detached (never attached anywhere) and
    // handed over by fd; the overlay keeps them alive until it goes.
    let mut images = Vec::new();
    for l in &spec.lowers {
        if l.is_file() {
            let m = match spec.shared.iter().find(|(layer, _)| layer == l) {
                // Sharing saves memory; a bot mounts without it rather than fail.
                Some((_, at)) => shared_image(l, at).or_else(|_| mount_image(l))?,
                None => mount_image(l)?,
            };
            set(
                "lowerdir+",
                Path::new(&format!("/proc/self/fd/{}", m.as_raw_fd())),
            )?;
            images.push(m);
        } else {
            set("lowerdir+", l)?;
        }
    }
    for d in &spec.data {
        set("datadir+", d)?;
    }
    if let Some((upper, work)) = &spec.upper {
        set("upperdir", upper)?;
        set("workdir", work)?;
    }
    let metacopy = if spec.user_lower { "off" } else { "on" };
    fsconfig_set_string(&fs, "metacopy", metacopy)
        .map_err(|e| kernel_error("overlay metacopy".into(), e))?;
    fsconfig_set_string(&fs, "redirect_dir", "on")
        .map_err(|e| kernel_error("overlay redirect_dir".into(), e))?;
    if spec.upper.is_some() && !spec.user_lower {
        // The index keeps hard links whole when one name is copied up.
        fsconfig_set_string(&fs, "index", "on")
            .map_err(|e| kernel_error("overlay index".into(), e))?;
    }
    let readonly = spec.readonly || spec.upper.is_none();
    if readonly {
        fsconfig_set_flag(&fs, "ro").map_err(|e| kernel_error("overlay ro".into(), e))?;
    }
    fsconfig_create(&fs).map_err(|e| kernel_error("cannot create the overlay".into(), e))?;
    let mut attrs = MountAttrFlags::empty();
    if readonly {
        attrs |= MountAttrFlags::MOUNT_ATTR_RDONLY;
    }
    if !spec.allow_suid {
        attrs |= MountAttrFlags::MOUNT_ATTR_NOSUID;
    }
    if !spec.allow_dev {
        attrs |= MountAttrFlags::MOUNT_ATTR_NODEV;
    }
    let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)
        .map_err(|e| kernel_error("fsmount".into(), e))?;
    let dir = rustix::fs::open(
        target,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(std::io::Error::from)
    .with_context(|| format!("mount point {} is not a directory", target.display()))?;
    attach(&mnt, &dir).map_err(|e| {
        kernel_error(
            format!("cannot attach the overlay at {}", target.display()),
            e,
        )
    })?;
    Ok(())
}

/// Attaches the detached mount `mnt` at the directory opened as `to`.
fn attach(mnt: &OwnedFd, to: &OwnedFd) -> rustix::io::Result<()> {
    move_mount(
        mnt,
        "",
        to,
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )
}

/// A read-only, detached mount of the EROFS image at `path`: straight from
/// the file where its filesystem allows (Linux ≥ 6.12, not tmpfs), else
/// through a loop device that goes away with the mount.
fn mount_image(path: &Path) -> Result<OwnedFd> {
    let what = || format!("cannot mount the layer {}", path.display());
    let erofs = |source: &Path| -> rustix::io::Result<OwnedFd> {
        let fs = fsopen("erofs", FsOpenFlags::FSOPEN_CLOEXEC)?;
        fsconfig_set_string(&fs, "source", source)?;
        fsconfig_set_flag(&fs, "ro")?;
        fsconfig_create(&fs)?;
        fsmount(
            &fs,
            FsMountFlags::FSMOUNT_CLOEXEC,
            MountAttrFlags::MOUNT_ATTR_RDONLY,
        )
    };
    match erofs(path) {
        Ok(m) => Ok(m),
        Err(rustix::io::Errno::NODEV) => {
            bail!("{}: this kernel lacks EROFS; use --driver copy", what())
        }
        Err(direct) => {
            let (_loop_fd, dev) = attach_loop(path).map_err(|e| {
                anyhow::anyhow!("{}: {direct}, and no loop device either: {e}", what())
            })?;
            erofs(&dev).map_err(|e| anyhow::anyhow!("{}: {}", what(), kernel_hint(e)))
        }
    }
}

/// EROFS's `f_type`.
const EROFS_MAGIC: i64 = 0xE0F5_E1E2;

/// A detached clone of the one mount of the layer image `layer` kept at
/// `at`, which is mounted there first if nothing is; the clone shares the
/// mount's superblock.
fn shared_image(layer: &Path, at: &Path) -> Result<OwnedFd> {
    let clone = |m: &OwnedFd| {
        rustix::mount::open_tree(
            m,
            "",
            rustix::mount::OpenTreeFlags::OPEN_TREE_CLONE
                | rustix::mount::OpenTreeFlags::OPEN_TREE_CLOEXEC
                | rustix::mount::OpenTreeFlags::AT_EMPTY_PATH,
        )
        .map_err(|e| kernel_error(format!("cannot share the layer mount {}", at.display()), e))
    };
    if let Some(m) = mount_root(at) {
        if !is_layer_mount(&m) {
            bail!("{} is a mount point, but not of a layer", at.display());
        }
        return clone(&m);
    }
    std::fs::create_dir_all(at)
        .with_context(|| format!("cannot create the layer mount point {}", at.display()))?;
    let m = mount_image(layer)?;
    // It sits in the node's mount table: it hands out no setuid bit or
    // device of the image itself (the overlays above decide for theirs).
    set_attrs(
        &m,
        MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV,
        None,
    )
    .map_err(|e| {
        kernel_error(
            format!("cannot restrict the layer mount {}", at.display()),
            e,
        )
    })?;
    let dir = rustix::fs::open(
        at,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(std::io::Error::from)
    .with_context(|| format!("cannot open {}", at.display()))?;
    attach(&m, &dir)
        .map_err(|e| kernel_error(format!("cannot attach the layer at {}", at.display()), e))?;
    clone(&m)
}

/// Lets go of a layer's shared mount at `at` (the mount point stays, for
/// the next one). Lazily: overlays that stack it hold clones, which keep
/// its superblock until they go.
pub fn detach_shared(at: &Path) {
    // Only a layer: whatever else someone mounted there is not ours.
    if is_layer_mounted_at(at) {
        let _ = rustix::mount::unmount(at, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW);
    }
}

/// Whether a layer (an EROFS mount) is mounted at `at`.
pub fn is_layer_mounted_at(at: &Path) -> bool {
    mount_root(at).is_some_and(|m| is_layer_mount(&m))
}

fn is_layer_mount(m: &OwnedFd) -> bool {
    rustix::fs::fstatfs(m).is_ok_and(|st| st.f_type == EROFS_MAGIC)
}

/// Attaches `path` read-only to a free loop device that detaches itself
/// when nothing holds it any more; the caller keeps the returned fd open
/// until the device is mounted.
fn attach_loop(path: &Path) -> std::io::Result<(OwnedFd, PathBuf)> {
    const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
    const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
    const LO_FLAGS_READ_ONLY: u32 = 1;
    const LO_FLAGS_AUTOCLEAR: u32 = 4;
    #[repr(C)]
    struct LoopConfig {
        fd: u32,
        block_size: u32,
        // struct loop_info64: 5 u64s, then lo_number, encrypt type and key
        // size, lo_flags, names and key, lo_init.
        info_u64: [u64; 5],
        info_u32: [u32; 4],
        info_bytes: [u8; 160],
        info_init: [u64; 2],
        reserved: [u64; 8],
    }
    let file = std::fs::File::open(path)?;
    let ctl = std::fs::File::open("/dev/loop-control")?;
    for _ in 0..20 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a number.
        let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let dev = PathBuf::from(format!("/dev/loop{n}"));
        let lo = std::fs::OpenOptions::new().read(true).open(&dev)?;
        let cfg = LoopConfig {
            fd: file.as_raw_fd() as u32,
            block_size: 0,
            info_u64: [0; 5],
            info_u32: [0, 0, 0, LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR],
            info_bytes: [0; 160],
            info_init: [0; 2],
            reserved: [0; 8],
        };
        // SAFETY: cfg is a complete struct loop_config that outlives the call.
        if unsafe { libc::ioctl(lo.as_raw_fd(), LOOP_CONFIGURE, &cfg) } == 0 {
            return Ok((lo.into(), dev));
        }
        let e = std::io::Error::last_os_error();
        // Taken by someone else between the two calls: ask again.
        if e.raw_os_error() != Some(libc::EBUSY) {
            return Err(e);
        }
    }
    Err(std::io::Error::other(
        "every free loop device was taken meanwhile",
    ))
}

pub fn unmount(target: &Path) -> Result<()> {
    // A sandbox starting elsewhere holds every mount for a moment while it
    // copies the mount table and lets go of it; only a lasting hold is busy.
    let mut r = rustix::mount::unmount(target, UnmountFlags::NOFOLLOW);
    for _ in 0..40 {
        if r != Err(rustix::io::Errno::BUSY) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        r = rustix::mount::unmount(target, UnmountFlags::NOFOLLOW);
    }
    match r {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::BUSY) => {
            bail!(
                "{} is busy: a process still uses it; stop it (fuser -vm {}) and retry",
                target.display(),
                target.display()
            )
        }
        Err(e) => Err(std::io::Error::from(e))
            .with_context(|| format!("cannot unmount {}", target.display())),
    }
}

/// Whether `path` is a mount point of an overlay. Asked of the path itself
/// (statx and fstatfs on one opened object, the final symlink not
/// followed), not of mountinfo, whose size grows with every bot mounted.
pub fn is_overlay_mount(path: &Path) -> bool {
    const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;
    mount_root(path).is_some_and(|fd| {
        rustix::fs::fstatfs(&fd).is_ok_and(|st| st.f_type == OVERLAYFS_SUPER_MAGIC)
    })
}

/// Whether something is mounted at `path` (the topmost mount there is what
/// path lookup sees, and what is checked).
pub fn is_mount_point(path: &Path) -> bool {
    mount_root(path).is_some()
}

/// `path` opened (O_PATH, not following a final symlink) if it is the root
/// of a mount.
fn mount_root(path: &Path) -> Option<OwnedFd> {
    let fd = rustix::fs::open(
        path,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let st = rustix::fs::statx(
        &fd,
        "",
        rustix::fs::AtFlags::EMPTY_PATH,
        rustix::fs::StatxFlags::BASIC_STATS,
    )
    .ok()?;
    let root = rustix::fs::StatxAttributes::MOUNT_ROOT;
    (st.stx_attributes_mask.contains(root) && st.stx_attributes.contains(root)).then_some(fd)
}

/// Mounts a copy of the mount tree at the opened object `source` (a
/// directory or file, with what is mounted below it) at `target`, which is
/// created; what appears is exactly the object that was opened and checked,
/// whatever happened to its path since. Read-only unless `writable`;
/// always `nosuid,nodev`.
pub fn mount_clone(source: &OwnedFd, target: &Path, writable: bool) -> Result<()> {
    mount_clone_mapped(source, target, writable, None)
}

/// [`mount_clone`] seen through the id mapping of the user namespace
/// `userns` (an idmapped mount, as a container runtime makes for a pod with
/// its own user namespace): files owned by 0 on disk show as the
/// namespace's root. Plain directories on ext4, XFS, btrfs, tmpfs and EROFS
/// take one; a merged overlay does not (EINVAL).
pub fn mount_clone_idmapped(
    source: &OwnedFd,
    target: &Path,
    writable: bool,
    userns: &OwnedFd,
) -> Result<()> {
    mount_clone_mapped(source, target, writable, Some(userns))
}

fn mount_clone_mapped(
    source: &OwnedFd,
    target: &Path,
    writable: bool,
    userns: Option<&OwnedFd>,
) -> Result<()> {
    let st = rustix::fs::fstat(source)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory {
        std::fs::create_dir_all(target)?;
    } else {
        if let Some(p) = target.parent() {
            std::fs::create_dir_all(p)?;
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(target)?;
    }
    let to = rustix::fs::open(
        target,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    clone_onto(source, &to, target, writable, userns)
}

/// [`mount_clone`] onto a mount point the caller opened (and checked):
/// what is mounted on is exactly that object, whatever its path does
/// meanwhile. `shown` names it in errors.
pub fn mount_clone_onto(
    source: &OwnedFd,
    to: &OwnedFd,
    shown: &Path,
    writable: bool,
) -> Result<()> {
    clone_onto(source, to, shown, writable, None)
}

fn clone_onto(
    source: &OwnedFd,
    to: &OwnedFd,
    target: &Path,
    writable: bool,
    userns: Option<&OwnedFd>,
) -> Result<()> {
    use rustix::mount::OpenTreeFlags;
    let tree = rustix::mount::open_tree(
        source,
        "",
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_RECURSIVE
            | OpenTreeFlags::AT_EMPTY_PATH,
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "cannot copy the mount for {}: {}",
            target.display(),
            kernel_hint(e)
        )
    })?;
    let mut attrs = MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV;
    if !writable {
        attrs |= MountAttrFlags::MOUNT_ATTR_RDONLY;
    }
    set_attrs(&tree, attrs, None).map_err(|e| {
        anyhow::anyhow!(
            "cannot restrict the mount for {}: {}",
            target.display(),
            kernel_hint(e)
        )
    })?;
    if let Some(ns) = userns {
        set_attrs(&tree, MountAttrFlags::empty(), Some(ns)).map_err(|e| {
            anyhow::anyhow!(
                "cannot map the ids of the mount for {}: {e}{}",
                target.display(),
                if e == rustix::io::Errno::INVAL {
                    " (a merged overlay takes no idmapped mount; the copy driver's plain directories do)"
                } else {
                    ""
                }
            )
        })?;
    }
    attach(&tree, to).map_err(|e| {
        anyhow::anyhow!(
            "cannot attach the mount at {}: {}",
            target.display(),
            kernel_hint(e)
        )
    })?;
    Ok(())
}

/// `mount_setattr` on a detached tree (not in rustix yet); with `userns`, also idmapped
/// through that user namespace.
fn set_attrs(
    tree: &OwnedFd,
    set: MountAttrFlags,
    userns: Option<&OwnedFd>,
) -> rustix::io::Result<()> {
    const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let a = MountAttr {
        attr_set: set.bits() as u64
            | if userns.is_some() {
                MOUNT_ATTR_IDMAP
            } else {
                0
            },
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.map_or(0, |fd| fd.as_raw_fd() as u64),
    };
    const AT_EMPTY_PATH: libc::c_int = 0x1000;
    const AT_RECURSIVE: libc::c_int = 0x8000;
    // SAFETY: a valid fd, an empty C string and a complete struct mount_attr.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            AT_EMPTY_PATH | AT_RECURSIVE,
            &a as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(rustix::io::Errno::from_raw_os_error(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        ));
    }
    Ok(())
}

/// Detaches whatever is mounted at `dir` or at one of its entries (a
/// detach takes the mounts below along), stacked mounts included. Asks
/// each path, not mountinfo, whose size grows with every bot mounted.
pub fn unmount_below(dir: &Path) {
    let entries = std::fs::read_dir(dir).into_iter().flatten().flatten();
    for p in entries.map(|e| e.path()).chain([dir.to_path_buf()]) {
        for _ in 0..64 {
            if !is_mount_point(&p)
                || rustix::mount::unmount(&p, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW)
                    .is_err()
            {
                break;
            }
        }
    }
}

/// Mount points at or below `dir` (read from mountinfo), deepest first.
pub fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(|m| PathBuf::from(unescape(m))))
        .filter(|m| m.starts_with(dir))
        .collect();
    out.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    out.dedup();
    out
}

/// The type of the filesystem holding `path` (the mount with the longest
/// mount point above it), for messages.
pub fn fstype_of(path: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let path = std::fs::canonicalize(path).ok()?;
    let mut best: Option<(usize, String)> = None;
    for l in info.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        let Some(sep) = f.iter().position(|x| *x == "-") else {
            continue;
        };
        if f.len() <= 4 {
            continue;
        }
        let mp = PathBuf::from(unescape(f[4]));
        if path.starts_with(&mp) {
            let depth = mp.components().count();
            if best.as_ref().is_none_or(|(d, _)| depth >= *d) {
                best = f.get(sep + 1).map(|t| (depth, t.to_string()));
            }
        }
    }
    best.map(|(_, t)| t)
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mounts are told by the path itself; a symlink to a mount point is
    /// not one, and an overlay is told from another filesystem.
    #[test]
    fn mount_points_are_asked_of_the_path() {
        let t = tempfile::tempdir().unwrap();
        let (m, lower, o) = (
            t.path().join("m"),
            t.path().join("lower"),
            t.path().join("o"),
        );
        for d in [&m, &lower, &o] {
            std::fs::create_dir(d).unwrap();
        }
        std::os::unix::fs::symlink(&m, t.path().join("link")).unwrap();
        assert!(!is_mount_point(&m));
        let none = rustix::mount::MountFlags::empty();
        rustix::mount::mount("none", &m, "tmpfs", none, None).unwrap();
        rustix::mount::mount("none", &m, "tmpfs", none, None).unwrap();
        let spec = OverlaySpec {
            lowers: vec![lower.clone(), m.clone()],
            shared: Vec::new(),
            readonly: true,
            user_lower: true,
            ..Default::default()
        };
        mount_overlay(&spec, &o).unwrap();
        assert!(is_mount_point(&m) && !is_overlay_mount(&m));
        assert!(!is_mount_point(&t.path().join("link")));
        assert!(is_mount_point(&o) && is_overlay_mount(&o));
        assert!(!is_overlay_mount(&lower));
        // Both stacked tmpfs mounts and the overlay go.
        unmount_below(t.path());
        for d in [&m, &o] {
            assert!(!is_mount_point(d), "{} is still mounted", d.display());
        }
    }
}
