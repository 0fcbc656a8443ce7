//! Property tests of the tree encoding, the store's only decoder of bytes
//! that may come from elsewhere: any tree round-trips, only the canonical
//! encoding decodes, and no input makes the decoder panic. Cases per
//! property: `PROPTEST_CASES` (default 256).

use proptest::prelude::*;
use store::{Entry, EntryKind, FileData, Hash, Tree};

fn name() -> impl Strategy<Value = Vec<u8>> {
    // Mostly ordinary names, some with bytes a person would not type.
    prop_oneof![
        "[a-z0-9._-]{1,12}".prop_map(|s| s.into_bytes()),
        proptest::collection::vec(1u8..=255, 1..20)
            .prop_map(|v| v.into_iter().filter(|&b| b != b'/').collect::<Vec<u8>>()),
    ]
    .prop_filter("a valid name", |n| store::valid_entry_name(n))
}

fn hash() -> impl Strategy<Value = Hash> {
    any::<[u8; 8]>().prop_map(|b| Hash::of(&b))
}

fn kind() -> impl Strategy<Value = EntryKind> {
    prop_oneof![
        (
            hash(),
            any::<u32>(),
            any::<bool>(),
            proptest::option::of("[a-z/]{1,30}")
        )
            .prop_map(|(object, size, sparse, link)| EntryKind::File(FileData {
                object,
                size: size as u64,
                sparse,
                link: link.map(|l| l.into_bytes()),
            })),
        hash().prop_map(EntryKind::Dir),
        proptest::collection::vec(1u8..=255, 1..64).prop_map(EntryKind::Symlink),
        (any::<u32>(), any::<u32>()).prop_map(|(major, minor)| EntryKind::CharDev { major, minor }),
        (any::<u32>(), any::<u32>())
            .prop_map(|(major, minor)| EntryKind::BlockDev { major, minor }),
        Just(EntryKind::Fifo),
        Just(EntryKind::Socket),
    ]
}

fn xattrs() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
    proptest::collection::btree_map(
        "(user|trusted|security)\\.[a-z]{1,8}".prop_map(|s| s.into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..40),
        0..4,
    )
    .prop_map(|m| m.into_iter().collect())
}

fn entry() -> impl Strategy<Value = Entry> {
    (
        name(),
        0u32..0o10000,
        any::<u32>(),
        any::<u32>(),
        any::<i64>(),
        0u32..1_000_000_000,
        xattrs(),
        kind(),
    )
        .prop_map(
            |(name, mode, uid, gid, mtime, mtime_nsec, xattrs, kind)| Entry {
                name,
                mode,
                uid,
                gid,
                mtime,
                mtime_nsec,
                xattrs,
                kind,
            },
        )
}

fn tree() -> impl Strategy<Value = Tree> {
    proptest::collection::btree_map(name(), entry(), 0..12).prop_map(|m| {
        let entries = m
            .into_iter()
            .map(|(n, mut e)| {
                e.name = n;
                e
            })
            .collect();
        Tree::from_entries(entries).unwrap_or_else(|e| panic!("{e}"))
    })
}

proptest! {
    #[test]
    fn every_tree_round_trips(t in tree()) {
        let bytes = t.encode();
        let back = Tree::decode(&bytes).expect("its own encoding decodes");
        prop_assert_eq!(&back, &t);
        prop_assert_eq!(back.hash(), t.hash());
    }

    #[test]
    fn only_the_canonical_encoding_decodes(t in tree(), edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..4)) {
        let mut bytes = t.encode();
        for (at, b, how) in edits {
            let at = at % (bytes.len() + 1);
            match how {
                0 if at < bytes.len() => bytes[at] = b,
                1 => bytes.insert(at, b),
                _ => bytes.truncate(at),
            }
        }
        // Never a panic; what decodes is exactly what it would encode to.
        if let Ok(d) = Tree::decode(&bytes) {
            prop_assert_eq!(d.encode(), bytes);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut b = b"BYT1".to_vec();
        b.extend_from_slice(&bytes);
        for input in [&bytes[..], &b[..]] {
            if let Ok(d) = Tree::decode(input) {
                prop_assert_eq!(d.encode(), input.to_vec());
            }
        }
    }
}
