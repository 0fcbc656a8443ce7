//! `bot commit`: the upper (overlay) or the directory (copy) folded into a
//! new tree, its new files stored once, the layers rebuilt, the upper emptied.

use crate::history::Commit;
use crate::state::{empty_dir, now, Bot, BotRef, Driver};
use anyhow::{Context, Result};
use fs::{MemTree, NodeId, NodeKind, PathChange, PathDiff};
use rustix::fs::OFlags;
use store::{Hash, Progress, Staging, StagingStats, Store};

#[derive(Debug, Clone, serde::Serialize)]
pub struct CommitOutcome {
    pub id: String,
    pub tree: Hash,
    pub previous_tree: Hash,
    /// Paths changed since the previous commit, counted as `bot diff`
    /// counts them: added, modified, metadata only, type changed; deleted.
    pub added: u64,
    pub modified: u64,
    pub metadata: u64,
    pub type_changed: u64,
    pub deleted: u64,
    /// All of the above.
    pub changed: u64,
    pub written: StagingStats,
    /// Copy driver: bytes of the bot's files now sharing extents with the
    /// objects (0 where the filesystem cannot share).
    pub shared_bytes: u64,
    /// The commit's record in the bot's history.
    pub commit: String,
}

/// Folds a bot's changes into the store.
///
/// Overlay driver: the bot must be unmounted, because overlayfs forbids
/// changing an upper dir under a live mount and a process in the bot must
/// never see a file change under it. The changes are read through a
/// read-only mount of the bot, the new tree is written, published and
/// synced, the bot's ref points at it, then the upper is emptied; a crash
/// before the ref changes leaves the old tree and the upper intact, and
/// `Bot::lock` finishes a crash after it.
///
/// Copy driver: the directory is scanned (a stat cache skips unchanged
/// files), new content is reflinked into the store where the filesystem
/// can, and changed files then share extents with their objects through
/// `FIDEDUPERANGE`, which compares bytes in the kernel and leaves a file
/// being written alone.
///
/// `message` goes into the bot's history with the commit.
pub fn commit(
    store: &Store,
    id: &str,
    message: &str,
    progress: &dyn Progress,
) -> Result<Option<CommitOutcome>> {
    let bot = Bot::new(store, id)?;
    let _lock = bot.lock()?;
    let r = bot.load()?;
    match r.driver {
        Driver::Overlay => commit_overlay(&bot, r, message, progress),
        Driver::Copy => commit_copy(&bot, r, message, progress),
    }
}

fn commit_overlay(
    bot: &Bot,
    mut r: BotRef,
    message: &str,
    progress: &dyn Progress,
) -> Result<Option<CommitOutcome>> {
    let store = &bot.store;
    let view = bot.view(&r, false)?;
    if bot.upper_is_empty()? {
        return Ok(None);
    }
    let staging = Staging::new(store, progress)?;
    // The store lock, shared, held until the upper's old files are gone
    // (below): gc, which empties tmp/, waits instead of racing over them.
    // Taken before anything changes, so failing to get it changes nothing.
    let hold = store.lock(false, &store::NoProgress)?;
    let before = MemTree::load(store, &r.tree)?;
    let mut tree = before.clone();
    fs::fold_upper(&mut tree, &bot.upper(), &view.path, &staging, progress)
        .map_err(|e| crate::state::too_deep_hint(e, &bot.id))?;
    drop(view);
    let changes = fs::diff_memtrees(&tree, &before);
    let (new_tree, _) = tree.write(&staging)?;
    let previous = r.tree;
    let (written, ()) = staging.commit(|store| {
        if new_tree != r.image_tree {
            fs::diff_layer(store, &new_tree, &r.image_tree)?;
        }
        // The journal: once the ref names the new tree, the upper must be
        // emptied (its changes are in the tree, and overlay refuses an
        // upper recorded against other lower layers).
        let pending = new_tree.to_hex();
        store::write_file_atomic(
            &store.tmp_dir(),
            &bot.pending_commit(),
            pending.as_bytes(),
            0o644,
        )?;
        r.tree = new_tree;
        r.committed = Some(now());
        let c = Commit::record(store, &r, message)?;
        r.head = Some(c.id);
        bot.save(&r)
    })?;
    // Emptied by renames; the files are removed on a thread while the
    // caller goes on (with `commit --all`, to the next bot).
    let trash = fs::walk::set_aside_contents(&bot.upper(), &store.tmp_dir())?;
    empty_dir(&bot.work())?;
    std::fs::remove_file(bot.pending_commit())?;
    fs::walk::remove_in_background(trash, hold);
    Ok(Some(outcome(&r, new_tree, previous, &changes, written, 0)))
}

