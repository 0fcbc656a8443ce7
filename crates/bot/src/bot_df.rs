use crate::bot_ls::ids;
use fs::walk::du;

use crate::bot_ls::BotInfo;
use anyhow::Result;
use std::collections::HashMap;
use store::{Hash, Store};

#[derive(Debug, Clone, serde::Serialize)]
pub struct BotUsage {
    pub id: String,
    /// What a plain copy of the bot's committed root would take.
    pub logical_bytes: u64,
    /// Stored bytes no other bot or image reaches, plus its uncommitted upper.
    pub unique_bytes: u64,
    /// Stored bytes it shares with other bots or images.
    pub shared_bytes: u64,
    pub uncommitted_bytes: u64,
    /// A copy bot on a filesystem that cannot share extents (ext4): its
    /// files are all its own, and nothing can be shared there.
    pub full_copy: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct FleetUsage {
    pub bots: Vec<BotUsage>,
    /// What plain copies of every bot would take.
    pub plain_copies_bytes: u64,
    /// What the whole store takes on disk: objects, trees, layers and uppers.
    pub disk_bytes: u64,
    pub layer_bytes: u64,
    pub upper_bytes: u64,
}

/// `df`: the store's figures and the fleet's, as one report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Df {
    #[serde(flatten)]
    pub store: store::DfReport,
    pub fleet: FleetUsage,
}

/// The store's figures and the fleet's, its objects walked once.
pub fn df(store: &Store) -> Result<Df> {
    let r = store.df()?;
    let fleet = usage(store, &r)?;
    Ok(Df { store: r, fleet })
}

/// Per-bot and fleet-wide figures; `df` is the store's own report, so its
/// objects are walked once.
pub fn usage(store: &Store, df: &store::DfReport) -> Result<FleetUsage> {
    let infos = ids(store)?
        .iter()
        .map(|id| crate::bot_ls::show(store, id))
        .collect::<Result<Vec<_>>>()?;
    usage_of(store, &infos, df.stored_bytes)
}

/// The figures for bots already looked at (each bot's upper or directory
/// is read once, by `show`).
pub(crate) fn usage_of(
    store: &Store,
    infos: &[BotInfo],
    store_physical: u64,
) -> Result<FleetUsage> {
    // How many refs (images and bots) reach each object.
    let mut refcount: HashMap<Hash, u32> = HashMap::new();
    let mut per_bot = Vec::new();
    for r in store.images()?.into_iter().filter_map(|(_, r)| r.ok()) {
        for h in store.objects_of(&[r.tree])?.into_keys() {
            *refcount.entry(h).or_default() += 1;
        }
    }
    for info in infos {
        let objs = store.objects_of(&[info.bot.tree])?;
        for h in objs.keys() {
            *refcount.entry(*h).or_default() += 1;
        }
        per_bot.push((info, objs));
    }
    let mut memo = store::UsageMemo::default();
    let mut bots = Vec::new();
    let mut upper_bytes = 0;
    let mut full_copies = 0;
    for (info, objs) in per_bot {
        let id = info.bot.id.clone();
        let full_copy = info.bot.driver == crate::Driver::Copy && !info.bot.shares_extents;
        let uncommitted = info.uncommitted_bytes;
        upper_bytes += uncommitted;
        let logical = store.tree_usage(&info.bot.tree, &mut memo)?.bytes;
        let (mut unique, mut shared) = (0, 0);
        for (h, size) in &objs {
            if refcount.get(h).copied().unwrap_or(0) <= 1 {
                unique += size;
            } else {
                shared += size;
            }
        }
        // A copy bot where extents cannot be shared holds all of its files.
        if full_copy {
            full_copies += logical;
            unique = logical;
            shared = 0;
        }
        bots.push(BotUsage {
            id,
            logical_bytes: logical,
            unique_bytes: unique + uncommitted,
            shared_bytes: shared,
            uncommitted_bytes: uncommitted,
            full_copy,
        });
    }
    let layer_bytes = du(&fs::layers_root(store));
    Ok(FleetUsage {
        plain_copies_bytes: bots.iter().map(|b| b.logical_bytes).sum(),
        disk_bytes: store_physical + layer_bytes + upper_bytes + full_copies,
        layer_bytes,
        upper_bytes,
        bots,
    })
}
