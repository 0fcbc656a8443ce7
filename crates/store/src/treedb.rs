//! Where trees live: one SQLite database, `trees.db`, beside the objects.
//!
//! Trees are small and many (a Debian base has thousands), so one file each
//! would cost a filesystem block each, several times their bytes. Here every
//! tree is a row, zstd-compressed, and a tree whose directory already has a
//! stored version is kept as a delta against it: the version is the base
//! (a zstd dictionary), found by the directory's path. Bots that installed
//! the same packages on different days differ only in directory mtimes, so
//! their trees shrink to a few bytes each. A delta's base is always a whole
//! tree (one level), and `gc` keeps a base while a live delta needs it.
//! A row is named by the hash of the decoded tree, as a loose tree was.

use crate::hash::Hash;
use anyhow::{bail, Context, Result};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The database's file name in the store.
pub const TREES_DB: &str = "trees.db";
/// Compression level: a delta finds its base's bytes at any level, and
/// higher levels cost commit time for a few per cent of trees that are
/// already a small part of the store.
const LEVEL: i32 = 3;
/// No tree decodes to more (a million entries of a hundred bytes is 100
/// MiB); a damaged size must give an error, not an allocation that size.
const MAX_TREE_BYTES: usize = 1 << 30;
/// Decoded bases kept in memory, so the deltas of many bots against one
/// base decompress it once.
const BASE_CACHE_BYTES: usize = 64 << 20;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS trees (
    id INTEGER PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE,
    -- NULL: data is the whole tree; else the hash of a whole tree that
    -- data is a delta against.
    base BLOB,
    -- Where the tree was first stored (a hash of the directory's path):
    -- the hint for the base of a later version. NULL when unknown.
    path INTEGER,
    size INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS whole_by_path ON trees (path, id) WHERE base IS NULL;
";

/// A tree ready to be inserted: compressed, its base chosen.
pub(crate) struct Packed {
    pub hash: Hash,
    base: Option<Hash>,
    path: Option<i64>,
    size: usize,
    data: Vec<u8>,
}

/// One stored row, as `gc` and `fsck` see it.
pub(crate) struct Row {
    pub hash: Hash,
    pub base: Option<Hash>,
    pub stored: u64,
}

pub(crate) struct TreeDb {
    conn: Mutex<Connection>,
    bases: Mutex<BaseCache>,
    /// zstd contexts, made once: making one per tree cost more than the
    /// work it did.
    zstd: Mutex<(
        zstd::bulk::Compressor<'static>,
        zstd::bulk::Decompressor<'static>,
    )>,
}

impl std::fmt::Debug for TreeDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TreeDb")
    }
}

#[derive(Default)]
struct BaseCache {
    map: HashMap<Hash, Arc<Vec<u8>>>,
    bytes: usize,
}

/// The key a directory's path is found by.
pub(crate) fn path_key(path: &[u8]) -> i64 {
    let h = blake3::hash(path);
    i64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap())
}

fn hash_of(b: &[u8]) -> Result<Hash> {
    Ok(Hash(
        b.try_into().context("a tree row's hash is not 32 bytes")?,
    ))
}

