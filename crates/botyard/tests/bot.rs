//! Bots on real overlay mounts: everything a person, apt or pip does in a
//! shell behaves as on a plain filesystem, survives commit, unmount and
//! mount, and identical changes across bots are stored once.

mod common;
use common::*;
use std::path::{Path, PathBuf};

struct Mounted<'a> {
    env: &'a Env,
    id: String,
}

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let _ = self.env.run(&["bot", "unmount", &self.id]);
    }
}

fn root_of(env: &Env, id: &str) -> PathBuf {
    env.store.join("bots").join(id).join("root")
}

fn mount<'a>(env: &'a Env, id: &str) -> Mounted<'a> {
    mount_with(env, id, &[])
}

fn mount_with<'a>(env: &'a Env, id: &str, flags: &[&str]) -> Mounted<'a> {
    let mut args = vec!["bot", "mount", id];
    args.extend_from_slice(flags);
    env.ok(&args);
    Mounted {
        env,
        id: id.to_string(),
    }
}

/// Imports `base:1`: one file, `/etc/base`.
fn small_image(env: &Env) {
    let src = env.path("src");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::write(src.join("etc/base"), b"base").unwrap();
    env.ok(&["image", "import", "base:1", "--dir", src.to_str().unwrap()]);
}

fn rich_image(env: &Env) {
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    rich_tree(&src, true);
    env.ok(&["image", "import", "rich:1", "--dir", src.to_str().unwrap()]);
}

/// What a person and a package manager do in a shell, on every kind of entry.
fn churn(root: &Path) {
    sh(&format!(
        r#"set -e
        cd '{r}'
        printf 'new\n' > etc/created
        printf 'over\n' > etc/passwd
        printf 'more\n' >> usr/lib/one
        : > usr/bin/hello.trunc; truncate -s 3 usr/lib/two
        rm etc/empty
        mv usr/lib/deep usr/lib/deeper
        mv usr/bin/abs usr/bin/abs2
        mkdir -p opt/x/y && printf z > opt/x/y/z
        rm -r var/empty && printf 'now a file\n' > var/empty
        mv etc/ln3 etc/ln3-moved && ln usr/bin/ln1 usr/bin/ln4
        ln -s /nowhere dangling && ln -s ../../etc usr/lib/updir
        chmod 0751 usr/bin; chown 4242:4343 etc/passwd; chmod 2755 opt/x
        touch -d '2019-03-04 05:06:07.000000123' etc/created
        setfattr -n user.added -v yes etc/created
        setfattr -n security.capability -v 0sAQAAAgAgAAAAAAAAAAAAAAAAAAA= usr/lib/one
        setfattr -x user.note etc/passwd
        mkfifo var/fifo2; mknod var/zero c 1 5
        python3 -c "import socket; s=socket.socket(socket.AF_UNIX); s.bind('var/sock2')"
        truncate -s 4200M var/huge && printf end | dd of=var/huge bs=1 seek=$((4200*1024*1024-3)) conv=notrunc 2>/dev/null
        mkdir -p deep/$(printf 'd/%.0s' $(seq 1 60))
        printf deep > deep/$(printf 'd/%.0s' $(seq 1 60))/leaf
        "#,
        r = root.display()
    ));
    std::fs::write(
        root.join(std::ffi::OsStr::new(&"é".repeat(100))),
        b"long utf8",
    )
    .unwrap();
    use std::os::unix::ffi::OsStrExt;
    std::fs::write(
        root.join(std::ffi::OsStr::from_bytes(b"etc/\xff\xfe")),
        b"not utf8",
    )
    .unwrap();
    // A directory replaced by a file and back.
    std::fs::remove_dir_all(root.join("opt/x")).unwrap();
    std::fs::write(root.join("opt/x"), b"file now").unwrap();
    std::fs::remove_file(root.join("opt/x")).unwrap();
    std::fs::create_dir(root.join("opt/x")).unwrap();
    std::fs::write(root.join("opt/x/again"), b"dir again").unwrap();
}

