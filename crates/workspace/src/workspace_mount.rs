//! `workspace mount` and `unmount`: the overlay over the project (or in
//! unsafe mode a bind mount of it), the audit watcher started with it, and
//! at unmount the settling of moved directories and the stop of the watcher.

use crate::audit::{stop_watcher, Log};
use crate::state::{Mode, Workspace, WorkspaceRef};
use anyhow::{bail, Context, Result};
use fs::walk::components;
use fs::MemTree;
use std::path::{Path, PathBuf};
use store::{Progress, Staging, Store};

/// Records the project's tree as the base. Paths the agent has already
/// changed keep the base they had, so the three-way comparison stays
/// true for them; everywhere else the base is the project as it is now.
fn record_base(ws: &Workspace, r: &mut WorkspaceRef, progress: &dyn Progress) -> Result<()> {
    let staging = Staging::new(&ws.store, progress)?;
    let opts = fs::ScanOptions {
        stat_cache: true,
        one_file_system: true,
        clone: true,
    };
    let mut tree = fs::scan_dir(&r.project, &staging, opts, progress)
        .with_context(|| format!("cannot record project {}", r.project.display()))?;
    if let Some(old) = r.base_tree {
        let view = ws.view(r)?;
        let changes = crate::changes::changes(
            &ws.store,
            Some(old),
            &ws.upper(),
            &view.path,
            &r.project,
            &[],
        )?;
        drop(view);
        if !changes.is_empty() {
            let old = MemTree::load(&ws.store, &old)?;
            for c in &changes {
                for p in std::iter::once(&c.path).chain(c.from.iter()) {
                    let path = components(p);
                    match old.lookup(&path) {
                        Some(n) => tree.graft(&path, &old, n)?,
                        None => {
                            tree.remove(&path);
                        }
                    }
                }
            }
        }
    }
    let (h, _) = tree.write(&staging)?;
    staging.commit(|_| {
        r.base_tree = Some(h);
        ws.save(r)
    })?;
    Ok(())
}

/// Mounts a workspace at `at` (default `workspaces/NAME/root`): records the
/// project's tree, mounts the overlay (or, in unsafe mode, the project
/// itself), and starts the audit watcher with `start_watcher`, returning
/// once the watcher is in place.
pub fn mount(
    store: &Store,
    name: &str,
    at: Option<&Path>,
    start_watcher: &dyn Fn(&Workspace) -> Result<std::process::Child>,
    progress: &dyn Progress,
) -> Result<PathBuf> {
    let ws = Workspace::new(store, name)?;
    let _lock = ws.lock()?;
    let mut r = ws.load()?;
    if let Some(p) = ws.mounted_at() {
        bail!("workspace {name} is already mounted at {}", p.display());
    }
    if !r.project.is_dir() {
        bail!(
            "project {} of workspace {name} is gone; restore it or `botyard workspace rm {name}`",
            r.project.display()
        );
    }
    let target = match at {
        Some(p) => {
            std::fs::create_dir_all(p)
                .with_context(|| format!("cannot create mount point {}", p.display()))?;
            std::fs::canonicalize(p)?
        }
        None => ws.default_mount(),
    };
    std::fs::create_dir_all(&target)?;
    record_base(&ws, &mut r, progress)?;
    match r.mode {
        Mode::Unsafe => {
            rustix::mount::mount_bind(&r.project, &target)
                .map_err(std::io::Error::from)
                .with_context(|| {
                    format!(
                        "cannot bind-mount {} at {}",
                        r.project.display(),
                        target.display()
                    )
                })?;
            // Nothing in the project gets setuid or device powers here.
            use rustix::mount::MountFlags;
            if let Err(e) = rustix::mount::mount_remount(
                &target,
                MountFlags::BIND | MountFlags::NOSUID | MountFlags::NODEV,
                "",
            ) {
                let _ = fs::unmount(&target);
                return Err(std::io::Error::from(e))
                    .context("cannot make the workspace's bind mount nosuid,nodev");
            }
        }
        Mode::Secure | Mode::Auto => {
            // The merged root takes its owner and mode from the upper's
            // root: make them the project's, so the agent may write where
            // it could write in the project.
            let st = std::fs::metadata(&r.project)?;
            std::fs::create_dir_all(ws.upper())?;
            std::fs::create_dir_all(ws.work())?;
            {
                use std::os::unix::fs::{MetadataExt, PermissionsExt};
                std::os::unix::fs::chown(ws.upper(), Some(st.uid()), Some(st.gid()))?;
                std::fs::set_permissions(
                    ws.upper(),
                    std::fs::Permissions::from_mode(st.mode() & 0o7777),
                )?;
            }
            let spec = fs::OverlaySpec {
                upper: Some((ws.upper(), ws.work())),
                lowers: vec![r.project.clone()],
                shared: Vec::new(),
                data: vec![],
                user_lower: true,
                readonly: false,
                allow_suid: false,
                allow_dev: false,
            };
            fs::mount_overlay(&spec, &target)
                .with_context(|| format!("cannot mount workspace {name}"))?;
        }
    }
    store::write_file_atomic(
        &ws.dir(),
        &ws.mount_record(),
        format!("{}\n", target.display()).as_bytes(),
        0o644,
    )?;
    if let Err(e) = wait_for_watcher(&ws, start_watcher) {
        let _ = fs::unmount(&target);
        let _ = std::fs::remove_file(ws.mount_record());
        return Err(e);
    }
    Ok(target)
}

