//! A stat cache for re-scanning a directory: a file whose inode, size, mtime
//! and ctime are unchanged keeps its hash, so it is not read again (git's
//! index does the same). Entries changed within two seconds of the scan's
//! start are not cached, because a write in the same clock tick would not
//! change the stamps.

use std::collections::HashMap;
use std::path::Path;
use store::Hash;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Stamp {
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

#[derive(Default)]
pub(crate) struct StatCache {
    pub map: HashMap<Vec<u8>, (Stamp, Hash)>,
}

const MAGIC: &[u8; 8] = b"BYSTAT01";

impl StatCache {
    pub fn load(path: &Path) -> StatCache {
        let Ok(data) = std::fs::read(path) else {
            return StatCache::default();
        };
        Self::decode(&data).unwrap_or_default()
    }

    fn decode(d: &[u8]) -> Option<StatCache> {
        let mut map = HashMap::new();
        let mut rest = d.strip_prefix(MAGIC)?;
        fn take<'a>(r: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            if r.len() < n {
                return None;
            }
            let (a, b) = r.split_at(n);
            *r = b;
            Some(a)
        }
        while !rest.is_empty() {
            let l = u16::from_le_bytes(take(&mut rest, 2)?.try_into().ok()?) as usize;
            let p = take(&mut rest, l)?.to_vec();
            let ino = u64::from_le_bytes(take(&mut rest, 8)?.try_into().ok()?);
            let size = u64::from_le_bytes(take(&mut rest, 8)?.try_into().ok()?);
            let mtime_ns = i128::from_le_bytes(take(&mut rest, 16)?.try_into().ok()?);
            let ctime_ns = i128::from_le_bytes(take(&mut rest, 16)?.try_into().ok()?);
            let h = Hash(take(&mut rest, 32)?.try_into().ok()?);
            map.insert(
                p,
                (
                    Stamp {
                        ino,
                        size,
                        mtime_ns,
                        ctime_ns,
                    },
                    h,
                ),
            );
        }
        Some(StatCache { map })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for (p, (s, h)) in &self.map {
            out.extend_from_slice(&(p.len() as u16).to_le_bytes());
            out.extend_from_slice(p);
            out.extend_from_slice(&s.ino.to_le_bytes());
            out.extend_from_slice(&s.size.to_le_bytes());
            out.extend_from_slice(&s.mtime_ns.to_le_bytes());
            out.extend_from_slice(&s.ctime_ns.to_le_bytes());
            out.extend_from_slice(&h.0);
        }
        out
    }
}
