//! A bot's history on real overlay mounts: every commit recorded with its
//! parent, time and message; `bot log`, `bot diff --from/--to`, `bot reset
//! --to` (itself undoable), and gc's retention, after which fsck passes.

mod common;
use common::*;
use std::path::PathBuf;

fn root(env: &Env, id: &str) -> PathBuf {
    env.store.join("bots").join(id).join("root")
}

/// Mounts bot `id`, runs `f` on its root, unmounts, commits with `msg`;
/// returns the commit's id.
fn change(env: &Env, id: &str, msg: &str, f: impl FnOnce(&std::path::Path)) -> String {
    env.ok(&["bot", "mount", id]);
    f(&root(env, id));
    env.ok(&["bot", "unmount", id]);
    let out = env.json(&["bot", "commit", id, "-m", msg, "--json"]);
    out[0]["commit"]["commit"]
        .as_str()
        .unwrap_or_else(|| panic!("{out}"))
        .to_string()
}

fn log(env: &Env, id: &str) -> Vec<serde_json::Value> {
    env.json(&["bot", "log", id, "--json"])
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn commits_are_recorded_diffed_and_undone() {
    require_root!();
    let env = busybox_env(&["sh"]);
    let created = log(&env, "b1");
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["message"], "created from bb:1");
    assert!(created[0]["parent"].is_null());

    let c1 = change(&env, "b1", "first", |r| {
        std::fs::write(r.join("root/a"), "one").unwrap();
    });
    let c2 = change(&env, "b1", "second\nline", |r| {
        std::fs::write(r.join("root/a"), "two").unwrap();
        std::fs::write(r.join("root/b"), "bee").unwrap();
    });
    let l = log(&env, "b1");
    assert_eq!(
        l.iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec![c2.as_str(), c1.as_str(), created[0]["id"].as_str().unwrap()]
    );
    assert_eq!(l[0]["parent"], c1.as_str());
    assert_eq!(l[0]["message"], "second\nline");
    // Human output quotes what a person wrote and says what changed.
    let text = env.ok(&["bot", "log", "b1", "--stat"]);
    assert!(text.contains("\"second\\nline\""), "{text}");
    assert!(
        text.contains("1 added") && text.contains("1 modified"),
        "{text}"
    );

    // Between two commits, and from a commit to now.
    let d = env.json(&["bot", "diff", "b1", "--from", &c1, "--to", &c2, "--json"]);
    let paths: Vec<(String, String)> = d
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["path"].as_str().unwrap().to_string(),
                x["change"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        paths.contains(&("/root/a".into(), "modified".into())),
        "{paths:?}"
    );
    assert!(
        paths.contains(&("/root/b".into(), "added".into())),
        "{paths:?}"
    );
    // Besides those, only /root's own mtime changed.
    assert!(
        paths
            .iter()
            .all(|(p, c)| p.starts_with("/root/") || (p == "/root" && c == "metadata")),
        "{paths:?}"
    );
    let d = env.json(&["bot", "diff", "b1", "--from", &c2, "--json"]);
    assert_eq!(d.as_array().unwrap().len(), 0, "{d}");

    // Back to the first commit, by a prefix; the reset is recorded.
    let out = env.json(&["bot", "reset", "b1", "--to", &c1[..6], "--json"]);
    assert_eq!(out["to_commit"], c1.as_str());
    env.ok(&["bot", "mount", "b1"]);
    assert_eq!(
        std::fs::read_to_string(root(&env, "b1").join("root/a")).unwrap(),
        "one"
    );
    assert!(!root(&env, "b1").join("root/b").exists());
    env.ok(&["bot", "unmount", "b1"]);
    let l = log(&env, "b1");
    assert_eq!(l.len(), 4);
    assert_eq!(l[0]["message"], format!("reset to {c1}"));
    // ... and undone: the later commit is still in the log.
    env.ok(&["bot", "reset", "b1", "--to", &c2]);
    env.ok(&["bot", "mount", "b1"]);
    assert_eq!(
        std::fs::read_to_string(root(&env, "b1").join("root/b")).unwrap(),
        "bee"
    );
    env.ok(&["bot", "unmount", "b1"]);

    // Bad commits: unknown, not an id, another bot's.
    let e = env.fails(&["bot", "reset", "b1", "--to", "0123456789abcdef"]);
    assert!(e.contains("no commit") && e.contains("bot log"), "{e}");
    let e = env.fails(&["bot", "diff", "b1", "--from", "../x"]);
    assert!(e.contains("not a commit id"), "{e}");
    env.ok(&["bot", "create", "b2", "--image", "bb:1"]);
    let other = log(&env, "b2")[0]["id"].as_str().unwrap().to_string();
    let e = env.fails(&["bot", "reset", "b1", "--to", &other]);
    assert!(e.contains("belongs to bot") && e.contains("b2"), "{e}");
    let e = env.fails(&["bot", "reset", "b1", "--to", &c1, "/root"]);
    assert!(e.contains("no paths"), "{e}");
    env.fsck_ok();
}

