//! Applying one tar stream (a rootfs tarball or an image layer) to a tree.
//!
//! Entries become tree nodes; file content goes to the store; nothing is
//! written to the host filesystem, so device nodes import without root and
//! no entry can reach outside the image. Refused: absolute paths, `..`,
//! hard links to anything but an earlier regular file, relative symlinks
//! that climb above the root, names over 255 bytes, unknown entry types.

use anyhow::{bail, Context, Result};
use fs::{split_path, MemKind, MemNode, MemTree, Meta};
use std::cell::Cell;
use std::collections::HashMap;
use std::io::Read;
use store::Staging;
use tar::EntryType;

#[derive(Clone, Copy, Debug, Default)]
pub struct LayerOptions {
    /// Interpret OCI whiteouts (`.wh.NAME`, `.wh..wh..opq`); off for plain
    /// rootfs tarballs, where such names are ordinary files.
    pub whiteouts: bool,
}

/// How many bytes of file data an import may expand to, over all its layers.
pub struct Budget {
    max: u64,
    /// What set the limit, for the error.
    why: String,
    used: Cell<u64>,
}

impl Budget {
    /// `max` bytes, or by default the free space of the store's filesystem
    /// (content the store already has takes no space, but a bomb of zeros
    /// still costs the time to hash it).
    pub fn new(store: &store::Store, max: Option<u64>) -> Budget {
        match max {
            Some(m) => Budget {
                max: m,
                why: "the limit given with --max-size".into(),
                used: Cell::new(0),
            },
            None => {
                let free = rustix::fs::statvfs(store.root())
                    .map(|s| s.f_bavail * s.f_frsize)
                    .unwrap_or(u64::MAX);
                Budget {
                    max: free,
                    why: "the free space of the store's filesystem, the default limit".into(),
                    used: Cell::new(0),
                }
            }
        }
    }

    /// No limit (tests and callers that bound their input otherwise).
    pub fn unlimited() -> Budget {
        Budget {
            max: u64::MAX,
            why: String::new(),
            used: Cell::new(0),
        }
    }

    fn take(&self, n: u64, label: &str) -> Result<()> {
        let used = self.used.get().saturating_add(n);
        if used > self.max {
            bail!(
                "{label} expands to more than {} of file data, {}; give --max-size SIZE (or BOTYARD_MAX_IMAGE_SIZE) to allow more",
                human(self.max),
                self.why
            );
        }
        self.used.set(used);
        Ok(())
    }
}

