//! Workspaces on real overlay mounts: the audit log, diff, the sync gate
//! with its policy and secret scanner, conflicts, reset, auto and unsafe
//! modes, a killed sync, and the interactive gate through a pseudo-terminal.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Unmounts a workspace (or anything) when the test ends, however it ends.
struct Mounted<'a> {
    env: &'a Env,
    name: String,
}

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let out = self.env.run(&["workspace", "unmount", &self.name]);
        if !out.status.success() {
            let root = self
                .env
                .store
                .join("workspaces")
                .join(&self.name)
                .join("root");
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(root)
                .status();
        }
    }
}

fn mount<'a>(env: &'a Env, name: &str) -> Mounted<'a> {
    env.ok(&["workspace", "mount", name]);
    Mounted {
        env,
        name: name.to_string(),
    }
}

fn root_of(env: &Env, name: &str) -> PathBuf {
    env.store.join("workspaces").join(name).join("root")
}

fn write(p: &Path, data: &str) {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(p, data).unwrap();
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

/// A small project: text, a binary, a directory, a file to delete and one
/// to rename.
fn project(env: &Env) -> PathBuf {
    let p = env.path("project");
    write(&p.join("src/main.rs"), "fn main() {}\n");
    write(&p.join("src/lib/util.rs"), "pub fn util() {}\n");
    write(&p.join("README.md"), "# project\n");
    write(&p.join("old.txt"), "to be deleted\n");
    write(&p.join("name.txt"), "to be renamed\n");
    write(&p.join("docs/a.md"), "a\n");
    p
}

fn events(env: &Env, name: &str) -> Vec<serde_json::Value> {
    env.ok(&["workspace", "log", name, "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits until the audit log holds an event matching `pred`.
fn wait_event(
    env: &Env,
    name: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    let t = Instant::now();
    loop {
        let ev = events(env, name);
        if ev.iter().any(&pred) {
            return ev;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "event never logged: {ev:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn has(ev: &[serde_json::Value], event: &str, path: &str) -> bool {
    ev.iter().any(|e| e["event"] == event && e["path"] == path)
}

#[test]
fn create_checks_its_input_and_ls_show_rm_work() {
    require_root!();
    let env = Env::new();
    let p = project(&env);
    let ps = p.to_str().unwrap();
    let err = env.fails(&[
        "workspace",
        "create",
        "w",
        "--project",
        env.path("nope").to_str().unwrap(),
    ]);
    assert!(err.contains("does not exist"), "{err}");
    let err = env.fails(&[
        "workspace",
        "create",
        "w",
        "--project",
        env.store.join("objects").to_str().unwrap(),
    ]);
    assert!(err.contains("inside the store"), "{err}");
    let err = env.fails(&[
        "workspace",
        "create",
        "w",
        "--project",
        env.dir.path().to_str().unwrap(),
    ]);
    assert!(
        err.contains("store") && err.contains("inside project"),
        "{err}"
    );
    let err = env.fails(&["workspace", "create", "w", "--project", "/proc/sys"]);
    assert!(
        err.contains("on proc") && err.contains("--mode unsafe"),
        "{err}"
    );
    let err = env.fails(&[
        "workspace",
        "create",
        "w",
        "--project",
        ps,
        "--mode",
        "unsafe",
    ]);
    assert!(err.contains("--i-understand"), "{err}");
    let err = env.fails(&[
        "workspace",
        "create",
        "w",
        "--project",
        ps,
        "--mode",
        "yolo",
    ]);
    assert!(err.contains("secure, auto or unsafe"), "{err}");
    for bad in ["..", "a/b", " ", &"x".repeat(64)] {
        let err = env.fails(&["workspace", "create", bad, "--project", ps]);
        assert!(err.contains("workspace name"), "{bad}: {err}");
    }
    let policy = env.path("policy.toml");
    write(&policy, "mode = \"deny\"\ndeny = [\".git/**\"\n");
    let err = env.fails(&[
        "workspace",
        "create",
        "w",
        "--project",
        ps,
        "--policy",
        policy.to_str().unwrap(),
    ]);
    assert!(err.contains("policy file") && err.contains("line"), "{err}");

    env.ok(&["workspace", "create", "w", "--project", ps]);
    let err = env.fails(&["workspace", "create", "w", "--project", ps]);
    assert!(err.contains("already exists"), "{err}");
    // Two workspaces on one project are allowed.
    env.ok(&[
        "workspace",
        "create",
        "w2",
        "--project",
        ps,
        "--mode",
        "auto",
        "--interval",
        "2s",
    ]);
    let ls = env.json(&["workspace", "ls", "--json"]);
    assert_eq!(ls.as_array().unwrap().len(), 2, "{ls}");
    let show = env.json(&["workspace", "show", "w2", "--json"]);
    assert_eq!(show["mode"], "auto");
    assert_eq!(show["interval_secs"], 2);
    assert_eq!(
        show["project"],
        std::fs::canonicalize(&p).unwrap().to_str().unwrap()
    );

    let m = mount(&env, "w");
    let err = env.fails(&["workspace", "mount", "w"]);
    assert!(err.contains("already mounted"), "{err}");
    let err = env.fails(&["workspace", "rm", "w"]);
    assert!(err.contains("--force"), "{err}");
    write(&root_of(&env, "w").join("new.txt"), "x\n");
    drop(m);
    let err = env.fails(&["workspace", "rm", "w"]);
    assert!(err.contains("not synced"), "{err}");
    env.ok(&["workspace", "rm", "w", "--force"]);
    env.ok(&["workspace", "rm", "w2"]);
    assert!(
        read(&p.join("README.md")).contains("project"),
        "rm never touches the project"
    );
    assert!(!p.join("new.txt").exists());
    let err = env.fails(&["workspace", "show", "w"]);
    assert!(err.contains("no workspace w"), "{err}");
    env.fsck_ok();
}

#[test]
fn writes_are_audited_diffed_and_synced_through_the_gate() {
    require_root!();
    let env = Env::new();
    let p = project(&env);
    env.ok(&["workspace", "create", "w", "--project", p.to_str().unwrap()]);
    let m = mount(&env, "w");
    let r = root_of(&env, "w");
    assert_eq!(read(&r.join("src/main.rs")), "fn main() {}\n");

    // What an agent does, with no botyard command running meanwhile.
    write(
        &r.join("src/main.rs"),
        "fn main() {\n    println!(\"hi\");\n}\n",
    );
    write(&r.join("src/new.rs"), "pub fn new() {}\n");
    std::fs::remove_file(r.join("old.txt")).unwrap();
    std::fs::rename(r.join("name.txt"), r.join("renamed.txt")).unwrap();
    std::fs::rename(r.join("src/lib"), r.join("src/library")).unwrap();
    std::fs::set_permissions(r.join("README.md"), std::fs::Permissions::from_mode(0o600)).unwrap();
    write(&r.join("tools/new-dir/file.txt"), "deep\n");
    std::fs::write(r.join("image.bin"), [0u8, 1, 2, 3, 255]).unwrap();
    write(&r.join("run.sh"), "#!/bin/sh\necho hi\n");
    std::fs::set_permissions(r.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    write(&r.join(".env"), "DEBUG=1\n");
    write(
        &r.join("config.py"),
        &format!("aws_key = \"AKIA{}\"\n", "Z".repeat(16)),
    );
    write(&r.join("big.txt"), &"x".repeat(11_000_000));

    // The project has not moved.
    assert_eq!(read(&p.join("src/main.rs")), "fn main() {}\n");
    assert!(p.join("old.txt").exists() && !p.join("renamed.txt").exists());

    let ev = wait_event(&env, "w", |e| {
        e["event"] == "chmod" && e["path"] == "README.md"
    });
    // --follow prints what comes later.
    let mut follow = env
        .cmd()
        .args(["workspace", "log", "w", "--follow"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    write(&r.join("later.txt"), "later\n");
    wait_event(&env, "w", |e| e["path"] == "later.txt");
    std::thread::sleep(Duration::from_millis(500));
    let _ = follow.kill();
    let followed = String::from_utf8(follow.wait_with_output().unwrap().stdout).unwrap();
    assert!(followed.contains("create   later.txt"), "{followed}");
    std::fs::remove_file(r.join("later.txt")).unwrap();
    assert!(has(&ev, "modify", "src/main.rs"), "{ev:#?}");
    assert!(has(&ev, "create", "src/new.rs"), "{ev:#?}");
    assert!(has(&ev, "delete", "old.txt"), "{ev:#?}");
    assert!(
        ev.iter()
            .any(|e| e["event"] == "rename" && e["path"] == "name.txt" && e["to"] == "renamed.txt"),
        "{ev:#?}"
    );
    assert!(
        ev.iter()
            .any(|e| e["event"] == "chmod" && e["mode"] == "0600"),
        "{ev:#?}"
    );
    assert!(
        has(&ev, "create", "tools/new-dir/file.txt"),
        "files in a new directory: {ev:#?}"
    );

    let st = env.json(&["workspace", "status", "w", "--json"]);
    assert_eq!(st["pending"]["deleted"], 1, "{st}");
    assert_eq!(st["pending"]["renamed"], 2, "{st}");
    assert_eq!(st["pending"]["chmod"], 1, "{st}");
    assert!(st["watcher_pid"].is_number(), "{st}");
    assert!(st["upper_bytes"].as_u64().unwrap() > 11_000_000, "{st}");

    let stat = env.ok(&["workspace", "diff", "w", "--stat"]);
    for line in [
        "M src/main.rs [+-]",
        "A src/new.rs",
        "D old.txt",
        "R renamed.txt (from name.txt)",
        "R src/library (from src/lib)",
        "m README.md",
        "A image.bin binary",
    ] {
        let re = line.replace("[+-]", "");
        assert!(
            stat.lines().any(|l| l.starts_with(&re)),
            "no `{line}` in:\n{stat}"
        );
    }
    let diff = env.ok(&["workspace", "diff", "w", "src/main.rs"]);
    assert!(
        diff.contains("--- a/src/main.rs") && diff.contains("+    println!(\"hi\");"),
        "{diff}"
    );
    assert!(!diff.contains("old.txt"), "paths filter: {diff}");
    let full = env.ok(&["workspace", "diff", "w"]);
    assert!(full.contains("renamed name.txt → renamed.txt"), "{full}");
    assert!(
        full.contains("new binary file image.bin: 0 → 5 bytes"),
        "{full}"
    );
    assert!(full.contains("--- a/old.txt\n+++ /dev/null"), "{full}");

    // The gate, dry: nothing moves.
    let dry = env.json(&["workspace", "sync", "w", "--dry-run", "--json"]);
    let outcome = |v: &serde_json::Value, path: &str| -> String {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["path"] == path)
            .map(|i| i["outcome"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("{path} not in {v}"))
    };
    assert_eq!(outcome(&dry, ".env"), "rejected");
    assert_eq!(outcome(&dry, "config.py"), "rejected");
    assert_eq!(outcome(&dry, "big.txt"), "rejected");
    assert_eq!(outcome(&dry, "image.bin"), "held");
    assert_eq!(outcome(&dry, "run.sh"), "held");
    assert_eq!(outcome(&dry, "src/main.rs"), "would_apply");
    assert_eq!(read(&p.join("src/main.rs")), "fn main() {}\n");
    let secret = dry["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["path"] == "config.py")
        .unwrap();
    let text = secret["secrets"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("AKIA…") && !text.contains(&"Z".repeat(16)),
        "the line is shown masked: {text}"
    );

    // Without a terminal, sync wants --yes.
    let err = env.fails(&["workspace", "sync", "w"]);
    assert!(err.contains("--yes"), "{err}");

    let out = env.json(&["workspace", "sync", "w", "--yes", "--json"]);
    assert_eq!(out["failed"], 0, "{out}");
    assert_eq!(
        read(&p.join("src/main.rs")),
        "fn main() {\n    println!(\"hi\");\n}\n"
    );
    assert_eq!(read(&p.join("src/new.rs")), "pub fn new() {}\n");
    assert!(!p.join("old.txt").exists());
    assert_eq!(read(&p.join("renamed.txt")), "to be renamed\n");
    assert!(!p.join("name.txt").exists());
    assert_eq!(read(&p.join("src/library/util.rs")), "pub fn util() {}\n");
    assert!(!p.join("src/lib").exists());
    assert_eq!(
        std::fs::metadata(p.join("README.md"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o600
    );
    assert_eq!(read(&p.join("tools/new-dir/file.txt")), "deep\n");
    for held_or_rejected in [".env", "config.py", "big.txt", "image.bin", "run.sh"] {
        assert!(
            !p.join(held_or_rejected).exists(),
            "{held_or_rejected} reached the project"
        );
    }
    // Approved now: binaries and new executables.
    env.ok(&[
        "workspace",
        "sync",
        "w",
        "--yes",
        "--approve",
        "image.bin",
        "run.sh",
    ]);
    assert_eq!(
        std::fs::read(p.join("image.bin")).unwrap(),
        [0u8, 1, 2, 3, 255]
    );
    assert_eq!(
        std::fs::metadata(p.join("run.sh"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    let st = env.json(&["workspace", "status", "w", "--json"]);
    assert_eq!(st["pending"]["added"], 3, "the rejected three stay: {st}");

    // Synced changes leave the upper at unmount; rejected ones stay.
    drop(m);
    let upper = env.store.join("workspaces/w/upper");
    assert!(upper.join(".env").exists() && upper.join("config.py").exists());
    assert!(!upper.join("src/main.rs").exists() && !upper.join("renamed.txt").exists());
    assert!(!upper.join("old.txt").exists(), "whiteout dropped");
    // The agent's next round starts from the synced state: no false conflict.
    let m = mount(&env, "w");
    write(
        &root_of(&env, "w").join("src/main.rs"),
        "fn main() { /* v3 */ }\n",
    );
    let out = env.json(&["workspace", "sync", "w", "--yes", "--json", "src"]);
    assert_eq!(out["applied"], 1, "{out}");
    assert_eq!(out["conflicts"], 0, "{out}");
    assert_eq!(read(&p.join("src/main.rs")), "fn main() { /* v3 */ }\n");
    drop(m);
    let log = events(&env, "w");
    assert!(log.iter().any(|e| e["event"] == "unmounted"), "{log:#?}");
    env.fsck_ok();
}

#[test]
fn conflicts_are_never_overwritten_silently() {
    require_root!();
    let env = Env::new();
    let p = project(&env);
    let ps = p.to_str().unwrap();
    env.ok(&["workspace", "create", "a", "--project", ps]);
    env.ok(&["workspace", "create", "b", "--project", ps]);
    let ma = mount(&env, "a");
    let mb = mount(&env, "b");
    // Two agents edit the same file; the host edits another; a host path
    // becomes a directory where the agent writes a file.
    write(&root_of(&env, "a").join("README.md"), "from a\n");
    write(&root_of(&env, "b").join("README.md"), "from b\n");
    write(&root_of(&env, "a").join("docs/a.md"), "agent\n");
    write(&p.join("docs/a.md"), "host\n");
    write(&root_of(&env, "a").join("slot"), "agent file\n");
    write(&p.join("slot/inner.txt"), "host dir\n");
    let out = env.json(&["workspace", "sync", "a", "--yes", "--json"]);
    assert_eq!(out["applied"], 1, "README.md from a: {out}");
    assert_eq!(out["conflicts"], 2, "{out}");
    assert_eq!(read(&p.join("README.md")), "from a\n");
    assert_eq!(
        read(&p.join("docs/a.md")),
        "host\n",
        "the host's edit survives"
    );
    assert_eq!(read(&p.join("slot/inner.txt")), "host dir\n");
    // b started from the old README: now a conflict, reported with both.
    let out = env.json(&["workspace", "sync", "b", "--yes", "--json"]);
    assert_eq!(out["conflicts"], 1, "{out}");
    assert_eq!(read(&p.join("README.md")), "from a\n");
    let st = env.json(&["workspace", "status", "b", "--json"]);
    assert_eq!(st["conflicts"], serde_json::json!(["README.md"]), "{st}");
    let diff = env.ok(&["workspace", "diff", "b", "README.md"]);
    assert!(
        diff.contains("CONFLICT README.md") && diff.contains("-from a") && diff.contains("+from b"),
        "both sides shown: {diff}"
    );
    // --theirs takes the agent's side; --ours needs the workspace unmounted.
    env.ok(&["workspace", "sync", "b", "--yes", "--theirs", "README.md"]);
    assert_eq!(read(&p.join("README.md")), "from b\n");
    let run = env.run(&[
        "workspace",
        "sync",
        "a",
        "--yes",
        "--ours",
        "--json",
        "docs",
    ]);
    assert_eq!(
        run.status.code(),
        Some(1),
        "a failed item makes sync exit 1"
    );
    let out: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(out["failed"], 1, "{out}");
    assert!(
        out["items"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("unmount it first"),
        "{out}"
    );
    drop(mb);
    drop(ma);
    let out = env.json(&["workspace", "sync", "a", "--yes", "--ours", "--json"]);
    assert_eq!(out["failed"], 0, "{out}");
    assert_eq!(read(&p.join("docs/a.md")), "host\n");
    assert_eq!(read(&p.join("slot/inner.txt")), "host dir\n");
    let st = env.json(&["workspace", "status", "a", "--json"]);
    assert!(st["conflicts"].as_array().unwrap().is_empty(), "{st}");
    assert!(
        !env.store.join("workspaces/a/upper/docs/a.md").exists(),
        "ours drops the agent's copy"
    );
    env.fsck_ok();
}

#[test]
fn symlinks_are_synced_as_symlinks_and_never_followed() {
    require_root!();
    let env = Env::new();
    let p = project(&env);
    let outside = env.path("outside");
    write(&outside.join("secret.txt"), "outside\n");
    env.ok(&["workspace", "create", "w", "--project", p.to_str().unwrap()]);
    let m = mount(&env, "w");
    let r = root_of(&env, "w");
    std::os::unix::fs::symlink(&outside, r.join("escape")).unwrap();
    std::os::unix::fs::symlink("../../etc/passwd", r.join("docs/up")).unwrap();
    write(&r.join("docs/new.md"), "new\n");
    // The host swaps a directory the agent writes into for a symlink out.
    std::fs::remove_dir_all(p.join("docs")).unwrap();
    std::os::unix::fs::symlink(&outside, p.join("docs")).unwrap();
    let out = env.json(&["workspace", "sync", "w", "--yes", "--json"]);
    assert_eq!(
        std::fs::read_link(p.join("escape")).unwrap(),
        outside,
        "{out}"
    );
    assert!(
        !outside.join("new.md").exists(),
        "wrote through a symlink: {out}"
    );
    assert!(!outside.join("up").exists(), "{out}");
    assert_eq!(read(&outside.join("secret.txt")), "outside\n");
    let items = out["items"].as_array().unwrap();
    assert!(
        items
            .iter()
            .any(|i| i["path"] == "docs/new.md" && i["outcome"] != "applied"),
        "{out}"
    );
    drop(m);
    env.fsck_ok();
}

#[test]
fn a_killed_sync_leaves_every_file_old_or_new_and_a_rerun_finishes() {
    require_root!();
    let env = Env::new();
    let p = env.path("project");
    let n = 300;
    for i in 0..n {
        write(
            &p.join(format!("d{}/f{i}.txt", i % 7)),
            &format!("old {i}\n"),
        );
    }
    env.ok(&["workspace", "create", "w", "--project", p.to_str().unwrap()]);
    let m = mount(&env, "w");
    let r = root_of(&env, "w");
    let new = |i: usize| format!("new {i} {}\n", "y".repeat(20_000));
    for i in 0..n {
        write(&r.join(format!("d{}/f{i}.txt", i % 7)), &new(i));
    }
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..6 {
        let mut child = env
            .cmd()
            .args(["workspace", "sync", "w", "--yes", "-q"])
            .spawn()
            .unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(20 + seed % 400));
        let _ = child.kill();
        let _ = child.wait();
        for i in 0..n {
            let got = read(&p.join(format!("d{}/f{i}.txt", i % 7)));
            assert!(
                got == format!("old {i}\n") || got == new(i),
                "f{i} is torn: {} bytes",
                got.len()
            );
        }
    }
    env.ok(&["workspace", "sync", "w", "--yes"]);
    for i in 0..n {
        assert_eq!(read(&p.join(format!("d{}/f{i}.txt", i % 7))), new(i));
    }
    let leftovers = sh(&format!(
        "find '{}' -name '.botyard-sync-*' | wc -l",
        p.display()
    ));
    assert_eq!(leftovers.trim(), "0", "temporary files left in the project");
    drop(m);
    env.fsck_ok();
}

/// A process on a pseudo-terminal, its output collected by a thread.
struct Pty {
    child: std::process::Child,
    master: std::fs::File,
    out: Arc<Mutex<Vec<u8>>>,
}

impl Pty {
    fn spawn(mut cmd: std::process::Command) -> Pty {
        let (mut m, mut s) = (0, 0);
        // SAFETY: openpty writes two fds into the given ints.
        let rc = unsafe {
            libc::openpty(
                &mut m,
                &mut s,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty failed");
        use std::os::fd::FromRawFd;
        // SAFETY: both fds were just returned by openpty and are ours.
        let (master, slave) =
            unsafe { (std::fs::File::from_raw_fd(m), std::fs::File::from_raw_fd(s)) };
        cmd.stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave);
        let child = cmd.spawn().unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let (o, mut r) = (out.clone(), master.try_clone().unwrap());
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 4096];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                o.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Pty { child, master, out }
    }

    /// Waits until the output holds `text` `count` times.
    fn expect(&self, text: &str, count: usize) {
        let t = Instant::now();
        loop {
            let s = String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned();
            if s.matches(text).count() >= count {
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "never saw {text:?} ×{count} in:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn send(&mut self, line: &str) {
        use std::io::Write;
        self.master
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
    }

    fn output(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }
}

#[test]
fn interactive_sync_asks_per_file_in_a_terminal() {
    require_root!();
    let env = Env::new();
    let p = project(&env);
    env.ok(&["workspace", "create", "w", "--project", p.to_str().unwrap()]);
    let m = mount(&env, "w");
    let r = root_of(&env, "w");
    write(&r.join("a-accept.txt"), "accept me\n");
    write(&r.join("b-reject.txt"), "reject me\n");
    write(&r.join("c-diff.txt"), "look at me\n");
    write(&r.join("d-later.txt"), "later\n");
    // Interactive without a terminal is refused.
    let err = env.fails(&["workspace", "sync", "w", "--interactive"]);
    assert!(err.contains("terminal"), "{err}");

    let mut cmd = env.cmd();
    cmd.args(["workspace", "sync", "w", "--interactive"]);
    let mut pty = Pty::spawn(cmd);
    pty.expect("[q]uit?", 1);
    pty.send("a");
    pty.expect("[q]uit?", 2);
    pty.send("r");
    pty.expect("[q]uit?", 3);
    pty.send("d");
    pty.expect("+look at me", 1);
    pty.expect("[q]uit?", 4);
    pty.send("a");
    pty.expect("[q]uit?", 5);
    pty.send("q");
    let status = pty.child.wait().unwrap();
    let out = pty.output();
    assert!(status.success(), "{out}");
    assert_eq!(read(&p.join("a-accept.txt")), "accept me\n", "{out}");
    assert_eq!(read(&p.join("c-diff.txt")), "look at me\n", "{out}");
    assert!(!p.join("b-reject.txt").exists(), "{out}");
    assert!(!p.join("d-later.txt").exists(), "{out}");
    let st = env.json(&["workspace", "status", "w", "--json"]);
    assert_eq!(
        st["pending"]["added"], 2,
        "rejected and unanswered stay: {st}"
    );
    drop(m);
}

#[test]
fn an_overflowing_event_queue_is_logged_and_rescanned() {
    require_root!();
    let env = Env::new();
    let p = project(&env);
    env.ok(&["workspace", "create", "w", "--project", p.to_str().unwrap()]);
    // A tiny queue for the watcher's inotify instance (read at its start).
    let knob = "/proc/sys/fs/inotify/max_queued_events";
    let old = read(Path::new(knob));
    std::fs::write(knob, "16").unwrap();
    let m = env.run(&["workspace", "mount", "w"]);
    std::fs::write(knob, &old).unwrap();
    assert!(m.status.success(), "{}", String::from_utf8_lossy(&m.stderr));
    let m = Mounted {
        env: &env,
        name: "w".into(),
    };
    let pid: i32 = read(&env.store.join("workspaces/w/audit.pid"))
        .trim()
        .parse()
        .unwrap();
    // Stop the watcher, make far more changes than its queue holds.
    sh(&format!("kill -STOP {pid}"));
    let r = root_of(&env, "w");
    // In a watched directory (a new one would be read whole when its
    // creation is seen).
    for i in 0..200 {
        write(&r.join(format!("docs/f{i}")), "x");
    }
    std::fs::remove_file(r.join("old.txt")).unwrap();
    sh(&format!("kill -CONT {pid}"));
    wait_event(&env, "w", |e| e["event"] == "overflow");
    // The rescan logs in path order; old.txt comes after docs/.
    let ev = wait_event(&env, "w", |e| e["rescan"] == true && e["path"] == "old.txt");
    assert!(
        ev.iter()
            .any(|e| e["rescan"] == true && e["event"] == "delete" && e["path"] == "old.txt"),
        "the rescan records the whiteout as a delete: {ev:#?}"
    );
    assert!(has(&ev, "create", "docs/f199"), "{ev:#?}");
    assert!(
        !ev.iter()
            .any(|e| e["rescan"] == true && e["path"] == "docs"),
        "a directory copied up is not a create: {ev:#?}"
    );
    // The watcher goes on after the rescan.
    write(&r.join("after.txt"), "x");
    wait_event(&env, "w", |e| {
        e["event"] == "create" && e["path"] == "after.txt"
    });
    let human = env.ok(&["workspace", "log", "w"]);
    assert!(
        human.contains("overflow") && human.contains("[found by rescan]"),
        "{human}"
    );
    drop(m);
}

#[test]
fn auto_mode_syncs_on_its_own_and_unsafe_mode_writes_the_project() {
    require_root!();
    let env = Env::new();
    let p = project(&env);
    let ps = p.to_str().unwrap();
    env.ok(&[
        "workspace",
        "create",
        "auto",
        "--project",
        ps,
        "--mode",
        "auto",
        "--interval",
        "1s",
    ]);
    let m = mount(&env, "auto");
    let err = env.fails(&["workspace", "watch", "nope"]);
    assert!(err.contains("no workspace nope"), "{err}");
    let watch = env
        .cmd()
        .args(["workspace", "watch", "auto"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // .env first: the round that syncs auto.txt has seen it too.
    write(&root_of(&env, "auto").join(".env"), "SECRET=1\n");
    write(&root_of(&env, "auto").join("auto.txt"), "synced by watch\n");
    let t = Instant::now();
    while !p.join("auto.txt").exists() {
        assert!(t.elapsed() < Duration::from_secs(20), "watch never synced");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(read(&p.join("auto.txt")), "synced by watch\n");
    sh(&format!("kill -TERM {}", watch.id()));
    let out = watch.wait_with_output().unwrap();
    assert!(out.status.success(), "watch exits 0 on SIGTERM");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("rejected") && printed.contains(".env"),
        "{printed}"
    );
    assert!(!p.join(".env").exists());
    drop(m);
    assert!(
        env.store.join("workspaces/auto/upper/.env").exists(),
        "rejected stays in the upper"
    );

    // Secure workspaces are not watched.
    env.ok(&["workspace", "create", "sec", "--project", ps]);
    let err = env.fails(&["workspace", "watch", "sec"]);
    assert!(err.contains("--mode auto"), "{err}");

    env.ok(&[
        "workspace",
        "create",
        "raw",
        "--project",
        ps,
        "--mode",
        "unsafe",
        "--i-understand",
    ]);
    let m = mount(&env, "raw");
    write(&root_of(&env, "raw").join("direct.txt"), "straight in\n");
    assert_eq!(read(&p.join("direct.txt")), "straight in\n");
    wait_event(&env, "raw", |e| {
        e["event"] == "create" && e["path"] == "direct.txt"
    });
    let err = env.fails(&["workspace", "sync", "raw", "--yes"]);
    assert!(err.contains("unsafe mode"), "{err}");
    drop(m);
    env.fsck_ok();
}

#[test]
fn reset_discards_all_or_some_changes() {
    require_root!();
    let env = Env::new();
    let p = project(&env);
    env.ok(&["workspace", "create", "w", "--project", p.to_str().unwrap()]);
    let m = mount(&env, "w");
    let r = root_of(&env, "w");
    write(&r.join("src/main.rs"), "changed\n");
    write(&r.join("docs/b.md"), "b\n");
    std::fs::remove_file(r.join("old.txt")).unwrap();
    let err = env.fails(&["workspace", "reset", "w", "--yes"]);
    assert!(err.contains("unmount it first"), "{err}");
    drop(m);
    let err = env.fails(&["workspace", "reset", "w", "docs"]);
    assert!(err.contains("--yes"), "no terminal to confirm: {err}");
    let err = env.fails(&["workspace", "reset", "w", "--yes", "../etc"]);
    assert!(err.contains("relative to the project"), "{err}");
    env.ok(&["workspace", "reset", "w", "--yes", "docs"]);
    let st = env.json(&["workspace", "status", "w", "--json"]);
    assert_eq!(
        st["pending"],
        serde_json::json!({"modified": 1, "deleted": 1}),
        "{st}"
    );
    env.ok(&["workspace", "reset", "w", "--yes"]);
    let st = env.json(&["workspace", "status", "w", "--json"]);
    assert_eq!(st["pending"], serde_json::json!({}), "{st}");
    let m = mount(&env, "w");
    assert_eq!(
        read(&root_of(&env, "w").join("src/main.rs")),
        "fn main() {}\n"
    );
    assert!(root_of(&env, "w").join("old.txt").exists());
    drop(m);
    // The built-in policy prints and parses.
    let pol = env.ok(&["workspace", "policy", "--default"]);
    assert!(pol.contains("deny = [\".git/**\", \".env*\""), "{pol}");
    let f = env.path("p.toml");
    std::fs::write(&f, &pol).unwrap();
    env.ok(&[
        "workspace",
        "create",
        "w2",
        "--project",
        p.to_str().unwrap(),
        "--policy",
        f.to_str().unwrap(),
    ]);
    // An allow-list policy, read again at every sync.
    let allow = env.path("allow.toml");
    std::fs::write(&allow, "mode = \"allowlist\"\nallow = [\"docs/**\"]\n").unwrap();
    env.ok(&[
        "workspace",
        "create",
        "w3",
        "--project",
        p.to_str().unwrap(),
        "--policy",
        allow.to_str().unwrap(),
    ]);
    let m = mount(&env, "w3");
    write(&root_of(&env, "w3").join("docs/x.md"), "x\n");
    write(&root_of(&env, "w3").join("src/y.rs"), "y\n");
    let dry = env.json(&["workspace", "sync", "w3", "--dry-run", "--json"]);
    let by_path = |path: &str| {
        dry["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["path"] == path)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_path("docs/x.md")["outcome"], "would_apply", "{dry}");
    assert_eq!(by_path("src/y.rs")["outcome"], "rejected", "{dry}");
    assert!(
        by_path("src/y.rs")["reason"]
            .as_str()
            .unwrap()
            .contains("allow list"),
        "{dry}"
    );
    std::fs::write(&allow, "mode = \"allowlist\"\nallow = [\"docs/**\"\n").unwrap();
    let err = env.fails(&["workspace", "sync", "w3", "--dry-run"]);
    assert!(err.contains("policy file") && err.contains("line"), "{err}");
    drop(m);
}

/// What a directory holds, for comparing a project with an agent's view:
/// path → (kind, permission bits, content or target).
fn manifest(root: &Path) -> std::collections::BTreeMap<String, (char, u32, Vec<u8>)> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let r = rel.join(e.file_name());
            let key = r.to_string_lossy().into_owned();
            // A view that lists a name it cannot show is itself a finding.
            let md = match std::fs::symlink_metadata(e.path()) {
                Ok(md) => md,
                Err(err) => {
                    out.insert(key, ('?', 0, err.to_string().into_bytes()));
                    continue;
                }
            };
            let mode = md.permissions().mode() & 0o7777;
            if md.is_dir() {
                out.insert(key, ('d', mode, vec![]));
                stack.push(r);
            } else if md.file_type().is_symlink() {
                let t = std::fs::read_link(e.path()).unwrap();
                out.insert(key, ('l', 0, t.as_os_str().as_encoded_bytes().to_vec()));
            } else {
                out.insert(key, ('f', mode, std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out
}

/// Random creates, edits, deletes and renames of files and directories
/// (directory swaps through a temporary name included), synced with
/// `--yes` round after round: the project always ends equal to the
/// agent's view, and a remount shows the agent exactly what it had.
#[test]
fn random_changes_synced_leave_the_project_equal_to_the_agents_view() {
    require_root!();
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }
    fn entries(root: &Path, want_dirs: bool) -> Vec<PathBuf> {
        manifest(root)
            .into_iter()
            .filter(|(_, (k, _, _))| (*k == 'd') == want_dirs)
            .map(|(p, _)| PathBuf::from(p))
            .collect()
    }
    let names = ["a", "b", "c", "d", "e"];
    let seeds: u64 = std::env::var("BOTYARD_TEST_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    for seed in 1..=seeds {
        let env = Env::new();
        let p = env.path("project");
        for d in ["A/x", "B/y", "C"] {
            std::fs::create_dir_all(p.join(d)).unwrap();
        }
        for (f, t) in [
            ("A/a1", "a1\n"),
            ("A/x/ax", "ax\n"),
            ("B/b1", "b1\n"),
            ("B/y/by", "by\n"),
            ("top", "t\n"),
        ] {
            write(&p.join(f), t);
        }
        env.ok(&["workspace", "create", "w", "--project", p.to_str().unwrap()]);
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut log = Vec::new();
        let mut m = Some(mount(&env, "w"));
        for round in 0..6 {
            let r = root_of(&env, "w");
            for _ in 0..6 {
                let dirs = {
                    let mut d = entries(&r, true);
                    d.push(PathBuf::new());
                    d
                };
                let files = entries(&r, false);
                let name = names[rng.below(names.len())];
                let dir = dirs[rng.below(dirs.len())].clone();
                match rng.below(8) {
                    0 | 1 => {
                        let f = dir.join(format!("f{name}"));
                        if !r.join(&f).is_dir() {
                            log.push(format!("write {}", f.display()));
                            std::fs::write(r.join(&f), format!("{seed}-{round}-{}\n", rng.next()))
                                .unwrap();
                        }
                    }
                    2 if !files.is_empty() => {
                        let f = &files[rng.below(files.len())];
                        log.push(format!("rm {}", f.display()));
                        std::fs::remove_file(r.join(f)).unwrap();
                    }
                    3 => {
                        let d = dir.join(format!("D{name}"));
                        if !r.join(&d).exists() {
                            log.push(format!("mkdir {}", d.display()));
                            std::fs::create_dir(r.join(&d)).unwrap();
                            std::fs::write(r.join(&d).join("inner"), "in\n").unwrap();
                        }
                    }
                    4 if dirs.len() > 1 => {
                        let d = &dirs[rng.below(dirs.len() - 1)];
                        log.push(format!("rm -r {}", d.display()));
                        std::fs::remove_dir_all(r.join(d)).unwrap();
                    }
                    5 if !files.is_empty() => {
                        let f = &files[rng.below(files.len())];
                        let to = dir.join(format!("m{name}"));
                        if !r.join(&to).exists() && !r.join(f).is_dir() {
                            log.push(format!("mv {} {}", f.display(), to.display()));
                            std::fs::rename(r.join(f), r.join(&to)).unwrap();
                        }
                    }
                    6 if dirs.len() > 1 => {
                        let d = dirs[rng.below(dirs.len() - 1)].clone();
                        let to = d.with_file_name(format!("R{name}"));
                        if !r.join(&to).exists() {
                            log.push(format!("mv {} {}", d.display(), to.display()));
                            std::fs::rename(r.join(&d), r.join(&to)).unwrap();
                        }
                    }
                    7 => {
                        // Swap two sibling directories through a temporary name.
                        let tops: Vec<PathBuf> = dirs
                            .iter()
                            .filter(|d| d.parent() == Some(Path::new("")))
                            .cloned()
                            .collect();
                        if tops.len() >= 2 {
                            let a = &tops[rng.below(tops.len())];
                            let b = &tops[rng.below(tops.len())];
                            if a != b {
                                log.push(format!("swap {} {}", a.display(), b.display()));
                                std::fs::rename(r.join(a), r.join("T")).unwrap();
                                std::fs::rename(r.join(b), r.join(a)).unwrap();
                                std::fs::rename(r.join("T"), r.join(b)).unwrap();
                            }
                        }
                    }
                    _ => {}
                }
            }
            // Synced while mounted: the agent's view must not change under
            // it (what cannot be applied safely waits for the unmount).
            let agent = manifest(&r);
            let out = env.run(&["workspace", "sync", "w", "--yes"]);
            let said = |o: &std::process::Output| {
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )
            };
            assert!(out.status.success(), "{}", said(&out));
            assert_eq!(
                manifest(&r),
                agent,
                "seed {seed} round {round}: a mounted sync changed the agent's view after\n{}\nsync said: {}",
                log.join("\n"),
                said(&out)
            );
            drop(m.take());
            let out2 = env.run(&["workspace", "sync", "w", "--yes"]);
            assert!(out2.status.success(), "{}", said(&out2));
            assert_eq!(
                manifest(&p),
                agent,
                "seed {seed} round {round}: the project differs from the agent's view after\n{}\nsyncs said: {}{}",
                log.join("\n"),
                said(&out),
                said(&out2)
            );
            m = Some(mount(&env, "w"));
            assert_eq!(
                manifest(&root_of(&env, "w")),
                agent,
                "seed {seed} round {round}: a remount changed the agent's view after\n{}\nsyncs said: {}{}",
                log.join("\n"),
                said(&out),
                said(&out2)
            );
        }
        drop(m);
        env.fsck_ok();
    }
}
