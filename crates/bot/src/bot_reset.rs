use crate::state::{empty_dir, Bot, Driver};
use anyhow::{bail, Context, Result};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use store::Store;

/// What a reset discarded.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ResetOutcome {
    pub id: String,
    /// Paths whose uncommitted changes were dropped (`/` for all).
    pub discarded: Vec<String>,
    /// The committed tree went back to the image's.
    pub to_image: bool,
}

/// Discards uncommitted changes: all of them, or those at and below
/// `paths`; with `to_image`, every change, committed or not. An overlay bot
/// must be unmounted (overlayfs forbids changing a live upper dir); a copy
/// bot's directory is rewritten from the store.
pub fn reset(store: &Store, id: &str, paths: &[String], to_image: bool) -> Result<ResetOutcome> {
    let bot = Bot::new(store, id)?;
    let _lock = bot.lock()?;
    let mut r = bot.load()?;
    if let Some(p) = bot.mounted_at() {
        bail!(
            "bot {id} is mounted at {}; unmount it first (`botyard bot unmount {id}`)",
            p.display()
        );
    }
    if to_image && !paths.is_empty() {
        bail!("--to-image resets the whole bot; give no paths with it");
    }
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
    let mut discarded = Vec::new();
    // Back to the image drops uncommitted changes too: an overlay upper was
    // made against the old lower layers.
    if parsed.is_empty() {
        match r.driver {
            Driver::Overlay => {
                empty_dir(&bot.upper())?;
                empty_dir(&bot.work())?;
            }
            Driver::Copy => {
                empty_dir(&bot.default_mount())?;
                fs::materialize(store, &r.tree, &bot.default_mount())?;
            }
        }
        discarded.push("/".to_string());
    }
    for comps in &parsed {
        let base = match r.driver {
            Driver::Overlay => bot.upper(),
            Driver::Copy => bot.default_mount(),
        };
        let Some(target) = beneath(&base, comps) else {
            continue;
        };
        let removed = remove_any(&target)?;
        let restored = match r.driver {
            Driver::Overlay => false,
            Driver::Copy => {
                let c: Vec<&[u8]> = comps.iter().map(|c| c.as_slice()).collect();
                fs::materialize_path(store, &r.tree, &c, &base)?
            }
        };
        if removed || restored {
            let shown: Vec<String> = comps
                .iter()
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            discarded.push(format!("/{}", shown.join("/")));
        }
    }
    if to_image {
        bot.save(&r)?;
    }
    Ok(ResetOutcome {
        id: id.to_string(),
        discarded,
        to_image,
    })
}

/// The path of `comps` under `base`, if every parent is a real directory
/// (never a symlink: the bot's files are not to be trusted).
fn beneath(base: &Path, comps: &[Vec<u8>]) -> Option<PathBuf> {
    let (last, parents) = comps.split_last()?;
    let mut dir = base.to_path_buf();
    for c in parents {
        dir = dir.join(std::ffi::OsStr::from_bytes(c));
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            _ => return None,
        }
    }
    Some(dir.join(std::ffi::OsStr::from_bytes(last)))
}

fn remove_any(p: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            std::fs::remove_dir_all(p).with_context(|| format!("cannot remove {}", p.display()))?
        }
        Ok(_) => {
            std::fs::remove_file(p).with_context(|| format!("cannot remove {}", p.display()))?
        }
        Err(_) => return Ok(false),
    }
    Ok(true)
}
