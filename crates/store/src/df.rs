use crate::progress::NoProgress;
use crate::store::Store;
use anyhow::Result;
use std::fs;

#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageUsage {
    pub name: String,
    pub files: u64,
    /// Bytes of its regular files: what a plain copy of it would take.
    pub logical_bytes: u64,
}

/// The store's figures: what plain copies would take against what is stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DfReport {
    pub store: String,
    pub images: Vec<ImageUsage>,
    /// Sum of the images' file bytes: the cost of one plain copy of each.
    pub logical_bytes: u64,
    /// Disk bytes of objects and trees (what the images cost; the fleet's
    /// whole footprint, layers and uppers included, is `df`'s `fleet.disk_bytes`).
    pub stored_bytes: u64,
    pub objects: u64,
    pub object_bytes: u64,
    pub trees: u64,
    pub tree_bytes: u64,
    /// logical / physical; above 1 means sharing saves space.
    pub dedup_ratio: f64,
}

impl Store {
    pub fn df(&self) -> Result<DfReport> {
        let _lock = self.lock(false, &NoProgress)?;
        let mut images = Vec::new();
        for (name, r) in self.images()? {
            if let Ok(r) = r {
                images.push(ImageUsage {
                    name: name.to_string(),
                    files: r.files,
                    logical_bytes: r.bytes,
                });
            }
        }
        let (objects, object_bytes) = count_dir(&self.objects_dir())?;
        let trees = self.tree_db()?.count()?;
        let tree_bytes = crate::treedb::disk_bytes(self.root());
        let logical_bytes: u64 = images.iter().map(|i| i.logical_bytes).sum();
        let stored_bytes = object_bytes + tree_bytes;
        Ok(DfReport {
            store: self.root().display().to_string(),
            images,
            logical_bytes,
            stored_bytes,
            objects,
            object_bytes,
            trees,
            tree_bytes,
            dedup_ratio: if stored_bytes == 0 {
                0.0
            } else {
                logical_bytes as f64 / stored_bytes as f64
            },
        })
    }
}

fn count_dir(top: &std::path::Path) -> Result<(u64, u64)> {
    let mut n = 0;
    let mut bytes = 0;
    for shard in fs::read_dir(top)? {
        let shard = shard?;
        if !shard.file_type()?.is_dir() {
            continue;
        }
        for ent in fs::read_dir(shard.path())? {
            let m = ent?.metadata()?;
            n += 1;
            bytes += Store::disk_bytes(&m);
        }
    }
    Ok((n, bytes))
}