impl TreeDb {
    pub fn open(path: &Path) -> Result<TreeDb> {
        let conn =
            Connection::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(60))?;
        // Space freed by gc goes back to the filesystem.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // A staging's trees are durable before its refs are written.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "journal_size_limit", 1 << 20)?;
        conn.execute_batch(SCHEMA)
            .with_context(|| format!("cannot set up {}", path.display()))?;
        Ok(TreeDb {
            conn: Mutex::new(conn),
            bases: Mutex::default(),
            zstd: Mutex::new((
                zstd::bulk::Compressor::new(LEVEL)?,
                zstd::bulk::Decompressor::new()?,
            )),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Decompresses `data` (`size` bytes once decoded) against `dict`
    /// (empty for a whole tree).
    fn decompress(&self, data: &[u8], size: usize, dict: &[u8]) -> Result<Vec<u8>> {
        if size > MAX_TREE_BYTES {
            bail!("its recorded size, {size} bytes, is damaged");
        }
        let mut z = self.zstd.lock().unwrap_or_else(|e| e.into_inner());
        z.1.set_dictionary(dict)?;
        Ok(z.1.decompress(data, size)?)
    }

    /// Compresses `data` against `dict` (empty: on its own).
    fn compress(&self, data: &[u8], dict: &[u8]) -> Result<Vec<u8>> {
        let mut z = self.zstd.lock().unwrap_or_else(|e| e.into_inner());
        z.0.set_dictionary(LEVEL, dict)?;
        Ok(z.0.compress(data)?)
    }

    pub fn contains(&self, h: &Hash) -> Result<bool> {
        Ok(self
            .conn()
            .prepare_cached("SELECT 1 FROM trees WHERE hash = ?1")?
            .query_row([&h.0[..]], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// The tree's encoding, or `None` if the store lacks it. Not verified
    /// against the hash (the caller does).
    pub fn get(&self, h: &Hash) -> Result<Option<Vec<u8>>> {
        let row = self
            .conn()
            .prepare_cached("SELECT base, size, data FROM trees WHERE hash = ?1")?
            .query_row([&h.0[..]], |r| {
                Ok((
                    r.get::<_, Option<Vec<u8>>>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })
            .optional()?;
        let Some((base, size, data)) = row else {
            return Ok(None);
        };
        let size = usize::try_from(size).context("a tree row has a negative size")?;
        Ok(Some(match base {
            None => self.decompress(&data, size, &[])?,
            Some(b) => {
                let b = hash_of(&b)?;
                let base = self
                    .whole(&b)?
                    .with_context(|| format!("its base tree {b} is missing"))?;
                self.decompress(&data, size, &base)?
            }
        }))
    }

    /// A whole (not delta) tree's encoding, from the cache when it can.
    fn whole(&self, h: &Hash) -> Result<Option<Arc<Vec<u8>>>> {
        if let Some(b) = self.bases.lock().unwrap().map.get(h) {
            return Ok(Some(b.clone()));
        }
        let row = self
            .conn()
            .prepare_cached("SELECT size, data FROM trees WHERE hash = ?1 AND base IS NULL")?
            .query_row([&h.0[..]], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .optional()?;
        let Some((size, data)) = row else {
            return Ok(None);
        };
        let size = usize::try_from(size).context("a tree row has a negative size")?;
        let bytes = Arc::new(self.decompress(&data, size, &[])?);
        let mut cache = self.bases.lock().unwrap();
        if cache.bytes + bytes.len() > BASE_CACHE_BYTES {
            cache.map.clear();
            cache.bytes = 0;
        }
        cache.bytes += bytes.len();
        cache.map.insert(*h, bytes.clone());
        Ok(Some(bytes))
    }

    /// Compresses a new tree, as a delta against the last whole tree
    /// stored at the same path when that is less than half the size.
    pub fn pack(&self, hash: Hash, path: Option<&[u8]>, data: &[u8]) -> Result<Packed> {
        let whole = self.compress(data, &[])?;
        let key = path.map(path_key);
        let mut packed = Packed {
            hash,
            base: None,
            path: key,
            size: data.len(),
            data: whole,
        };
        let Some(key) = key else {
            return Ok(packed);
        };
        let base = self
            .conn()
            .prepare_cached(
                "SELECT hash FROM trees WHERE path = ?1 AND base IS NULL ORDER BY id DESC LIMIT 1",
            )?
            .query_row([key], |r| r.get::<_, Vec<u8>>(0))
            .optional()?;
        let Some(base) = base else {
            return Ok(packed);
        };
        let base = hash_of(&base)?;
        let Some(bytes) = self.whole(&base)? else {
            return Ok(packed);
        };
        let delta = self.compress(data, &bytes)?;
        if delta.len() * 2 < packed.data.len() {
            packed.base = Some(base);
            packed.data = delta;
        }
        Ok(packed)
    }

    /// Inserts packed trees in one durable transaction.
    pub fn insert(&self, rows: &[Packed]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut st = tx.prepare_cached(
                "INSERT OR IGNORE INTO trees (hash, base, path, size, data) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for p in rows {
                st.execute(params![
                    &p.hash.0[..],
                    p.base.as_ref().map(|b| &b.0[..]),
                    p.path,
                    p.size as i64,
                    p.data
                ])?;
            }
        }
        tx.commit().context("cannot store trees")?;
        Ok(())
    }

    pub fn count(&self) -> Result<u64> {
        let n: i64 = self
            .conn()
            .query_row("SELECT COUNT(*) FROM trees", [], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    }

    /// Every row: its hash, its base and its stored bytes.
    pub fn rows(&self) -> Result<Vec<Row>> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT hash, base, length(data) FROM trees")?;
        let mut out = Vec::new();
        let mut q = st.query([])?;
        while let Some(r) = q.next()? {
            out.push(Row {
                hash: hash_of(&r.get::<_, Vec<u8>>(0)?)?,
                base: r
                    .get::<_, Option<Vec<u8>>>(1)?
                    .map(|b| hash_of(&b))
                    .transpose()?,
                stored: r.get::<_, i64>(2)?.max(0) as u64,
            });
        }
        Ok(out)
    }

    /// Removes rows and gives their space back to the filesystem.
    pub fn remove(&self, hashes: &[Hash]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut st = tx.prepare_cached("DELETE FROM trees WHERE hash = ?1")?;
            for h in hashes {
                st.execute([&h.0[..]])?;
            }
        }
        tx.commit().context("cannot remove trees")?;
        conn.execute_batch("PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(TRUNCATE);")?;
        self.bases.lock().unwrap().map.clear();
        Ok(())
    }

    /// SQLite's own check of the file; `None` when it is sound.
    pub fn integrity(&self) -> Result<Option<String>> {
        let msg: String = self
            .conn()
            .query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        Ok((msg != "ok").then_some(msg))
    }

    /// Moves loose trees (`trees/ab/cdef…`, the first store format) in,
    /// then removes them. A loose tree whose bytes do not match its name
    /// is left out; `fsck` then names what misses it.
    pub fn take_loose(&self, dir: &Path) -> Result<u64> {
        let mut rows = Vec::new();
        for shard in
            std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?
        {
            let shard = shard?;
            if !shard.file_type()?.is_dir() {
                continue;
            }
            for ent in std::fs::read_dir(shard.path())? {
                let ent = ent?;
                let name = format!(
                    "{}{}",
                    shard.file_name().to_string_lossy(),
                    ent.file_name().to_string_lossy()
                );
                let Ok(h) = name.parse::<Hash>() else {
                    continue;
                };
                let data = std::fs::read(ent.path())?;
                if Hash::of(&data) == h {
                    rows.push(self.pack(h, None, &data)?);
                }
            }
        }
        self.insert(&rows)?;
        crate::walk::remove_path(dir)?;
        Ok(rows.len() as u64)
    }
}

/// Disk bytes of the database and its journal.
pub(crate) fn disk_bytes(root: &Path) -> u64 {
    ["", "-wal"]
        .iter()
        .filter_map(|s| std::fs::metadata(root.join(format!("{TREES_DB}{s}"))).ok())
        .map(|m| crate::store::Store::disk_bytes(&m))
        .sum()
}

/// Refuses a database path that is not a regular file (a store someone
/// shaped by hand).
pub(crate) fn check_file(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.is_file() => bail!(
            "{} is not a regular file; restore the store's tree database or re-create the store",
            path.display()
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use crate::{Entry, EntryKind, Hash, ImageName, ImageRef, NoProgress, Staging, Store, Tree};

    /// A directory listing of `n` files whose own mtime is `mtime`, as the
    /// same packages installed on another day would give.
    fn listing(n: usize, mtime: i64) -> Tree {
        let entries = (0..n)
            .map(|i| Entry {
                name: format!("lib{i:04}.so.1").into_bytes(),
                mode: 0o644,
                uid: 0,
                gid: 0,
                mtime: if i == 0 { mtime } else { 1_700_000_000 },
                mtime_nsec: 0,
                xattrs: vec![],
                // Incompressible, as the object hashes of files are.
                kind: EntryKind::Symlink(Hash::of(&i.to_le_bytes()).to_hex().into_bytes()),
            })
            .collect();
        Tree::from_entries(entries).unwrap()
    }

    fn put(store: &Store, path: &[u8], t: &Tree) -> Hash {
        let s = Staging::new(store, &NoProgress).unwrap();
        let h = s.put_tree_bytes(Some(path), &t.encode()).unwrap();
        s.commit(|_| Ok(())).unwrap();
        h
    }

    fn point(store: &Store, name: &str, h: Hash) {
        let n: ImageName = name.parse().unwrap();
        store
            .set_image(&n, &ImageRef::new(h, "dir:x".into()))
            .unwrap();
    }

    fn row(store: &Store, h: &Hash) -> super::Row {
        let rows = store.tree_db().unwrap().rows().unwrap();
        rows.into_iter().find(|r| r.hash == *h).unwrap()
    }

    #[test]
    fn a_new_version_of_a_directory_is_a_small_delta_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::init(&dir.path().join("s")).unwrap();
        let (a, b) = (listing(2000, 1), listing(2000, 2));
        let ha = put(&store, b"/usr/lib", &a);
        let hb = put(&store, b"/usr/lib", &b);
        // Elsewhere, the same listing has no base to lean on.
        let hc = put(&store, b"/opt/lib", &listing(2000, 3));
        assert_eq!(row(&store, &ha).base, None);
        assert_eq!(row(&store, &hb).base, Some(ha));
        assert_eq!(row(&store, &hc).base, None);
        assert!(
            row(&store, &hb).stored * 20 < row(&store, &ha).stored,
            "delta {} bytes against a whole {}",
            row(&store, &hb).stored,
            row(&store, &ha).stored
        );
        // A fresh handle, with no cached base, reads the same tree.
        let again = Store::open(store.root()).unwrap();
        assert_eq!(again.read_tree(&hb).unwrap(), b);

        // Only the delta is named: gc keeps its base, and fsck is clean.
        point(&store, "only:delta", hb);
        let r = store.gc(false, &NoProgress).unwrap();
        assert_eq!(r.trees, 1, "only the unrelated tree goes");
        assert!(store.has_tree(&ha).unwrap() && !store.has_tree(&hc).unwrap());
        assert_eq!(store.read_tree(&hb).unwrap(), b);
        let f = store.fsck(&NoProgress).unwrap();
        assert!(f.ok(), "{:?}", f.problems);
        assert_eq!(f.unreferenced, 0);
    }

    #[test]
    fn fsck_names_a_damaged_tree_row() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::init(&dir.path().join("s")).unwrap();
        let h = put(&store, b"/etc", &listing(10, 1));
        point(&store, "x:1", h);
        let other = Tree::from_entries(vec![]).unwrap();
        let data = zstd::bulk::compress(&other.encode(), 3).unwrap();
        store
            .tree_db()
            .unwrap()
            .conn()
            .execute(
                "UPDATE trees SET data = ?1, size = ?2 WHERE hash = ?3",
                rusqlite::params![data, other.encode().len() as i64, &h.0[..]],
            )
            .unwrap();
        let f = store.fsck(&NoProgress).unwrap();
        assert!(
            f.problems
                .iter()
                .any(|p| p.message.contains(&format!("tree {h} is damaged"))),
            "{:?}",
            f.problems
        );
        assert!(store.read_tree(&h).is_err());
        // A size no tree has is an error, not an allocation of that size.
        store
            .tree_db()
            .unwrap()
            .conn()
            .execute(
                "UPDATE trees SET size = ?1 WHERE hash = ?2",
                rusqlite::params![i64::MAX, &h.0[..]],
            )
            .unwrap();
        let e = store.read_tree(&h).unwrap_err();
        assert!(format!("{e:#}").contains("damaged"), "{e:#}");
    }

    #[test]
    fn a_first_format_store_has_its_loose_trees_moved_in() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("s");
        let (store, _) = Store::init(&root).unwrap();
        let t = listing(5, 7);
        let h = t.hash();
        drop(store);
        // What format 1 left: loose trees, a damaged one among them.
        std::fs::remove_file(root.join(super::TREES_DB)).unwrap();
        let rel = h.rel_path();
        std::fs::create_dir_all(root.join("trees").join(&rel[..2])).unwrap();
        std::fs::write(root.join("trees").join(&rel), t.encode()).unwrap();
        let bad = Hash::of(b"not this");
        let rel_bad = bad.rel_path();
        std::fs::create_dir_all(root.join("trees").join(&rel_bad[..2])).unwrap();
        std::fs::write(root.join("trees").join(&rel_bad), b"garbage").unwrap();
        let marker = root.join(crate::STORE_MARKER);
        let m = std::fs::read_to_string(&marker).unwrap();
        std::fs::write(&marker, m.replace("\"format\": 2", "\"format\": 1")).unwrap();

        let store = Store::open(&root).unwrap();
        assert_eq!(store.read_tree(&h).unwrap(), t);
        assert!(!store.has_tree(&bad).unwrap());
        assert!(!root.join("trees").exists());
        assert!(std::fs::read_to_string(&marker)
            .unwrap()
            .contains("\"format\": 2"));
    }
}