#[test]
fn gc_keeps_history_by_retention_and_drops_removed_bots_history() {
    require_root!();
    let env = busybox_env(&["sh"]);
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(change(&env, "b1", &format!("c{i}"), |r| {
            // Each commit's own bytes, so dropping it frees something.
            std::fs::write(r.join(format!("root/f{i}")), format!("{i}").repeat(5000)).unwrap();
            if i > 0 {
                std::fs::remove_file(r.join(format!("root/f{}", i - 1))).unwrap();
            }
        }));
    }
    // By default everything is kept.
    let g = env.json(&["gc", "--json"]);
    assert_eq!(g["history"]["dropped"], 0, "{g}");
    assert_eq!(log(&env, "b1").len(), 5);
    // Keep two: the rest goes, with the bytes only they held.
    let g = env.json(&["gc", "--keep-commits", "2", "--json"]);
    assert_eq!(g["history"]["dropped"], 3, "{g}");
    assert!(g["objects"].as_u64().unwrap() >= 2, "{g}");
    let l = log(&env, "b1");
    assert_eq!(
        l.iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec![ids[3].as_str(), ids[2].as_str()]
    );
    let text = env.ok(&["bot", "log", "b1"]);
    assert!(text.contains("dropped by gc"), "{text}");
    let e = env.fails(&["bot", "reset", "b1", "--to", &ids[0]]);
    assert!(e.contains("no commit"), "{e}");
    // A young history is kept by age.
    let g = env.json(&["gc", "--keep-commits", "1", "--keep-for", "1h", "--json"]);
    assert_eq!(g["history"]["dropped"], 0, "{g}");
    // A removed bot's history goes with the next gc.
    env.ok(&["bot", "create", "b2", "--image", "bb:1"]);
    env.ok(&["bot", "rm", "b2"]);
    let g = env.json(&["gc", "--json"]);
    assert_eq!(g["history"]["orphans"], 1, "{g}");
    env.fsck_ok();
    env.ok(&["bot", "reset", "b1", "--to", &ids[2]]);
    env.ok(&["bot", "mount", "b1"]);
    assert!(root(&env, "b1").join("root/f2").exists());
    env.ok(&["bot", "unmount", "b1"]);
}

#[test]
fn a_copy_bot_goes_back_to_a_commit_in_place() {
    require_root!();
    let env = busybox_env(&["sh"]);
    env.ok(&["bot", "create", "c1", "--image", "bb:1", "--driver", "copy"]);
    let first = log(&env, "c1")[0]["id"].as_str().unwrap().to_string();
    let dir = root(&env, "c1");
    std::fs::write(dir.join("root/note"), "kept").unwrap();
    let out = env.json(&["bot", "commit", "c1", "-m", "note", "--json"]);
    let second = out[0]["commit"]["commit"].as_str().unwrap().to_string();
    env.ok(&["bot", "reset", "c1", "--to", &first]);
    assert!(!dir.join("root/note").exists());
    env.ok(&["bot", "reset", "c1", "--to", &second]);
    assert_eq!(
        std::fs::read_to_string(dir.join("root/note")).unwrap(),
        "kept"
    );
    env.fsck_ok();
}

