//! `image rm`: removes image names, refusing those bots still use unless
//! forced (then only the name goes; the bots keep its data alive).

use anyhow::{bail, Result};
use store::{ImageName, Store};

/// An image name removed, and the bots that still use its data.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RemovedImage {
    pub name: String,
    pub still_used_by: Vec<String>,
}

/// Removes `names`: every name is checked before any is removed, so one
/// mistake removes nothing.
pub fn remove_images(store: &Store, names: &[ImageName], force: bool) -> Result<Vec<RemovedImage>> {
    let mut users = Vec::new();
    for n in names {
        store.image(n)?;
        let bots = crate::using_image(store, &n.to_string())?;
        if !bots.is_empty() && !force {
            bail!(
                "image {n} is used by {} {} ({}), which keep its data alive; remove them first, or pass --force to remove only the name",
                bots.len(),
                if bots.len() == 1 { "bot" } else { "bots" },
                bots.join(", ")
            );
        }
        users.push(bots);
    }
    let mut removed = Vec::new();
    for (n, bots) in names.iter().zip(users) {
        store.remove_image(n)?;
        removed.push(RemovedImage {
            name: n.to_string(),
            still_used_by: bots,
        });
    }
    Ok(removed)
}
