use crate::policy::Policy;
use crate::state::{now, Mode, Workspace, WorkspaceRef};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::time::Duration;
use store::Store;

#[derive(Clone, Debug)]
pub struct CreateOptions {
    pub project: PathBuf,
    pub mode: Mode,
    /// Auto mode: time between syncs.
    pub interval: Duration,
    pub policy: Option<PathBuf>,
    /// Unsafe mode must be asked for knowingly.
    pub i_understand: bool,
}

/// Creates a workspace over an existing project directory, after checking
/// that the project can be an overlay's lower layer.
pub fn create(store: &Store, name: &str, o: &CreateOptions) -> Result<WorkspaceRef> {
    let ws = Workspace::new(store, name)?;
    let _lock = ws.lock()?;
    if ws.exists()? {
        return Err(store::error(
            store::ErrorKind::AlreadyExists,
            format!("workspace {name} already exists; pick another name or `botyard workspace rm {name}`"),
        ));
    }
    let project = std::fs::canonicalize(&o.project).with_context(|| {
        format!(
            "project {} does not exist; give the directory of an existing project",
            o.project.display()
        )
    })?;
    if !project.is_dir() {
        bail!("project {} is not a directory", project.display());
    }
    let store_root = std::fs::canonicalize(store.root())?;
    if project.starts_with(&store_root) {
        bail!(
            "project {} lies inside the store {}; give a project outside it",
            project.display(),
            store_root.display()
        );
    }
    if store_root.starts_with(&project) {
        bail!(
            "the store {} lies inside project {}: the agent's writes would land in the project; put the store elsewhere (--store)",
            store_root.display(),
            project.display()
        );
    }
    if o.mode == Mode::Unsafe && !o.i_understand {
        bail!(
            "unsafe mode lets the agent write {} directly, with no gate and no undo; add --i-understand to create it anyway",
            project.display()
        );
    }
    if o.interval < Duration::from_secs(1) {
        bail!("--interval must be at least 1s");
    }
    let policy = match &o.policy {
        Some(p) => {
            let p = std::fs::canonicalize(p)
                .with_context(|| format!("policy file {} does not exist", p.display()))?;
            Policy::load(Some(&p))?;
            Some(p)
        }
        None => None,
    };
    let r = WorkspaceRef {
        name: name.to_string(),
        project,
        mode: o.mode,
        interval_secs: o.interval.as_secs(),
        policy,
        created: now(),
        base_tree: None,
    };
    if r.mode != Mode::Unsafe {
        // A read-only overlay of the project proves it can be a lower
        // layer (and that this kernel has what the workspace needs).
        let view = ws.view(&r).map_err(|_| {
            let fstype = fs::fstype_of(&r.project).unwrap_or_else(|| "an unknown filesystem".into());
            anyhow::anyhow!(
                "project {} is on {fstype}, which overlayfs refused as a lower layer; move the project, or use --mode unsafe",
                r.project.display()
            )
        })?;
        drop(view);
    }
    std::fs::create_dir_all(ws.upper())?;
    std::fs::create_dir_all(ws.work())?;
    std::fs::create_dir_all(ws.default_mount())?;
    ws.save(&r)?;
    Ok(r)
}
