use anyhow::{bail, Context, Result};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use store::{Hash, Store};

pub const MAX_NAME: usize = 63;

/// Checks a workspace name: a path segment of at most 63 bytes.
pub fn validate_name(name: &str) -> Result<()> {
    store::validate_segment("workspace name", name, MAX_NAME)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if name.chars().any(char::is_whitespace) {
        bail!("workspace name '{name}' contains whitespace; use letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

/// How the agent's changes reach the project.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The project is the read-only lower layer; only `workspace sync`
    /// moves changes to it, through the gate.
    #[default]
    Secure,
    /// As secure, and `workspace watch` syncs every interval through the
    /// same gate; what the gate rejects stays in the upper.
    Auto,
    /// No overlay: the agent writes the project directly. Audited, not
    /// gated.
    Unsafe,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Secure => "secure",
            Mode::Auto => "auto",
            Mode::Unsafe => "unsafe",
        })
    }
}

impl FromStr for Mode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "secure" => Ok(Mode::Secure),
            "auto" => Ok(Mode::Auto),
            "unsafe" => Ok(Mode::Unsafe),
            other => bail!("unknown mode '{other}'; use secure, auto or unsafe"),
        }
    }
}

/// What `refs/workspaces/NAME` holds. `base_tree` (the project as the agent
/// last saw it, per path) stays alive through gc by the store's convention.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct WorkspaceRef {
    pub name: String,
    /// The project directory, canonical.
    pub project: PathBuf,
    pub mode: Mode,
    /// Auto mode: seconds between syncs.
    pub interval_secs: u64,
    /// A policy file (read at every use); none means the built-in policy.
    pub policy: Option<PathBuf>,
    pub created: String,
    /// Recorded at the first mount and moved forward by every sync.
    pub base_tree: Option<Hash>,
}

/// A workspace's paths in a store.
pub struct Workspace {
    pub store: Store,
    pub name: String,
}

impl Workspace {
    pub fn new(store: &Store, name: &str) -> Result<Workspace> {
        validate_name(name)?;
        Ok(Workspace {
            store: store.clone(),
            name: name.to_string(),
        })
    }

    pub fn dir(&self) -> PathBuf {
        self.store.root().join("workspaces").join(&self.name)
    }
    pub fn upper(&self) -> PathBuf {
        self.dir().join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.dir().join("work")
    }
    /// The default mount point.
    pub fn default_mount(&self) -> PathBuf {
        self.dir().join("root")
    }
    /// Where the workspace was last mounted.
    pub fn mount_record(&self) -> PathBuf {
        self.dir().join("mountpoint")
    }
    /// The audit log: one JSON object per line.
    pub fn audit_log(&self) -> PathBuf {
        self.dir().join("audit.log")
    }
    /// The audit watcher's process id while it runs.
    pub fn watcher_pid(&self) -> PathBuf {
        self.dir().join("audit.pid")
    }
    /// Temporary files a sync is writing into the project, so the next
    /// sync removes what a killed one left.
    pub fn sync_journal(&self) -> PathBuf {
        self.dir().join("sync-journal")
    }
    /// Directories whose rename a sync applied while mounted: their
    /// overlay redirect is cleared at unmount (the project now holds them
    /// at their new place).
    pub(crate) fn settle_list(&self) -> PathBuf {
        self.dir().join("renamed-dirs")
    }

    pub(crate) fn view_path(&self) -> PathBuf {
        self.dir().join("view")
    }

    pub fn load(&self) -> Result<WorkspaceRef> {
        match self.store.read_ref("workspaces", &self.name)? {
            Some(v) => serde_json::from_value(v).with_context(|| {
                format!(
                    "ref of workspace {} is damaged; run `botyard fsck`",
                    self.name
                )
            }),
            None => bail!(
                "no workspace {} in the store; see `botyard workspace ls`",
                self.name
            ),
        }
    }

    pub fn exists(&self) -> Result<bool> {
        Ok(self.store.read_ref("workspaces", &self.name)?.is_some())
    }

    pub fn save(&self, r: &WorkspaceRef) -> Result<()> {
        self.store
            .write_ref("workspaces", &self.name, &serde_json::to_value(r)?)
    }

    /// Where the workspace is mounted now, if it is.
    pub fn mounted_at(&self) -> Option<PathBuf> {
        let p = PathBuf::from(
            std::fs::read_to_string(self.mount_record())
                .ok()?
                .trim_end_matches('\n'),
        );
        fs::mount_fstype(&p).is_some().then_some(p)
    }

    /// Takes the workspace's own lock: one verb at a time per workspace.
    pub fn lock(&self) -> Result<std::fs::File> {
        std::fs::create_dir_all(self.dir())?;
        let f = store::try_lock_file(&self.dir().join("lock"))?.ok_or_else(|| {
            store::error(
                store::ErrorKind::Busy,
                format!(
                    "workspace {} is busy with another botyard command; retry when it is done",
                    self.name
                ),
            )
        })?;
        let view = self.view_path();
        if fs::is_overlay_mount(&view) {
            fs::unmount(&view).context("cannot remove a view left by an interrupted command")?;
        }
        Ok(f)
    }

    /// Every workspace name in the store.
    pub fn names(store: &Store) -> Result<Vec<String>> {
        let dir = store.refs_dir().join("workspaces");
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd {
                let name = e?.file_name().to_string_lossy().into_owned();
                if validate_name(&name).is_ok() {
                    out.push(name);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// A read-only view of the merged project: the live mount, or a private
    /// read-only overlay of the same layers (removed on drop).
    pub(crate) fn view(&self, r: &WorkspaceRef) -> Result<View> {
        if r.mode == Mode::Unsafe {
            return Ok(View {
                path: r.project.clone(),
                private: false,
            });
        }
        if let Some(p) = self.mounted_at() {
            return Ok(View {
                path: p,
                private: false,
            });
        }
        let path = self.view_path();
        std::fs::create_dir_all(&path)?;
        std::fs::create_dir_all(self.upper())?;
        std::fs::create_dir_all(self.work())?;
        let spec = fs::OverlaySpec {
            upper: Some((self.upper(), self.work())),
            lowers: vec![r.project.clone()],
            data: vec![],
            user_lower: true,
            readonly: true,
            allow_suid: false,
            allow_dev: false,
        };
        if let Err(e) = fs::mount_overlay(&spec, &path) {
            let _ = std::fs::remove_dir(&path);
            return Err(e).context("cannot mount a read-only view of the workspace");
        }
        Ok(View {
            path,
            private: true,
        })
    }
}

/// A read-only view of a workspace's merged project.
pub(crate) struct View {
    pub path: PathBuf,
    private: bool,
}

impl Drop for View {
    fn drop(&mut self) {
        if self.private {
            let _ = fs::unmount(&self.path);
            let _ = std::fs::remove_dir(&self.path);
        }
    }
}

pub(crate) fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
