//! Trees: directory listings with every piece of metadata a root filesystem
//! needs, in a deterministic binary encoding.
//!
//! Encoding (all integers little-endian), version 1:
//! ```text
//! "BYT1" u32:count  entry*
//! entry  = u16:namelen name u8:kind u32:mode u32:uid u32:gid i64:mtime u32:nsec
//!          u16:nxattr (u16:len name u32:len value)*  payload
//! payload: file    = hash[32] u64:size u8:flags(1=sparse,2=link) [u16:len linkpath]
//!          dir     = hash[32] (the subtree)
//!          symlink = u16:len target
//!          chr/blk = u32:major u32:minor
//!          fifo/socket = nothing
//! ```
//! Entries are sorted by name bytes and xattrs by name; decoding rejects any
//! other order, so one directory has exactly one encoding and one hash.

use crate::hash::Hash;
use std::fmt;

const MAGIC: &[u8; 4] = b"BYT1";
/// Longest file name the kernel accepts.
pub const NAME_MAX: usize = 255;
/// Longest symlink target or link path the kernel accepts.
pub const PATH_MAX: usize = 4095;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileData {
    /// The object holding the bytes (the empty hash for empty files, which
    /// have no object).
    pub object: Hash,
    pub size: u64,
    /// The file had holes; its object is written sparse too.
    pub sparse: bool,
    /// Member of a hard-link group: the path (from the image root, no leading
    /// slash) of the group's first member in tree order. All members carry the
    /// same metadata and object.
    pub link: Option<Vec<u8>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    File(FileData),
    Dir(Hash),
    Symlink(Vec<u8>),
    CharDev { major: u32, minor: u32 },
    BlockDev { major: u32, minor: u32 },
    Fifo,
    Socket,
}

