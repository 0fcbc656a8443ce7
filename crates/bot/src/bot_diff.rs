use crate::state::{Bot, Driver};
use anyhow::Result;
use fs::{MemTree, PathDiff};
use store::{Progress, Staging, Store};

/// The bot's current tree: its committed tree with uncommitted changes
/// folded in, hashed but not stored.
pub(crate) fn current_tree(bot: &Bot, progress: &dyn Progress) -> Result<MemTree> {
    let r = bot.load()?;
    let staging = Staging::hash_only(&bot.store, progress)?;
    if r.driver == Driver::Copy {
        let opts = fs::ScanOptions {
            clone: false,
            ..crate::bot_commit::copy_options()
        };
        return fs::scan_dir(&bot.default_mount(), &staging, opts, progress);
    }
    let mut tree = MemTree::load(&bot.store, &r.tree)?;
    if !bot.upper_is_empty()? {
        let view = bot.view(&r, true)?;
        fs::fold_upper(&mut tree, &bot.upper(), &view.path, &staging, progress)?;
    }
    Ok(tree)
}

/// What the bot changed relative to its image, committed or not, limited to
/// `paths` (and what is below them) when given.
pub fn diff(
    store: &Store,
    id: &str,
    paths: &[String],
    progress: &dyn Progress,
) -> Result<Vec<PathDiff>> {
    let bot = Bot::new(store, id)?;
    let _lock = bot.lock()?;
    let r = bot.load()?;
    let current = current_tree(&bot, progress)?;
    let image = MemTree::load(store, &r.image_tree)?;
    let prefixes: Vec<String> = paths
        .iter()
        .map(|p| format!("/{}", p.trim_matches('/')))
        .map(|p| if p == "/" { String::new() } else { p })
        .collect();
    Ok(fs::diff_memtrees(&current, &image)
        .into_iter()
        .filter(|d| {
            prefixes.is_empty()
                || prefixes
                    .iter()
                    .any(|p| p.is_empty() || d.path == *p || d.path.starts_with(&format!("{p}/")))
        })
        .collect())
}
