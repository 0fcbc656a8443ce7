//! A writer for EROFS images holding only metadata: the on-disk form of
//! layers. One image is one file, so a layer of ten thousand metacopy
//! stubs costs a couple of megabytes instead of ten thousand inodes, and
//! the kernel mounts it straight from the file (no loop device).
//!
//! Only what layers need is written: extended (64-byte) inodes, inline
//! xattrs, directories and symlinks inline after their inode when they fit
//! in its block, regular files either empty or data-less (one unmapped
//! chunk, so overlayfs takes their bytes from the redirect), device nodes,
//! fifos and sockets. The format is the kernel's `fs/erofs/erofs_fs.h`.

use anyhow::{bail, Result};
use std::collections::BTreeMap;

const BLOCK: usize = 4096;
const BLKBITS: u8 = 12;
const MAGIC: u32 = 0xE0F5_E1E2;
const INCOMPAT_CHUNKED_FILE: u32 = 0x4;
const FLAT_PLAIN: u16 = 0;
const FLAT_INLINE: u16 = 2;
const CHUNK_BASED: u16 = 4;
const INODE_SIZE: usize = 64;
const DIRENT_SIZE: usize = 12;

/// What an inode is, with its type-specific payload.
#[derive(Debug, Clone)]
pub enum Kind {
    /// Children by name (sorted); `.` and `..` are added when written.
    Dir(BTreeMap<Vec<u8>, usize>),
    /// A regular file of this size whose data lives elsewhere (0: empty).
    File(u64),
    Symlink(Vec<u8>),
    /// Character or block device, fifo or socket: the `S_IF*` bits are in
    /// the mode, the device number here.
    Special(u64),
}

#[derive(Debug, Clone)]
pub struct Inode {
    /// Full `st_mode`, type bits included.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    pub kind: Kind,
    nlink: u32,
}

impl Inode {
    pub fn new(mode: u32, kind: Kind) -> Inode {
        Inode {
            mode,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_nsec: 0,
            xattrs: Vec::new(),
            kind,
            nlink: 0,
        }
    }
}

/// An image under construction: inode 0 is the root directory.
pub struct Builder {
    inodes: Vec<Inode>,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    pub fn new() -> Builder {
        let mut root = Inode::new(libc::S_IFDIR | 0o755, Kind::Dir(BTreeMap::new()));
        root.nlink = 1;
        Builder { inodes: vec![root] }
    }

    /// Adds `inode` as `name` in the directory `parent`; returns its id.
    pub fn add(&mut self, parent: usize, name: &[u8], inode: Inode) -> Result<usize> {
        let id = self.inodes.len();
        self.inodes.push(inode);
        self.link(parent, name, id)?;
        Ok(id)
    }

    /// Adds another name for `id` (a hard link, or a directory's only name).
    pub fn link(&mut self, parent: usize, name: &[u8], id: usize) -> Result<()> {
        if name.is_empty()
            || name.len() > 255
            || name.contains(&b'/')
            || name == b"."
            || name == b".."
        {
            bail!(
                "{:?} cannot be a name in a layer image",
                String::from_utf8_lossy(name)
            );
        }
        let Kind::Dir(children) = &mut self.inodes[parent].kind else {
            bail!("a layer image entry's parent is not a directory")
        };
        if children.insert(name.to_vec(), id).is_some() {
            bail!(
                "{:?} appears twice in one directory",
                String::from_utf8_lossy(name)
            );
        }
        self.inodes[id].nlink += 1;
        Ok(())
    }

