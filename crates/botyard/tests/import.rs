//! Importing real directories and tarballs: every piece of metadata a root
//! filesystem has survives, the same bytes are stored once, and importing
//! again writes nothing.

mod common;
use common::*;

#[test]
fn directory_import_keeps_every_piece_of_metadata() {
    require_root!();
    if !have_tool("setfattr", "attr") {
        return;
    }
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    rich_tree(&src, true);
    let want = manifest_of_dir(&src);
    env.ok(&["image", "import", "rich:1", "--dir", src.to_str().unwrap()]);
    let got = manifest_of_tree(&env.store(), env.tree_of("rich:1"));
    assert_same(&want, &got);
    // The links are one group, the sparse file stays sparse in the store.
    assert_eq!(
        got[&b"usr/bin/ln2".to_vec()].links.as_ref().unwrap().len(),
        3
    );
    let t = manifest_of_tree(&env.store(), env.tree_of("rich:1"));
    let sparse = t[&b"var/sparse".to_vec()].content.unwrap();
    let md = std::fs::metadata(env.store().object_path(&sparse)).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert!(
        md.blocks() * 512 < 1 << 20,
        "the sparse object takes {} bytes on disk",
        md.blocks() * 512
    );
    env.fsck_ok();
}

#[test]
fn the_same_tree_from_a_directory_and_from_tarballs_has_one_hash() {
    require_root!();
    if !have_tool("setfattr", "attr") || !have_tool("zstd", "zstd") {
        return;
    }
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    rich_tree(&src, false);
    // tar cannot carry sockets.
    std::fs::remove_file(src.join("var/sock")).unwrap();
    let s = src.display();
    let d = env.dir.path().display();
    sh(&format!(
        "cd '{s}' && tar --xattrs --xattrs-include='*' --numeric-owner --format=pax -cf '{d}/t.tar' . \
         && gzip -k '{d}/t.tar' && zstd -q -k '{d}/t.tar'"
    ));
    env.ok(&[
        "image",
        "import",
        "rich:dir",
        "--dir",
        src.to_str().unwrap(),
    ]);
    for (tag, file) in [("plain", "t.tar"), ("gz", "t.tar.gz"), ("zst", "t.tar.zst")] {
        let v = env.json(&[
            "image",
            "import",
            &format!("rich:{tag}"),
            "--tar",
            env.path(file).to_str().unwrap(),
            "--json",
        ]);
        assert_eq!(
            v["written"]["new_objects"], 0,
            "a tarball of stored content wrote objects: {v}"
        );
        let store = env.store();
        assert_same(
            &manifest_of_tree(&store, env.tree_of("rich:dir")),
            &manifest_of_tree(&store, env.tree_of(&format!("rich:{tag}"))),
        );
        assert_eq!(
            env.tree_of(&format!("rich:{tag}")),
            env.tree_of("rich:dir"),
            "{file} differs from the directory"
        );
    }
    env.fsck_ok();
}