fn copy_scan_options() -> fs::ScanOptions {
    fs::ScanOptions {
        stat_cache: true,
        one_file_system: true,
        clone: true,
    }
}

fn commit_copy(
    bot: &Bot,
    mut r: BotRef,
    message: &str,
    progress: &dyn Progress,
) -> Result<Option<CommitOutcome>> {
    let store = &bot.store;
    let root = bot.default_mount();
    let staging = Staging::new(store, progress)?;
    let tree = fs::scan_dir(&root, &staging, copy_scan_options(), progress)
        .map_err(|e| crate::state::too_deep_hint(e, &bot.id))?;
    let old = MemTree::load(store, &r.tree)?;
    let (new_tree, _) = tree.write(&staging)?;
    if new_tree == r.tree {
        return Ok(None);
    }
    let changes = fs::diff_memtrees(&tree, &old);
    let previous = r.tree;
    let (written, ()) = staging.commit(|store| {
        r.tree = new_tree;
        r.committed = Some(now());
        let c = Commit::record(store, &r, message)?;
        r.head = Some(c.id);
        bot.save(&r)
    })?;
    let mut shared = 0;
    for (path, object, size) in changed_files(&tree, &old) {
        shared += share_extents(store, &root, &path, &object, size).unwrap_or(0);
    }
    Ok(Some(outcome(
        &r, new_tree, previous, &changes, written, shared,
    )))
}

fn outcome(
    r: &BotRef,
    tree: Hash,
    previous_tree: Hash,
    changes: &[PathDiff],
    written: StagingStats,
    shared_bytes: u64,
) -> CommitOutcome {
    let count = |k: PathChange| changes.iter().filter(|c| c.change == k).count() as u64;
    CommitOutcome {
        id: r.id.clone(),
        commit: r.head.clone().unwrap_or_default(),
        tree,
        previous_tree,
        added: count(PathChange::Added),
        modified: count(PathChange::Modified),
        metadata: count(PathChange::Metadata),
        type_changed: count(PathChange::TypeChanged),
        deleted: count(PathChange::Deleted),
        changed: changes.len() as u64,
        written,
        shared_bytes,
    }
}

/// Regular files of `new` whose content is not what `old` had at the path.
fn changed_files(new: &MemTree, old: &MemTree) -> Vec<(Vec<Vec<u8>>, Hash, u64)> {
    let mut out = Vec::new();
    let mut stack: Vec<(NodeId, Option<NodeId>, Vec<Vec<u8>>)> =
        vec![(new.root(), Some(old.root()), Vec::new())];
    while let Some((n, o, path)) = stack.pop() {
        for c in new.children(n) {
            let oc = o.and_then(|o| old.child(o, new.name(c)));
            let mut p = path.clone();
            p.push(new.name(c).to_vec());
            match (new.kind(c), oc.map(|oc| old.kind(oc))) {
                (
                    NodeKind::File { object, size, .. },
                    Some(NodeKind::File {
                        object: oo,
                        size: os,
                        ..
                    }),
                ) if oo == object && os == size => {}
                (NodeKind::File { object, size, .. }, _) if size > 0 => out.push((p, object, size)),
                (NodeKind::Dir, _) => stack.push((c, oc.filter(|&x| old.is_dir(x)), p)),
                _ => {}
            }
        }
    }
    out
}

/// Makes the bot's file at `path` share extents with its object.
fn share_extents(
    store: &Store,
    root: &std::path::Path,
    path: &[Vec<u8>],
    object: &Hash,
    size: u64,
) -> Result<u64> {
    let (name, parents) = path.split_last().context("empty path")?;
    let parents: Vec<&[u8]> = parents.iter().map(|c| c.as_slice()).collect();
    let dir = fs::walk::open_beneath(&fs::walk::open_dir(root)?, &parents)?
        .context("a directory of the file went away")?;
    let dest = std::fs::File::from(fs::walk::open_at(&dir, name, OFlags::RDONLY)?);
    let src = std::fs::File::open(store.object_path(object))?;
    fs::dedupe(&src, &dest, size)
}

/// The scan options a copy bot's commit uses, for its diff to match.
pub(crate) fn copy_options() -> fs::ScanOptions {
    copy_scan_options()
}
