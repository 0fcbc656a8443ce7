use anyhow::{bail, Result};
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

/// A workspace's paths in a store: its overlay home (`workspaces/NAME/`,
/// see [`fs::OverlayHome`], reached through `Deref`) and what only a
/// workspace has.
pub struct Workspace {
    pub store: Store,
    pub name: String,
    home: fs::OverlayHome,
}

impl std::ops::Deref for Workspace {
    type Target = fs::OverlayHome;
    fn deref(&self) -> &fs::OverlayHome {
        &self.home
    }
}

impl Workspace {
    pub fn new(store: &Store, name: &str) -> Result<Workspace> {
        validate_name(name)?;
        Ok(Workspace {
            store: store.clone(),
            name: name.to_string(),
            home: fs::OverlayHome::new(
                store.root().join("workspaces").join(name),
                format!("workspace {name}"),
            ),
        })
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

    pub fn load(&self) -> Result<WorkspaceRef> {
        let what = format!("ref of workspace {}", self.name);
        match self.store.read_record("workspaces", &self.name, &what)? {
            Some(r) => Ok(r),
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

    /// Where the workspace is mounted now, if it is (an overlay, or in
    /// unsafe mode a bind mount of the project).
    pub fn mounted_at(&self) -> Option<PathBuf> {
        self.recorded_mount()
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
            return Ok(View::live(&r.project));
        }
        if let Some(p) = self.mounted_at() {
            return Ok(View::live(&p));
        }
        std::fs::create_dir_all(self.upper())?;
        std::fs::create_dir_all(self.work())?;
        let spec = fs::OverlaySpec {
            upper: Some((self.upper(), self.work())),
            lowers: vec![r.project.clone()],
            shared: Vec::new(),
            data: vec![],
            user_lower: true,
            readonly: true,
            allow_suid: false,
            allow_dev: false,
        };
        self.private_view(&spec)
    }
}

pub(crate) use fs::View;

pub(crate) use store::now_rfc3339 as now;
