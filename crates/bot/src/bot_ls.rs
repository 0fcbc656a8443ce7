use crate::state::{Bot, BotRef, Driver};
use anyhow::Result;
use std::path::Path;
use store::Store;

#[derive(Debug, Clone, serde::Serialize)]
pub struct BotInfo {
    #[serde(flatten)]
    pub bot: BotRef,
    pub mounted_at: Option<String>,
    /// Where the bot's root can be used now: its mount point, or a copy
    /// bot's directory.
    pub root: Option<String>,
    /// Disk bytes of the upper dir: what changed since the last commit.
    pub uncommitted_bytes: u64,
    /// Stored bytes only this bot holds, uncommitted ones included (filled
    /// by `list`, which looks at the whole fleet).
    pub unique_bytes: Option<u64>,
}

pub(crate) fn ids(store: &Store) -> Result<Vec<String>> {
    let dir = store.refs_dir().join("bots");
    let mut ids = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd {
            ids.push(e?.file_name().to_string_lossy().into_owned());
        }
    }
    ids.sort();
    Ok(ids)
}

pub fn show(store: &Store, id: &str) -> Result<BotInfo> {
    let bot = Bot::new(store, id)?;
    bot.reap_dead_session()?;
    let r = bot.load()?;
    let uncommitted_bytes = match r.driver {
        Driver::Overlay => du_below(&bot.upper()),
        // A plain directory: what differs from the committed tree.
        Driver::Copy => {
            let current = crate::bot_diff::current_tree(&bot, &store::NoProgress)?;
            let committed = fs::MemTree::load(store, &r.tree)?;
            fs::diff_memtrees(&current, &committed)
                .iter()
                .filter(|d| d.change != fs::PathChange::Deleted)
                .map(|d| d.size)
                .sum()
        }
    };
    let root = match r.driver {
        Driver::Overlay => bot.mounted_at(),
        Driver::Copy => Some(bot.default_mount()),
    };
    Ok(BotInfo {
        bot: r,
        mounted_at: bot.mounted_at().map(|p| p.display().to_string()),
        root: root.map(|p| p.display().to_string()),
        uncommitted_bytes,
        unique_bytes: None,
    })
}

/// Disk bytes of what a directory holds, not counting its own blocks.
pub(crate) fn du_below(dir: &Path) -> u64 {
    fs::walk::du_below(dir)
}

/// The bots made from image `name` (`NAME:TAG`), by id.
pub fn using_image(store: &Store, name: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for id in ids(store)? {
        if Bot::new(store, &id)?.load()?.image == name {
            out.push(id);
        }
    }
    Ok(out)
}

pub fn list(store: &Store) -> Result<Vec<BotInfo>> {
    let mut infos = ids(store)?
        .iter()
        .map(|id| show(store, id))
        .collect::<Result<Vec<_>>>()?;
    let usage = crate::bot_df::usage_of(store, &infos, 0)?;
    for (info, u) in infos.iter_mut().zip(&usage.bots) {
        info.unique_bytes = Some(u.unique_bytes);
    }
    Ok(infos)
}