fn human(b: u64) -> String {
    const U: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < U.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

const WH: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";

/// An entry's path for an error: quoted, and cut when long.
fn shown(p: &[u8]) -> String {
    let q = fs::quote_bytes(p);
    if q.chars().count() <= 120 {
        return q;
    }
    let head: String = q.chars().take(60).collect();
    let tail: String = q
        .chars()
        .rev()
        .take(40)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{head}…{tail}")
}

/// Applies a tar stream to `tree`. `label` names the archive in errors.
pub fn apply_tar(
    tree: &mut MemTree,
    r: &mut dyn Read,
    staging: &Staging,
    opts: LayerOptions,
    budget: &Budget,
    label: &str,
) -> Result<()> {
    let mut ar = tar::Archive::new(r);
    let mut opaque: Vec<Vec<Vec<u8>>> = Vec::new();
    tree.begin_layer();
    let entries = ar
        .entries()
        .with_context(|| format!("{label} is not a readable tar archive"))?;
    for (i, entry) in entries.enumerate() {
        let mut entry =
            entry.with_context(|| format!("{label} is truncated or corrupt at entry {}", i + 1))?;
        let raw_path = entry.path_bytes().into_owned();
        let comps = split_path(&raw_path).map_err(|e| {
            anyhow::anyhow!(
                "{label}: entry {} has {e}; refusing an archive that writes outside its root",
                shown(&raw_path)
            )
        })?;
        let comps: Vec<Vec<u8>> = comps.into_iter().map(|c| c.to_vec()).collect();
        let refs: Vec<&[u8]> = comps.iter().map(|c| c.as_slice()).collect();
        let ctx = |what: &str| format!("{label}: entry {} {what}", shown(&raw_path));

        if opts.whiteouts {
            if let Some((last, parent)) = refs.split_last() {
                if *last == OPAQUE {
                    opaque.push(parent.iter().map(|c| c.to_vec()).collect());
                    continue;
                }
                if let Some(target) = last.strip_prefix(WH) {
                    if target.starts_with(WH) {
                        continue; // AUFS bookkeeping (.wh..wh.plnk and friends)
                    }
                    if !store::valid_entry_name(target) {
                        bail!(ctx("is a whiteout of an invalid name"));
                    }
                    let mut p: Vec<&[u8]> = parent.to_vec();
                    p.push(target);
                    tree.remove(&p);
                    continue;
                }
            }
        }

        let meta = entry_meta(&mut entry).with_context(|| ctx("has invalid metadata"))?;
        let header = entry.header().clone();
        let kind = match header.entry_type() {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let sparse = header.entry_type() == EntryType::GNUSparse;
                let size = entry.size();
                budget.take(size, label)?;
                let (object, got) = staging
                    .put_reader(&mut entry, size, sparse)
                    .with_context(|| format!("{label} is truncated or corrupt in the data of {}", shown(&raw_path)))?;
                if got != size && !sparse {
                    bail!("{label} is truncated: it ends inside the data of {}; fetch or build it again", shown(&raw_path));
                }
                MemKind::File { object, size: got, sparse, group: None }
            }
            EntryType::Directory => MemKind::Dir,
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| anyhow::anyhow!(ctx("is a symlink without a target")))?
                    .into_owned();
                check_symlink(&refs, &target).map_err(|e| anyhow::anyhow!(ctx(&e)))?;
                MemKind::Symlink(target)
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| anyhow::anyhow!(ctx("is a hard link without a target")))?
                    .into_owned();
                let t = split_path(&target).map_err(|e| {
                    anyhow::anyhow!(ctx(&format!("is a hard link whose target has {e}; it escapes the root")))
                })?;
                if t.is_empty() {
                    bail!(ctx("is a hard link to the root"));
                }
                tree.link(&refs, &t).map_err(|e| {
                    anyhow::anyhow!(ctx(&format!("is a hard link to {}: {e}", shown(&target))))
                })?;
                continue;
            }
            EntryType::Char | EntryType::Block => {
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                if header.entry_type() == EntryType::Char {
                    MemKind::CharDev { major, minor }
                } else {
                    MemKind::BlockDev { major, minor }
                }
            }
            EntryType::Fifo => MemKind::Fifo,
            other => bail!(ctx(&format!(
                "has tar entry type {:?}, which botyard does not import; repack the archive without it",
                other.as_byte() as char
            ))),
        };
        if refs.len() > fs::MAX_DEPTH {
            bail!(ctx(&format!(
                "is nested {} directories deep; botyard keeps trees up to {} deep",
                refs.len(),
                fs::MAX_DEPTH
            )));
        }
        tree.insert(&refs, MemNode { meta, kind }).map_err(|e| {
            anyhow::anyhow!(ctx(&format!(
                "cannot be placed: {e} (botyard never writes through a symlink)"
            )))
        })?;
    }
    // An opaque directory hides what lower layers had in it, but keeps what
    // this layer put there, whatever the order of entries in the archive.
    for dir in opaque {
        let d: Vec<&[u8]> = dir.iter().map(|c| c.as_slice()).collect();
        tree.keep_current_layer(&d);
    }
    Ok(())
}

