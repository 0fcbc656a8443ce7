use crate::state::{empty_dir, now, Bot};
use anyhow::{bail, Context, Result};
use fs::MemTree;
use store::{Hash, Progress, Staging, StagingStats, Store};

#[derive(Debug, Clone, serde::Serialize)]
pub struct CommitOutcome {
    pub id: String,
    pub tree: Hash,
    pub previous_tree: Hash,
    pub changed: u64,
    pub deleted: u64,
    pub written: StagingStats,
}

struct Unmount(std::path::PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = fs::unmount(&self.0);
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Folds a bot's upper dir into the store and empties it.
///
/// The bot must be unmounted: overlayfs forbids changing an upper dir under
/// a live mount, and a process in the bot could otherwise be reading a file
/// while it moves. Order: read the changes through a read-only overlay,
/// write the new tree, publish and sync, point the bot's ref at it, then
/// empty the upper. A crash before the ref changes leaves the old tree and
/// the upper intact; after it, the upper only repeats what the tree holds.
pub fn commit(store: &Store, id: &str, progress: &dyn Progress) -> Result<Option<CommitOutcome>> {
    let bot = Bot::new(store, id)?;
    let _lock = bot.lock()?;
    let mut r = bot.load()?;
    if let Some(p) = bot.mounted_at() {
        bail!(
            "bot {id} is mounted at {}; unmount it first (`botyard bot unmount {id}`), commit, then mount it again",
            p.display()
        );
    }
    let upper = bot.upper();
    if std::fs::read_dir(&upper)
        .with_context(|| format!("cannot read {}", upper.display()))?
        .next()
        .is_none()
    {
        return Ok(None);
    }
    let view = store
        .tmp_dir()
        .join(format!("view-{id}-{}", std::process::id()));
    std::fs::create_dir_all(&view)?;
    let spec = fs::OverlaySpec {
        upper: Some((upper.clone(), bot.work())),
        lowers: bot.lowers(&r)?,
        data: vec![store.objects_dir()],
        readonly: true,
    };
    fs::mount_overlay(&spec, &view).context("cannot mount a read-only view of the bot")?;
    let guard = Unmount(view.clone());

    let staging = Staging::new(store, progress)?;
    let mut tree = MemTree::load(store, &r.tree)?;
    let folded = fs::fold_upper(&mut tree, &upper, &view, &staging, progress)?;
    drop(guard);
    let (new_tree, _) = tree.write(&staging)?;
    let previous = r.tree;
    let (written, ()) = staging.commit(|store| {
        r.tree = new_tree;
        r.committed = Some(now());
        if new_tree != r.image_tree {
            fs::diff_layer_dir(store, &new_tree, &r.image_tree)?;
        }
        bot.save(&r)
    })?;
    empty_dir(&bot.upper())?;
    empty_dir(&bot.work())?;
    Ok(Some(CommitOutcome {
        id: id.to_string(),
        tree: new_tree,
        previous_tree: previous,
        changed: folded.changed,
        deleted: folded.deleted,
        written,
    }))
}