#[test]
fn a_bot_behaves_like_a_plain_filesystem_across_commit_and_remount() {
    require_root!();
    if !have_tool("setfattr", "attr") {
        return;
    }
    let env = Env::new();
    rich_image(&env);
    env.ok(&["bot", "create", "b1", "--image", "rich:1"]);
    let root = root_of(&env, "b1");
    let before = {
        let _m = mount(&env, "b1");
        // The fresh bot is the image.
        assert_same(
            &manifest_of_tree(&env.store(), env.tree_of("rich:1")),
            &manifest_of_dir(&root),
        );
        churn(&root);
        manifest_of_dir(&root)
    };
    // Uncommitted changes persist across unmount and mount.
    {
        let _m = mount(&env, "b1");
        assert_same(&before, &manifest_of_dir(&root));
    }
    let v = env.json(&["bot", "commit", "b1", "--json"]);
    assert!(v[0]["commit"]["changed"].as_u64().unwrap() > 10, "{v}");
    let show = env.json(&["bot", "show", "b1", "--json"]);
    assert_eq!(
        show["uncommitted_bytes"], 0,
        "the upper was not emptied: {show}"
    );
    let tree: store::Hash = show["tree"].as_str().unwrap().parse().unwrap();
    assert_same(&before, &manifest_of_tree(&env.store(), tree));
    {
        let _m = mount(&env, "b1");
        assert_same(&before, &manifest_of_dir(&root));
        // The huge file stayed sparse in the store.
        let m = manifest_of_tree(&env.store(), tree);
        let huge = m[&b"var/huge".to_vec()].content.unwrap();
        use std::os::unix::fs::MetadataExt;
        assert!(
            std::fs::metadata(env.store().object_path(&huge))
                .unwrap()
                .blocks()
                < 1024
        );
        // A second round of changes on top of a committed tree.
        std::fs::write(root.join("etc/created"), b"second").unwrap();
        std::fs::remove_file(root.join("usr/lib/one")).unwrap();
    }
    let after = {
        let _m = mount(&env, "b1");
        manifest_of_dir(&root)
    };
    env.ok(&["bot", "commit", "b1"]);
    let _m = mount(&env, "b1");
    assert_same(&after, &manifest_of_dir(&root));
    drop(_m);
    env.fsck_ok();
    env.ok(&["gc"]);
    env.fsck_ok();
}

#[test]
fn identical_drift_across_bots_is_stored_once() {
    require_root!();
    let env = Env::new();
    small_image(&env);
    let t0 = std::time::Instant::now();
    env.ok(&["bot", "create", "a", "--image", "base:1"]);
    let layers = std::fs::read_dir(env.store.join("layers")).unwrap().count();
    for id in ["b", "c"] {
        env.ok(&["bot", "create", id, "--image", "base:1"]);
    }
    assert_eq!(
        std::fs::read_dir(env.store.join("layers")).unwrap().count(),
        layers,
        "bots rebuilt the image's layer"
    );
    eprintln!("3 bots created in {:?}", t0.elapsed());
    let package: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    for id in ["a", "b", "c"] {
        let _m = mount(&env, id);
        let root = root_of(&env, id);
        std::fs::create_dir_all(root.join("usr/lib/pkg")).unwrap();
        std::fs::write(root.join("usr/lib/pkg/lib.so"), &package).unwrap();
        std::fs::write(root.join("own"), id.as_bytes()).unwrap();
    }
    let first = env.json(&["bot", "commit", "a", "--json"]);
    assert_eq!(first[0]["commit"]["written"]["new_objects"], 2);
    for id in ["b", "c"] {
        let v = env.json(&["bot", "commit", id, "--json"]);
        assert_eq!(
            v[0]["commit"]["written"]["new_objects"], 1,
            "{id} stored the shared package again: {v}"
        );
    }
    let df = env.json(&["df", "--json"]);
    for b in df["fleet"]["bots"].as_array().unwrap() {
        assert_eq!(
            b["unique_bytes"], 1,
            "each bot holds only its own one-byte file: {b}"
        );
        assert!(b["shared_bytes"].as_u64().unwrap() >= 3_000_000, "{b}");
        assert!(b["logical_bytes"].as_u64().unwrap() >= 3_000_005, "{b}");
    }
    // Objects never share an inode with a bot's files: read-only, the
    // store's, one name each.
    for shard in std::fs::read_dir(env.store.join("objects")).unwrap() {
        for o in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            use std::os::unix::fs::MetadataExt;
            let m = o.unwrap().metadata().unwrap();
            assert_eq!((m.mode() & 0o7777, m.uid(), m.nlink()), (0o444, 0, 1));
        }
    }
    let ls = env.json(&["bot", "ls", "--json"]);
    assert_eq!(ls.as_array().unwrap().len(), 3);
    assert_eq!(ls[0]["unique_bytes"], 1, "{ls}");
    env.fsck_ok();
}

