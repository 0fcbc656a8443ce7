//! An image's layer mounted once for all the mounted bots of the image.
//! Overlays stacking one EROFS mount share its superblock, so the layer's
//! metadata is read and cached once, not once per bot (each bot mounting
//! the layer file itself made a superblock each: 2.8 MiB of cache per bot
//! reading a minbase's `/usr`, see bench/pagecache.sh).
//!
//! `mounts/NAME` is the mount (NAME is the layer's file name), with an
//! empty file per bot stacked on it in `mounts/NAME.users/`, and
//! `mounts/NAME.lock` ordering the bots that join and leave. The last bot
//! to unmount detaches it; gc lets go of those a killed command left, and
//! of the directories of layers that are gone.

use crate::state::Bot;
use anyhow::{Context, Result};
use std::fs::File;
use std::path::PathBuf;
use store::{Hash, Store};

/// Where shared layer mounts live.
pub(crate) fn mounts_root(store: &Store) -> PathBuf {
    store.root().join("mounts")
}

pub(crate) struct SharedLayer {
    layer: PathBuf,
    at: PathBuf,
    users: PathBuf,
    lock: PathBuf,
}

impl SharedLayer {
    /// The shared mount of the layer of the image tree `image`.
    pub(crate) fn of_image(store: &Store, image: &Hash) -> SharedLayer {
        Self::named(store, &fs::layer_file_name(image, None))
    }

    fn named(store: &Store, name: &str) -> SharedLayer {
        let root = mounts_root(store);
        SharedLayer {
            layer: fs::layers_root(store).join(name),
            at: root.join(name),
            users: root.join(format!("{name}.users")),
            lock: root.join(format!("{name}.lock")),
        }
    }

    /// What an overlay spec names to stack this layer shared.
    pub(crate) fn spec(&self) -> (PathBuf, PathBuf) {
        (self.layer.clone(), self.at.clone())
    }

    fn locked(&self) -> Result<File> {
        std::fs::create_dir_all(self.lock.parent().unwrap())?;
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.lock)
            .with_context(|| format!("cannot open {}", self.lock.display()))?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
            .with_context(|| format!("cannot lock {}", self.lock.display()))?;
        Ok(f)
    }

    /// Records bot `id` as a user, before its overlay is mounted; the
    /// returned lock is held until the overlay has its clone of the mount,
    /// so no leaving bot detaches it meanwhile.
    pub(crate) fn join(&self, id: &str) -> Result<File> {
        let lock = self.locked()?;
        std::fs::create_dir_all(&self.users)?;
        File::create(self.users.join(id))
            .with_context(|| format!("cannot record bot {id} in {}", self.users.display()))?;
        Ok(lock)
    }

    /// Bot `id` no longer stacks the layer; the last user detaches it.
    pub(crate) fn leave(&self, id: &str) {
        let Ok(_lock) = self.locked() else {
            return;
        };
        let _ = std::fs::remove_file(self.users.join(id));
        self.detach_if_unused();
    }

    /// Detaches the mount if no bot is recorded on it; the caller holds
    /// the lock, so none joins meanwhile. The directories stay for the next
    /// bot (making and removing them cost more than the mount).
    fn detach_if_unused(&self) {
        if std::fs::read_dir(&self.users).map_or(true, |mut d| d.next().is_none()) {
            fs::detach_shared(&self.at);
        }
    }
}

/// Lets go of shared mounts that no mounted bot stacks (users recorded by a
/// command that was killed, or bots unmounted by hand), and removes the
/// lock files of layers that are gone. Returns how many mounts went.
pub(crate) fn gc_shared(store: &Store, dry_run: bool) -> Result<u64> {
    let root = mounts_root(store);
    let Ok(rd) = std::fs::read_dir(&root) else {
        return Ok(0);
    };
    let mut names: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .map(|n| {
            n.strip_suffix(".users")
                .or_else(|| n.strip_suffix(".lock"))
                .unwrap_or(&n)
                .to_string()
        })
        .collect();
    names.sort();
    names.dedup();
    let mut gone = 0;
    for name in names {
        let shared = SharedLayer::named(store, &name);
        let _lock = if dry_run {
            None
        } else {
            Some(shared.locked()?)
        };
        let mut live = false;
        for u in std::fs::read_dir(&shared.users)
            .into_iter()
            .flatten()
            .flatten()
        {
            let id = u.file_name().to_string_lossy().into_owned();
            if Bot::new(store, &id).is_ok_and(|b| b.mounted_at().is_some()) {
                live = true;
            } else if !dry_run {
                let _ = std::fs::remove_file(u.path());
            }
        }
        let detach = !live && fs::is_layer_mounted_at(&shared.at);
        gone += u64::from(detach);
        if dry_run {
            continue;
        }
        if detach {
            fs::detach_shared(&shared.at);
        }
        // Nobody can join a layer whose file is gone (gc keeps the layer of
        // every bot's image): what is left of it goes too.
        if !shared.layer.exists() {
            let _ = std::fs::remove_dir(&shared.users);
            let _ = std::fs::remove_dir(&shared.at);
            let _ = std::fs::remove_file(&shared.lock);
        }
    }
    Ok(gone)
}
