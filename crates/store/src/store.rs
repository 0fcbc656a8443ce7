//! Opening and creating a store: its directory layout, permissions, marker,
//! and where its parts live.

use crate::atomic::write_file_atomic;
use crate::hash::Hash;
use crate::lock::StoreLock;
use crate::progress::Progress;
use crate::tree::Tree;
use crate::treedb::{TreeDb, TREES_DB};
use anyhow::{bail, Context, Result};
use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// The file that marks a directory as a botyard store.
pub const STORE_MARKER: &str = "botyard-store.json";
/// 2: trees in `trees.db` (1 had them as loose files, moved in on open).
const FORMAT: u32 = 2;
/// What `init` creates; a directory holding only these may be (re)initialised.
const LAYOUT: &[&str] = &[
    "objects",
    "trees",
    TREES_DB,
    "trees.db-wal",
    "trees.db-shm",
    "refs",
    "tmp",
    "cache",
    "lock",
    STORE_MARKER,
];

/// `$BOTYARD_HOME` is applied by the CLI; this is the fallback: the system
/// store as root, a per-user one otherwise.
pub fn default_store_path() -> PathBuf {
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/var/lib/botyard");
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("botyard");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/botyard")
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Marker {
    format: u32,
    created: String,
}

/// An opened store directory. Cheap to clone (clones share one connection
/// to its tree database, opened when trees are first used, so commands
/// that read none do not pay for it); holds no lock by itself.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
    trees: Arc<OnceLock<TreeDb>>,
}