#[test]
fn bot_ids_and_states_are_checked() {
    require_root!();
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"x").unwrap();
    env.ok(&["image", "import", "i:1", "--dir", src.to_str().unwrap()]);
    let long = "x".repeat(64);
    for (id, want) in [
        ("a/b", "separator"),
        (".", "traversal"),
        ("..", "traversal"),
        ("   ", "empty"),
        ("a b", "whitespace"),
        (long.as_str(), "limit is 63"),
    ] {
        let err = env.fails(&["bot", "create", id, "--image", "i:1"]);
        assert!(err.contains(want), "{id:?}: {err}");
    }
    let err = env.fails(&["bot", "create", "ok", "--image", "nope:1"]);
    assert!(err.contains("no image nope:1"), "{err}");
    assert!(!env.store.join("refs/bots/ok").exists());
    env.ok(&["bot", "create", "ok", "--image", "i:1"]);
    let err = env.fails(&["bot", "create", "ok", "--image", "i:1"]);
    assert!(err.contains("already exists"), "{err}");
    let m = mount(&env, "ok");
    let err = env.fails(&["bot", "rm", "ok"]);
    assert!(err.contains("--force"), "{err}");
    let err = env.fails(&["bot", "commit", "ok"]);
    assert!(err.contains("unmount it first"), "{err}");
    let err = env.fails(&["bot", "mount", "ok"]);
    assert!(err.contains("already mounted"), "{err}");
    // A reboot: the mount is gone behind botyard's back.
    sh(&format!("umount '{}'", root_of(&env, "ok").display()));
    std::mem::forget(m);
    env.ok(&["bot", "mount", "--all"]);
    assert!(root_of(&env, "ok").join("f").exists());
    // A missing layer is rebuilt from the store at the next mount.
    env.ok(&["bot", "unmount", "ok"]);
    std::fs::remove_dir_all(env.store.join("layers")).unwrap();
    env.ok(&["bot", "mount", "ok"]);
    assert_eq!(std::fs::read(root_of(&env, "ok").join("f")).unwrap(), b"x");
    // So is a damaged one: its root inode overwritten, its size unchanged.
    env.ok(&["bot", "unmount", "ok"]);
    for e in std::fs::read_dir(env.store.join("layers")).unwrap() {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(e.unwrap().path())
            .unwrap();
        f.write_all_at(&[0xff; 64], 4096).unwrap();
    }
    let v = env.json(&["fsck", "--json"]);
    assert_eq!(
        v["ok"], true,
        "a damaged layer is a cache, not a store problem: {v}"
    );
    assert_eq!(v["layers"]["damaged"].as_array().unwrap().len(), 1, "{v}");
    env.ok(&["bot", "mount", "ok"]);
    assert_eq!(std::fs::read(root_of(&env, "ok").join("f")).unwrap(), b"x");
    env.ok(&["bot", "rm", "ok", "--force"]);
    assert!(!env.store.join("bots/ok").exists());
    let err = env.fails(&["bot", "show", "ok"]);
    assert!(err.contains("no bot ok"), "{err}");
    env.fsck_ok();
}

