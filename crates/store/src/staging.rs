//! Staging: how new objects and trees enter the store.
//!
//! A writer stages the objects it adds in a private directory under `tmp/`,
//! and its trees in memory, while holding the store lock shared.
//! [`Staging::commit`] moves the staged objects into `objects/` with renames,
//! syncs the filesystem, then inserts the trees in one durable transaction
//! (objects before the trees naming them); only after that may the writer
//! replace a ref. Dropping a staging without committing removes it, so
//! a failed import leaves the store as it was. A killed writer leaves only a
//! directory under `tmp/`, which `gc` removes.

use crate::atomic::unique_name;
use crate::hash::Hash;
use crate::lock::StoreLock;
use crate::progress::Progress;
use crate::store::Store;
use crate::tree::Tree;
use anyhow::{bail, Context, Result};
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

const BLOCK: usize = 4096;
const CHUNK: usize = 256 * 1024;
/// Files up to this size are read into memory once, hashed, and written only
/// if the store lacks them.
pub const SMALL_FILE: u64 = 1 << 20;

pub struct Staging {
    store: Store,
    dir: PathBuf,
    done: bool,
    /// False for a hash-only staging: it names content without storing it.
    write: bool,
    new_objects: AtomicU64,
    new_bytes: AtomicU64,
    new_trees: AtomicU64,
    trees: Mutex<(HashSet<Hash>, Vec<crate::treedb::Packed>)>,
    /// Held while the staging lives: tells it from a dead writer's.
    _owner: Option<File>,
    _lock: StoreLock,
}

/// Removes the staging directories of writers that died (killed in the
/// middle of an import or a commit): their owner lock is free. A live
/// writer holds its lock from before its directory gets its name.
fn remove_dead_stagings(store: &Store) {
    let Ok(rd) = fs::read_dir(store.tmp_dir()) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().starts_with("stage-") {
            continue;
        }
        let dir = e.path();
        match crate::lock::try_lock_file(&dir.join("owner")) {
            Ok(Some(_free)) => {
                let _ = crate::walk::remove_path(&dir);
            }
            _ => continue,
        }
    }
}

/// What a commit added to the store.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct StagingStats {
    pub new_objects: u64,
    pub new_object_bytes: u64,
    pub new_trees: u64,
}

impl Staging {
    pub fn new(store: &Store, progress: &dyn Progress) -> Result<Staging> {
        let lock = store.lock(false, progress)?;
        remove_dead_stagings(store);
        // Made under a name no one else looks at, locked, then renamed:
        // a staging found under its final name without its lock held
        // belongs to a writer that died.
        let name = unique_name("stage");
        let building = store.tmp_dir().join(format!(".new-{name}"));
        let dir = store.tmp_dir().join(&name);
        let cannot = || {
            format!(
                "cannot create a staging directory in {}",
                store.tmp_dir().display()
            )
        };
        for sub in ["objects", "partial"] {
            fs::create_dir_all(building.join(sub)).with_context(cannot)?;
        }
        let owner = crate::lock::try_lock_file(&building.join("owner"))?
            .ok_or_else(|| anyhow::anyhow!("a new staging directory was taken"))?;
        fs::rename(&building, &dir).with_context(cannot)?;
        Ok(Staging {
            _owner: Some(owner),
            store: store.clone(),
            dir,
            done: false,
            write: true,
            new_objects: AtomicU64::new(0),
            new_bytes: AtomicU64::new(0),
            new_trees: AtomicU64::new(0),
            trees: Mutex::default(),
            _lock: lock,
        })
    }