impl Store {
    /// Creates a store at `path` (or completes one whose creation was
    /// interrupted). Returns the store and whether it already existed.
    pub fn init(path: &Path) -> Result<(Store, bool)> {
        if path.join(STORE_MARKER).exists() {
            return Ok((Store::open(path)?, true));
        }
        if path.exists() {
            if !path.is_dir() {
                bail!(
                    "{} exists and is not a directory; choose another --store path",
                    path.display()
                );
            }
            let foreign: Vec<String> = fs::read_dir(path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !LAYOUT.contains(&n.as_str()))
                .collect();
            if !foreign.is_empty() {
                bail!(
                    "{} is not empty (it holds {}); a store needs an empty or new directory: choose another --store path",
                    path.display(),
                    foreign.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
                );
            }
        }
        let mut b = fs::DirBuilder::new();
        b.recursive(true).mode(0o755);
        b.create(path)
            .with_context(|| format!("cannot create the store directory {}", path.display()))?;
        let path = fs::canonicalize(path)?;
        close_to_others(&path)?;
        for i in 0..=255u8 {
            b.create(path.join("objects").join(format!("{i:02x}")))
                .with_context(|| format!("cannot create {}/objects", path.display()))?;
        }
        b.create(path.join("refs/images"))?;
        b.create(path.join("cache"))?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path.join("tmp"))?;
        let marker = Marker {
            format: FORMAT,
            created: now_rfc3339(),
        };
        let data = serde_json::to_vec_pretty(&marker)?;
        let store = Store {
            root: path,
            trees: Arc::default(),
        };
        // The database exists before the marker says the store does.
        store.tree_db()?;
        write_file_atomic(
            &store.root.join("tmp"),
            &store.root.join(STORE_MARKER),
            &data,
            0o644,
        )?;
        Ok((store, false))
    }

    /// Opens an existing store, refusing anything that is not one.
    pub fn open(path: &Path) -> Result<Store> {
        if !path.exists() {
            bail!(
                "no botyard store at {}: create one with `botyard init --store {}` (or point --store/BOTYARD_HOME at an existing store)",
                path.display(),
                path.display()
            );
        }
        let marker_path = path.join(STORE_MARKER);
        let data = match fs::read(&marker_path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "{} is not a botyard store (no {STORE_MARKER}); point --store/BOTYARD_HOME at a store or run `botyard init` on an empty directory",
                path.display()
            ),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", marker_path.display())),
        };
        let marker: Marker = serde_json::from_slice(&data).with_context(|| {
            format!(
                "{} is damaged; restore it or re-create the store",
                marker_path.display()
            )
        })?;
        if marker.format != FORMAT && marker.format != 1 {
            bail!(
                "store {} has format {}, this botyard reads format {FORMAT}; use a matching botyard version",
                path.display(),
                marker.format
            );
        }
        let root = fs::canonicalize(path)?;
        close_to_others(&root)?;
        crate::treedb::check_file(&root.join(TREES_DB))?;
        let store = Store {
            root,
            trees: Arc::default(),
        };
        if marker.format == 1 {
            store.upgrade_from_loose_trees(marker)?;
        }
        Ok(store)
    }

    /// Format 1 kept each tree in a file of its own; they move into the
    /// database under the exclusive lock (so no writer adds one meanwhile),
    /// and the marker says format 2 only once they all have. Interrupted,
    /// it runs again on the next open.
    fn upgrade_from_loose_trees(&self, mut marker: Marker) -> Result<()> {
        let _lock = self.lock(true, &crate::progress::NoProgress)?;
        let loose = self.root.join("trees");
        if loose.is_dir() {
            self.tree_db()?.take_loose(&loose).with_context(|| {
                format!(
                    "cannot move the trees of {} into {TREES_DB}",
                    self.root.display()
                )
            })?;
        }
        marker.format = FORMAT;
        let data = serde_json::to_vec_pretty(&marker)?;
        write_file_atomic(&self.tmp_dir(), &self.root.join(STORE_MARKER), &data, 0o644)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn objects_dir(&self) -> PathBuf {
        self.root.join("objects")
    }
    pub fn refs_dir(&self) -> PathBuf {
        self.root.join("refs")
    }
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }
    pub fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }
    pub fn object_path(&self, h: &Hash) -> PathBuf {
        self.root.join("objects").join(h.rel_path())
    }

    /// Whether the object exists with the expected size (a size mismatch
    /// means a damaged object, which a writer then replaces).
    pub fn has_object(&self, h: &Hash, size: u64) -> bool {
        fs::symlink_metadata(self.object_path(h)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    pub fn has_tree(&self, h: &Hash) -> Result<bool> {
        self.tree_db()?.contains(h)
    }

    pub(crate) fn tree_db(&self) -> Result<&TreeDb> {
        if let Some(db) = self.trees.get() {
            return Ok(db);
        }
        let db = TreeDb::open(&self.root.join(TREES_DB))?;
        // Another thread may have opened it meanwhile; either serves.
        let _ = self.trees.set(db);
        Ok(self.trees.get().expect("set above"))
    }

    /// A tree's encoding as stored, not verified.
    pub(crate) fn tree_bytes(&self, h: &Hash) -> Result<Vec<u8>> {
        self.tree_db()?
            .get(h)
            .with_context(|| format!("tree {h} cannot be read; run `botyard fsck`"))?
            .with_context(|| format!("tree {h} is missing from the store; run `botyard fsck`"))
    }

    /// Every stored tree's hash (what `fsck` and tests compare).
    pub fn tree_hashes(&self) -> Result<Vec<Hash>> {
        Ok(self
            .tree_db()?
            .rows()?
            .into_iter()
            .map(|r| r.hash)
            .collect())
    }

    /// Reads and verifies a tree: its bytes must hash to its name.
    pub fn read_tree(&self, h: &Hash) -> Result<Tree> {
        let data = self.tree_bytes(h)?;
        if Hash::of(&data) != *h {
            bail!("tree {h} is damaged (its bytes do not match its name); run `botyard fsck`");
        }
        Tree::decode(&data)
            .with_context(|| format!("tree {h} cannot be decoded; run `botyard fsck`"))
    }

    /// Takes the store lock shared (writers, fsck) or exclusive (gc).
    pub fn lock(&self, exclusive: bool, progress: &dyn Progress) -> Result<StoreLock> {
        let holder = if exclusive {
            "an import, fsck or df is running"
        } else {
            "a gc is running"
        };
        StoreLock::acquire(&self.root.join("lock"), exclusive, &|| {
            progress.note(&format!("waiting for the store lock ({holder})"))
        })
    }

    /// Flushes everything written to the store's filesystem.
    pub fn syncfs(&self) -> Result<()> {
        let f = fs::File::open(&self.root)?;
        rustix::fs::syncfs(&f)
            .with_context(|| format!("cannot sync the filesystem of {}", self.root.display()))
    }

    /// Disk space used by a file, in bytes (what `du` counts).
    pub(crate) fn disk_bytes(m: &fs::Metadata) -> u64 {
        m.blocks() * 512
    }
}

/// A store is its owner's alone: other users may not even look inside,
/// so nothing below it (mounted bots, setuid files of an image, device
/// nodes) is within their reach. A store made before this rule is closed
/// when next opened by its owner.
fn close_to_others(root: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let m = fs::metadata(root).with_context(|| format!("cannot read {}", root.display()))?;
    if m.permissions().mode() & 0o077 == 0 {
        return Ok(());
    }
    if m.uid() != rustix::process::geteuid().as_raw() {
        bail!(
            "the store {} is open to other users and not yours to close; its owner should run `chmod 700 {}`",
            root.display(),
            root.display()
        );
    }
    fs::set_permissions(root, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot close the store {} to other users", root.display()))
}

/// Now, as RFC 3339 to the second (what refs record).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