#[test]
fn diff_shows_committed_and_uncommitted_changes_and_reset_discards_them() {
    require_root!();
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("etc/conf.d")).unwrap();
    std::fs::write(src.join("etc/keep"), b"keep").unwrap();
    std::fs::write(src.join("etc/edit"), b"v1").unwrap();
    std::fs::write(src.join("etc/gone"), b"x").unwrap();
    std::fs::write(src.join("etc/conf.d/a"), b"a").unwrap();
    std::fs::write(src.join("etc/mode"), b"m").unwrap();
    env.ok(&["image", "import", "base:1", "--dir", src.to_str().unwrap()]);
    env.ok(&["bot", "create", "d", "--image", "base:1"]);
    let root = root_of(&env, "d");
    {
        let _m = mount(&env, "d");
        std::fs::write(root.join("etc/edit"), b"v2").unwrap();
        std::fs::remove_file(root.join("etc/gone")).unwrap();
    }
    env.ok(&["bot", "commit", "d"]);
    {
        let _m = mount(&env, "d");
        std::fs::write(root.join("etc/new"), b"n").unwrap();
        sh(&format!("chmod 600 '{}/etc/mode'", root.display()));
        std::fs::remove_dir_all(root.join("etc/conf.d")).unwrap();
        std::fs::write(root.join("etc/conf.d"), b"now a file").unwrap();
        // Diff works on a mounted bot too.
        let live = env.ok(&["bot", "diff", "d", "etc/new"]);
        assert_eq!(live.trim(), "A /etc/new");
    }
    let out = env.ok(&["bot", "diff", "d"]);
    let lines: Vec<&str> = out.lines().collect();
    for want in [
        "M /etc/edit",
        "D /etc/gone",
        "A /etc/new",
        "m /etc/mode",
        "T /etc/conf.d (dir -> file)",
        "D /etc/conf.d/a",
    ] {
        assert!(lines.contains(&want), "missing {want:?} in:\n{out}");
    }
    assert!(!out.contains("/etc/keep"), "{out}");
    let stat = env.json(&["bot", "diff", "d", "--stat", "--json"]);
    assert_eq!(stat["added"]["paths"], 1, "{stat}");
    // Reset one path: only that uncommitted change goes.
    env.ok(&["bot", "reset", "d", "/etc/new"]);
    let out = env.ok(&["bot", "diff", "d"]);
    assert!(
        !out.contains("/etc/new") && out.contains("m /etc/mode"),
        "{out}"
    );
    // Reset all uncommitted: the committed edit stays.
    env.ok(&["bot", "reset", "d"]);
    let out = env.ok(&["bot", "diff", "d"]);
    assert!(
        out.contains("M /etc/edit") && !out.contains("/etc/mode") && !out.contains("conf.d"),
        "{out}"
    );
    {
        let _m = mount(&env, "d");
        assert_eq!(std::fs::read(root.join("etc/conf.d/a")).unwrap(), b"a");
        let err = env.fails(&["bot", "reset", "d"]);
        assert!(err.contains("unmount it first"), "{err}");
    }
    env.ok(&["bot", "reset", "d", "--to-image"]);
    assert_eq!(env.ok(&["bot", "diff", "d"]).trim(), "");
    // The committed diff layer is no longer used: gc removes it and keeps
    // the image's.
    let layers = || std::fs::read_dir(env.store.join("layers")).unwrap().count();
    assert_eq!(layers(), 2);
    let dry = env.json(&["gc", "--dry-run", "--json"]);
    assert_eq!(dry["layers"]["layers"], 1, "{dry}");
    assert_eq!(layers(), 2);
    env.ok(&["gc"]);
    assert_eq!(layers(), 1);
    let _m = mount(&env, "d");
    assert_eq!(std::fs::read(root.join("etc/edit")).unwrap(), b"v1");
    drop(_m);
    env.fsck_ok();
}