fn wait_for_watcher(
    ws: &Workspace,
    start: &dyn Fn(&Workspace) -> Result<std::process::Child>,
) -> Result<()> {
    let _ = std::fs::remove_file(ws.watcher_pid());
    let mut child = start(ws).context("cannot start the audit watcher")?;
    for _ in 0..500 {
        if let Ok(pid) = std::fs::read_to_string(ws.watcher_pid()) {
            if pid.trim() == child.id().to_string() {
                return Ok(());
            }
        }
        if let Some(status) = child.try_wait()? {
            let why = crate::workspace_log::read_log(&ws.audit_log())?
                .into_iter()
                .rev()
                .find(|e| e.event == "error")
                .and_then(|e| e.message)
                .unwrap_or_else(|| format!("it exited with {status}"));
            bail!("the audit watcher did not start: {why}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    bail!("the audit watcher did not start within 10 s")
}

/// Unmounts a workspace and stops its watcher; then drops from the upper
/// what the project already holds (synced while mounted). Returns how
/// many entries were dropped.
pub fn unmount(store: &Store, name: &str) -> Result<u64> {
    let ws = Workspace::new(store, name)?;
    let _lock = ws.lock()?;
    let r = ws.load()?;
    let Some(p) = ws.mounted_at() else {
        return Err(store::error(
            store::ErrorKind::NotMounted,
            format!("workspace {name} is not mounted"),
        ));
    };
    // What the project already holds is judged through the live mount
    // (the agent's view); a fresh view would stack the upper on a project
    // that syncs changed. Unmounted first: if a process still holds it, it
    // stays up and audited. The watcher then sees the unmount and ends.
    let in_sync = if r.mode == Mode::Unsafe {
        Vec::new()
    } else {
        crate::changes::in_sync_paths(&ws.upper(), &p, &r.project)?
    };
    fs::unmount(&p)?;
    stop_watcher(&ws);
    let _ = Log::open(&ws.audit_log())
        .and_then(|mut l| l.note("unmounted", format!("from {}", p.display())));
    let _ = std::fs::remove_file(ws.mount_record());
    if r.mode == Mode::Unsafe {
        return Ok(0);
    }
    let n = crate::workspace_sync::drop_from_upper(&ws, &r, &in_sync)?;
    crate::workspace_sync::settle_renamed_dirs(
        &ws,
        &crate::workspace_sync::read_renamed_dirs(&ws),
    )?;
    Ok(n)
}