    /// A staging that only hashes: for looking at what a tree would be
    /// (a diff) without writing anything. It cannot be committed.
    pub fn hash_only(store: &Store, progress: &dyn Progress) -> Result<Staging> {
        Ok(Staging {
            _owner: None,
            store: store.clone(),
            dir: PathBuf::new(),
            done: true,
            write: false,
            new_objects: AtomicU64::new(0),
            new_bytes: AtomicU64::new(0),
            new_trees: AtomicU64::new(0),
            trees: Mutex::default(),
            _lock: store.lock(false, progress)?,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Whether this staging only hashes ([`Staging::hash_only`]).
    pub fn is_hash_only(&self) -> bool {
        !self.write
    }

    fn staged_object(&self, h: &Hash) -> PathBuf {
        self.dir.join("objects").join(h.to_hex())
    }

    /// Whether the store or this staging already holds the object.
    pub fn has_object(&self, h: &Hash, size: u64) -> bool {
        size == 0 || self.store.has_object(h, size) || self.staged_object(h).exists()
    }

    fn partial(&self) -> Result<(PathBuf, File)> {
        let p = self.dir.join("partial").join(unique_name("obj"));
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(&p)
            .with_context(|| format!("cannot create {}", p.display()))?;
        Ok((p, f))
    }

    fn publish_partial(&self, partial: &Path, h: &Hash, size: u64) -> Result<()> {
        if self.has_object(h, size) {
            fs::remove_file(partial)?;
            return Ok(());
        }
        fs::rename(partial, self.staged_object(h))?;
        self.new_objects.fetch_add(1, Ordering::Relaxed);
        self.new_bytes.fetch_add(size, Ordering::Relaxed);
        Ok(())
    }

    /// Adds content held in memory; writes nothing if the store has it.
    pub fn put_bytes(&self, data: &[u8], sparse: bool) -> Result<Hash> {
        let h = Hash::of(data);
        let size = data.len() as u64;
        if !self.write || self.has_object(&h, size) {
            return Ok(h);
        }
        let (p, mut f) = self.partial()?;
        write_maybe_sparse(&mut f, data, sparse)?;
        finish_sparse(&f, size, sparse)?;
        drop(f);
        self.publish_partial(&p, &h, size)?;
        Ok(h)
    }

    /// Adds content from a stream of unknown content. Small streams are held
    /// in memory so that content the store has is never written; larger ones
    /// go through a partial file.
    pub fn put_reader(
        &self,
        r: &mut dyn Read,
        size_hint: u64,
        sparse: bool,
    ) -> Result<(Hash, u64)> {
        if !self.write {
            let mut hasher = blake3::Hasher::new();
            let n = std::io::copy(r, &mut hasher)?;
            return Ok((hasher.finalize().into(), n));
        }
        if size_hint <= SMALL_FILE {
            let mut buf = Vec::with_capacity(size_hint as usize);
            r.read_to_end(&mut buf)?;
            let h = self.put_bytes(&buf, sparse)?;
            return Ok((h, buf.len() as u64));
        }
        let (p, mut f) = self.partial()?;
        let res = copy_hashing(r, &mut f, sparse);
        let (h, size) = match res {
            Ok(v) => v,
            Err(e) => {
                let _ = fs::remove_file(&p);
                return Err(e);
            }
        };
        finish_sparse(&f, size, sparse)?;
        drop(f);
        self.publish_partial(&p, &h, size)?;
        Ok((h, size))
    }

    /// Adds a file whose hash the caller computed, copying it only if the
    /// store lacks the object. The copy is hashed again, so a file that
    /// changed meanwhile is reported instead of stored under a wrong name.
    pub fn put_file(&self, src: &mut File, expected: &Hash, size: u64, sparse: bool) -> Result<()> {
        if !self.write || self.has_object(expected, size) {
            return Ok(());
        }
        let (p, mut f) = self.partial()?;
        let (h, n) = match copy_file_hashing(src, &mut f, sparse) {
            Ok(v) => v,
            Err(e) => {
                let _ = fs::remove_file(&p);
                return Err(e);
            }
        };
        if h != *expected || n != size {
            let _ = fs::remove_file(&p);
            bail!("the file changed while it was being imported; import again once it is stable");
        }
        finish_sparse(&f, size, sparse)?;
        drop(f);
        self.publish_partial(&p, &h, size)
    }

    /// Adds a file whose hash the caller computed as a reflink of it
    /// (`FICLONE`: a new inode sharing the file's extents, so no data is
    /// copied and later writes to either never reach the other), falling
    /// back to a verified copy where the filesystem cannot clone.
    pub fn put_clone(
        &self,
        src: &mut File,
        expected: &Hash,
        size: u64,
        sparse: bool,
    ) -> Result<()> {
        if !self.write || self.has_object(expected, size) {
            return Ok(());
        }
        let (p, f) = self.partial()?;
        if rustix::fs::ioctl_ficlone(&f, &*src).is_ok() {
            drop(f);
            return self.publish_partial(&p, expected, size);
        }
        drop(f);
        fs::remove_file(&p)?;
        self.put_file(src, expected, size, sparse)
    }

    /// Adds the content of `src`, unknown yet, as a reflink where the
    /// filesystem can: the clone is private, so it is the clone that is
    /// hashed, and a writer changing `src` meanwhile cannot make an object
    /// disagree with its name. Elsewhere `src` is hashed and then copied
    /// only if the store lacks it.
    pub fn put_clone_of(&self, src: &mut File, sparse: bool) -> Result<(Hash, u64)> {
        if self.write {
            let (p, f) = self.partial()?;
            if rustix::fs::ioctl_ficlone(&f, &*src).is_ok() {
                drop(f);
                let (h, n) = hash_file(&mut File::open(&p)?)?;
                self.publish_partial(&p, &h, n)?;
                return Ok((h, n));
            }
            drop(f);
            fs::remove_file(&p)?;
        }
        let (h, n) = hash_file(src)?;
        self.put_file(src, &h, n, sparse)?;
        Ok((h, n))
    }

    /// Adds a tree; returns its hash.
    pub fn put_tree(&self, t: &Tree) -> Result<Hash> {
        self.put_tree_bytes(None, &t.encode())
    }

    /// Adds a tree given by its encoding ([`crate::TreeEncoder`]). `path`
    /// is the directory it lists, when known: a tree stored there before is
    /// the base it is kept as a delta against.
    pub fn put_tree_bytes(&self, path: Option<&[u8]>, data: &[u8]) -> Result<Hash> {
        let h = Hash::of(data);
        if !self.write {
            return Ok(h);
        }
        if self.trees.lock().unwrap().0.contains(&h) || self.store.has_tree(&h)? {
            return Ok(h);
        }
        let packed = self.store.tree_db()?.pack(h, path, data)?;
        let mut staged = self.trees.lock().unwrap();
        if staged.0.insert(h) {
            staged.1.push(packed);
            self.new_trees.fetch_add(1, Ordering::Relaxed);
        }
        Ok(h)
    }

    /// Publishes everything staged, makes it durable, then runs `then`
    /// (which writes the refs naming what was staged) while still holding the
    /// store lock, so no `gc` can run between the two.
    pub fn commit<T>(
        mut self,
        then: impl FnOnce(&Store) -> Result<T>,
    ) -> Result<(StagingStats, T)> {
        publish_dir(&self.dir.join("objects"), &self.store.objects_dir())?;
        self.store.syncfs()?;
        let trees = std::mem::take(&mut *self.trees.lock().unwrap());
        self.store.tree_db()?.insert(&trees.1)?;
        self.done = true;
        let _ = crate::walk::remove_path(&self.dir);
        let out = then(&self.store)?;
        Ok((
            StagingStats {
                new_objects: self.new_objects.load(Ordering::Relaxed),
                new_object_bytes: self.new_bytes.load(Ordering::Relaxed),
                new_trees: self.new_trees.load(Ordering::Relaxed),
            },
            out,
        ))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.done {
            let _ = crate::walk::remove_path(&self.dir);
        }
    }
}

/// Moves every `HEX` file of `from` to `to/HE/X…`, keeping what is already
/// there unless it is damaged (wrong size).
fn publish_dir(from: &Path, to: &Path) -> Result<()> {
    for e in fs::read_dir(from)? {
        let e = e?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        let dest = to.join(&name[..2]).join(&name[2..]);
        match rustix::fs::renameat_with(
            rustix::fs::CWD,
            e.path(),
            rustix::fs::CWD,
            &dest,
            rustix::fs::RenameFlags::NOREPLACE,
        ) {
            Ok(()) => {}
            Err(rustix::io::Errno::EXIST) => {
                let staged = e.metadata()?.len();
                let existing = fs::symlink_metadata(&dest)?;
                if existing.len() != staged || !existing.is_file() {
                    fs::rename(e.path(), &dest)?;
                } else {
                    fs::remove_file(e.path())?;
                }
            }
            Err(err) => {
                return Err(std::io::Error::from(err))
                    .with_context(|| format!("cannot move an object to {}", dest.display()))
            }
        }
    }
    Ok(())
}

fn is_zero(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

/// Writes `data`, skipping whole zero blocks when `sparse` so they stay holes.
fn write_maybe_sparse(f: &mut File, data: &[u8], sparse: bool) -> Result<()> {
    if !sparse {
        f.write_all(data)?;
        return Ok(());
    }
    for block in data.chunks(BLOCK) {
        if block.len() == BLOCK && is_zero(block) {
            f.seek(SeekFrom::Current(BLOCK as i64))?;
        } else {
            f.write_all(block)?;
        }
    }
    Ok(())
}

fn finish_sparse(f: &File, size: u64, sparse: bool) -> Result<()> {
    if sparse {
        f.set_len(size)?;
    }
    Ok(())
}

/// Runs `f` with this thread's read buffer of [`CHUNK`] bytes: a new
/// zeroed buffer for every file cost a memset of it for each small file.
fn with_chunk<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    thread_local!(static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; CHUNK]));
    BUF.with(|b| match b.try_borrow_mut() {
        Ok(mut b) => f(&mut b),
        Err(_) => f(&mut vec![0; CHUNK]),
    })
}

/// Copies `r` to `w`, hashing on the way.
fn copy_hashing(r: &mut dyn Read, w: &mut File, sparse: bool) -> Result<(Hash, u64)> {
    with_chunk(|buf| copy_hashing_with(r, w, sparse, buf))
}

fn copy_hashing_with(
    r: &mut dyn Read,
    w: &mut File,
    sparse: bool,
    buf: &mut [u8],
) -> Result<(Hash, u64)> {
    let mut hasher = blake3::Hasher::new();
    let mut total = 0u64;
    loop {
        // Fill whole chunks so sparse detection sees aligned blocks.
        let mut filled = 0;
        while filled < buf.len() {
            let n = r.read(&mut buf[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        hasher.update(&buf[..filled]);
        write_maybe_sparse(w, &buf[..filled], sparse)?;
        total += filled as u64;
        if filled < buf.len() {
            break;
        }
    }
    Ok((hasher.finalize().into(), total))
}

/// The data extents of a file as (start, end) offsets, found with
/// `SEEK_DATA`/`SEEK_HOLE`; the rest of `0..size` are holes. A filesystem
/// that cannot tell reports the whole file as data.
fn data_extents(f: &File, size: u64) -> std::io::Result<Vec<(u64, u64)>> {
    use rustix::fs::SeekFrom as S;
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        let start = match rustix::fs::seek(f, S::Data(pos)) {
            Ok(p) => p,
            Err(rustix::io::Errno::NXIO) => break, // only a hole is left
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOTSUP) => {
                return Ok(vec![(pos, size)]);
            }
            Err(e) => return Err(e.into()),
        };
        if start >= size {
            break;
        }
        let end = match rustix::fs::seek(f, S::Hole(start)) {
            Ok(p) => p.min(size),
            Err(_) => size,
        };
        out.push((start, end));
        pos = end;
    }
    Ok(out)
}

/// Feeds `n` zero bytes (a hole) to `h` without reading anything, on all
/// cores. BLAKE3 gives each 1 KiB chunk its own counter, so a hole still
/// costs hashing, but not reading or copying.
fn hash_zeros(h: &mut blake3::Hasher, mut n: u64) {
    static ZEROS: [u8; 1 << 20] = [0; 1 << 20];
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        h.update_rayon(&ZEROS[..k]);
        n -= k as u64;
    }
}

/// Hashes a file's content: its data extents are read, its holes are
/// hashed as the zeros they read as, without reading them. Returns the
/// hash and the size.
pub fn hash_file(f: &mut File) -> Result<(Hash, u64)> {
    with_chunk(|buf| hash_file_with(f, buf))
}

fn hash_file_with(f: &mut File, buf: &mut [u8]) -> Result<(Hash, u64)> {
    let m = f.metadata()?;
    let size = m.len();
    let mut hasher = blake3::Hasher::new();
    let mut at = 0u64;
    // Most files have no holes: no need to ask for their extents.
    let extents = if is_sparse(&m) {
        data_extents(f, size)?
    } else {
        vec![(0, size)]
    };
    for (start, end) in extents {
        hash_zeros(&mut hasher, start - at);
        let mut pos = start;
        while pos < end {
            let want = ((end - pos) as usize).min(buf.len());
            let n = std::os::unix::fs::FileExt::read_at(&*f, &mut buf[..want], pos)?;
            if n == 0 {
                break; // shrank meanwhile; the size check of the caller says so
            }
            hasher.update(&buf[..n]);
            pos += n as u64;
        }
        at = pos;
    }
    hash_zeros(&mut hasher, size.saturating_sub(at));
    f.seek(SeekFrom::Start(size))?;
    Ok((hasher.finalize().into(), size))
}

/// Copies the file `src` to `w` hashing on the way, extent by extent: holes
/// stay holes in the copy when `sparse` and are never read.
fn copy_file_hashing(src: &File, w: &mut File, sparse: bool) -> Result<(Hash, u64)> {
    if !sparse {
        let mut r = src;
        r.seek(SeekFrom::Start(0))?;
        return copy_hashing(&mut r, w, false);
    }
    with_chunk(|buf| copy_extents_hashing(src, w, buf))
}

/// [`copy_file_hashing`] of a sparse file, through `buf`.
fn copy_extents_hashing(src: &File, w: &mut File, buf: &mut [u8]) -> Result<(Hash, u64)> {
    let size = src.metadata()?.len();
    let mut hasher = blake3::Hasher::new();
    let mut at = 0u64;
    for (start, end) in data_extents(src, size)? {
        hash_zeros(&mut hasher, start - at);
        w.seek(SeekFrom::Start(start))?;
        let mut pos = start;
        while pos < end {
            let want = ((end - pos) as usize).min(buf.len());
            let n = std::os::unix::fs::FileExt::read_at(src, &mut buf[..want], pos)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            write_maybe_sparse(w, &buf[..n], true)?;
            pos += n as u64;
        }
        at = pos;
    }
    hash_zeros(&mut hasher, size.saturating_sub(at));
    Ok((hasher.finalize().into(), size))
}

/// Whether a file has holes (fewer blocks allocated than its size needs).
pub fn is_sparse(m: &fs::Metadata) -> bool {
    m.len() > 0 && m.blocks() * 512 < m.len().saturating_sub(BLOCK as u64)
}
