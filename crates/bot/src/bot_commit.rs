use crate::state::{empty_dir, now, Bot};
use anyhow::Result;
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
    let view = bot.view(&r, false)?;
    if bot.upper_is_empty()? {
        return Ok(None);
    }
    let staging = Staging::new(store, progress)?;
    let mut tree = MemTree::load(store, &r.tree)?;
    let folded = fs::fold_upper(&mut tree, &bot.upper(), &view.path, &staging, progress)?;
    drop(view);
    let (new_tree, _) = tree.write(&staging)?;
    let previous = r.tree;
    let (written, ()) = staging.commit(|store| {
        if new_tree != r.image_tree {
            fs::diff_layer_dir(store, &new_tree, &r.image_tree)?;
        }
        // The journal: once the ref names the new tree, the upper must be
        // emptied (its changes are in the tree, and overlay refuses an upper
        // recorded against other lower layers); `Bot::lock` finishes it
        // after a crash.
        store::write_file_atomic(
            &store.tmp_dir(),
            &bot.pending_commit(),
            new_tree.to_hex().as_bytes(),
            0o644,
        )?;
        r.tree = new_tree;
        r.committed = Some(now());
        bot.save(&r)
    })?;
    empty_dir(&bot.upper())?;
    empty_dir(&bot.work())?;
    std::fs::remove_file(bot.pending_commit())?;
    Ok(Some(CommitOutcome {
        id: id.to_string(),
        tree: new_tree,
        previous_tree: previous,
        changed: folded.changed,
        deleted: folded.deleted,
        written,
    }))
}