#[test]
fn forks_share_everything_and_bots_publish_images() {
    require_root!();
    let env = busybox_env(&["sh"]);
    let c1 = change(&env, "b1", "one", |r| {
        std::fs::write(r.join("root/big"), "x".repeat(1 << 20)).unwrap();
    });
    let _c2 = change(&env, "b1", "two", |r| {
        std::fs::write(r.join("root/later"), "2").unwrap();
    });
    let before = env.json(&["df", "--json"]);
    // A fork of the newest commit, and one of an earlier commit.
    env.ok(&["bot", "fork", "f1", "--from", "b1"]);
    env.ok(&["bot", "fork", "f2", "--from", &format!("b1@{}", &c1[..8])]);
    let after = env.json(&["df", "--json"]);
    // Nothing of the data was copied: the objects did not grow.
    assert!(
        before["object_bytes"].as_u64().unwrap() >= 1 << 20,
        "{before}"
    );
    assert_eq!(
        before["object_bytes"], after["object_bytes"],
        "{before}\n{after}"
    );
    assert_eq!(before["objects"], after["objects"], "{before}\n{after}");
    env.ok(&["bot", "mount", "f1"]);
    assert!(root(&env, "f1").join("root/later").exists());
    assert_eq!(
        std::fs::metadata(root(&env, "f1").join("root/big"))
            .unwrap()
            .len(),
        1 << 20
    );
    std::fs::write(root(&env, "f1").join("root/mine"), "f1 only").unwrap();
    env.ok(&["bot", "unmount", "f1"]);
    env.ok(&["bot", "commit", "f1"]);
    env.ok(&["bot", "mount", "f2"]);
    assert!(root(&env, "f2").join("root/big").exists());
    assert!(!root(&env, "f2").join("root/later").exists());
    env.ok(&["bot", "unmount", "f2"]);
    // The fork's history starts at the fork; the source's is untouched.
    let l = log(&env, "f2");
    assert_eq!(l.len(), 1);
    assert_eq!(l[0]["message"], format!("forked from b1 at {c1}"));
    assert_eq!(log(&env, "b1").len(), 3);
    // A copy fork of an overlay bot.
    env.ok(&["bot", "fork", "f3", "--from", "b1", "--driver", "copy"]);
    assert!(root(&env, "f3").join("root/later").exists());
    // A golden image from a bot: new bots start with its files.
    env.ok(&["bot", "commit", "f1", "--image", "golden:1"]);
    env.ok(&["bot", "create", "g1", "--image", "golden:1"]);
    env.ok(&["bot", "mount", "g1"]);
    assert_eq!(
        std::fs::read_to_string(root(&env, "g1").join("root/mine")).unwrap(),
        "f1 only"
    );
    env.ok(&["bot", "unmount", "g1"]);
    // Bad sources.
    let e = env.fails(&["bot", "fork", "f4", "--from", "nope"]);
    assert!(e.contains("no bot nope"), "{e}");
    let e = env.fails(&["bot", "fork", "f4", "--from", "b1@beefbeef"]);
    assert!(e.contains("no commit"), "{e}");
    let e = env.fails(&["bot", "fork", "f1", "--from", "b1"]);
    assert!(e.contains("already exists"), "{e}");
    env.fsck_ok();
}

