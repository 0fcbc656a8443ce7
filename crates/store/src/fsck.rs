use crate::hash::Hash;
use crate::progress::{Progress, Unit};
use crate::store::Store;
use anyhow::Result;
use rayon::prelude::*;
use std::fs;
use std::sync::Mutex;

#[derive(Debug, Clone, serde::Serialize)]
pub struct FsckProblem {
    /// What is wrong, in one line, naming the ref, tree or object.
    pub message: String,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct FsckReport {
    pub refs: u64,
    pub trees: u64,
    pub objects: u64,
    pub object_bytes: u64,
    /// Leftovers of interrupted writers; harmless, removed by `gc`.
    pub tmp_entries: u64,
    /// Objects and trees no ref reaches; harmless, removed by `gc`.
    pub unreferenced: u64,
    pub problems: Vec<FsckProblem>,
}

impl FsckReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Store {
    /// Checks that every ref resolves to a complete tree, and that every tree
    /// and object in the store has the bytes its name promises.
    pub fn fsck(&self, progress: &dyn Progress) -> Result<FsckReport> {
        let _lock = self.lock(false, progress)?;
        let mut report = FsckReport::default();
        let mut problems = Vec::new();
        let mut roots = Vec::new();
        for (name, r) in self.images()? {
            report.refs += 1;
            match r {
                Ok(r) => roots.push((format!("image {name}"), r.tree)),
                Err(e) => problems.push(format!("image {name}: {e:#}")),
            }
        }
        for (name, r) in self.other_refs()? {
            report.refs += 1;
            match r {
                Ok(trees) => roots.extend(trees.into_iter().map(|t| (name.clone(), t))),
                Err(e) => problems.push(format!("{name}: {e:#}")),
            }
        }
        progress.phase("checking refs", None, Unit::Items);
        let hashes: Vec<Hash> = roots.iter().map(|r| r.1).collect();
        let live = self.reachable(&hashes, &mut |h, e| {
            let who: Vec<String> = roots
                .iter()
                .filter(|r| r.1 == h)
                .map(|r| r.0.to_string())
                .collect();
            let whose = if who.is_empty() {
                String::new()
            } else {
                format!(" (root of {})", who.join(", "))
            };
            problems.push(format!("tree {h}{whose}: {e:#}"));
        });
        for (h, size) in &live.objects {
            match fs::symlink_metadata(self.object_path(h)) {
                Ok(m) if m.is_file() && m.len() == *size => {}
                Ok(m) => problems.push(format!(
                    "object {h} has {} bytes, trees expect {size}",
                    m.len()
                )),
                Err(_) => problems.push(format!(
                    "object {h} is missing ({size} bytes, referenced by a tree)"
                )),
            }
        }
        report.trees = live.trees.len() as u64;

        // Every stored object and tree must match its name, reachable or not:
        // a later import would reuse a damaged one.
        progress.phase("verifying trees", None, Unit::Items);
        if let Some(msg) = self.tree_db()?.integrity()? {
            problems.push(format!("the tree database is damaged: {msg}"));
        }
        let rows = self.tree_db()?.rows()?;
        let bases: std::collections::HashSet<Hash> = rows
            .iter()
            .filter(|r| live.trees.contains(&r.hash))
            .filter_map(|r| r.base)
            .collect();
        for r in &rows {
            match self.tree_bytes(&r.hash) {
                Ok(data) if Hash::of(&data) == r.hash => {}
                Ok(data) => problems.push(format!(
                    "tree {} is damaged: its bytes hash to {}",
                    r.hash,
                    Hash::of(&data)
                )),
                Err(e) => problems.push(format!("{e:#}")),
            }
            if !live.trees.contains(&r.hash) && !bases.contains(&r.hash) {
                report.unreferenced += 1;
            }
        }
        let mut files = Vec::new();
        for shard in 0..=255u8 {
            let dir = self.objects_dir().join(format!("{shard:02x}"));
            let Ok(rd) = fs::read_dir(&dir) else {
                problems.push(format!("directory {} is missing", dir.display()));
                continue;
            };
            for ent in rd.flatten() {
                let name = format!("{shard:02x}{}", ent.file_name().to_string_lossy());
                let size = ent.metadata().map(|m| m.len()).unwrap_or(0);
                files.push((ent.path(), name, size));
            }
        }
        let total: u64 = files.iter().map(|f| f.2).sum();
        progress.phase("verifying content", Some(total), Unit::Bytes);
        let bad = Mutex::new(Vec::new());
        files.par_iter().for_each(|(path, name, size)| {
            let res = (|| -> std::io::Result<Option<String>> {
                let Ok(h) = name.parse::<Hash>() else {
                    return Ok(Some(format!("{} is not named by a hash", path.display())));
                };
                let mut f = fs::File::open(path)?;
                let mut hasher = blake3::Hasher::new();
                std::io::copy(&mut f, &mut hasher)?;
                let got: Hash = hasher.finalize().into();
                Ok((got != h).then(|| format!("object {h} is damaged: its bytes hash to {got}")))
            })();
            progress.advance(*size);
            match res {
                Ok(None) => {}
                Ok(Some(msg)) => bad.lock().unwrap().push(msg),
                Err(e) => bad
                    .lock()
                    .unwrap()
                    .push(format!("object {name} cannot be read: {e}")),
            }
        });
        problems.extend(bad.into_inner().unwrap());
        for (_, name, size) in &files {
            let Ok(h) = name.parse::<Hash>() else {
                continue;
            };
            report.objects += 1;
            report.object_bytes += size;
            if !live.objects.contains_key(&h) {
                report.unreferenced += 1;
            }
        }
        report.tmp_entries = fs::read_dir(self.tmp_dir())
            .map(|rd| rd.count() as u64)
            .unwrap_or(0);
        problems.sort();
        problems.dedup();
        report.problems = problems
            .into_iter()
            .map(|message| FsckProblem { message })
            .collect();
        Ok(report)
    }
}
