//! Mounting overlayfs with the new mount API, one layer at a time
//! (`lowerdir+`, `datadir+`), so no path is ever parsed out of an option
//! string. Needs kernel ≥ 6.8 and root.

use anyhow::{bail, Context, Result};
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
    /// Data-only lower layers (redirect targets of metacopy stubs).
    pub data: Vec<PathBuf>,
    /// Mount read-only (with an upper dir: a consistent view of a bot that
    /// is not mounted elsewhere).
    pub readonly: bool,
}

fn kernel_hint(e: rustix::io::Errno) -> String {
    match e {
        rustix::io::Errno::PERM | rustix::io::Errno::ACCESS => "mounting needs root (CAP_SYS_ADMIN)".into(),
        rustix::io::Errno::NOSYS | rustix::io::Errno::NODEV => {
            "this kernel lacks overlayfs or the new mount API; the overlay driver needs Linux ≥ 6.8 (use --driver copy)".into()
        }
        rustix::io::Errno::BUSY => "its upper or work dir is in use by another overlay mount".into(),
        rustix::io::Errno::STALE => STALE_LOWERS.into(),
        rustix::io::Errno::INVAL => {
            "the kernel refused the overlay options; the overlay driver needs Linux ≥ 6.8 with metacopy and data-only layers (use --driver copy)"
                .into()
        }
        other => format!("{other}"),
    }
}

/// How a mount failure reads when the upper dir was recorded against other
/// lower layers (overlay's index checks the upper root's origin).
pub const STALE_LOWERS: &str = "the upper dir was made against other lower layers (stale origin)";

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
            Err(e) if tries < 50 && e.to_string().contains("in use") => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            // Lower layers rebuilt from the store are equal in content but
            // not in identity; the upper stays valid on top of them.
            Err(e) if tries < 50 && e.to_string().contains(STALE_LOWERS) => {
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
        .map_err(|e| anyhow::anyhow!(kernel_hint(e)))?;
    let set = |k: &str, v: &Path| {
        fsconfig_set_string(&fs, k, v)
            .map_err(|e| anyhow::anyhow!("overlay option {k}={}: {}", v.display(), kernel_hint(e)))
    };
    for l in &spec.lowers {
        set("lowerdir+", l)?;
    }
    for d in &spec.data {
        set("datadir+", d)?;
    }
    if let Some((upper, work)) = &spec.upper {
        set("upperdir", upper)?;
        set("workdir", work)?;
    }
    fsconfig_set_string(&fs, "metacopy", "on")
        .map_err(|e| anyhow::anyhow!("overlay metacopy: {}", kernel_hint(e)))?;
    fsconfig_set_string(&fs, "redirect_dir", "on")
        .map_err(|e| anyhow::anyhow!("overlay redirect_dir: {}", kernel_hint(e)))?;
    if spec.upper.is_some() {
        // The index keeps hard links whole when one name is copied up.
        fsconfig_set_string(&fs, "index", "on")
            .map_err(|e| anyhow::anyhow!("overlay index: {}", kernel_hint(e)))?;
    }
    let readonly = spec.readonly || spec.upper.is_none();
    if readonly {
        fsconfig_set_flag(&fs, "ro")
            .map_err(|e| anyhow::anyhow!("overlay ro: {}", kernel_hint(e)))?;
    }
    fsconfig_create(&fs)
        .map_err(|e| anyhow::anyhow!("cannot create the overlay: {}", kernel_hint(e)))?;
    let attrs = if readonly {
        MountAttrFlags::MOUNT_ATTR_RDONLY
    } else {
        MountAttrFlags::empty()
    };
    let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)
        .map_err(|e| anyhow::anyhow!("fsmount: {}", kernel_hint(e)))?;
    let dir = rustix::fs::open(
        target,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(std::io::Error::from)
    .with_context(|| format!("mount point {} is not a directory", target.display()))?;
    move_mount(
        &mnt,
        "",
        &dir,
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "cannot attach the overlay at {}: {}",
            target.display(),
            kernel_hint(e)
        )
    })?;
    Ok(())
}

pub fn unmount(target: &Path) -> Result<()> {
    match rustix::mount::unmount(target, UnmountFlags::NOFOLLOW) {
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

/// Whether `path` is a mount point of an overlay (read from mountinfo).
pub fn is_overlay_mount(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines().any(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let sep = f.iter().position(|x| *x == "-");
        f.len() > 4
            && unescape(f[4]) == want
            && sep.is_some_and(|s| f.get(s + 1) == Some(&"overlay"))
    })
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}
