//! Hostile input, one test per hole a hostile-input pass found: each one
//! failed before its fix. Images, bots and workspaces are real; sandboxes
//! are real runc; the daemon is a real `botyard serve`.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// Runs `sh -c script` as the unprivileged user nobody.
fn as_nobody(script: &str) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(["sh", "-c", script])
        .output()
        .unwrap()
}

/// Makes the test's own directory reachable by everyone, so only botyard's
/// own choices decide what another user can reach.
fn open_test_dir(env: &Env) {
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// An image holding a setuid-root copy of `id` and a world-writable
/// character device (the null device's numbers, so a write is harmless).
fn setuid_image(env: &Env) {
    let src = env.path("evil");
    std::fs::create_dir_all(src.join("bin")).unwrap();
    std::fs::copy("/usr/bin/id", src.join("bin/id")).unwrap();
    sh(&format!(
        "chown 0:0 '{d}/bin/id' && chmod 4755 '{d}/bin/id' && mknod '{d}/dev-null' c 1 3 && chmod 666 '{d}/dev-null'",
        d = src.display()
    ));
    env.ok(&["image", "import", "evil:1", "--dir", src.to_str().unwrap()]);
}

/// Hole 1: no mount botyard makes hands a host user what the image's modes say:
/// the store is closed to others, and a bot mounted where others can reach
/// it is nosuid,nodev unless the operator asks.
#[test]
fn a_hostile_image_gives_no_host_user_root_through_a_mounted_bot() {
    require_root!();
    if !have_tool("setpriv", "util-linux") {
        return;
    }
    let env = Env::new();
    open_test_dir(&env);
    setuid_image(&env);
    env.ok(&["bot", "create", "b", "--image", "evil:1"]);
    let mode = std::fs::metadata(&env.store).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the store is open to others: {mode:o}");
    env.ok(&["bot", "mount", "b"]);
    let inside = env.store.join("bots/b/root");
    let out = as_nobody(&format!("'{}/bin/id'", inside.display()));
    assert!(
        !out.status.success(),
        "another user reached the mounted bot inside the store: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    env.ok(&["bot", "unmount", "b"]);

    // Mounted where others can reach it: setuid and devices mean nothing.
    let at = env.path("public");
    env.ok(&["bot", "mount", "b", "--at", at.to_str().unwrap()]);
    let run = as_nobody(&format!("'{}/bin/id'", at.display()));
    let id = String::from_utf8_lossy(&run.stdout).into_owned();
    let write = as_nobody(&format!("echo x > '{}/dev-null'", at.display()));
    env.ok(&["bot", "unmount", "b"]);
    assert!(run.status.success(), "{run:?}");
    assert!(!id.contains("euid=0"), "setuid honoured: {id}");
    assert!(
        !write.status.success() && String::from_utf8_lossy(&write.stderr).contains("denied"),
        "the image's device opened: {write:?}"
    );
    // The operator may ask for both, and then gets them (so the checks
    // above can fail).
    let out = env.ok(&[
        "bot",
        "mount",
        "b",
        "--at",
        at.to_str().unwrap(),
        "--suid",
        "--dev",
    ]);
    assert!(out.contains("honoured"), "{out}");
    let run = as_nobody(&format!("'{}/bin/id'", at.display()));
    let write = as_nobody(&format!("echo x > '{}/dev-null'", at.display()));
    env.ok(&["bot", "unmount", "b"]);
    assert!(
        String::from_utf8_lossy(&run.stdout).contains("euid=0"),
        "{run:?}"
    );
    assert!(write.status.success(), "{write:?}");
    // The image's bits are kept: the file is still setuid in the bot.
    let v = env.json(&["bot", "diff", "b", "--json"]);
    assert_eq!(v.as_array().unwrap().len(), 0, "{v}");
    env.fsck_ok();
}

/// A store made open to others (before this rule) is closed when next used.
#[test]
fn an_open_store_is_closed_when_next_opened() {
    let env = Env::new();
    std::fs::set_permissions(&env.store, std::fs::Permissions::from_mode(0o755)).unwrap();
    env.ok(&["image", "ls"]);
    let mode = std::fs::metadata(&env.store).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

/// Hole 2: a change that adds setuid, setgid or an executable bit, to a new or
/// an existing file, is held; setuid only goes with an approval naming it.
#[test]
fn the_gate_holds_setuid_and_new_execute_bits() {
    require_root!();
    let env = Env::new();
    let p = env.path("project");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(p.join("bin2"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::write(p.join("notes"), "plain\n").unwrap();
    sh(&format!("chmod 755 '{}/bin2'", p.display()));
    env.ok(&["workspace", "create", "w", "--project", p.to_str().unwrap()]);
    env.ok(&["workspace", "mount", "w"]);
    let r = env.store.join("workspaces/w/root");
    sh(&format!(
        "chmod 4755 '{r}/bin2' && chmod 2644 '{r}/notes' && printf 'x\\n' > '{r}/new.sh' && chmod 755 '{r}/new.sh'",
        r = r.display()
    ));
    let out = env.json(&["workspace", "sync", "w", "--yes", "--json"]);
    let outcome = |path: &str| {
        out["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["path"] == path)
            .map(|i| {
                (
                    i["outcome"].as_str().unwrap().to_string(),
                    i["reason"].to_string(),
                )
            })
            .unwrap_or_else(|| panic!("{path} not in {out}"))
    };
    for (path, bit) in [("bin2", "setuid"), ("notes", "setgid")] {
        let (o, why) = outcome(path);
        assert_eq!(o, "held", "{path}: {out}");
        assert!(why.contains(bit), "{why}");
    }
    assert_eq!(outcome("new.sh").0, "held");
    let mode = |f: &str| std::fs::metadata(p.join(f)).unwrap().permissions().mode() & 0o7777;
    assert_eq!((mode("bin2"), mode("notes")), (0o755, 0o644));
    // --approve takes the new executable, never setuid or setgid.
    env.ok(&["workspace", "sync", "w", "--yes", "--approve"]);
    assert_eq!(mode("new.sh") & 0o111, 0o111);
    assert_eq!((mode("bin2"), mode("notes")), (0o755, 0o644));
    // Only an approval naming the path lets it through.
    env.ok(&[
        "workspace",
        "sync",
        "w",
        "--yes",
        "--approve-setuid",
        "bin2",
    ]);
    assert_eq!((mode("bin2"), mode("notes")), (0o4755, 0o644));
    env.ok(&["workspace", "unmount", "w"]);
    env.fsck_ok();
}

/// Hole 3: the mount allowlist checks the object it mounts: swapping the source
/// between a directory and a symlink into `.ssh` while runs start never
/// shows the blocked content.
#[test]
fn a_mount_source_swapped_during_the_check_is_never_what_is_mounted() {
    require_root!();
    if !have_tool("runc", "runc") {
        return;
    }
    let env = busybox_env(&["sh", "cat", "ls"]);
    let host = env.path("host");
    std::fs::create_dir_all(host.join("data")).unwrap();
    std::fs::write(host.join("data/ok"), "fine\n").unwrap();
    std::fs::create_dir_all(host.join("home/.ssh")).unwrap();
    std::fs::write(host.join("home/.ssh/id_rsa"), "SECRET-KEY\n").unwrap();
    std::os::unix::fs::symlink(host.join("home/.ssh"), host.join("other")).unwrap();
    std::fs::rename(host.join("data"), host.join("src")).unwrap();
    let allow = env.path("allow.json");
    std::fs::write(
        &allow,
        serde_json::json!({"allowed_roots": [{"path": host}]}).to_string(),
    )
    .unwrap();
    // Swaps `src` (a directory) and `other` (a symlink into .ssh) as fast
    // as it can while the runs start.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (stop, host) = (stop.clone(), host.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = rustix::fs::renameat_with(
                    rustix::fs::CWD,
                    host.join("src"),
                    rustix::fs::CWD,
                    host.join("other"),
                    rustix::fs::RenameFlags::EXCHANGE,
                );
                n += 1;
            }
            n
        })
    };
    let mut leaked = 0;
    let mut mounted = 0;
    for _ in 0..80 {
        let out = env
            .cmd()
            .env("BOTYARD_MOUNT_ALLOWLIST", &allow)
            .args(["run", "b1", "--mount"])
            .arg(format!("{}:data", host.join("src").display()))
            .args(["--", "sh", "-c", "cat /mnt/data/* 2>/dev/null; true"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        if text.contains("SECRET-KEY") {
            leaked += 1;
        }
        if text.contains("fine") {
            mounted += 1;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(swaps > 80, "the swapper barely ran ({swaps} swaps)");
    assert_eq!(leaked, 0, "blocked content leaked in {leaked} of 80 runs");
    assert!(mounted > 0, "no run ever mounted the allowed directory");
    assert!(!Path::new(&env.store.join("bots/b1/session/mnt")).exists());
}

/// Makes `depth` nested directories `a/a/…` below `root`, one descriptor
/// at a time (no path that long could be given to the kernel).
fn nest(root: &Path, depth: usize) {
    use rustix::fs::{mkdirat, openat, Mode, OFlags};
    let mut d = openat(
        rustix::fs::CWD,
        root,
        OFlags::RDONLY | OFlags::DIRECTORY,
        Mode::empty(),
    )
    .unwrap();
    for _ in 0..depth {
        mkdirat(&d, "a", Mode::from_raw_mode(0o755)).unwrap();
        d = openat(&d, "a", OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
    }
    rustix::fs::openat(
        &d,
        "leaf",
        OFlags::CREATE | OFlags::WRONLY,
        Mode::from_raw_mode(0o644),
    )
    .unwrap();
}

/// Hole 7: no depth crashes anything: a 20,000-deep archive is refused with one
/// line and leaves no staging; a 20,000-deep directory made in a bot gets a
/// one-line error from diff and commit, reset removes it, and rm removes
/// all of it (the id can be used again).
#[test]
fn deep_trees_are_refused_or_removed_never_crash() {
    require_root!();
    let env = Env::new();
    let mut tar = RawTar::new();
    let mut h = tar::Header::new_gnu();
    let deep = "a/".repeat(20_000) + "f";
    {
        let mut b = tar::Builder::new(Vec::new());
        h.set_size(0);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, &deep, &[][..]).unwrap();
        tar.data = b.into_inner().unwrap();
    }
    let deep_tar = env.path("deep.tar");
    std::fs::write(&deep_tar, tar.finish()).unwrap();
    let before = env.contents();
    let err = env.fails(&[
        "image",
        "import",
        "deep:1",
        "--tar",
        deep_tar.to_str().unwrap(),
    ]);
    assert!(err.contains("deep"), "{err}");
    assert_eq!(env.contents(), before);
    assert_eq!(std::fs::read_dir(env.store.join("tmp")).unwrap().count(), 0);

    let src = env.path("src");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::write(src.join("etc/x"), "x\n").unwrap();
    env.ok(&["image", "import", "base:1", "--dir", src.to_str().unwrap()]);
    // Up to the limit, everything works.
    env.ok(&["bot", "create", "ok", "--image", "base:1"]);
    env.ok(&["bot", "mount", "ok"]);
    nest(&env.store.join("bots/ok/root"), 500);
    env.ok(&["bot", "unmount", "ok"]);
    env.ok(&["bot", "commit", "ok"]);
    let d = env.json(&["bot", "diff", "ok", "--json"]);
    assert_eq!(d.as_array().unwrap().len(), 501, "500 dirs and a leaf");
    // Deeper: clear errors, and the bot can be cleaned.
    for id in ["deep", "gone"] {
        env.ok(&["bot", "create", id, "--image", "base:1"]);
        env.ok(&["bot", "mount", id]);
        nest(&env.store.join("bots").join(id).join("root"), 20_000);
        env.ok(&["bot", "unmount", id]);
    }
    for verb in [&["bot", "diff", "deep"][..], &["bot", "commit", "deep"]] {
        let err = env.fails(verb);
        assert!(
            err.contains("deep") && err.contains("bot reset deep /a"),
            "{verb:?}: {err}"
        );
    }
    env.ok(&["bot", "ls"]);
    env.ok(&["bot", "reset", "deep", "/a"]);
    assert!(env
        .json(&["bot", "diff", "deep", "--json"])
        .as_array()
        .unwrap()
        .is_empty());
    env.ok(&["bot", "rm", "--force", "gone"]);
    assert!(
        !env.store.join("bots/gone").exists(),
        "rm left the bot's files"
    );
    env.ok(&["bot", "create", "gone", "--image", "base:1"]);
    env.fsck_ok();
}

/// Hole 9: memory follows the metadata, compactly: 400,000 entries import within
/// 128 MiB of data (the old in-memory tree took about 545 bytes an entry).
#[test]
fn a_tree_of_many_entries_imports_in_little_memory() {
    if !have_tool("prlimit", "util-linux") {
        return;
    }
    let env = Env::new();
    let path = env.path("many.tar");
    {
        let f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut b = tar::Builder::new(f);
        for d in 0..400 {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_700_000_000);
            b.append_data(&mut h, format!("d{d:03}"), &[][..]).unwrap();
            for i in 0..1000 {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(0);
                h.set_uid(0);
                h.set_gid(0);
                h.set_mtime(1_700_000_000);
                b.append_data(&mut h, format!("d{d:03}/f{i:04}"), &[][..])
                    .unwrap();
            }
        }
        b.finish().unwrap();
    }
    let bin = std::env::var_os("BOTYARD_TEST_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_botyard").into());
    let out = Command::new("prlimit")
        .arg(format!("--data={}", 128u64 << 20))
        .arg(bin)
        .args(["image", "import", "many:1", "--tar"])
        .arg(&path)
        .env("BOTYARD_HOME", &env.store)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the import did not fit in 128 MiB: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let v = env.json(&["image", "inspect", "many:1", "--json"]);
    assert_eq!(v["image"]["files"], 400_000, "{v}");
    std::fs::remove_file(&path).unwrap();
}

/// Hole 10: what an archive may expand to is capped, with a one-line error and
/// nothing left; the staging a killed import leaves is removed by the next
/// writer, without a gc.
#[test]
fn archives_expand_only_within_the_cap_and_dead_stagings_go() {
    let env = Env::new();
    let mut raw = RawTar::new();
    raw.file("ok", b"small");
    let zeros = vec![0u8; 64 << 20];
    raw.file("bomb", &zeros);
    let gz = gzip(&raw.finish());
    assert!(gz.len() < 1 << 20, "a bomb: {} bytes packed", gz.len());
    let bomb = env.path("bomb.tar.gz");
    std::fs::write(&bomb, &gz).unwrap();
    let before = env.contents();
    let err = env.fails(&[
        "image",
        "import",
        "b:1",
        "--tar",
        bomb.to_str().unwrap(),
        "--max-size",
        "16MiB",
    ]);
    assert!(
        err.contains("--max-size") && err.contains("expands to more than"),
        "{err}"
    );
    let err = env
        .cmd()
        .env("BOTYARD_MAX_IMAGE_SIZE", "1MiB")
        .args(["image", "import", "b:1", "--tar", bomb.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!err.status.success());
    assert_eq!(env.contents(), before);
    env.ok(&[
        "image",
        "import",
        "b:1",
        "--tar",
        bomb.to_str().unwrap(),
        "--max-size",
        "1G",
    ]);

    // A writer killed mid-import leaves its staging; the next writer
    // clears it.
    let big = env.path("big");
    std::fs::create_dir_all(&big).unwrap();
    for i in 0..64 {
        std::fs::write(big.join(format!("f{i}")), vec![i as u8; 4 << 20]).unwrap();
    }
    let mut child = env
        .cmd()
        .args(["image", "import", "big:1", "--dir", big.to_str().unwrap()])
        .spawn()
        .unwrap();
    let staged = |env: &Env| {
        std::fs::read_dir(env.store.join("tmp"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("stage-")
            })
            .count()
    };
    let t = std::time::Instant::now();
    while staged(&env) == 0 && t.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(staged(&env), 1, "no staging was caught in the act");
    env.ok(&["image", "import", "c:1", "--tar", bomb.to_str().unwrap()]);
    assert_eq!(staged(&env), 0, "the dead writer's staging stayed");
    env.fsck_ok();
}

/// Lines of human output: none may be forged by a name, and none may
/// carry a control character to the terminal.
fn assert_clean(out: &str, forged: &[&str]) {
    for l in out.lines() {
        assert!(
            !forged.contains(&l.trim()),
            "a forged line {l:?} in:\n{out}"
        );
        assert!(
            !l.chars().any(|c| c.is_control() && c != '\t'),
            "a control character in {l:?}"
        );
    }
}

/// Hole 5: review output cannot be forged: names with newlines, escapes or
/// invalid UTF-8 are quoted for people and exact in JSON; `workspace diff`
/// masks secrets as `sync` does unless asked.
#[test]
fn names_cannot_forge_review_output() {
    require_root!();
    use std::os::unix::ffi::OsStrExt;
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    env.ok(&["image", "import", "base:1", "--dir", src.to_str().unwrap()]);
    env.ok(&["bot", "create", "b", "--image", "base:1"]);
    env.ok(&["bot", "mount", "b"]);
    let root = env.store.join("bots/b/root");
    // A directory "x\nD " holding etc/shadow: its path prints as two lines.
    let forger = root.join(std::ffi::OsStr::from_bytes(b"x\nD "));
    std::fs::create_dir_all(forger.join("etc")).unwrap();
    std::fs::write(forger.join("etc/shadow"), "x").unwrap();
    for n in [&b"\x1b[2K\x1b[1Aerase"[..], b"bad\xff"] {
        std::fs::write(root.join("etc").join(std::ffi::OsStr::from_bytes(n)), "x").unwrap();
    }
    env.ok(&["bot", "unmount", "b"]);
    let out = env.ok(&["bot", "diff", "b"]);
    assert_clean(&out, &["D /etc/shadow"]);
    assert!(out.contains(r#""/x\nD /etc/shadow""#), "{out}");
    assert!(out.contains(r#""/etc/bad\xff""#), "{out}");
    let v = env.json(&["bot", "diff", "b", "--json"]);
    let paths: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"/x\nD /etc/shadow"), "{paths:?}");
    let bad = v
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d.get("path_bytes").is_some())
        .expect("path_bytes");
    assert_eq!(bad["path_bytes"].as_array().unwrap().last().unwrap(), 0xff);

    // A workspace: diff, sync and the audit log.
    let p = env.path("project");
    std::fs::create_dir_all(&p).unwrap();
    env.ok(&["workspace", "create", "w", "--project", p.to_str().unwrap()]);
    env.ok(&["workspace", "mount", "w"]);
    let r = env.store.join("workspaces/w/root");
    std::fs::write(r.join("ok\napplied      m bin2"), "text\n").unwrap();
    std::fs::write(r.join("\x1b[2Kclear"), "text\n").unwrap();
    let key = format!("AKIA{}", "Q7ZT4PLMX2WB9KJD");
    std::fs::write(r.join("conf.txt"), format!("aws = {key}\n")).unwrap();
    let stat = env.ok(&["workspace", "diff", "w", "--stat"]);
    assert_clean(&stat, &["applied      m bin2"]);
    let full = env.ok(&["workspace", "diff", "w"]);
    assert!(!full.contains(&key) && full.contains("AKIA…"), "{full}");
    let shown = env.ok(&["workspace", "diff", "w", "--show-secrets"]);
    assert!(shown.contains(&key), "{shown}");
    let sync = env.ok(&["workspace", "sync", "w", "--yes"]);
    assert_clean(&sync, &["applied      m bin2", "m bin2"]);
    assert!(p.join("ok\napplied      m bin2").exists());
    let log = env.ok(&["workspace", "log", "w"]);
    assert_clean(&log, &["applied      m bin2"]);
    env.ok(&["workspace", "unmount", "w"]);
}

/// Hole 11: a sparse file is hashed by extent: the object is its content's hash
/// and stays sparse (how long it takes is measured in bench/import.sh).
#[test]
fn sparse_files_keep_their_hash_and_their_holes() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let f = std::fs::File::create(src.join("disk.img")).unwrap();
    f.set_len(2 << 30).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_at(&vec![7u8; 1 << 20], 1 << 30).unwrap();
    f.write_at(b"end", (2 << 30) - 3).unwrap();
    drop(f);
    let want = hash_file(&src.join("disk.img"));
    env.ok(&["image", "import", "sp:1", "--dir", src.to_str().unwrap()]);
    let m = manifest_of_tree(&env.store(), env.tree_of("sp:1"));
    let d = &m[&b"disk.img"[..].to_vec()];
    assert_eq!(d.content, Some(want));
    use std::os::unix::fs::MetadataExt;
    let obj = std::fs::metadata(env.store().object_path(&want)).unwrap();
    assert_eq!(obj.len(), 2 << 30);
    assert!(obj.blocks() * 512 < 16 << 20, "the object lost its holes");
}

/// Hole 12: what one verb accepts, the next handles: an xattr a layer cannot
/// hold is refused at import; one it can works through a mounted bot; and
/// a create that fails leaves nothing behind.
#[test]
fn what_import_accepts_bot_create_handles_and_a_failed_create_leaves_nothing() {
    require_root!();
    let env = Env::new();
    let tar_with = |len: usize| {
        let mut b = tar::Builder::new(Vec::new());
        let value = "v".repeat(len);
        b.append_pax_extensions([("SCHILY.xattr.user.big", value.as_bytes())])
            .unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(2);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, "f", &b"hi"[..]).unwrap();
        b.into_inner().unwrap()
    };
    let big = env.path("big.tar");
    std::fs::write(&big, tar_with(65536)).unwrap();
    let before = env.contents();
    let err = env.fails(&["image", "import", "x:1", "--tar", big.to_str().unwrap()]);
    assert!(err.contains("65535"), "{err}");
    assert_eq!(env.contents(), before);
    let fits = env.path("fits.tar");
    std::fs::write(&fits, tar_with(65535)).unwrap();
    env.ok(&["image", "import", "x:1", "--tar", fits.to_str().unwrap()]);
    env.ok(&["bot", "create", "b", "--image", "x:1"]);
    env.ok(&["bot", "mount", "b"]);
    let mut buf = vec![0u8; 70000];
    let n = rustix::fs::getxattr(env.store.join("bots/b/root/f"), "user.big", &mut buf);
    env.ok(&["bot", "unmount", "b"]);
    assert_eq!(n.unwrap(), 65535);
    // A layer that cannot be written: the create fails and leaves nothing.
    let other = env.path("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("g"), "g").unwrap();
    env.ok(&["image", "import", "y:1", "--dir", other.to_str().unwrap()]);
    let layers = env.store.join("layers");
    std::fs::rename(&layers, env.path("layers-aside")).unwrap();
    std::fs::write(&layers, "").unwrap();
    let err = env.fails(&["bot", "create", "c", "--image", "y:1"]);
    assert!(err.contains("layer"), "{err}");
    assert!(
        !env.store.join("bots/c").exists(),
        "a failed create left bots/c"
    );
    std::fs::remove_file(&layers).unwrap();
    env.ok(&["bot", "create", "c", "--image", "y:1"]);
    env.fsck_ok();
}

/// Hole 13: bot ids are what every runtime takes; a bot made under the older
/// rule keeps working, under a name runc takes.
#[test]
fn bot_ids_are_names_every_runtime_takes() {
    require_root!();
    if !have_tool("runc", "runc") {
        return;
    }
    let env = busybox_env(&["sh", "true", "hostname"]);
    for bad in ["x:y", "Ünï", "UPPER", "x-", "x_y", "x."] {
        let err = env.fails(&["bot", "create", bad, "--image", "bb:1"]);
        assert!(err.contains("lowercase letters"), "{bad}: {err}");
    }
    // An id of the old rule, made by hand as an older botyard would have.
    env.ok(&["bot", "create", "old", "--image", "bb:1"]);
    let refs = env.store.join("refs/bots");
    let text = std::fs::read_to_string(refs.join("old")).unwrap();
    std::fs::write(refs.join("Old_1"), text.replace("\"old\"", "\"Old_1\"")).unwrap();
    std::fs::remove_file(refs.join("old")).unwrap();
    std::fs::rename(env.store.join("bots/old"), env.store.join("bots/Old_1")).unwrap();
    let out = env.ok(&["run", "Old_1", "--", "hostname"]);
    assert!(out.trim().starts_with("bot-"), "{out}");
    assert!(env.ok(&["bot", "ls"]).contains("Old_1"));
}

/// Hole 14: a sandbox gets a share of the machine by default, and can be given
/// more, less, or none.
#[test]
fn sandboxes_have_memory_and_cpu_limits_by_default() {
    require_root!();
    if !have_tool("runc", "runc") {
        return;
    }
    let env = busybox_env(&["true"]);
    let config = || -> serde_json::Value {
        let p = env.store.join("bots/b1/session/bundle/config.json");
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    env.ok(&["run", "b1", "--", "true"]);
    let total = {
        let info = rustix::system::sysinfo();
        info.totalram as u64 * info.mem_unit as u64
    };
    let res = &config()["linux"]["resources"];
    assert_eq!(res["memory"]["limit"].as_u64(), Some(total / 2), "{res}");
    assert!(res["cpu"]["quota"].as_i64().unwrap() >= 100_000, "{res}");
    assert_eq!(res["pids"]["limit"], 1024);
    env.ok(&[
        "run", "b1", "--memory", "256MiB", "--cpus", "0.5", "--", "true",
    ]);
    let res = &config()["linux"]["resources"];
    assert_eq!(res["memory"]["limit"].as_u64(), Some(256 << 20));
    assert_eq!(res["cpu"]["quota"].as_i64(), Some(50_000));
    env.ok(&[
        "run", "b1", "--memory", "none", "--cpus", "none", "--", "true",
    ]);
    let res = &config()["linux"]["resources"];
    assert!(
        res.get("memory").is_none() && res.get("cpu").is_none(),
        "{res}"
    );
    let help = env
        .ok(&["run", "--help"])
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(help.contains("half of this machine's memory"), "{help}");
}

/// What a newcomer tripped over: image rm of a used image, a diff of a
/// path the bot does not have, counts that disagreed, a JSON key with two
/// meanings, the hint before the cause, and "1 new objects".
#[test]
fn rough_edges_a_newcomer_met_are_smooth() {
    require_root!();
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::write(src.join("etc/one"), "1\n").unwrap();
    let out = env.ok(&["image", "import", "i:1", "--dir", src.to_str().unwrap()]);
    assert!(
        out.contains("1 file,") && out.contains("1 new object ("),
        "{out}"
    );
    for b in ["b1", "b2", "b3"] {
        env.ok(&["bot", "create", b, "--image", "i:1"]);
    }
    let err = env.fails(&["image", "rm", "i:1"]);
    assert!(
        err.contains("b1, b2, b3") && err.contains("--force"),
        "{err}"
    );
    assert!(env.ok(&["image", "ls"]).contains("i:1"));

    let err = env.fails(&["bot", "diff", "b1", "/no/such/path"]);
    assert!(err.contains("is not in bot b1"), "{err}");
    assert_eq!(env.ok(&["bot", "diff", "b1", "/etc"]), "");

    env.ok(&["bot", "mount", "b1"]);
    let root = env.store.join("bots/b1/root");
    std::fs::create_dir_all(root.join("new/deeper")).unwrap();
    std::fs::write(root.join("new/deeper/f"), "f\n").unwrap();
    std::fs::write(root.join("etc/one"), "changed\n").unwrap();
    std::fs::remove_file(root.join("etc/one")).unwrap();
    std::fs::write(root.join("etc/two"), "2\n").unwrap();
    env.ok(&["bot", "unmount", "b1"]);
    let stat = env.json(&["bot", "diff", "b1", "--stat", "--json"]);
    let c = env.json(&["bot", "commit", "b1", "--json"]);
    let c = &c[0]["commit"];
    for (k, field) in [
        ("added", "added"),
        ("deleted", "deleted"),
        ("modified", "modified"),
    ] {
        assert_eq!(stat[k]["paths"], c[field], "{k}: {stat} vs {c}");
    }
    let df = env.json(&["df", "--json"]);
    assert!(
        df.get("physical_bytes").is_none() && df["stored_bytes"].is_u64(),
        "{df}"
    );
    assert!(df["fleet"]["disk_bytes"].is_u64(), "{df}");

    let err = env.fails(&[
        "workspace",
        "create",
        "w",
        "--project",
        env.path("nope").to_str().unwrap(),
    ]);
    let (cause, hint) = (
        err.find("No such file").unwrap(),
        err.find("give the directory").unwrap(),
    );
    assert!(cause < hint, "the hint should come last: {err}");
}