impl EntryKind {
    /// One word for listings and diffs.
    pub fn label(&self) -> &'static str {
        match self {
            EntryKind::File(_) => "file",
            EntryKind::Dir(_) => "dir",
            EntryKind::Symlink(_) => "symlink",
            EntryKind::CharDev { .. } => "chardev",
            EntryKind::BlockDev { .. } => "blockdev",
            EntryKind::Fifo => "fifo",
            EntryKind::Socket => "socket",
        }
    }

    /// The `S_IFMT` bits of this kind.
    pub fn file_type_bits(&self) -> u32 {
        match self {
            EntryKind::File(_) => libc::S_IFREG,
            EntryKind::Dir(_) => libc::S_IFDIR,
            EntryKind::Symlink(_) => libc::S_IFLNK,
            EntryKind::CharDev { .. } => libc::S_IFCHR,
            EntryKind::BlockDev { .. } => libc::S_IFBLK,
            EntryKind::Fifo => libc::S_IFIFO,
            EntryKind::Socket => libc::S_IFSOCK,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: Vec<u8>,
    /// Permission bits including setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
    /// Extended attributes sorted by name (`security.capability` included).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    pub kind: EntryKind,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tree {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeError(pub String);

impl fmt::Display for TreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TreeError {}

fn err<T>(msg: impl Into<String>) -> Result<T, TreeError> {
    Err(TreeError(msg.into()))
}

/// A valid directory entry name: not empty, not `.` or `..`, no `/` or NUL,
/// at most 255 bytes.
pub fn valid_entry_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= NAME_MAX
        && name != b"."
        && name != b".."
        && !name.iter().any(|&b| b == b'/' || b == 0)
}

impl Tree {
    /// Builds a tree, sorting entries and xattrs; fails on duplicate or
    /// invalid names.
    pub fn from_entries(mut entries: Vec<Entry>) -> Result<Tree, TreeError> {
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        for e in &mut entries {
            e.xattrs.sort();
            check_entry(&e.as_ref())?;
        }
        for w in entries.windows(2) {
            if w[0].name == w[1].name {
                return err(format!(
                    "duplicate entry name {:?}",
                    String::from_utf8_lossy(&w[0].name)
                ));
            }
        }
        Ok(Tree { entries })
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn into_entries(self) -> Vec<Entry> {
        self.entries
    }

    pub fn get(&self, name: &[u8]) -> Option<&Entry> {
        self.entries
            .binary_search_by(|e| e.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.entries[i])
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut enc = TreeEncoder::with_capacity(self.entries.len());
        for e in &self.entries {
            enc.push(&e.as_ref())
                .expect("a tree's entries are checked when it is built");
        }
        enc.finish()
    }

    pub fn hash(&self) -> Hash {
        Hash::of(&self.encode())
    }

    /// Decodes a tree, accepting only the canonical encoding.
    pub fn decode(bytes: &[u8]) -> Result<Tree, TreeError> {
        let mut r = Reader { b: bytes, pos: 0 };
        if r.take(4)? != MAGIC {
            return err("not a botyard tree (bad magic)");
        }
        let count = r.u32()? as usize;
        // Each entry takes at least 31 bytes; reject counts the input cannot hold.
        if count > bytes.len() / 31 {
            return err("entry count larger than the tree");
        }
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            let nlen = r.u16()? as usize;
            let name = r.take(nlen)?.to_vec();
            let code = r.u8()?;
            let mode = r.u32()?;
            let uid = r.u32()?;
            let gid = r.u32()?;
            let mtime = i64::from_le_bytes(r.take(8)?.try_into().unwrap());
            let mtime_nsec = r.u32()?;
            let nx = r.u16()? as usize;
            let mut xattrs = Vec::with_capacity(nx);
            for _ in 0..nx {
                let kl = r.u16()? as usize;
                let k = r.take(kl)?.to_vec();
                let vl = r.u32()? as usize;
                let v = r.take(vl)?.to_vec();
                xattrs.push((k, v));
            }
            let kind = match code {
                1 => {
                    let object = Hash(r.take(32)?.try_into().unwrap());
                    let size = u64::from_le_bytes(r.take(8)?.try_into().unwrap());
                    let flags = r.u8()?;
                    if flags & !3 != 0 {
                        return err("unknown file flags");
                    }
                    let link = if flags & 2 != 0 {
                        let l = r.u16()? as usize;
                        Some(r.take(l)?.to_vec())
                    } else {
                        None
                    };
                    EntryKind::File(FileData {
                        object,
                        size,
                        sparse: flags & 1 != 0,
                        link,
                    })
                }
                2 => EntryKind::Dir(Hash(r.take(32)?.try_into().unwrap())),
                3 => {
                    let l = r.u16()? as usize;
                    EntryKind::Symlink(r.take(l)?.to_vec())
                }
                4 | 5 => {
                    let major = r.u32()?;
                    let minor = r.u32()?;
                    if code == 4 {
                        EntryKind::CharDev { major, minor }
                    } else {
                        EntryKind::BlockDev { major, minor }
                    }
                }
                6 => EntryKind::Fifo,
                7 => EntryKind::Socket,
                c => return err(format!("unknown entry kind {c}")),
            };
            let e = Entry {
                name,
                mode,
                uid,
                gid,
                mtime,
                mtime_nsec,
                xattrs,
                kind,
            };
            check_entry(&e.as_ref())?;
            if let Some(prev) = entries.last() {
                let prev: &Entry = prev;
                if prev.name >= e.name {
                    return err("entries not in canonical order");
                }
            }
            entries.push(e);
        }
        if r.pos != bytes.len() {
            return err("trailing bytes after the last entry");
        }
        Ok(Tree { entries })
    }
}

/// The largest xattr value a tree holds: what a layer image (EROFS) can
/// carry, one byte short of the kernel's own limit.
pub const XATTR_VALUE_MAX: usize = u16::MAX as usize;
/// The xattr bytes (names and values) one entry may carry in all.
pub const XATTRS_MAX: usize = 256 * 1024;

/// Whether a layer image and the kernel can hold an xattr of this name.
pub fn known_xattr_namespace(name: &[u8]) -> bool {
    [&b"user."[..], b"trusted.", b"security."]
        .iter()
        .any(|p| name.starts_with(p) && name.len() > p.len())
        || name == b"system.posix_acl_access"
        || name == b"system.posix_acl_default"
}

fn check_entry(e: &EntryRef<'_>) -> Result<(), TreeError> {
    let shown = || String::from_utf8_lossy(e.name).into_owned();
    if !valid_entry_name(e.name) {
        return err(format!("invalid entry name {:?}", shown()));
    }
    if e.mode & !0o7777 != 0 {
        return err(format!("entry {:?} has mode bits outside 0o7777", shown()));
    }
    if e.mtime_nsec >= 1_000_000_000 {
        return err(format!("entry {:?} has nanoseconds out of range", shown()));
    }
    if !e.xattrs.windows(2).all(|w| w[0].0 < w[1].0) {
        return err(format!(
            "entry {:?} has duplicate or unsorted xattrs",
            shown()
        ));
    }
    let mut total = 0usize;
    for (k, v) in e.xattrs {
        if k.is_empty() || k.len() > NAME_MAX || k.contains(&0) {
            return err(format!("entry {:?} has an invalid xattr name", shown()));
        }
        if !known_xattr_namespace(k) {
            return err(format!(
                "entry {:?} has the xattr {:?}, outside the user, trusted, security and ACL namespaces botyard keeps",
                shown(),
                String::from_utf8_lossy(k)
            ));
        }
        if v.len() > XATTR_VALUE_MAX {
            return err(format!(
                "entry {:?} has the xattr {:?} of {} bytes; botyard keeps values up to {XATTR_VALUE_MAX} bytes (what a layer image holds)",
                shown(),
                String::from_utf8_lossy(k),
                v.len()
            ));
        }
        total += k.len() + v.len() + 8;
    }
    if total > XATTRS_MAX {
        return err(format!(
            "entry {:?} has {total} bytes of xattrs; botyard keeps up to {XATTRS_MAX} per entry",
            shown()
        ));
    }
    match &e.kind {
        KindRef::Symlink(t) if t.is_empty() || t.len() > PATH_MAX || t.contains(&0) => {
            err(format!("symlink {:?} has an invalid target", shown()))
        }
        KindRef::File { link: Some(l), .. } if l.is_empty() || l.len() > PATH_MAX => {
            err(format!("file {:?} has an invalid link path", shown()))
        }
        _ => Ok(()),
    }
}

/// An entry borrowed for encoding (see [`TreeEncoder`]).
#[derive(Clone, Copy, Debug)]
pub struct EntryRef<'a> {
    pub name: &'a [u8],
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
    /// Sorted by name.
    pub xattrs: &'a [(Vec<u8>, Vec<u8>)],
    pub kind: KindRef<'a>,
}