    /// The image's bytes. `uuid` tells this image apart from other layers
    /// stacked with it (overlayfs keys file handles by it).
    pub fn finish(self, uuid: [u8; 16]) -> Result<Vec<u8>> {
        let n = self.inodes.len();
        let mut parent = vec![0usize; n];
        let mut subdirs = vec![0u32; n];
        for (id, ino) in self.inodes.iter().enumerate() {
            if let Kind::Dir(children) = &ino.kind {
                for &c in children.values() {
                    if matches!(self.inodes[c].kind, Kind::Dir(_)) {
                        parent[c] = id;
                        subdirs[id] += 1;
                    }
                }
            }
        }
        // Breadth-first order puts each directory's entries near each other.
        let mut order = Vec::with_capacity(n);
        let mut seen = vec![false; n];
        order.push(0);
        seen[0] = true;
        let mut i = 0;
        while i < order.len() {
            if let Kind::Dir(children) = &self.inodes[order[i]].kind {
                for &c in children.values() {
                    if !seen[c] {
                        seen[c] = true;
                        order.push(c);
                    }
                }
            }
            i += 1;
        }

        // Lay out the metadata area (starting at block 1) and data blocks.
        let xattrs: Vec<Vec<u8>> = self
            .inodes
            .iter()
            .map(|ino| xattr_body(&ino.xattrs))
            .collect::<Result<_>>()?;
        let mut plan = vec![Plan::default(); n];
        let mut off = 0usize; // within the metadata area
        let mut data_blocks = 0usize; // counted after the metadata area
        for &id in &order {
            let ino = &self.inodes[id];
            let head = INODE_SIZE + xattrs[id].len();
            let (layout, inline, blocks) = match &ino.kind {
                Kind::Dir(children) => {
                    let size = dir_size(children.keys());
                    place_data(head, size)
                }
                Kind::Symlink(t) => place_data(head, t.len()),
                Kind::File(size) if *size > 0 => (CHUNK_BASED, 4, 0),
                _ => (FLAT_PLAIN, 0, 0),
            };
            let rec = head + inline;
            // A record that fits in a block never straddles one.
            let room = BLOCK - off % BLOCK;
            if rec <= BLOCK && rec > room {
                off += room;
            }
            plan[id] = Plan {
                nid: (off / 32) as u64,
                layout,
                data_block: data_blocks,
                blocks,
            };
            off += rec.div_ceil(32) * 32;
            data_blocks += blocks;
        }
        if plan[0].nid > u16::MAX as u64 {
            bail!("the layer image's root inode is out of reach");
        }
        let meta_blocks = off.div_ceil(BLOCK);
        let data_start = 1 + meta_blocks;
        let total_blocks = data_start + data_blocks;
        let mut img = vec![0u8; total_blocks * BLOCK];

        for &id in &order {
            let ino = &self.inodes[id];
            let p = &plan[id];
            let at = BLOCK + p.nid as usize * 32;
            let mut w = Cursor { buf: &mut img, at };
            let (size, iu): (u64, u32) = match &ino.kind {
                Kind::Dir(children) => {
                    let size = dir_size(children.keys()) as u64;
                    (size, (data_start + p.data_block) as u32)
                }
                Kind::Symlink(t) => (t.len() as u64, (data_start + p.data_block) as u32),
                Kind::File(size) if *size > 0 => {
                    // One chunk covers the whole file: blocks << format ≥ size.
                    let bits = 64 - (size - 1).leading_zeros();
                    let format = bits.saturating_sub(BLKBITS as u32);
                    if format > 31 {
                        bail!("a file of {size} bytes is too large for a layer image");
                    }
                    (*size, format)
                }
                Kind::File(_) => (0, 0),
                Kind::Special(rdev) => (0, encode_dev(*rdev)),
            };
            let nlink = match &ino.kind {
                Kind::Dir(_) => 2 + subdirs[id],
                _ => ino.nlink,
            };
            let icount = if xattrs[id].is_empty() {
                0
            } else {
                (xattrs[id].len() - 12) / 4 + 1
            };
            w.u16(1 | (p.layout << 1)); // extended inode
            w.u16(icount as u16);
            w.u16(ino.mode as u16);
            w.u16(0);
            w.u64(size);
            w.u32(iu);
            w.u32(id as u32 + 1);
            w.u32(ino.uid);
            w.u32(ino.gid);
            w.u64(ino.mtime as u64);
            w.u32(ino.mtime_nsec);
            w.u32(nlink);
            w.at += 16;
            w.bytes(&xattrs[id]);
            let payload: Option<Vec<u8>> = match &ino.kind {
                Kind::Dir(children) => {
                    let mut entries: Vec<(&[u8], u64, u8)> =
                        vec![(b".", plan[id].nid, 2), (b"..", plan[parent[id]].nid, 2)];
                    for (name, &c) in children {
                        entries.push((name, plan[c].nid, file_type(&self.inodes[c])));
                    }
                    entries.sort_by(|a, b| a.0.cmp(b.0));
                    Some(dir_bytes(&entries))
                }
                Kind::Symlink(t) => Some(t.clone()),
                Kind::File(size) if *size > 0 => {
                    w.u32(u32::MAX); // the one chunk, unmapped
                    None
                }
                _ => None,
            };
            if let Some(bytes) = payload {
                let full = p.blocks * BLOCK;
                let start = (data_start + p.data_block) * BLOCK;
                if p.layout == FLAT_INLINE {
                    w.bytes(&bytes[full..]);
                    img[start..start + full].copy_from_slice(&bytes[..full]);
                } else {
                    img[start..start + bytes.len()].copy_from_slice(&bytes);
                }
            }
        }

        let mut w = Cursor {
            buf: &mut img,
            at: 1024,
        };
        w.u32(MAGIC);
        w.u32(0); // checksum (not enabled)
        w.u32(0); // feature_compat
        w.buf[w.at] = BLKBITS;
        w.at += 2; // blkszbits, sb_extslots
        w.u16(plan[0].nid as u16);
        w.u64(n as u64); // inos
        w.u64(0); // build_time
        w.u32(0);
        w.u32(total_blocks as u32);
        w.u32(1); // meta_blkaddr
        w.u32(0); // xattr_blkaddr (no shared xattrs)
        w.bytes(&uuid);
        w.at += 16; // volume name
        let chunked = self
            .inodes
            .iter()
            .any(|i| matches!(i.kind, Kind::File(s) if s > 0));
        w.u32(if chunked { INCOMPAT_CHUNKED_FILE } else { 0 });
        Ok(img)
    }
}