/// [`apply_tar`] with the reading (and so the decompression) on a thread of
/// its own, so that unpacking overlaps hashing and writing.
pub fn apply_tar_stream(
    tree: &mut MemTree,
    r: Box<dyn Read + Send + '_>,
    staging: &Staging,
    opts: LayerOptions,
    budget: &Budget,
    label: &str,
) -> Result<()> {
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<Vec<u8>>>(8);
        s.spawn(move || {
            let mut r = r;
            // Sends 1 MiB chunks, then an empty chunk at the end, or the error.
            loop {
                let mut buf = vec![0u8; 1 << 20];
                let mut filled = 0;
                let mut failed = None;
                while filled < buf.len() {
                    match r.read(&mut buf[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                buf.truncate(filled);
                let end = filled == 0;
                // A send fails only when the import gave up: stop reading.
                if (!end || failed.is_none()) && tx.send(Ok(buf)).is_err() {
                    return;
                }
                if let Some(e) = failed {
                    let _ = tx.send(Err(e));
                    return;
                }
                if end {
                    return;
                }
            }
        });
        let mut reader = ChannelReader {
            rx,
            cur: Vec::new(),
            pos: 0,
        };
        apply_tar(tree, &mut reader, staging, opts, budget, label)
    })
}

struct ChannelReader {
    rx: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(Ok(b)) if b.is_empty() => return Ok(0),
                Ok(Ok(b)) => {
                    self.cur = b;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(std::io::Error::other(
                        "the archive reader stopped unexpectedly",
                    ))
                }
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A relative symlink may not climb above the image root from where it
/// sits; an absolute one is read inside the root, as in a chroot.
fn check_symlink(path: &[&[u8]], target: &[u8]) -> Result<(), String> {
    if target.is_empty() || target.contains(&0) || target.len() > store::PATH_MAX {
        return Err("is a symlink with an empty, NUL-containing or overlong target".into());
    }
    if target.starts_with(b"/") {
        return Ok(());
    }
    let mut depth = path.len() as i64 - 1;
    for c in target.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!(
                        "is a symlink to {}, which escapes the image root; refusing the archive",
                        shown(target)
                    ));
                }
            }
            _ => depth += 1,
        }
    }
    Ok(())
}

fn entry_meta<R: Read>(entry: &mut tar::Entry<R>) -> Result<Meta> {
    let h = entry.header();
    let mut meta = Meta {
        mode: h.mode()? & 0o7777,
        uid: u32::try_from(h.uid()?).context("uid does not fit 32 bits")?,
        gid: u32::try_from(h.gid()?).context("gid does not fit 32 bits")?,
        mtime: h.mtime()? as i64,
        mtime_nsec: 0,
        xattrs: Vec::new(),
    };
    let mut xattrs: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    if let Some(pax) = entry.pax_extensions()? {
        for ext in pax {
            let ext = ext?;
            let key = ext.key_bytes();
            let value = ext.value_bytes();
            if key.starts_with(b"GNU.sparse.") {
                bail!("uses the PAX sparse format, which botyard does not read; repack with `tar --format=gnu -S` or without -S");
            }
            if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                xattrs.insert(name.to_vec(), value.to_vec());
            } else if key == b"mtime" {
                let (s, ns) = parse_pax_time(value).context("bad PAX mtime")?;
                meta.mtime = s;
                meta.mtime_nsec = ns;
            } else if key == b"uid" {
                meta.uid = std::str::from_utf8(value)?
                    .trim()
                    .parse()
                    .context("bad PAX uid")?;
            } else if key == b"gid" {
                meta.gid = std::str::from_utf8(value)?
                    .trim()
                    .parse()
                    .context("bad PAX gid")?;
            }
        }
    }
    meta.xattrs = xattrs.into_iter().collect();
    meta.xattrs.sort();
    Ok(meta)
}