#[test]
fn same_bytes_are_stored_once_and_reimport_writes_nothing() {
    let env = Env::new();
    let a = env.path("a");
    let b = env.path("b");
    for (d, mtime) in [(&a, "2020-01-01"), (&b, "2022-02-02")] {
        std::fs::create_dir_all(d.join("x/y")).unwrap();
        for i in 0..50 {
            std::fs::write(
                d.join(format!("x/y/f{i}")),
                format!("content {i}").repeat(100),
            )
            .unwrap();
        }
        std::fs::write(d.join("big"), vec![7u8; 3 << 20]).unwrap();
        sh(&format!(
            "touch -d {mtime} '{}'/x/y/* '{}'/big",
            d.display(),
            d.display()
        ));
    }
    // Same bytes, other path, owner and mode in the second tree.
    std::fs::rename(b.join("x/y/f0"), b.join("moved")).unwrap();
    sh(&format!("chmod 600 '{}'/x/y/f1", b.display()));
    let first = env.json(&[
        "image",
        "import",
        "a:1",
        "--dir",
        a.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(first["written"]["new_objects"], 51);
    let second = env.json(&[
        "image",
        "import",
        "b:1",
        "--dir",
        b.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(second["written"]["new_objects"], 0, "{second}");
    assert_ne!(env.tree_of("a:1"), env.tree_of("b:1"));
    let again = env.json(&[
        "image",
        "import",
        "a:1",
        "--dir",
        a.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(again["unchanged"], true);
    assert_eq!(again["written"]["new_objects"], 0);
    assert_eq!(again["written"]["new_trees"], 0);
    let df = env.json(&["df", "--json"]);
    assert_eq!(df["objects"], 51);
    assert_eq!(
        df["logical_bytes"].as_u64().unwrap(),
        2 * first["stats"]["bytes"].as_u64().unwrap()
    );
    assert!(df["dedup_ratio"].as_f64().unwrap() > 1.8, "{df}");
    env.fsck_ok();
}

#[test]
fn a_changed_file_is_seen_even_with_the_stat_cache() {
    let env = Env::new();
    let a = env.path("a");
    std::fs::create_dir(&a).unwrap();
    std::fs::write(a.join("f"), b"one").unwrap();
    env.ok(&["image", "import", "a:1", "--dir", a.to_str().unwrap()]);
    std::fs::write(a.join("f"), b"two").unwrap();
    env.ok(&["image", "import", "a:2", "--dir", a.to_str().unwrap()]);
    let m = manifest_of_tree(&env.store(), env.tree_of("a:2"));
    assert_eq!(m[&b"f".to_vec()].content, Some(store::Hash::of(b"two")));
}

#[test]
fn tar_layers_and_ownership_come_from_headers_not_from_the_importer() {
    let env = Env::new();
    let mut t = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Char);
    h.set_mode(0o666);
    h.set_device_major(1).unwrap();
    h.set_device_minor(5).unwrap();
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(0);
    h.set_cksum();
    t.append_data(&mut h, "dev/zero", std::io::empty()).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o640);
    h.set_uid(4242);
    h.set_gid(77);
    h.set_size(3);
    h.set_cksum();
    t.append_data(&mut h, "home/u/f", &b"abc"[..]).unwrap();
    let data = t.into_inner().unwrap();
    std::fs::write(env.path("t.tar"), data).unwrap();
    // Device nodes are only recorded, so this works without root.
    env.ok(&[
        "image",
        "import",
        "t:1",
        "--tar",
        env.path("t.tar").to_str().unwrap(),
    ]);
    let m = manifest_of_tree(&env.store(), env.tree_of("t:1"));
    assert_eq!(m[&b"dev/zero".to_vec()].dev, Some((1, 5)));
    let f = &m[&b"home/u/f".to_vec()];
    assert_eq!((f.uid, f.gid, f.mode), (4242, 77, 0o640));
}

#[test]
fn device_nodes_import_as_a_normal_user() {
    require_root!();
    if !have_tool("setpriv", "util-linux") {
        return;
    }
    let env = Env::new();
    let mut raw = RawTar::new();
    raw.entry(b"dev/null", tar::EntryType::Char, b"", None);
    std::fs::write(env.path("d.tar"), raw.finish()).unwrap();
    sh(&format!(
        "chown -R 65534:65534 '{}'",
        env.dir.path().display()
    ));
    let out = env
        .cmd()
        .args([
            "image",
            "import",
            "d:1",
            "--tar",
            env.path("d.tar").to_str().unwrap(),
        ])
        .env("HOME", env.dir.path())
        .uid_gid_drop();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = manifest_of_tree(&env.store(), env.tree_of("d:1"));
    assert_eq!(m[&b"dev/null".to_vec()].kind, "chardev");
}

trait DropPrivileges {
    fn uid_gid_drop(&mut self) -> std::process::Output;
}

impl DropPrivileges for std::process::Command {
    fn uid_gid_drop(&mut self) -> std::process::Output {
        use std::os::unix::process::CommandExt;
        self.uid(65534).gid(65534).output().unwrap()
    }
}
