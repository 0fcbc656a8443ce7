use crate::state::{Bot, Driver};
use anyhow::Result;
use fs::{MemTree, PathDiff};
use store::{Progress, Staging, Store};

/// The bot's current tree: its committed tree with uncommitted changes
/// folded in, hashed but not stored.
pub(crate) fn current_tree(bot: &Bot, progress: &dyn Progress) -> Result<MemTree> {
    let staging = Staging::hash_only(&bot.store, progress)?;
    current_tree_in(bot, &staging, progress)
}

/// [`current_tree`], its new content put into `staging` (a snapshot of a
/// live bot stores what it has not committed, without committing it).
pub(crate) fn current_tree_in(
    bot: &Bot,
    staging: &Staging,
    progress: &dyn Progress,
) -> Result<MemTree> {
    let r = bot.load()?;
    if r.driver == Driver::Copy {
        let opts = fs::ScanOptions {
            clone: !staging.is_hash_only(),
            ..crate::bot_commit::copy_options()
        };
        return fs::scan_dir(&bot.default_mount(), staging, opts, progress);
    }
    let mut tree = MemTree::load(&bot.store, &r.tree)?;
    if !bot.upper_is_empty()? {
        let view = bot.view(&r, true)?;
        fs::fold_upper(&mut tree, &bot.upper(), &view.path, staging, progress)?;
    }
    Ok(tree)
}

/// Whether diff path `d` (`/a/b`) is `filter` (components) or below it.
pub fn under(d: &[u8], filter: &[&[u8]]) -> bool {
    let mut c = d.split(|&b| b == b'/').filter(|c| !c.is_empty());
    filter.iter().all(|f| c.next() == Some(*f))
}

/// What the bot changed, limited to `paths` (and what is below them) when
/// given: from `from` (a commit of its history; default: its image) to
/// `to` (a later commit; default: the bot as it is now, committed or
/// not). A path in neither state is an error.
pub fn diff(
    store: &Store,
    id: &str,
    from: Option<&str>,
    to: Option<&str>,
    paths: &[String],
    progress: &dyn Progress,
) -> Result<Vec<PathDiff>> {
    let bot = Bot::new(store, id)?;
    let _lock = bot.lock()?;
    let r = bot.load()?;
    let current = match to {
        Some(c) => MemTree::load(store, &crate::history::resolve(store, id, c)?.tree)?,
        None => current_tree(&bot, progress).map_err(|e| crate::state::too_deep_hint(e, id))?,
    };
    let image = match from {
        Some(c) => MemTree::load(store, &crate::history::resolve(store, id, c)?.tree)?,
        None => MemTree::load(store, &r.image_tree)?,
    };
    let mut filters = Vec::new();
    for p in paths {
        let comps = fs::split_path(p.trim_start_matches('/').as_bytes()).map_err(|e| {
            anyhow::anyhow!(
                "path {} has {e}; give a path inside the bot, like /etc",
                fs::quote_str(p)
            )
        })?;
        if current.lookup(&comps).is_none() && image.lookup(&comps).is_none() {
            anyhow::bail!(
                "{} is not in bot {id}, nor in its image {}; see `botyard bot diff {id}` for what changed",
                fs::quote_str(&format!("/{}", p.trim_start_matches('/'))),
                r.image
            );
        }
        filters.push(comps);
    }
    Ok(fs::diff_memtrees(&current, &image)
        .into_iter()
        .filter(|d| filters.is_empty() || filters.iter().any(|f| under(&d.path, f)))
        .collect())
}
