use crate::state::{Bot, Driver};
use anyhow::{bail, Context, Result};
use store::Store;

/// What a reset discarded.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ResetOutcome {
    pub id: String,
    /// Paths whose uncommitted changes were dropped (`/` for all).
    pub discarded: Vec<String>,
    /// The committed tree went back to the image's.
    pub to_image: bool,
    /// The commit the bot went back to (`--to`).
    pub to_commit: Option<String>,
    /// The history record of the reset (a reset of the committed state is
    /// itself a commit, so it can be undone).
    pub commit: Option<String>,
}

/// Discards uncommitted changes: all of them, or those at and below
/// `paths`; with `to_image`, every change, committed or not; with
/// `to_commit`, the bot goes back to that commit of its history (which
/// stays in the log, with the reset recorded after it). An overlay bot
/// must be unmounted (overlayfs forbids changing a live upper dir); a copy
/// bot's directory is rewritten from the store.
pub fn reset(
    store: &Store,
    id: &str,
    paths: &[String],
    to_image: bool,
    to_commit: Option<&str>,
) -> Result<ResetOutcome> {
    let bot = Bot::new(store, id)?;
    let _lock = bot.lock()?;
    let mut r = bot.load()?;
    if let Some(p) = bot.mounted_at() {
        bail!(
            "bot {id} is mounted at {}; unmount it first (`botyard bot unmount {id}`)",
            p.display()
        );
    }
    if (to_image || to_commit.is_some()) && !paths.is_empty() {
        bail!("--to-image and --to reset the whole bot; give no paths with them");
    }
    if to_image && to_commit.is_some() {
        bail!("give --to-image or --to COMMIT, not both");
    }
    let target = match to_commit {
        Some(spec) => Some(crate::history::resolve(store, id, spec)?),
        None => None,
    };
    let mut parsed = Vec::new();
    for p in paths {
        let comps = fs::split_path(p.trim_start_matches('/').as_bytes())
            .map_err(|e| anyhow::anyhow!("path '{p}' has {e}; give a path inside the bot"))?;
        if comps.is_empty() {
            bail!("path '{p}' is the root; reset without paths to discard everything");
        }
        parsed.push(comps.iter().map(|c| c.to_vec()).collect::<Vec<_>>());
    }
    if to_image {
        r.tree = r.image_tree;
        r.committed = Some(crate::state::now());
    }
    if let Some(c) = &target {
        r.tree = c.tree;
        r.image = c.image.clone();
        r.image_tree = c.image_tree;
        r.committed = Some(crate::state::now());
    }
    let mut discarded = Vec::new();
    // Back to the image drops uncommitted changes too: an overlay upper was
    // made against the old lower layers.
    if parsed.is_empty() {
        bot.show_committed(&r)?;
        if r.driver == Driver::Copy {
            r.snapshot = false;
        }
        discarded.push("/".to_string());
    }
    for comps in &parsed {
        let base = match r.driver {
            Driver::Overlay => bot.upper(),
            Driver::Copy => bot.default_mount(),
        };
        let c: Vec<&[u8]> = comps.iter().map(|c| c.as_slice()).collect();
        let (name, parents) = c.split_last().expect("paths are not the root");
        // Opened one component at a time, never through a symlink the bot
        // made, and removed from that same directory.
        let root = fs::walk::open_dir(&base)?;
        let Some(dir) = fs::walk::open_beneath(&root, parents)? else {
            continue;
        };
        let removed = fs::walk::remove_tree(&dir, name)
            .with_context(|| format!("cannot reset {}", fs::quote_bytes(&c.join(&b'/'))))?
            > 0;
        let restored = match r.driver {
            Driver::Overlay => false,
            Driver::Copy => fs::materialize_path(store, &r.tree, &c, &base)?,
        };
        if removed || restored {
            discarded.push(format!("/{}", String::from_utf8_lossy(&c.join(&b'/'))));
        }
    }
    let mut commit = None;
    if to_image || target.is_some() {
        let message = match &target {
            Some(c) => format!("reset to {}", c.id),
            None => format!("reset to the image {}", r.image),
        };
        let _shared = store.lock(false, &store::NoProgress)?;
        let c = crate::history::Commit::record(store, &r, &message)?;
        r.head = Some(c.id.clone());
        commit = Some(c.id);
        bot.save(&r)?;
    } else if parsed.is_empty() {
        bot.save(&r)?;
    }
    Ok(ResetOutcome {
        id: id.to_string(),
        discarded,
        to_image,
        to_commit: target.map(|c| c.id),
        commit,
    })
}