/// An overlay bot stays mounted while the files it wrote come to share
/// the store's extents; a writer rewriting one meanwhile keeps its bytes.
fn live_commit_on(kind: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let lfs = LoopFs::new(tmp.path(), kind, "300M");
    let env = Env::with_store(lfs.mnt.join("store"));
    let src = env.path("src");
    std::fs::create_dir_all(src.join("root")).unwrap();
    std::fs::create_dir_all(src.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", src.join("bin/busybox")).unwrap();
    env.ok(&["image", "import", "bb:1", "--dir", src.to_str().unwrap()]);
    let data: Vec<u8> = (0..24u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    // The store holds the content once (bot a committed it).
    env.ok(&["bot", "create", "a", "--image", "bb:1"]);
    env.ok(&["bot", "mount", "a"]);
    std::fs::write(root(&env, "a").join("root/data"), &data).unwrap();
    env.ok(&["bot", "unmount", "a"]);
    env.ok(&["bot", "commit", "a"]);
    // Bot b, mounted, writes the same bytes (the fleet's drift) and a
    // file that a writer keeps rewriting.
    env.ok(&["bot", "create", "b", "--image", "bb:1"]);
    env.ok(&["bot", "mount", "b"]);
    let rb = root(&env, "b");
    std::fs::write(rb.join("root/same"), &data).unwrap();
    std::fs::write(rb.join("root/busy"), &data).unwrap();
    if kind == "ext4" {
        let e = env.fails(&["bot", "commit", "b", "--live"]);
        assert!(e.contains("cannot share extents"), "{e}");
        env.ok(&["bot", "unmount", "b"]);
        return;
    }
    let used0 = lfs.used();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, p) = (stop.clone(), rb.join("root/busy"));
        std::thread::spawn(move || {
            let mut n = 0u8;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n = n.wrapping_add(1);
                std::fs::write(&p, vec![n; 1 << 20]).unwrap();
            }
            n
        })
    };
    let out = env.json(&["bot", "commit", "b", "--live", "--json"]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let last = writer.join().unwrap();
    let used1 = lfs.used();
    assert!(out[0]["shared_files"].as_u64().unwrap() >= 1, "{out}");
    assert!(
        out[0]["shared_bytes"].as_u64().unwrap() >= 24 << 20,
        "{out}"
    );
    assert!(used0 - used1 >= 20 << 20, "{kind}: {used0} -> {used1}");
    // Nothing the bot sees changed; the writer's file holds its own bytes.
    assert!(std::fs::read(rb.join("root/same")).unwrap() == data);
    assert_eq!(
        std::fs::read(rb.join("root/busy")).unwrap(),
        vec![last; 1 << 20]
    );
    // The next real commit still folds the upper.
    env.ok(&["bot", "unmount", "b"]);
    let c = env.json(&["bot", "commit", "b", "--json"]);
    assert!(c[0]["commit"]["added"].as_u64().unwrap() >= 2, "{c}");
    env.fsck_ok();
}

#[test]
fn a_live_commit_shares_a_mounted_bots_drift_on_xfs() {
    require_root!();
    live_commit_on("xfs");
}

#[test]
fn a_live_commit_says_ext4_cannot_share() {
    require_root!();
    live_commit_on("ext4");
}

#[test]
fn a_live_commit_shares_a_mounted_bots_drift_on_btrfs() {
    require_root!();
    live_commit_on("btrfs");
}

