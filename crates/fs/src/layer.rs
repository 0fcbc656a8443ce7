//! Layers: trees packed as EROFS images for overlayfs to stack.
//!
//! Every entry carries its own metadata; a regular file with content is a
//! data-less stub of the right size with `trusted.overlay.metacopy` and
//! `trusted.overlay.redirect=/ab/cdef…`, which overlayfs resolves in the
//! data-only lower layer (the store's `objects/`). A layer is built once per
//! tree per node, shared by every bot using it, and is only a cache: it is
//! rebuilt from the store when missing or damaged. An image's own
//! `trusted.overlay.*` xattrs are written escaped (`trusted.overlay.overlay.*`),
//! so they are data, never instructions.
//!
//! File: `layers/NAME.erofs`, the image followed by a trailer (`BYLAYER1`
//! and the BLAKE3 of the image), checked before every use.

use crate::diff::{diff_trees, Change};
use crate::erofs::{Builder, Inode, Kind};
use anyhow::{Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use store::walk::join;
use store::{Entry, EntryKind, Hash, Store};

const OVL: &[u8] = b"trusted.overlay.";
const TRAILER: &[u8; 8] = b"BYLAYER1";

/// Where layers live.
pub fn layers_root(store: &Store) -> PathBuf {
    store.root().join("layers")
}

/// The file name of the layer of `tree`, or of its difference from `base`.
pub fn layer_file_name(tree: &Hash, base: Option<&Hash>) -> String {
    match base {
        None => format!("{}.erofs", tree.to_hex()),
        Some(b) => format!("{}-over-{}.erofs", tree.to_hex(), b.to_hex()),
    }
}

/// The layer of a whole tree, built on first use.
pub fn layer(store: &Store, tree: &Hash) -> Result<PathBuf> {
    build_once(store, &layer_file_name(tree, None), |p| {
        p.tree_into(0, &store.read_tree(tree)?, b"")
    })
}

/// The layer holding only what `tree` changes relative to `base`, for
/// stacking above `base`'s layer: changed entries, their parent directories
/// with `tree`'s metadata, and whiteouts for deletions.
pub fn diff_layer(store: &Store, tree: &Hash, base: &Hash) -> Result<PathBuf> {
    build_once(store, &layer_file_name(tree, Some(base)), |p| {
        let changes = diff_trees(store, &store.read_tree(tree)?, &store.read_tree(base)?)?;
        p.changes_into(0, &changes, b"")
    })
}

/// Whether the layer file at `path` is whole: its trailer matches its bytes.
pub fn layer_is_intact(path: &Path) -> bool {
    let Ok(data) = std::fs::read(path) else {
        return false;
    };
    let Some(split) = data.len().checked_sub(40) else {
        return false;
    };
    let (img, trailer) = data.split_at(split);
    trailer[..8] == TRAILER[..] && trailer[8..] == blake3::hash(img).as_bytes()[..]
}

/// What [`check_layers`] found.
#[derive(Debug, Default, serde::Serialize)]
pub struct LayerCheck {
    pub checked: u64,
    /// File names of layers whose bytes do not match their trailer; each is
    /// rebuilt from the store when next used.
    pub damaged: Vec<String>,
}

/// Checks every layer file against its trailer.
pub fn check_layers(store: &Store) -> Result<LayerCheck> {
    let mut out = LayerCheck::default();
    let Ok(rd) = std::fs::read_dir(layers_root(store)) else {
        return Ok(out);
    };
    for e in rd {
        let e = e?;
        out.checked += 1;
        if !layer_is_intact(&e.path()) {
            out.damaged
                .push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out.damaged.sort();
    Ok(out)
}

fn build_once(
    store: &Store,
    file: &str,
    fill: impl FnOnce(&mut Packer) -> Result<()>,
) -> Result<PathBuf> {
    let root = layers_root(store);
    let dest = root.join(file);
    // A layer is replaced whole by rename; one that does not check out (a
    // crash before its bytes reached the disk, damage) is built again.
    if layer_is_intact(&dest) {
        return Ok(dest);
    }
    let mut p = Packer {
        store,
        b: Builder::new(),
        links: HashMap::new(),
    };
    fill(&mut p).context("cannot build a layer")?;
    let uuid: [u8; 16] = blake3::hash(file.as_bytes()).as_bytes()[..16]
        .try_into()
        .unwrap();
    let mut img = p.b.finish(uuid)?;
    let sum = blake3::hash(&img);
    img.extend_from_slice(TRAILER);
    img.extend_from_slice(sum.as_bytes());

    // gc empties tmp/ under the exclusive lock; hold it shared meanwhile.
    let _lock = store.lock(false, &store::NoProgress)?;
    std::fs::create_dir_all(&root)
        .with_context(|| format!("cannot create the layer directory {}", root.display()))?;
    let tmp = store
        .tmp_dir()
        .join(format!("layer-{}-{file}", std::process::id()));
    let res = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(&img))
        .and_then(|()| std::fs::rename(&tmp, &dest));
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write the layer {}", dest.display()));
    }
    Ok(dest)
}

struct Packer<'a> {
    store: &'a Store,
    b: Builder,
    /// Hard-link group leader path → the inode made for the group.
    links: HashMap<Vec<u8>, usize>,
}

