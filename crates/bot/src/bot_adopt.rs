//! `bot adopt`: an existing full copy of a root filesystem (a bot rsynced
//! onto a volume, seed 000's way) becomes a bot of an image whose committed
//! tree is the directory's content. Files the store already holds cost
//! nothing; the rest are stored once.

use crate::history::Commit;
use crate::state::{empty_dir, now, Bot, BotRef, Driver};
use anyhow::{bail, Context, Result};
use std::path::Path;
use store::{ImageName, Progress, Staging, Store};

/// What an adoption cost and saved.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AdoptOutcome {
    pub id: String,
    pub image: String,
    pub tree: store::Hash,
    pub files: u64,
    /// What the directory holds in regular files (a plain copy's cost).
    pub logical_bytes: u64,
    /// What the store had to add for it.
    pub new_object_bytes: u64,
    /// `logical_bytes - new_object_bytes`.
    pub saved_bytes: u64,
}

/// Adopts `from` as bot `id` of image `image`. Refused: the running
/// system's root, a directory holding a store (or this store), one with
/// filesystems mounted below it, and one that changes while it is read:
/// it is read twice, and the two reads must agree, which is how a quiescent
/// source is told from one something still writes.
pub fn adopt(
    store: &Store,
    id: &str,
    from: &Path,
    image: &ImageName,
    driver: Driver,
    progress: &dyn Progress,
) -> Result<AdoptOutcome> {
    let bot = Bot::new(store, id)?;
    let _lock = bot.lock()?;
    bot.refuse_existing()?;
    let img = store.image(image)?;
    let dir = std::fs::canonicalize(from)
        .with_context(|| format!("cannot open the directory {}", store::quote_path(from)))?;
    if !dir.is_dir() {
        bail!("{} is not a directory", store::quote_path(&dir));
    }
    if dir == Path::new("/") {
        bail!("/ is this running system's root, which changes as it runs; adopt a copy of it, or the root of a stopped machine mounted elsewhere");
    }
    let root = std::fs::canonicalize(store.root())?;
    if root.starts_with(&dir) || dir.starts_with(&root) {
        bail!(
            "{} holds this store (or is inside it); adopt a directory of its own",
            store::quote_path(&dir)
        );
    }
    if dir.join(store::STORE_MARKER).exists() {
        bail!(
            "{} is a botyard store, not a root filesystem",
            store::quote_path(&dir)
        );
    }
    if let Some(m) = fs::mounts_below(&dir).first() {
        bail!(
            "{} is mounted below {}; unmount it (a root being adopted must be one quiescent filesystem)",
            store::quote_path(m),
            store::quote_path(&dir)
        );
    }
    let opts = fs::ScanOptions {
        stat_cache: true,
        one_file_system: true,
        clone: false,
    };
    let staging = Staging::new(store, progress)?;
    let first = fs::scan_dir(&dir, &staging, opts, progress)
        .map_err(|e| crate::state::too_deep_hint(e, id))?;
    let (tree, stats) = first.write(&staging)?;
    // Again: unchanged files come from the stat cache, so this is quick.
    let second = fs::scan_dir(&dir, &staging, opts, progress)?;
    let (again, _) = second.write(&staging)?;
    if again != tree {
        let changed = fs::diff_memtrees(&second, &first);
        bail!(
            "{} changed while it was read ({} paths, {} first): something is still writing it; stop it and adopt again",
            store::quote_path(&dir),
            changed.len(),
            changed.first().map(|d| d.shown()).unwrap_or_default()
        );
    }
    let (r, written) = bot.make_or_clean(|| -> Result<(BotRef, store::StagingStats)> {
        let mut shares_extents = false;
        match driver {
            Driver::Overlay => {
                empty_dir(&bot.upper())?;
                empty_dir(&bot.work())?;
                std::fs::create_dir_all(bot.default_mount())?;
            }
            Driver::Copy => std::fs::create_dir_all(bot.dir())?,
        }
        let mut r = BotRef {
            id: id.to_string(),
            image: image.to_string(),
            image_tree: img.tree,
            tree,
            driver,
            shares_extents,
            snapshot: false,
            created: now(),
            committed: Some(now()),
            head: None,
        };
        let (written, ()) = staging.commit(|store| {
            if driver == Driver::Copy {
                empty_dir(&bot.default_mount())?;
                shares_extents = fs::can_reflink(&bot.dir());
                fs::materialize(store, &tree, &bot.default_mount())?;
                r.shares_extents = shares_extents;
            }
            let c = Commit::record(store, &r, &format!("adopted from {}", dir.display()))?;
            r.head = Some(c.id);
            bot.save(&r)
        })?;
        Ok((r, written))
    })?;
    Ok(AdoptOutcome {
        id: id.to_string(),
        image: r.image,
        tree,
        files: stats.files,
        logical_bytes: stats.bytes,
        new_object_bytes: written.new_object_bytes,
        saved_bytes: stats.bytes.saturating_sub(written.new_object_bytes),
    })
}