#[derive(Clone, Default)]
struct Plan {
    nid: u64,
    layout: u16,
    /// First data block, counted from the end of the metadata area.
    data_block: usize,
    blocks: usize,
}

/// Where a directory's or symlink's `size` bytes go after a `head`-byte
/// inode: (layout, bytes inline after the inode, whole data blocks).
fn place_data(head: usize, size: usize) -> (u16, usize, usize) {
    let tail = size % BLOCK;
    if tail > 0 && head + tail <= BLOCK {
        (FLAT_INLINE, tail, size / BLOCK)
    } else {
        (FLAT_PLAIN, 0, size.div_ceil(BLOCK))
    }
}

/// Splits sorted entries into directory blocks; each block holds its
/// dirents and then their names, and no entry spans two blocks.
fn dir_blocks<'a, I: Iterator<Item = &'a [u8]>>(names: I) -> Vec<(usize, usize)> {
    // (entries, bytes) per block
    let mut blocks = vec![(0usize, 0usize)];
    for name in names {
        let need = DIRENT_SIZE + name.len();
        let last = blocks.last_mut().unwrap();
        if last.1 + need > BLOCK {
            blocks.push((1, need));
        } else {
            last.0 += 1;
            last.1 += need;
        }
    }
    blocks
}

fn sorted_names<'a, I: Iterator<Item = &'a Vec<u8>>>(children: I) -> Vec<&'a [u8]> {
    let mut names: Vec<&[u8]> = vec![b".", b".."];
    names.extend(children.map(|n| n.as_slice()));
    names.sort();
    names
}

fn dir_size<'a, I: Iterator<Item = &'a Vec<u8>>>(children: I) -> usize {
    let names = sorted_names(children);
    let blocks = dir_blocks(names.into_iter());
    (blocks.len() - 1) * BLOCK + blocks.last().unwrap().1
}

fn dir_bytes(entries: &[(&[u8], u64, u8)]) -> Vec<u8> {
    let blocks = dir_blocks(entries.iter().map(|e| e.0));
    let mut out = Vec::new();
    let mut it = entries.iter();
    for (i, &(count, used)) in blocks.iter().enumerate() {
        let base = out.len();
        let block: Vec<_> = it.by_ref().take(count).collect();
        let mut nameoff = count * DIRENT_SIZE;
        for (name, nid, ft) in &block {
            out.extend_from_slice(&nid.to_le_bytes());
            out.extend_from_slice(&(nameoff as u16).to_le_bytes());
            out.push(*ft);
            out.push(0);
            nameoff += name.len();
        }
        for (name, _, _) in &block {
            out.extend_from_slice(name);
        }
        debug_assert_eq!(out.len() - base, used);
        if i + 1 < blocks.len() {
            out.resize(base + BLOCK, 0);
        }
    }
    out
}

fn file_type(ino: &Inode) -> u8 {
    match ino.mode & libc::S_IFMT {
        libc::S_IFREG => 1,
        libc::S_IFDIR => 2,
        libc::S_IFCHR => 3,
        libc::S_IFBLK => 4,
        libc::S_IFIFO => 5,
        libc::S_IFSOCK => 6,
        libc::S_IFLNK => 7,
        _ => 0,
    }
}

