use crate::state::{empty_dir, Bot};
use anyhow::{bail, Context, Result};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use store::Store;

/// What a reset discarded.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ResetOutcome {
    pub id: String,
    /// Paths removed from the upper (all of it when no path was given).
    pub discarded: Vec<String>,
    /// The committed tree went back to the image's.
    pub to_image: bool,
}

/// Discards uncommitted changes: all of them, or those at and below
/// `paths`; with `to_image`, every change, committed or not. The bot must be
/// unmounted (overlayfs forbids changing a live upper dir).
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
    let mut discarded = Vec::new();
    // Back to the image drops uncommitted changes too: the upper was made
    // against the old lower layers.
    if paths.is_empty() || to_image {
        empty_dir(&bot.upper())?;
        empty_dir(&bot.work())?;
        discarded.push("/".to_string());
    } else {
        for p in paths {
            let comps = fs::split_path(p.trim_start_matches('/').as_bytes())
                .map_err(|e| anyhow::anyhow!("path '{p}' has {e}; give a path inside the bot"))?;
            if comps.is_empty() {
                bail!("path '{p}' is the root; reset without paths to discard everything");
            }
            // Walk the upper without following its symlinks.
            let mut dir = bot.upper();
            let (last, parents) = comps.split_last().unwrap();
            let mut ok = true;
            for c in parents {
                dir = dir.join(std::ffi::OsStr::from_bytes(c));
                match std::fs::symlink_metadata(&dir) {
                    Ok(m) if m.is_dir() => {}
                    _ => {
                        ok = false;
                        break;
                    }
                }
            }
            let target = dir.join(std::ffi::OsStr::from_bytes(last));
            if ok && remove_any(&target)? {
                discarded.push(format!(
                    "/{}",
                    comps
                        .iter()
                        .map(|c| String::from_utf8_lossy(c))
                        .collect::<Vec<_>>()
                        .join("/")
                ));
            }
        }
    }
    if to_image {
        r.tree = r.image_tree;
        r.committed = Some(crate::state::now());
        bot.save(&r)?;
    }
    Ok(ResetOutcome {
        id: id.to_string(),
        discarded,
        to_image,
    })
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