#[test]
fn gc_drops_the_diff_layers_of_bots_at_rest_and_a_mount_builds_them_again() {
    require_root!();
    let env = Env::new();
    small_image(&env);
    for id in ["idle", "busy"] {
        env.ok(&["bot", "create", id, "--image", "base:1"]);
        {
            let _m = mount(&env, id);
            std::fs::write(root_of(&env, id).join("etc/own"), id).unwrap();
        }
        env.ok(&["bot", "commit", id]);
    }
    let diff_layers = || {
        std::fs::read_dir(env.store.join("layers"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains("-over-")
            })
            .count()
    };
    assert_eq!(diff_layers(), 2, "a commit builds the bot's next layer");
    let busy = mount(&env, "busy");
    let gc = env.json(&["gc", "--json"]);
    assert_eq!(gc["layers"]["layers"], 1, "{gc}");
    assert_eq!(diff_layers(), 1, "the mounted bot's layer stays");
    assert_eq!(
        std::fs::read(root_of(&env, "busy").join("etc/own")).unwrap(),
        b"busy"
    );
    drop(busy);
    {
        let _m = mount(&env, "idle");
        assert_eq!(
            std::fs::read(root_of(&env, "idle").join("etc/own")).unwrap(),
            b"idle"
        );
    }
    assert_eq!(diff_layers(), 2, "the mount built it again");
    env.fsck_ok();
}

/// The mounts of the node's table below the store: (mount point, type).
fn mounts_in(env: &Env) -> Vec<(String, String)> {
    let store = env.store.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            f[4].starts_with(&store)
                .then(|| (f[4].to_string(), f[sep + 1].to_string()))
        })
        .collect()
}

/// The bots of an image stack one mount of its layer, kept while one of
/// them is mounted (so the layer's metadata is cached once for all); the
/// last unmount lets it go, and gc one a killed command left.
#[test]
fn bots_of_an_image_share_one_mount_of_its_layer() {
    require_root!();
    let env = Env::new();
    small_image(&env);
    for id in ["a", "b", "c"] {
        env.ok(&["bot", "create", id, "--image", "base:1"]);
    }
    let erofs = |env: &Env| {
        mounts_in(env)
            .into_iter()
            .filter(|(_, t)| t == "erofs")
            .map(|(m, _)| m)
            .collect::<Vec<_>>()
    };
    let a = mount(&env, "a");
    let b = mount(&env, "b");
    let shared = erofs(&env);
    assert_eq!(shared.len(), 1, "one layer mount for two bots: {shared:?}");
    assert!(shared[0].starts_with(&*env.store.join("mounts").to_string_lossy()));
    assert_eq!(mounts_in(&env).len(), 3, "{:?}", mounts_in(&env));
    assert_eq!(
        std::fs::read(root_of(&env, "b").join("etc/base")).unwrap(),
        b"base"
    );
    drop(a);
    assert_eq!(erofs(&env), shared, "b still stacks it");
    drop(b);
    assert!(mounts_in(&env).is_empty(), "{:?}", mounts_in(&env));
    // The next mount makes it again, at the same place.
    {
        let _c = mount(&env, "c");
        assert_eq!(erofs(&env), shared, "mounted again at the same place");
    }
    assert!(mounts_in(&env).is_empty());
    // A bot recorded on it that is not mounted (its command was killed
    // between the two) keeps it until gc.
    let c = mount(&env, "c");
    let users = std::path::PathBuf::from(format!("{}.users", shared[0]));
    std::fs::write(users.join("a"), b"").unwrap();
    drop(c);
    assert_eq!(erofs(&env), shared, "a is still recorded");
    let gc = env.json(&["gc", "--dry-run", "--json"]);
    assert_eq!(gc["layers"]["shared_mounts"], 1, "{gc}");
    assert_eq!(erofs(&env), shared, "a dry run changes nothing");
    let gc = env.json(&["gc", "--json"]);
    assert_eq!(gc["layers"]["shared_mounts"], 1, "{gc}");
    assert!(mounts_in(&env).is_empty(), "{:?}", mounts_in(&env));
    // Unmounted by hand: gc lets the layer's mount go too.
    let _c = mount(&env, "c");
    sh(&format!("umount '{}'", root_of(&env, "c").display()));
    assert_eq!(erofs(&env), shared);
    let gc = env.json(&["gc", "--json"]);
    assert_eq!(gc["layers"]["shared_mounts"], 1, "{gc}");
    assert!(mounts_in(&env).is_empty());
    // Something else mounted where the layer's mount goes: the bot mounts
    // its layer for itself, and its unmount leaves that mount alone.
    sh(&format!("mount -t tmpfs botyard-test '{}'", shared[0]));
    {
        let _c = mount(&env, "c");
        assert_eq!(
            std::fs::read(root_of(&env, "c").join("etc/base")).unwrap(),
            b"base"
        );
        assert!(
            erofs(&env).is_empty(),
            "a private layer mount, not in the table"
        );
    }
    assert_eq!(
        mounts_in(&env),
        vec![(shared[0].clone(), "tmpfs".to_string())]
    );
    sh(&format!("umount '{}'", shared[0]));
    env.fsck_ok();
}