/// [`EntryKind`], borrowed.
#[derive(Clone, Copy, Debug)]
pub enum KindRef<'a> {
    File {
        object: &'a Hash,
        size: u64,
        sparse: bool,
        link: Option<&'a [u8]>,
    },
    Dir(&'a Hash),
    Symlink(&'a [u8]),
    CharDev {
        major: u32,
        minor: u32,
    },
    BlockDev {
        major: u32,
        minor: u32,
    },
    Fifo,
    Socket,
}

impl Entry {
    pub fn as_ref(&self) -> EntryRef<'_> {
        let kind = match &self.kind {
            EntryKind::File(f) => KindRef::File {
                object: &f.object,
                size: f.size,
                sparse: f.sparse,
                link: f.link.as_deref(),
            },
            EntryKind::Dir(h) => KindRef::Dir(h),
            EntryKind::Symlink(t) => KindRef::Symlink(t),
            EntryKind::CharDev { major, minor } => KindRef::CharDev {
                major: *major,
                minor: *minor,
            },
            EntryKind::BlockDev { major, minor } => KindRef::BlockDev {
                major: *major,
                minor: *minor,
            },
            EntryKind::Fifo => KindRef::Fifo,
            EntryKind::Socket => KindRef::Socket,
        };
        EntryRef {
            name: &self.name,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            mtime: self.mtime,
            mtime_nsec: self.mtime_nsec,
            xattrs: &self.xattrs,
            kind,
        }
    }
}

/// Writes a tree's encoding entry by entry, without holding the entries:
/// a directory of a million files costs its encoding, not a million
/// owned entries. Entries must come in name order.
pub struct TreeEncoder {
    out: Vec<u8>,
    count: u32,
    last: Option<std::ops::Range<usize>>,
}

impl TreeEncoder {
    pub fn with_capacity(entries: usize) -> TreeEncoder {
        let mut out = Vec::with_capacity(8 + entries.min(1 << 16) * 96);
        out.extend_from_slice(MAGIC);
        put_u32(&mut out, 0);
        TreeEncoder {
            out,
            count: 0,
            last: None,
        }
    }

