//! What every import ends with: write the tree, publish the staged data,
//! then point the ref at it.

use anyhow::Result;
use fs::{MemTree, TreeStats};
use store::{Hash, ImageName, ImageRef, Progress, Staging, StagingStats, Unit};

/// Where an image comes from, recorded in its ref.
#[derive(Clone, Debug)]
pub struct Source {
    pub label: String,
    pub digest: Option<String>,
    pub created: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ImportOutcome {
    pub name: String,
    pub tree: Hash,
    pub previous_tree: Option<Hash>,
    /// The tree is the one the tag already named.
    pub unchanged: bool,
    pub stats: TreeStats,
    pub written: StagingStats,
    pub source: String,
    pub digest: Option<String>,
}

pub(crate) fn finish(
    staging: Staging,
    tree: &MemTree,
    name: &ImageName,
    source: Source,
    progress: &dyn Progress,
) -> Result<ImportOutcome> {
    progress.phase("publishing", None, Unit::Items);
    let (root, stats) = tree.write(&staging)?;
    let (written, previous) = staging.commit(|store| {
        let previous = store.try_image(name).ok().flatten().map(|r| r.tree);
        let mut r = ImageRef::new(root, source.label.clone());
        r.digest = source.digest.clone();
        r.created = source.created.clone();
        r.files = stats.files;
        r.dirs = stats.dirs;
        r.others = stats.others;
        r.bytes = stats.bytes;
        store.set_image(name, &r)?;
        Ok(previous)
    })?;
    Ok(ImportOutcome {
        name: name.to_string(),
        tree: root,
        previous_tree: previous,
        unchanged: previous == Some(root),
        stats,
        written,
        source: source.label,
        digest: source.digest,
    })
}
