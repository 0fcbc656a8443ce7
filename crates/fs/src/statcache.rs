//! A stat cache for re-scanning a directory: a file whose inode, size, mtime
//! and ctime are unchanged keeps its hash, so it is not read again (git's
//! index does the same). Entries changed within two seconds of the scan's
//! start are not cached, because a write in the same clock tick would not
//! change the stamps. Paths are kept as a 128-bit hash, so an entry costs
//! about 90 bytes in memory whatever its path's length.

use std::collections::HashMap;
use std::path::Path;
use store::Hash;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Stamp {
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

impl Stamp {
    pub fn of(st: &rustix::fs::Stat) -> Stamp {
        Stamp {
            ino: st.st_ino,
            size: st.st_size as u64,
            mtime_ns: st.st_mtime * 1_000_000_000 + st.st_mtime_nsec as i64,
            ctime_ns: st.st_ctime * 1_000_000_000 + st.st_ctime_nsec as i64,
        }
    }
}

/// A path's key in the cache.
pub(crate) type PathKey = [u8; 16];

pub(crate) fn path_key(path: &[u8]) -> PathKey {
    blake3::hash(path).as_bytes()[..16].try_into().unwrap()
}

#[derive(Default)]
pub(crate) struct StatCache {
    pub map: HashMap<PathKey, (Stamp, Hash)>,
}

const MAGIC: &[u8; 8] = b"BYSTAT02";
const RECORD: usize = 16 + 8 * 4 + 32;

impl StatCache {
    pub fn load(path: &Path) -> StatCache {
        let Ok(data) = std::fs::read(path) else {
            return StatCache::default();
        };
        Self::decode(&data).unwrap_or_default()
    }

    fn decode(d: &[u8]) -> Option<StatCache> {
        let rest = d.strip_prefix(MAGIC)?;
        if rest.len() % RECORD != 0 {
            return None;
        }
        let mut map = HashMap::with_capacity(rest.len() / RECORD);
        for r in rest.chunks_exact(RECORD) {
            let u = |i: usize| u64::from_le_bytes(r[16 + i * 8..24 + i * 8].try_into().unwrap());
            map.insert(
                r[..16].try_into().unwrap(),
                (
                    Stamp {
                        ino: u(0),
                        size: u(1),
                        mtime_ns: u(2) as i64,
                        ctime_ns: u(3) as i64,
                    },
                    Hash(r[48..80].try_into().unwrap()),
                ),
            );
        }
        Some(StatCache { map })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAGIC.len() + self.map.len() * RECORD);
        out.extend_from_slice(MAGIC);
        for (p, (s, h)) in &self.map {
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