#[test]
fn dpkg_installs_real_debs_in_a_debian_bot_and_the_database_survives_commit() {
    require_root!();
    if !have_tool("debootstrap", "debootstrap") || !have_tool("dpkg-deb", "dpkg") {
        return;
    }
    let rootfs = sh(&format!(
        "bash '{}/../../scripts/debian-rootfs.sh'",
        env!("CARGO_MANIFEST_DIR")
    ));
    let env = Env::new();
    env.ok(&["image", "import", "debian:bookworm", "--dir", rootfs.trim()]);
    let lib = build_deb(env.dir.path(), "botyard-test-lib", None);
    let app = build_deb(env.dir.path(), "botyard-test-app", Some("botyard-test-lib"));
    // deb1 as a person would, in a chroot (which needs the image's own
    // /dev: `--dev`); deb2 as an agent would, as root in its sandbox.
    let chroot = |id: &str, cmd: &str| {
        sh(&format!(
            "chroot '{}' /bin/sh -c '{cmd}'",
            root_of(&env, id).display()
        ))
    };
    let in_sandbox =
        |id: &str, cmd: &str| env.ok(&["run", id, "--user", "0:0", "--", "/bin/sh", "-c", cmd]);
    for id in ["deb1", "deb2"] {
        env.ok(&["bot", "create", id, "--image", "debian:bookworm"]);
        let _m = if id == "deb1" {
            mount_with(&env, id, &["--dev"])
        } else {
            mount(&env, id)
        };
        let root = root_of(&env, id);
        std::fs::copy(&lib, root.join("tmp/lib.deb")).unwrap();
        std::fs::copy(&app, root.join("tmp/app.deb")).unwrap();
        let run = |cmd: &str| {
            if id == "deb1" {
                chroot(id, cmd)
            } else {
                in_sandbox(id, cmd)
            }
        };
        run("dpkg -i /tmp/lib.deb /tmp/app.deb >/dev/null && rm /tmp/*.deb");
        assert_eq!(run("dpkg --audit"), "");
        assert!(run("dpkg -s botyard-test-app").contains("Status: install ok installed"));
    }
    let first = env.json(&["bot", "commit", "deb1", "--json"]);
    let second = env.json(&["bot", "commit", "deb2", "--json"]);
    let (n1, n2) = (
        first[0]["commit"]["written"]["new_object_bytes"]
            .as_u64()
            .unwrap(),
        second[0]["commit"]["written"]["new_object_bytes"]
            .as_u64()
            .unwrap(),
    );
    assert!(
        n1 >= 400_000,
        "the first bot's packages were not stored: {first}"
    );
    assert!(
        n2 < n1 / 4,
        "the second bot stored the same packages again ({n2} vs {n1} bytes)"
    );
    let _m = mount_with(&env, "deb1", &["--dev"]);
    assert_eq!(chroot("deb1", "dpkg --audit"), "");
    assert_eq!(
        chroot("deb1", "cat /var/lib/botyard-test-app/stamp").trim(),
        "installed"
    );
    assert!(chroot("deb1", "dpkg -L botyard-test-lib").contains("/usr/share/botyard-test-lib/data"));
    // Removing a package works on the committed state too.
    chroot("deb1", "dpkg -r botyard-test-app >/dev/null");
    assert_eq!(chroot("deb1", "dpkg --audit"), "");
    drop(_m);
    env.ok(&["bot", "commit", "deb1"]);
    env.fsck_ok();
}