/// Parses a PAX time (`1700000000.123456789`, possibly negative).
fn parse_pax_time(v: &[u8]) -> Result<(i64, u32)> {
    let s = std::str::from_utf8(v)?.trim();
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = int.parse()?;
    let mut digits: String = frac.chars().take(9).collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        bail!("not a number");
    }
    while digits.len() < 9 {
        digits.push('0');
    }
    let mut ns: u32 = digits.parse()?;
    if s.starts_with('-') && ns > 0 {
        // -1.5 is 1.5 s before the epoch: -2 s + 0.5 s.
        return Ok((secs - 1, 1_000_000_000 - ns));
    }
    if ns >= 1_000_000_000 {
        ns = 0;
    }
    Ok((secs, ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_escape_rules() {
        let p: Vec<&[u8]> = vec![b"usr", b"lib", b"x"];
        assert!(check_symlink(&p, b"../../bin/sh").is_ok());
        assert!(check_symlink(&p, b"/etc/passwd").is_ok());
        assert!(check_symlink(&p, b"../../../etc/passwd").is_err());
        assert!(check_symlink(&[b"a"], b"..").is_err());
        assert!(check_symlink(&[b"a"], b"b/../../c").is_err());
    }

    #[test]
    fn pax_times() {
        assert_eq!(
            parse_pax_time(b"1700000000.5").unwrap(),
            (1_700_000_000, 500_000_000)
        );
        assert_eq!(parse_pax_time(b"12").unwrap(), (12, 0));
        assert_eq!(parse_pax_time(b"-1.5").unwrap(), (-2, 500_000_000));
        assert!(parse_pax_time(b"x").is_err());
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        fn raw_path() -> impl Strategy<Value = Vec<u8>> {
            let comp = prop_oneof![
                Just(b"a".to_vec()),
                Just(b"b".to_vec()),
                Just(b"..".to_vec()),
                Just(b".".to_vec()),
                Just(b"".to_vec()),
                Just(b".wh.a".to_vec()),
                Just(b".wh..wh..opq".to_vec()),
                proptest::collection::vec(1u8..=255, 1..6),
            ];
            (any::<bool>(), proptest::collection::vec(comp, 1..5)).prop_map(|(abs, c)| {
                let mut p = if abs { b"/".to_vec() } else { Vec::new() };
                p.extend(c.join(&b'/'));
                p.truncate(99);
                p
            })
        }

        /// A tar entry with its name bytes as given, bypassing the
        /// builder's own checks (a hostile archive has no such checks).
        fn archive(entries: &[(Vec<u8>, u8, Vec<u8>)]) -> Vec<u8> {
            let mut b = tar::Builder::new(Vec::new());
            for (path, kind, target) in entries {
                let mut h = tar::Header::new_old();
                let name = &mut h.as_old_mut().name;
                name[..path.len()].copy_from_slice(path);
                h.set_entry_type(match kind % 4 {
                    0 => tar::EntryType::Regular,
                    1 => tar::EntryType::Directory,
                    2 => tar::EntryType::Symlink,
                    _ => tar::EntryType::Link,
                });
                if kind % 4 >= 2 {
                    let ln = &mut h.as_old_mut().linkname;
                    let t = &target[..target.len().min(99)];
                    ln[..t.len()].copy_from_slice(t);
                }
                h.set_mode(0o644 | if kind & 4 != 0 { 0o4000 } else { 0 });
                h.set_size(if kind % 4 == 0 { 3 } else { 0 });
                h.set_cksum();
                let data: &[u8] = if kind % 4 == 0 { b"abc" } else { b"" };
                b.append(&h, data).unwrap();
            }
            b.into_inner().unwrap()
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
            /// Whatever names a hostile archive holds, the tree it makes
            /// has only plain names below the root (no `..`, `.`, empty or
            /// `/` component), and nothing panics.
            #[test]
            fn hostile_tar_entries_stay_inside_the_root(
                entries in proptest::collection::vec((raw_path(), any::<u8>(), raw_path()), 1..8),
                whiteouts in any::<bool>(),
            ) {
                let t = tempfile::tempdir().unwrap();
                let (store, _) = store::Store::init(&t.path().join("s")).unwrap();
                let staging = Staging::new(&store, &store::NoProgress).unwrap();
                let mut tree = MemTree::default();
                let bytes = archive(&entries);
                let r = apply_tar(&mut tree, &mut &bytes[..], &staging, LayerOptions { whiteouts }, &Budget::unlimited(), "fuzz.tar");
                if r.is_ok() {
                    tree.for_each(|_, path| {
                        for c in path.split(|&b| b == b'/').skip_while(|c| c.is_empty()) {
                            assert!(store::valid_entry_name(c), "{:?} in {:?}", String::from_utf8_lossy(c), String::from_utf8_lossy(path));
                        }
                        Ok(())
                    }).unwrap();
                }
            }
        }
    }
}