#[test]
fn full_copies_are_adopted_and_cost_only_their_own_files() {
    require_root!();
    let env = busybox_env(&["sh"]);
    let rootfs = env.path("rootfs");
    let own: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 + 3) as u8).collect();
    let copy = |name: &str| {
        let d = env.path(name);
        sh(&format!("cp -a '{}' '{}'", rootfs.display(), d.display()));
        std::fs::write(d.join("root/notes"), &own).unwrap();
        std::fs::write(d.join("etc/hostname"), name).unwrap();
        d
    };
    let c1 = copy("copy1");
    let out = env.json(&[
        "bot",
        "adopt",
        "a1",
        "--from",
        c1.to_str().unwrap(),
        "--image",
        "bb:1",
        "--json",
    ]);
    // busybox was already stored: only the bot's own file is new.
    assert!(
        out["new_object_bytes"].as_u64().unwrap() < (1 << 20) + 4096,
        "{out}"
    );
    assert!(out["saved_bytes"].as_u64().unwrap() >= 500_000, "{out}");
    let d = env.json(&["bot", "diff", "a1", "--json"]);
    let paths: Vec<&str> = d
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"/root/notes") && paths.contains(&"/etc/hostname"),
        "{paths:?}"
    );
    assert!(!paths.contains(&"/bin/busybox"), "{paths:?}");
    assert!(log(&env, "a1")[0]["message"]
        .as_str()
        .unwrap()
        .starts_with("adopted from"));
    env.ok(&["bot", "mount", "a1"]);
    assert_eq!(
        std::fs::read(root(&env, "a1").join("root/notes")).unwrap(),
        own
    );
    env.ok(&["bot", "unmount", "a1"]);
    // A second copy with the same own file adds next to nothing.
    let c2 = copy("copy2");
    let out = env.json(&[
        "bot",
        "adopt",
        "a2",
        "--from",
        c2.to_str().unwrap(),
        "--image",
        "bb:1",
        "--json",
        "--driver",
        "copy",
    ]);
    assert!(out["new_object_bytes"].as_u64().unwrap() < 4096, "{out}");
    assert_eq!(
        std::fs::read(root(&env, "a2").join("root/notes")).unwrap(),
        own
    );

    // Refused: the running system, the store, a store, mounts below, a
    // source still being written.
    let e = env.fails(&["bot", "adopt", "x", "--from", "/", "--image", "bb:1"]);
    assert!(e.contains("running system"), "{e}");
    let e = env.fails(&[
        "bot",
        "adopt",
        "x",
        "--from",
        env.store.to_str().unwrap(),
        "--image",
        "bb:1",
    ]);
    assert!(e.contains("holds this store"), "{e}");
    let c3 = copy("copy3");
    std::fs::create_dir_all(c3.join("mnt/x")).unwrap();
    sh(&format!(
        "mount -t tmpfs none '{}'",
        c3.join("mnt/x").display()
    ));
    let e = env.fails(&[
        "bot",
        "adopt",
        "x",
        "--from",
        c3.to_str().unwrap(),
        "--image",
        "bb:1",
    ]);
    sh(&format!("umount '{}'", c3.join("mnt/x").display()));
    assert!(e.contains("is mounted below"), "{e}");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let w = {
        let (stop, p) = (stop.clone(), c3.join("root/log"));
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                std::fs::write(&p, n.to_string()).unwrap();
            }
        })
    };
    let e = env.fails(&[
        "bot",
        "adopt",
        "x",
        "--from",
        c3.to_str().unwrap(),
        "--image",
        "bb:1",
    ]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    w.join().unwrap();
    // Caught between the two reads, or by the scan itself mid-file.
    assert!(
        e.contains("changed while it was read") || e.contains("during the scan"),
        "{e}"
    );
    assert!(env.run(&["bot", "show", "x"]).status.code() != Some(0));
    // Deeper than botyard keeps: refused by the importer's rules.
    let deep = env.path("deep");
    let mut d = deep.clone();
    for _ in 0..520 {
        d.push("d");
    }
    std::fs::create_dir_all(&d).unwrap();
    let e = env.fails(&[
        "bot",
        "adopt",
        "x",
        "--from",
        deep.to_str().unwrap(),
        "--image",
        "bb:1",
    ]);
    assert!(e.contains("deep"), "{e}");
    assert!(env.run(&["bot", "show", "x"]).status.code() != Some(0));
    let e = env.fails(&[
        "bot",
        "adopt",
        "x",
        "--from",
        c3.to_str().unwrap(),
        "--image",
        "nope:1",
    ]);
    assert!(e.contains("no image nope:1"), "{e}");
    env.fsck_ok();
}
