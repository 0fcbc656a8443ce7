//! Snapshots: a bot's state at one instant, committed or not, kept as
//! `refs/snapshots/ID` until removed (so it outlives the bot, as a
//! Kubernetes VolumeSnapshot outlives its volume), and new bots made from
//! them. The CSI driver's CreateSnapshot and CreateVolume from a snapshot.

use crate::state::{now, Bot};
use anyhow::Result;
use store::{Hash, Progress, Staging, Store};

/// The ref kind of snapshots.
pub const SNAPSHOTS: &str = "snapshots";

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    pub id: String,
    /// The name it was asked for by (idempotency).
    pub name: String,
    /// The bot it was taken of.
    pub bot: String,
    pub tree: Hash,
    pub image: String,
    pub image_tree: Hash,
    pub created: String,
    /// Bytes of the regular files it holds.
    pub size: u64,
}

/// Takes snapshot `snap_id` of bot `id` as it is now, mounted or not:
/// what it has not committed is stored too, and the bot is not changed.
pub fn snapshot(
    store: &Store,
    id: &str,
    snap_id: &str,
    name: &str,
    progress: &dyn Progress,
) -> Result<Snapshot> {
    store::validate_segment("snapshot id", snap_id, store::MAX_NAME_BYTES)?;
    let bot = Bot::new(store, id)?;
    let _lock = bot.lock()?;
    let r = bot.load()?;
    let staging = Staging::new(store, progress)?;
    let tree = crate::bot_diff::current_tree_in(&bot, &staging, progress)
        .map_err(|e| crate::state::too_deep_hint(e, id))?;
    let (root, stats) = tree.write(&staging)?;
    let s = Snapshot {
        id: snap_id.to_string(),
        name: name.to_string(),
        bot: id.to_string(),
        tree: root,
        image: r.image.clone(),
        image_tree: r.image_tree,
        created: now(),
        size: stats.bytes,
    };
    staging.commit(|store| store.write_ref(SNAPSHOTS, snap_id, &serde_json::to_value(&s)?))?;
    Ok(s)
}

pub fn load_snapshot(store: &Store, id: &str) -> Result<Option<Snapshot>> {
    if store::validate_segment("snapshot id", id, store::MAX_NAME_BYTES).is_err() {
        return Ok(None);
    }
    store.read_record(SNAPSHOTS, id, &format!("snapshot {id}"))
}

/// Removes a snapshot; its unique bytes go at the next gc. False if there
/// was none.
pub fn remove_snapshot(store: &Store, id: &str) -> Result<bool> {
    if load_snapshot(store, id)?.is_none() {
        return Ok(false);
    }
    store.remove_ref(SNAPSHOTS, id)?;
    Ok(true)
}

/// Every snapshot, by id.
pub fn snapshots(store: &Store) -> Result<Vec<Snapshot>> {
    let mut out = Vec::new();
    for (name, _) in store.other_refs()? {
        if let Some(id) = name.strip_prefix("snapshots/") {
            if let Some(s) = load_snapshot(store, id)? {
                out.push(s);
            }
        }
    }
    Ok(out)
}