/// The kernel's `new_encode_dev`.
fn encode_dev(rdev: u64) -> u32 {
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

/// The inline xattr area: a 12-byte header, then 4-byte-aligned entries.
fn xattr_body(xattrs: &[(Vec<u8>, Vec<u8>)]) -> Result<Vec<u8>> {
    if xattrs.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = vec![0u8; 12];
    for (name, value) in xattrs {
        let (index, suffix): (u8, &[u8]) = if let Some(s) = name.strip_prefix(b"user.") {
            (1, s)
        } else if name == b"system.posix_acl_access" {
            (2, b"")
        } else if name == b"system.posix_acl_default" {
            (3, b"")
        } else if let Some(s) = name.strip_prefix(b"trusted.") {
            (4, s)
        } else if let Some(s) = name.strip_prefix(b"security.") {
            (6, s)
        } else {
            bail!(
                "xattr {} has a namespace a layer image cannot hold",
                String::from_utf8_lossy(name)
            )
        };
        if suffix.len() > 255 || value.len() > u16::MAX as usize {
            bail!(
                "xattr {} is too large for a layer image",
                String::from_utf8_lossy(name)
            );
        }
        out.push(suffix.len() as u8);
        out.push(index);
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        out.extend_from_slice(suffix);
        out.extend_from_slice(value);
        out.resize(out.len().div_ceil(4) * 4, 0);
    }
    Ok(out)
}

struct Cursor<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Cursor<'_> {
    fn bytes(&mut self, b: &[u8]) {
        self.buf[self.at..self.at + b.len()].copy_from_slice(b);
        self.at += b.len();
    }
    fn u16(&mut self, v: u16) {
        self.bytes(&v.to_le_bytes())
    }
    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes())
    }
    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_blocks_never_split_an_entry() {
        let names: Vec<Vec<u8>> = (0..600)
            .map(|i| format!("name-{i:04}").into_bytes())
            .collect();
        let size = dir_size(names.iter());
        let mut sorted = sorted_names(names.iter());
        sorted.dedup();
        let entries: Vec<(&[u8], u64, u8)> = sorted.iter().map(|n| (*n, 7, 1)).collect();
        let bytes = dir_bytes(&entries);
        assert_eq!(bytes.len(), size);
        assert!(size > BLOCK, "600 entries need more than one block");
        // Every block starts with a dirent whose nameoff is a multiple of 12.
        for block in bytes.chunks(BLOCK) {
            let nameoff = u16::from_le_bytes([block[8], block[9]]) as usize;
            assert_eq!(nameoff % DIRENT_SIZE, 0);
            assert!(nameoff <= block.len());
        }
    }

    /// Mounts a built image (file-backed EROFS) and reads everything back.
    #[test]
    fn the_kernel_reads_what_was_written() {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIP the_kernel_reads_what_was_written: mounting needs root");
            return;
        }
        let mut b = Builder::new();
        let mut d = Inode::new(libc::S_IFDIR | 0o750, Kind::Dir(BTreeMap::new()));
        d.uid = 1000;
        d.gid = 70000;
        d.mtime = 1_234_567_890;
        d.mtime_nsec = 500;
        let d = b.add(0, b"d", d).unwrap();
        let mut f = Inode::new(libc::S_IFREG | 0o4755, Kind::File(5_000_000_000));
        f.xattrs = vec![
            (b"user.x".to_vec(), b"1".to_vec()),
            (
                b"security.capability".to_vec(),
                vec![1, 0, 0, 2, 0, 0, 0, 0],
            ),
            (b"trusted.big".to_vec(), vec![b'v'; 5000]),
        ];
        let f = b.add(d, b"f", f).unwrap();
        b.link(d, b"g", f).unwrap();
        b.add(
            0,
            b"s",
            Inode::new(libc::S_IFLNK | 0o777, Kind::Symlink(b"target".to_vec())),
        )
        .unwrap();
        let long = vec![b'x'; 4000];
        b.add(
            0,
            b"long",
            Inode::new(libc::S_IFLNK | 0o777, Kind::Symlink(long.clone())),
        )
        .unwrap();
        b.add(
            0,
            b"fifo",
            Inode::new(libc::S_IFIFO | 0o600, Kind::Special(0)),
        )
        .unwrap();
        b.add(
            0,
            b"null",
            Inode::new(libc::S_IFCHR | 0o666, Kind::Special(libc::makedev(1, 3))),
        )
        .unwrap();
        b.add(
            0,
            b"empty",
            Inode::new(libc::S_IFREG | 0o644, Kind::File(0)),
        )
        .unwrap();
        let many = b
            .add(
                0,
                b"many",
                Inode::new(libc::S_IFDIR | 0o755, Kind::Dir(BTreeMap::new())),
            )
            .unwrap();
        let names: Vec<Vec<u8>> = (0..700)
            .map(|i| format!("entry-{i:04}").into_bytes())
            .collect();
        for n in &names {
            b.add(many, n, Inode::new(libc::S_IFREG | 0o644, Kind::File(0)))
                .unwrap();
        }
        let name255 = vec![b'n'; 255];
        b.add(
            0,
            &name255,
            Inode::new(libc::S_IFREG | 0o600, Kind::File(0)),
        )
        .unwrap();
        b.add(
            0,
            b"-dash",
            Inode::new(libc::S_IFREG | 0o600, Kind::File(0)),
        )
        .unwrap();

        let tmp = tempfile::tempdir().unwrap();
        let img = tmp.path().join("l.erofs");
        std::fs::write(&img, b.finish([7; 16]).unwrap()).unwrap();
        let mnt = tmp.path().join("m");
        std::fs::create_dir(&mnt).unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "erofs", "-o", "ro"])
            .arg(&img)
            .arg(&mnt)
            .status()
            .unwrap();
        assert!(st.success(), "mount -t erofs of a built image failed");
        let check = || {
            let md = std::fs::symlink_metadata(mnt.join("d")).unwrap();
            assert_eq!(
                (md.mode(), md.uid(), md.gid()),
                (libc::S_IFDIR | 0o750, 1000, 70000)
            );
            assert_eq!((md.mtime(), md.mtime_nsec()), (1_234_567_890, 500));
            let f = std::fs::symlink_metadata(mnt.join("d/f")).unwrap();
            assert_eq!(
                (f.mode(), f.len(), f.nlink()),
                (libc::S_IFREG | 0o4755, 5_000_000_000, 2)
            );
            assert_eq!(
                f.ino(),
                std::fs::symlink_metadata(mnt.join("d/g")).unwrap().ino()
            );
            for (k, v) in [("user.x", b"1".to_vec()), ("trusted.big", vec![b'v'; 5000])] {
                let mut buf = vec![0u8; 8192];
                let n = rustix::fs::getxattr(mnt.join("d/f"), k, &mut buf).unwrap();
                assert_eq!(&buf[..n], &v[..], "{k}");
            }
            assert_eq!(
                std::fs::read_link(mnt.join("s")).unwrap().as_os_str(),
                "target"
            );
            assert_eq!(
                std::os::unix::ffi::OsStrExt::as_bytes(
                    std::fs::read_link(mnt.join("long")).unwrap().as_os_str()
                ),
                &long[..]
            );
            assert!(std::fs::symlink_metadata(mnt.join("fifo"))
                .unwrap()
                .file_type()
                .is_fifo());
            assert_eq!(
                std::fs::symlink_metadata(mnt.join("null")).unwrap().rdev(),
                libc::makedev(1, 3)
            );
            assert_eq!(
                std::fs::symlink_metadata(mnt.join("empty")).unwrap().len(),
                0
            );
            let mut listed: Vec<Vec<u8>> = std::fs::read_dir(mnt.join("many"))
                .unwrap()
                .map(|e| {
                    std::os::unix::ffi::OsStrExt::as_bytes(e.unwrap().file_name().as_os_str())
                        .to_vec()
                })
                .collect();
            listed.sort();
            assert_eq!(listed, names);
            // Lookups (binary search over blocks) find every name.
            for n in &names {
                assert!(mnt
                    .join("many")
                    .join(std::str::from_utf8(n).unwrap())
                    .exists());
            }
            assert!(mnt.join(std::str::from_utf8(&name255).unwrap()).exists());
            assert!(mnt.join("-dash").exists());
            assert!(!mnt.join("missing").exists());
        };
        let r = std::panic::catch_unwind(check);
        let _ = std::process::Command::new("umount").arg(&mnt).status();
        r.unwrap();
    }

    #[test]
    fn bad_names_and_xattrs_are_refused() {
        let mut b = Builder::new();
        let f = Inode::new(libc::S_IFREG | 0o644, Kind::File(0));
        assert!(b.add(0, b"..", f.clone()).is_err());
        assert!(b.add(0, b"a/b", f.clone()).is_err());
        b.add(0, b"a", f.clone()).unwrap();
        assert!(b.add(0, b"a", f.clone()).is_err());
        assert!(xattr_body(&[(b"weird.x".to_vec(), vec![])]).is_err());
    }
}