#[test]
fn what_a_bot_writes_is_data_never_instructions() {
    require_root!();
    if !have_tool("setfattr", "attr") {
        return;
    }
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::write(src.join("etc/shadow"), b"secret").unwrap();
    std::fs::write(src.join("etc/keep"), b"keep").unwrap();
    env.ok(&["image", "import", "base:1", "--dir", src.to_str().unwrap()]);
    env.ok(&["bot", "create", "h", "--image", "base:1"]);
    let root = root_of(&env, "h");
    let before = {
        let _m = mount(&env, "h");
        sh(&format!(
            r#"set -e
            cd '{r}'
            ln -s ../../../../../../../../etc/shadow escape
            ln -s /etc/shadow abs
            : > etc/.wh.keep
            mkdir -p d && : > d/.wh..wh..opq && : > d/f
            printf x > forged
            setfattr -n trusted.overlay.redirect -v /etc/shadow forged
            setfattr -n trusted.overlay.metacopy -v '' forged
            setfattr -n trusted.overlay.whiteout -v y etc/keep
            setfattr -n trusted.overlay.opaque -v y d
            "#,
            r = root.display()
        ));
        manifest_of_dir(&root)
    };
    env.ok(&["bot", "commit", "h"]);
    let _m = mount(&env, "h");
    assert_same(&before, &manifest_of_dir(&root));
    assert_eq!(std::fs::read(root.join("etc/keep")).unwrap(), b"keep");
    assert_eq!(std::fs::read(root.join("forged")).unwrap(), b"x");
    drop(_m);
    // The host's /etc/shadow was never read: the symlinks are stored as links.
    let m = manifest_of_tree(
        &env.store(),
        env.json(&["bot", "show", "h", "--json"])["tree"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
    );
    assert_eq!(m[&b"escape".to_vec()].kind, "symlink");
    env.fsck_ok();
}

#[test]
fn a_full_disk_during_commit_loses_nothing() {
    require_root!();
    let env = Env::new();
    let small = env.path("small");
    std::fs::create_dir(&small).unwrap();
    sh(&format!(
        "mount -t tmpfs -o size=24m tmpfs '{}'",
        small.display()
    ));
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-R")
                .arg(&self.0)
                .status();
        }
    }
    let _guard = Unmount(small.clone());
    let e = Env {
        dir: tempfile::tempdir().unwrap(),
        store: small.join("store"),
    };
    e.ok(&["init"]);
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"base").unwrap();
    e.ok(&["image", "import", "b:1", "--dir", src.to_str().unwrap()]);
    e.ok(&["bot", "create", "full", "--image", "b:1"]);
    let root = root_of(&e, "full");
    let want = {
        let _m = mount(&e, "full");
        // 14 MiB of new data: it fits in the upper, not twice on the disk.
        std::fs::write(root.join("big"), vec![7u8; 14 << 20]).unwrap();
        std::fs::write(root.join("small"), b"small").unwrap();
        manifest_of_dir(&root)
    };
    let err = e.fails(&["bot", "commit", "full"]);
    assert!(
        err.contains("No space left") && err.contains("botyard gc"),
        "{err}"
    );
    e.fsck_ok();
    {
        let _m = mount(&e, "full");
        assert_same(&want, &manifest_of_dir(&root));
    }
    // With room again the same commit goes through.
    sh(&format!("mount -o remount,size=64m '{}'", small.display()));
    e.ok(&["bot", "commit", "full"]);
    let _m = mount(&e, "full");
    assert_same(&want, &manifest_of_dir(&root));
    drop(_m);
    e.fsck_ok();
}