    /// Appends an entry; refuses one that is invalid or not after the last.
    pub fn push(&mut self, e: &EntryRef<'_>) -> Result<(), TreeError> {
        check_entry(e)?;
        if let Some(r) = &self.last {
            match self.out[r.clone()].cmp(e.name) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => {
                    return err(format!(
                        "duplicate entry name {:?}",
                        String::from_utf8_lossy(e.name)
                    ))
                }
                std::cmp::Ordering::Greater => return err("entries not in name order"),
            }
        }
        if self.count == u32::MAX {
            return err("too many entries in one directory");
        }
        let out = &mut self.out;
        put_u16(out, e.name.len() as u16);
        let start = out.len();
        out.extend_from_slice(e.name);
        self.last = Some(start..out.len());
        out.push(match e.kind {
            KindRef::File { .. } => 1,
            KindRef::Dir(_) => 2,
            KindRef::Symlink(_) => 3,
            KindRef::CharDev { .. } => 4,
            KindRef::BlockDev { .. } => 5,
            KindRef::Fifo => 6,
            KindRef::Socket => 7,
        });
        put_u32(out, e.mode);
        put_u32(out, e.uid);
        put_u32(out, e.gid);
        out.extend_from_slice(&e.mtime.to_le_bytes());
        put_u32(out, e.mtime_nsec);
        put_u16(out, e.xattrs.len() as u16);
        for (k, v) in e.xattrs {
            put_u16(out, k.len() as u16);
            out.extend_from_slice(k);
            put_u32(out, v.len() as u32);
            out.extend_from_slice(v);
        }
        match e.kind {
            KindRef::File {
                object,
                size,
                sparse,
                link,
            } => {
                out.extend_from_slice(&object.0);
                out.extend_from_slice(&size.to_le_bytes());
                out.push((sparse as u8) | ((link.is_some() as u8) << 1));
                if let Some(l) = link {
                    put_u16(out, l.len() as u16);
                    out.extend_from_slice(l);
                }
            }
            KindRef::Dir(h) => out.extend_from_slice(&h.0),
            KindRef::Symlink(t) => {
                put_u16(out, t.len() as u16);
                out.extend_from_slice(t);
            }
            KindRef::CharDev { major, minor } | KindRef::BlockDev { major, minor } => {
                put_u32(out, major);
                put_u32(out, minor);
            }
            KindRef::Fifo | KindRef::Socket => {}
        }
        self.count += 1;
        Ok(())
    }

    /// The encoding.
    pub fn finish(mut self) -> Vec<u8> {
        self.out[4..8].copy_from_slice(&self.count.to_le_bytes());
        self.out
    }
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TreeError> {
        if self.b.len() - self.pos < n {
            return err("tree is truncated");
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, TreeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, TreeError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32, TreeError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, kind: EntryKind) -> Entry {
        Entry {
            name: name.as_bytes().to_vec(),
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1_700_000_000,
            mtime_nsec: 123_456_789,
            xattrs: vec![],
            kind,
        }
    }

    #[test]
    fn round_trip_every_kind() {
        let mut f = entry(
            "f",
            EntryKind::File(FileData {
                object: Hash::of(b"x"),
                size: 1,
                sparse: true,
                link: Some(b"a/b".to_vec()),
            }),
        );
        f.xattrs = vec![
            (b"user.b".to_vec(), b"2".to_vec()),
            (b"security.capability".to_vec(), vec![1, 0, 0, 2]),
        ];
        let t = Tree::from_entries(vec![
            f,
            entry("d", EntryKind::Dir(Hash::of(b"t"))),
            entry("l", EntryKind::Symlink(b"/etc/passwd".to_vec())),
            entry("c", EntryKind::CharDev { major: 1, minor: 3 }),
            entry("b", EntryKind::BlockDev { major: 7, minor: 0 }),
            entry("p", EntryKind::Fifo),
            entry("s", EntryKind::Socket),
        ])
        .unwrap();
        let enc = t.encode();
        let back = Tree::decode(&enc).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.entries()[0].name, b"b");
        assert_eq!(back.get(b"f").unwrap().xattrs[0].0, b"security.capability");
    }

    #[test]
    fn rejects_non_canonical_and_corrupt_input() {
        let t = Tree::from_entries(vec![
            entry("a", EntryKind::Fifo),
            entry("b", EntryKind::Fifo),
        ])
        .unwrap();
        let mut enc = t.encode();
        // swap the two names: still parseable but out of order
        let i = enc.iter().position(|&b| b == b'a').unwrap();
        let j = enc.iter().rposition(|&b| b == b'b').unwrap();
        enc.swap(i, j);
        assert!(Tree::decode(&enc).is_err());
        let enc = t.encode();
        for cut in 0..enc.len() {
            assert!(
                Tree::decode(&enc[..cut]).is_err(),
                "truncated at {cut} accepted"
            );
        }
        assert!(Tree::from_entries(vec![entry("..", EntryKind::Fifo)]).is_err());
        assert!(Tree::from_entries(vec![entry("a/b", EntryKind::Fifo)]).is_err());
        assert!(Tree::from_entries(vec![
            entry("a", EntryKind::Fifo),
            entry("a", EntryKind::Socket)
        ])
        .is_err());
    }
}
