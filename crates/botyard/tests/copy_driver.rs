//! The copy driver on real loop-mounted filesystems: XFS (reflink) and
//! btrfs share extents between bots and the store, ext4 cannot and says so.
//! Space is measured with statvfs, the way `df` would.

mod common;
use common::*;

const MIB: u64 = 1 << 20;

fn check_fs(kind: &str, shares: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let lfs = LoopFs::new(tmp.path(), kind, "400M");
    let env = Env::with_store(lfs.mnt.join("store"));
    // A 24 MiB image of distinct files.
    let src = env.path("src");
    for i in 0..96u32 {
        let d = src.join(format!("usr/lib/{}", i % 8));
        std::fs::create_dir_all(&d).unwrap();
        let data: Vec<u8> = (0..256 * 1024u32)
            .map(|j| (j.wrapping_mul(31) ^ i) as u8)
            .collect();
        std::fs::write(d.join(format!("f{i}")), data).unwrap();
    }
    env.ok(&["image", "import", "base:1", "--dir", src.to_str().unwrap()]);
    let used0 = lfs.used();
    for id in ["c1", "c2", "c3"] {
        env.ok(&["bot", "create", id, "--image", "base:1", "--driver", "copy"]);
    }
    let used1 = lfs.used();
    let show = env.json(&["bot", "show", "c1", "--json"]);
    assert_eq!(show["shares_extents"], shares, "{kind}: {show}");
    // On btrfs a copy bot is a snapshot of the image's read-only root.
    let btrfs = kind == "btrfs";
    assert_eq!(show["snapshot"], btrfs, "{kind}: {show}");
    let roots = env.store.join("cache/roots");
    assert_eq!(
        std::fs::read_dir(&roots).map_or(0, |d| d.count()),
        if btrfs { 2 } else { 0 },
        "{kind}: one image root and its stamps"
    );
    if shares {
        assert!(
            used1 - used0 < 8 * MIB,
            "{kind}: 3 copy bots took {} MiB",
            (used1 - used0) / MIB
        );
    } else {
        assert!(
            used1 - used0 > 60 * MIB,
            "{kind}: 3 full copies took only {} MiB",
            (used1 - used0) / MIB
        );
    }
    // Every bot installs the same 16 MiB package and writes its own file.
    let package: Vec<u8> = (0..16 * MIB as u32).map(|j| (j % 253) as u8).collect();
    for id in ["c1", "c2", "c3"] {
        let root = env.store.join("bots").join(id).join("root");
        std::fs::create_dir_all(root.join("opt/pkg")).unwrap();
        std::fs::write(root.join("opt/pkg/blob"), &package).unwrap();
        std::fs::write(root.join("own"), id).unwrap();
        std::fs::remove_file(root.join("usr/lib/0/f0")).unwrap();
        // Rewritten in place, same size, its mtime put back: only the
        // ctime says it changed, and the commit must see it.
        let f = root.join("usr/lib/1/f1");
        let mtime = std::fs::metadata(&f).unwrap().modified().unwrap();
        let mut data = std::fs::read(&f).unwrap();
        data[0] ^= 0xff;
        std::fs::write(&f, &data).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
    }
    let used2 = lfs.used();
    let mut shared = 0;
    for id in ["c1", "c2", "c3"] {
        let v = env.json(&["bot", "commit", id, "--json"]);
        shared += v[0]["commit"]["shared_bytes"].as_u64().unwrap();
        let root = env.store.join("bots").join(id).join("root");
        let tree: store::Hash = v[0]["commit"]["tree"].as_str().unwrap().parse().unwrap();
        assert_same(
            &manifest_of_dir(&root),
            &manifest_of_tree(&env.store(), tree),
        );
    }
    let used3 = lfs.used();
    if shares {
        assert!(
            shared >= 48 * MIB,
            "{kind}: only {} MiB shared",
            shared / MIB
        );
        assert!(
            used3 + 24 * MIB < used2,
            "{kind}: commits freed only {} MiB",
            (used2.saturating_sub(used3)) / MIB
        );
    } else {
        assert_eq!(shared, 0);
        assert!(
            used3 >= used2 + 15 * MIB,
            "{kind}: the store should hold its own copy of the package"
        );
    }
    // Commit again: nothing changed.
    let v = env.json(&["bot", "commit", "c1", "--json"]);
    assert!(v[0]["commit"].is_null(), "{v}");
    // Diff, reset of one path and of everything, all on a plain directory.
    let root = env.store.join("bots/c2/root");
    std::fs::write(root.join("own"), b"changed").unwrap();
    std::fs::write(root.join("scratch"), b"x").unwrap();
    let diff = env.ok(&["bot", "diff", "c2"]);
    assert!(
        diff.contains("A /scratch") && diff.contains("A /own") && diff.contains("D /usr/lib/0/f0"),
        "{diff}"
    );
    env.ok(&["bot", "reset", "c2", "/own"]);
    assert_eq!(std::fs::read(root.join("own")).unwrap(), b"c2");
    env.ok(&["bot", "reset", "c2"]);
    assert!(!root.join("scratch").exists());
    env.ok(&["bot", "reset", "c2", "--to-image"]);
    assert!(root.join("usr/lib/0/f0").exists() && !root.join("own").exists());
    let err = env.fails(&["bot", "mount", "c2"]);
    assert!(err.contains("copy driver"), "{err}");
    let show = env.ok(&["bot", "show", "c3"]);
    assert!(
        show.contains(if shares {
            "shares extents"
        } else {
            "cannot share extents"
        }),
        "{show}"
    );
    let df = env.ok(&["df"]);
    assert_eq!(df.contains("nothing can be shared there"), !shares, "{df}");
    let dfj = env.json(&["df", "--json"]);
    assert_eq!(dfj["fleet"]["bots"][0]["full_copy"], !shares);
    env.fsck_ok();
    // Bots are independent of the image root: with the image gone, gc
    // drops the root and the bots keep every file.
    env.ok(&["bot", "rm", "c1"]);
    assert!(!env.store.join("bots/c1").exists());
    env.ok(&["image", "rm", "base:1", "--force"]);
    let gc = env.json(&["gc", "--json"]);
    assert_eq!(gc["layers"]["roots"], if btrfs { 1 } else { 0 }, "{gc}");
    assert_eq!(
        std::fs::read_dir(&roots).map_or(0, |d| d.count()),
        0,
        "{kind}: roots left after gc"
    );
    let tree = json_hash(&env.json(&["bot", "show", "c3", "--json"]), "tree");
    assert_dir_is_tree(&env, &env.store.join("bots/c3/root"), tree);
    env.fsck_ok();
}

#[test]
fn copy_bots_share_extents_on_xfs() {
    require_root!();
    if have_tool("mkfs.xfs", "xfsprogs") {
        check_fs("xfs", true);
    }
}

#[test]
fn copy_bots_share_extents_on_btrfs() {
    require_root!();
    if have_tool("mkfs.btrfs", "btrfs-progs") {
        check_fs("btrfs", true);
    }
}

#[test]
fn copy_bots_are_full_copies_on_ext4() {
    require_root!();
    if have_tool("mkfs.ext4", "e2fsprogs") {
        check_fs("ext4", false);
    }
}
