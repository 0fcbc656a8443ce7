use crate::state::{empty_dir, now, Bot, BotRef, Driver};
use anyhow::{Context, Result};
use fs::{MemKind, MemNode, MemTree};
use rustix::fs::{Mode, OFlags};
use store::{Hash, Progress, Staging, StagingStats, Store};

#[derive(Debug, Clone, serde::Serialize)]
pub struct CommitOutcome {
    pub id: String,
    pub tree: Hash,
    pub previous_tree: Hash,
    pub changed: u64,
    pub deleted: u64,
    pub written: StagingStats,
    /// Copy driver: bytes of the bot's files now sharing extents with the
    /// objects (0 where the filesystem cannot share).
    pub shared_bytes: u64,
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
pub fn commit(store: &Store, id: &str, progress: &dyn Progress) -> Result<Option<CommitOutcome>> {
    let bot = Bot::new(store, id)?;
    let _lock = bot.lock()?;
    let r = bot.load()?;
    match r.driver {
        Driver::Overlay => commit_overlay(&bot, r, progress),
        Driver::Copy => commit_copy(&bot, r, progress),
    }
}

fn commit_overlay(
    bot: &Bot,
    mut r: BotRef,
    progress: &dyn Progress,
) -> Result<Option<CommitOutcome>> {
    let store = &bot.store;
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
        bot.save(&r)
    })?;
    empty_dir(&bot.upper())?;
    empty_dir(&bot.work())?;
    std::fs::remove_file(bot.pending_commit())?;
    Ok(Some(CommitOutcome {
        id: bot.id.clone(),
        tree: new_tree,
        previous_tree: previous,
        changed: folded.changed,
        deleted: folded.deleted,
        written,
        shared_bytes: 0,
    }))
}

fn copy_scan_options() -> fs::ScanOptions {
    fs::ScanOptions {
        stat_cache: true,
        one_file_system: true,
        clone: true,
    }
}

fn commit_copy(bot: &Bot, mut r: BotRef, progress: &dyn Progress) -> Result<Option<CommitOutcome>> {
    let store = &bot.store;
    let root = bot.default_mount();
    let staging = Staging::new(store, progress)?;
    let tree = fs::scan_dir(&root, &staging, copy_scan_options(), progress)?;
    let old = MemTree::load(store, &r.tree)?;
    let (new_tree, _) = tree.write(&staging)?;
    if new_tree == r.tree {
        return Ok(None);
    }
    let changes = fs::diff_memtrees(&tree, &old);
    let previous = r.tree;
    let (written, ()) = staging.commit(|_| {
        r.tree = new_tree;
        r.committed = Some(now());
        bot.save(&r)
    })?;
    let mut shared = 0;
    let mut files = Vec::new();
    changed_files(&tree.root, &old.root, &mut Vec::new(), &mut files);
    for (path, object, size) in files {
        shared += share_extents(store, &root, &path, &object, size).unwrap_or(0);
    }
    use fs::PathChange::*;
    Ok(Some(CommitOutcome {
        id: bot.id.clone(),
        tree: new_tree,
        previous_tree: previous,
        changed: changes
            .iter()
            .filter(|c| matches!(c.change, Added | Modified | Metadata | TypeChanged))
            .count() as u64,
        deleted: changes.iter().filter(|c| c.change == Deleted).count() as u64,
        written,
        shared_bytes: shared,
    }))
}

/// Regular files of `new` whose content is not what `old` had at the path.
fn changed_files(
    new: &MemNode,
    old: &MemNode,
    path: &mut Vec<Vec<u8>>,
    out: &mut Vec<(Vec<Vec<u8>>, Hash, u64)>,
) {
    let MemKind::Dir(children) = &new.kind else {
        return;
    };
    let empty = Default::default();
    let old_children = match &old.kind {
        MemKind::Dir(c) => c,
        _ => &empty,
    };
    for (name, n) in children {
        path.push(name.clone());
        let o = old_children.get(name);
        match (&n.kind, o.map(|o| &o.kind)) {
            (
                MemKind::File { object, size, .. },
                Some(MemKind::File {
                    object: oo,
                    size: os,
                    ..
                }),
            ) if oo == object && os == size => {}
            (MemKind::File { object, size, .. }, _) if *size > 0 => {
                out.push((path.clone(), *object, *size))
            }
            (MemKind::Dir(_), _) => {
                let none = MemNode::dir(Default::default());
                changed_files(n, o.unwrap_or(&none), path, out);
            }
            _ => {}
        }
        path.pop();
    }
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
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut dir = rustix::fs::open(root, flags | OFlags::DIRECTORY, Mode::empty())?;
    for c in parents {
        dir = rustix::fs::openat(&dir, c.as_slice(), flags | OFlags::DIRECTORY, Mode::empty())?;
    }
    let dest = std::fs::File::from(rustix::fs::openat(
        &dir,
        name.as_slice(),
        flags,
        Mode::empty(),
    )?);
    let src = std::fs::File::open(store.object_path(object))?;
    fs::dedupe(&src, &dest, size)
}

/// The scan options a copy bot's commit uses, for its diff to match.
pub(crate) fn copy_options() -> fs::ScanOptions {
    copy_scan_options()
}
