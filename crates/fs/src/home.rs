//! The directory an overlay lives in under the store, shared by bots and
//! workspaces: `upper` and `work`, the default mount point `root`, the
//! record of where it is mounted (`mountpoint`), a private read-only
//! `view`, and the `lock` that lets one command at a time change it.

use crate::overlay::{is_mount_point, mount_overlay, unmount, OverlaySpec};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// An overlay's home: `STORE/KIND/NAME/`.
#[derive(Clone, Debug)]
pub struct OverlayHome {
    dir: PathBuf,
    /// What it is, for messages: "bot b1", "workspace site".
    what: String,
}

impl OverlayHome {
    pub fn new(dir: PathBuf, what: String) -> OverlayHome {
        OverlayHome { dir, what }
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.clone()
    }
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
    /// The default mount point.
    pub fn default_mount(&self) -> PathBuf {
        self.dir.join("root")
    }
    /// Records where it is mounted, so `unmount` and a remount after a
    /// reboot find it.
    pub fn mount_record(&self) -> PathBuf {
        self.dir.join("mountpoint")
    }
    /// The private read-only view's mount point (outside `tmp/`, which gc
    /// empties).
    pub fn view_path(&self) -> PathBuf {
        self.dir.join("view")
    }

    /// Where the record says it is mounted, if anything is mounted there.
    pub fn recorded_mount(&self) -> Option<PathBuf> {
        let p = PathBuf::from(
            std::fs::read_to_string(self.mount_record())
                .ok()?
                .trim_end_matches('\n'),
        );
        is_mount_point(&p).then_some(p)
    }

    /// Takes its lock (one command at a time), and removes a view an
    /// interrupted command left.
    pub fn lock(&self) -> Result<std::fs::File> {
        std::fs::create_dir_all(&self.dir)?;
        let f = store::try_lock_file(&self.dir.join("lock"))?.ok_or_else(|| {
            store::error(
                store::ErrorKind::Busy,
                format!(
                    "{} is busy with another botyard command; retry when it is done",
                    self.what
                ),
            )
        })?;
        let view = self.view_path();
        if crate::overlay::is_overlay_mount(&view) {
            unmount(&view).context("cannot remove a view left by an interrupted command")?;
        }
        Ok(f)
    }

    /// A private read-only mount of `spec` at the view path, removed when
    /// the view is dropped.
    pub fn private_view(&self, spec: &OverlaySpec) -> Result<View> {
        let path = self.view_path();
        std::fs::create_dir_all(&path)?;
        if let Err(e) = mount_overlay(spec, &path) {
            let _ = std::fs::remove_dir(&path);
            return Err(e)
                .with_context(|| format!("cannot mount a read-only view of {}", self.what));
        }
        Ok(View {
            path,
            private: true,
        })
    }

    pub fn upper_is_empty(&self) -> Result<bool> {
        let u = self.upper();
        Ok(std::fs::read_dir(&u)
            .with_context(|| format!("cannot read {}", u.display()))?
            .next()
            .is_none())
    }
}

/// A read-only view of an overlay's merged tree: its live mount, or a
/// private mount of the same layers (removed on drop).
pub struct View {
    pub path: PathBuf,
    private: bool,
}

impl View {
    /// A view through something already mounted (not removed on drop).
    pub fn live(path: &Path) -> View {
        View {
            path: path.to_path_buf(),
            private: false,
        }
    }
}

impl Drop for View {
    fn drop(&mut self) {
        if self.private {
            let _ = unmount(&self.path);
            let _ = std::fs::remove_dir(&self.path);
        }
    }
}