fn escape(name: &[u8]) -> Vec<u8> {
    match name.strip_prefix(OVL) {
        Some(rest) => [OVL, b"overlay.", rest].concat(),
        None => name.to_vec(),
    }
}

/// An inode with `e`'s metadata; overlay's own xattr names escaped.
fn inode(e: &Entry, type_bits: u32, kind: Kind) -> Inode {
    let mut i = Inode::new(type_bits | (e.mode & 0o7777), kind);
    i.uid = e.uid;
    i.gid = e.gid;
    i.mtime = e.mtime;
    i.mtime_nsec = e.mtime_nsec;
    i.xattrs = e
        .xattrs
        .iter()
        .map(|(k, v)| (escape(k), v.clone()))
        .collect();
    i
}

impl Packer<'_> {
    fn tree_into(&mut self, dir: usize, tree: &store::Tree, rel: &[u8]) -> Result<()> {
        for e in tree.entries() {
            self.entry(dir, e, &join(rel, &e.name))?;
        }
        Ok(())
    }

    fn changes_into(
        &mut self,
        dir: usize,
        changes: &BTreeMap<Vec<u8>, Change>,
        rel: &[u8],
    ) -> Result<()> {
        for (name, c) in changes {
            let path = join(rel, name);
            match c {
                Change::Deleted(_) => {
                    // A 0:0 character device: overlay's whiteout.
                    self.b
                        .add(dir, name, Inode::new(libc::S_IFCHR, Kind::Special(0)))?;
                }
                Change::Added(e) | Change::Replaced { new: e, .. } => self.entry(dir, e, &path)?,
                Change::Dir { new, children, .. } => {
                    let sub = self.b.add(
                        dir,
                        name,
                        inode(new, libc::S_IFDIR, Kind::Dir(BTreeMap::new())),
                    )?;
                    self.changes_into(sub, children, &path)?;
                }
            }
        }
        Ok(())
    }

    fn entry(&mut self, dir: usize, e: &Entry, path: &[u8]) -> Result<()> {
        let name = e.name.as_slice();
        match &e.kind {
            EntryKind::Dir(h) => {
                let sub = self.b.add(
                    dir,
                    name,
                    inode(e, libc::S_IFDIR, Kind::Dir(BTreeMap::new())),
                )?;
                let t = self.store.read_tree(h)?;
                self.tree_into(sub, &t, path)?;
            }
            EntryKind::File(f) => {
                if let Some(leader) = &f.link {
                    if let Some(&id) = self.links.get(leader) {
                        return self.b.link(dir, name, id);
                    }
                }
                let mut i = inode(e, libc::S_IFREG, Kind::File(f.size));
                if f.size > 0 {
                    i.xattrs
                        .push((b"trusted.overlay.metacopy".to_vec(), Vec::new()));
                    i.xattrs.push((
                        b"trusted.overlay.redirect".to_vec(),
                        format!("/{}", f.object.rel_path()).into_bytes(),
                    ));
                }
                let id = self.b.add(dir, name, i)?;
                if let Some(leader) = &f.link {
                    self.links.insert(leader.clone(), id);
                }
            }
            EntryKind::Symlink(t) => {
                self.b
                    .add(dir, name, inode(e, libc::S_IFLNK, Kind::Symlink(t.clone())))?;
            }
            EntryKind::CharDev { major, minor } => {
                let dev = libc::makedev(*major, *minor);
                self.b
                    .add(dir, name, inode(e, libc::S_IFCHR, Kind::Special(dev)))?;
            }
            EntryKind::BlockDev { major, minor } => {
                let dev = libc::makedev(*major, *minor);
                self.b
                    .add(dir, name, inode(e, libc::S_IFBLK, Kind::Special(dev)))?;
            }
            EntryKind::Fifo => {
                self.b
                    .add(dir, name, inode(e, libc::S_IFIFO, Kind::Special(0)))?;
            }
            EntryKind::Socket => {
                self.b
                    .add(dir, name, inode(e, libc::S_IFSOCK, Kind::Special(0)))?;
            }
        }
        Ok(())
    }
}
