//! `botyard run` with real runc sandboxes on a real bot (a static busybox
//! root), the supervisor, the mount allowlist and secrets.

mod common;

use common::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A store with image bb:1 (busybox) and bot b1.
fn setup() -> Env {
    busybox_env(&[
        "sh", "echo", "cat", "ls", "id", "env", "sleep", "mkdir", "touch", "rm", "yes", "head",
        "grep", "hostname", "kill", "seq", "tr", "wc", "dd", "true",
    ])
}

fn have_runc() -> bool {
    have_tool("runc", "runc")
}

fn run(env: &Env, args: &[&str]) -> Output {
    let mut a = vec!["run"];
    a.extend_from_slice(args);
    env.run(&a)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn mounted_below(p: &Path) -> usize {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let p = p.to_string_lossy();
    info.lines()
        .filter(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|m| m.starts_with(p.as_ref()))
        })
        .count()
}

fn containers() -> String {
    String::from_utf8_lossy(&Command::new("runc").arg("list").output().unwrap().stdout).into_owned()
}

/// The running session's container id (from its state file), once runc
/// lists it.
fn wait_container(env: &Env) -> String {
    let t = Instant::now();
    loop {
        let state = std::fs::read_to_string(env.store.join("bots/b1/session/state.json"))
            .unwrap_or_default();
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&state) {
            let id = v["container_id"].as_str().unwrap().to_string();
            if containers()
                .lines()
                .any(|l| l.starts_with(&id) && l.contains("running"))
            {
                return id;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the sandbox never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_command_runs_sandboxed_on_its_bot_and_its_changes_stay_there() {
    require_root!();
    if !have_runc() {
        return;
    }
    let env = setup();
    let o = run(&env, &["b1", "--", "sh", "-c", "echo out; echo err >&2; id -u; id -g; hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo; grep -c : /proc/net/dev; echo made > /tmp/made; exit 7"]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "out");
    assert_eq!(
        lines[1..4],
        ["1000", "1000", "b1"],
        "non-root, own uts: {out}"
    );
    assert!(
        lines[4].contains("supervise"),
        "the supervisor is PID 1: {out}"
    );
    assert_eq!(lines[5], "1", "only loopback: {out}");
    assert!(stderr(&o).contains("err"));
    assert_eq!(
        mounted_below(&env.store),
        0,
        "the bot is unmounted after the run"
    );
    let diff = env.ok(&["bot", "diff", "b1"]);
    assert!(
        diff.contains("tmp/made"),
        "the run's writes are the bot's: {diff}"
    );

    let o = run(
        &env,
        &[
            "b1",
            "--user",
            "0:0",
            "--network",
            "host",
            "--",
            "sh",
            "-c",
            "id -u; grep -c : /proc/net/dev",
        ],
    );
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0");
    assert!(lines[1].parse::<u32>().unwrap() >= 1, "{out}");

    // --commit folds the run's changes in.
    let o = run(
        &env,
        &[
            "b1",
            "--commit",
            "--",
            "sh",
            "-c",
            "echo c > /tmp/committed",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("committed bot b1"), "{}", stderr(&o));
    let show = env.json(&["bot", "show", "b1", "--json"]);
    assert_eq!(show["uncommitted_bytes"], 0, "{show}");
    // Input is the command's.
    let mut child = env
        .cmd()
        .args(["run", "b1", "--", "sh", "-c", "cat | wc -l"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"a\nb\nc\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(stdout(&o).trim(), "3");
    let tag = env.store.to_string_lossy().to_string();
    assert!(
        !containers().lines().any(|l| l.contains(&tag)),
        "no sandbox left: {}",
        containers()
    );
    env.fsck_ok();
}

#[test]
fn secrets_reach_the_agent_and_never_disk_or_argv() {
    require_root!();
    if !have_runc() {
        return;
    }
    let env = setup();
    let secret = format!("sk-test-{}", std::process::id() * 7919);
    let mut child = env
        .cmd()
        .env("AGENT_TOKEN", &secret)
        .args([
            "run", "b1", "--secret", "AGENT_TOKEN", "--",
            "sh", "-c",
            "echo \"len=${#AGENT_TOKEN}\"; env -i sh -c 'echo \"cleared=${AGENT_TOKEN:-none}\"'; cat /proc/1/environ 2>/dev/null | grep -c AGENT_TOKEN; echo started > /tmp/started; sleep 2",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let bundle = env.store.join("bots/b1/session");
    let t = Instant::now();
    let mut scans = 0;
    while child.try_wait().unwrap().is_none() {
        // Every process's argv, the bundle and the bot's upper.
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
                assert!(
                    !String::from_utf8_lossy(&c).contains(&secret),
                    "secret in the argv of {:?}",
                    e.path()
                );
            }
        }
        let grep = Command::new("grep")
            .args(["-r", "-l", "-F", &secret])
            .arg(&bundle)
            .arg(env.store.join("bots/b1/upper"))
            .output()
            .unwrap();
        assert!(
            grep.stdout.is_empty(),
            "secret on disk: {}",
            String::from_utf8_lossy(&grep.stdout)
        );
        scans += 1;
        assert!(t.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(scans > 5, "scanned during the run");
    let o = child.wait_with_output().unwrap();
    let out = stdout(&o);
    assert!(out.contains(&format!("len={}", secret.len())), "{out}");
    assert!(out.contains("cleared=none"), "{out}");
    assert!(
        out.lines().any(|l| l == "0"),
        "not in the supervisor's environment (which the agent cannot read anyway): {out}"
    );
    let grep = Command::new("grep")
        .args(["-r", "-l", "-F", &secret])
        .arg(&env.store)
        .output()
        .unwrap();
    assert!(
        grep.stdout.is_empty(),
        "secret in the store: {}",
        String::from_utf8_lossy(&grep.stdout)
    );
    let err = env.fails(&["run", "b1", "--secret", "NOT_SET_ANYWHERE", "--", "true"]);
    assert!(err.contains("NOT_SET_ANYWHERE is not set"), "{err}");
    let err = env.fails(&["run", "b1", "--secret", "bad-name", "--", "true"]);
    assert!(
        err.contains("not a valid environment variable name"),
        "{err}"
    );
}

#[test]
fn faults_end_cleanly_with_a_clear_reason() {
    require_root!();
    if !have_runc() {
        return;
    }
    let env = setup();
    let err = env.fails(&["run", "nope", "--", "true"]);
    assert!(err.contains("no bot nope"), "{err}");
    let err = env.fails(&["run", "b1", "--runtime", "/nonexistent/runc", "--", "true"]);
    assert!(err.contains("does not exist"), "{err}");
    let o = env
        .cmd()
        .env("PATH", "/nonexistent")
        .args(["run", "b1", "--", "true"])
        .output()
        .unwrap();
    assert!(
        stderr(&o).contains("install the Debian package runc"),
        "{}",
        stderr(&o)
    );
    // A crash, a hang, a flood, a fork bomb.
    let o = run(&env, &["b1", "--", "sh", "-c", "kill -SEGV $$"]);
    assert_eq!(o.status.code(), Some(139), "{}", stderr(&o));
    let t = Instant::now();
    let o = run(&env, &["b1", "--timeout", "1s", "--", "sleep", "60"]);
    assert!(t.elapsed() < Duration::from_secs(15));
    assert!(stderr(&o).contains("--timeout"), "{}", stderr(&o));
    assert_ne!(o.status.code(), Some(0));
    let o = run(&env, &["b1", "--output-cap", "100KiB", "--", "yes"]);
    assert!(o.stdout.len() as u64 <= 102_400, "{} bytes", o.stdout.len());
    assert!(stderr(&o).contains("--output-cap"), "{}", stderr(&o));
    let t = Instant::now();
    let o = run(
        &env,
        &[
            "b1",
            "--pids",
            "50",
            "--timeout",
            "10s",
            "--",
            "sh",
            "-c",
            "bomb() { bomb | bomb & }; bomb; sleep 1; echo survived",
        ],
    );
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "the fork bomb was contained"
    );
    let _ = o;
    // Over its memory limit, the agent is killed by the kernel.
    let o = run(
        &env,
        &[
            "b1",
            "--memory",
            "32MiB",
            "--",
            "sh",
            "-c",
            "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo ${#x}",
        ],
    );
    assert_eq!(o.status.code(), Some(137), "{}", stderr(&o));
    // A second run on a busy bot is refused, not queued.
    let mut first = env
        .cmd()
        .args(["run", "b1", "--", "sleep", "3"])
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !env.store.join("bots/b1/session/state.json").exists() {
        assert!(t.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(20));
    }
    let err = env.fails(&["run", "b1", "--", "true"]);
    assert!(
        err.contains("already running a session") && err.contains("refused, not queued"),
        "{err}"
    );
    assert!(first.wait().unwrap().success());
    assert_eq!(mounted_below(&env.store), 0);
    env.fsck_ok();
}

#[test]
fn ctrl_c_and_sigkill_leave_nothing_behind() {
    require_root!();
    if !have_runc() {
        return;
    }
    let env = setup();
    let child = env
        .cmd()
        .args(["run", "b1", "--", "sleep", "60"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let id = wait_container(&env);
    sh(&format!("kill -INT {}", child.id()));
    let t = Instant::now();
    let o = child.wait_with_output().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "Ctrl-C stops promptly"
    );
    assert!(stderr(&o).contains("interrupted"), "{}", stderr(&o));
    assert!(!containers().contains(&id), "{}", containers());
    assert_eq!(mounted_below(&env.store), 0);

    // SIGKILL of botyard: the next command finds and cleans the sandbox.
    let mut child = env
        .cmd()
        .args(["run", "b1", "--", "sleep", "60"])
        .spawn()
        .unwrap();
    let id = wait_container(&env);
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // Any bot command finds it.
    env.ok(&["bot", "ls"]);
    assert!(!containers().contains(&id), "{}", containers());
    assert_eq!(mounted_below(&env.store), 0, "nothing left mounted");
    let mut child = env
        .cmd()
        .args(["run", "b1", "--", "sleep", "60"])
        .spawn()
        .unwrap();
    let id = wait_container(&env);
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let o = run(&env, &["b1", "--", "echo", "next"]);
    assert_eq!(stdout(&o).trim(), "next", "{}", stderr(&o));
    assert!(!containers().contains(&id), "{}", containers());
    assert_eq!(mounted_below(&env.store), 0, "nothing left mounted");
    env.fsck_ok();
}

fn allowlist(env: &Env, json: &str) -> PathBuf {
    let p = env.path("allow.json");
    std::fs::write(&p, json).unwrap();
    p
}

#[test]
fn mounts_follow_the_allowlist() {
    require_root!();
    if !have_runc() {
        return;
    }
    let env = setup();
    let data = env.path("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    std::fs::write(data.join("sub/f.txt"), "data\n").unwrap();
    let home = env.path("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::create_dir_all(home.join("code")).unwrap();
    // Writable for the sandbox's user, so only the mount can say no.
    sh(&format!(
        "chmod 0777 '{}/sub' '{}/code'",
        data.display(),
        home.display()
    ));
    std::os::unix::fs::symlink(home.join(".ssh"), data.join("keys")).unwrap();
    let run_with = |allow: &Path, args: &[&str]| {
        let mut a = vec!["run", "b1"];
        a.extend_from_slice(args);
        env.cmd()
            .env("BOTYARD_MOUNT_ALLOWLIST", allow)
            .args(&a)
            .output()
            .unwrap()
    };
    let ds = format!("{}/sub:d", data.display());
    // No allowlist file: nothing may be mounted.
    let none = env.path("missing.json");
    let o = run_with(&none, &["--mount", &ds, "--", "true"]);
    assert!(
        stderr(&o).contains("not below any allowed root"),
        "{}",
        stderr(&o)
    );
    let allow = allowlist(
        &env,
        &format!(
            r#"{{"allowed_roots": [{{"path": "{}", "allow_read_write": true}}, {{"path": "{}"}}], "non_main_read_only": true}}"#,
            data.display(),
            home.display()
        ),
    );
    let o = run_with(
        &allow,
        &[
            "--mount",
            &ds,
            "--",
            "sh",
            "-c",
            "cat /mnt/d/f.txt; touch /mnt/d/x 2>/dev/null && echo writable || echo read-only",
        ],
    );
    assert_eq!(
        stdout(&o),
        "data\nread-only\n",
        "not --main: read-only; {}",
        stderr(&o)
    );
    let o = run_with(
        &allow,
        &[
            "--main",
            "--mount",
            &ds,
            "--",
            "sh",
            "-c",
            "touch /mnt/d/x && echo writable",
        ],
    );
    assert_eq!(stdout(&o), "writable\n", "{}", stderr(&o));
    assert!(data.join("sub/x").exists());
    let code = format!("{}/code:c", home.display());
    let o = run_with(
        &allow,
        &[
            "--main",
            "--mount",
            &code,
            "--",
            "sh",
            "-c",
            "touch /mnt/c/x 2>/dev/null && echo writable || echo read-only",
        ],
    );
    assert_eq!(
        stdout(&o),
        "read-only\n",
        "root without read-write: {}",
        stderr(&o)
    );
    // Refused: a symlink into a blocked name, a directory holding one, a
    // path out of the mount base, the allowlist itself.
    let o = run_with(
        &allow,
        &[
            "--mount",
            &format!("{}/keys:k", data.display()),
            "--",
            "true",
        ],
    );
    assert!(stderr(&o).contains("blocked name .ssh"), "{}", stderr(&o));
    let o = run_with(
        &allow,
        &["--mount", &format!("{}:h", home.display()), "--", "true"],
    );
    assert!(
        stderr(&o).contains("contains the blocked name"),
        "{}",
        stderr(&o)
    );
    for bad in [
        format!("{}:/proc", data.display()),
        format!("{}:../etc", data.display()),
    ] {
        let o = run_with(&allow, &["--mount", &bad, "--", "true"]);
        assert!(
            stderr(&o).contains("relative to /mnt"),
            "{bad}: {}",
            stderr(&o)
        );
    }
    let o = run_with(
        &allow,
        &[
            "--mount",
            &format!("{}:a", env.dir.path().display()),
            "--",
            "true",
        ],
    );
    assert!(!o.status.success());
    // A broken allowlist is reported at the next use.
    std::fs::write(&allow, "{ not json").unwrap();
    let o = run_with(&allow, &["--mount", &ds, "--", "true"]);
    assert!(
        stderr(&o).contains("mount allowlist") && stderr(&o).contains("line 1"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn the_supervisor_runs_the_agent_once_per_message_in_ipc_mode() {
    require_root!();
    if !have_runc() {
        return;
    }
    let env = setup();
    let ipc = env.path("ipc");
    std::fs::create_dir_all(ipc.join("input")).unwrap();
    let mut child = env
        .cmd()
        .args([
            "run",
            "b1",
            "--ipc",
            ipc.to_str().unwrap(),
            "--idle",
            "20s",
            "--",
            "sh",
            "-c",
            "echo got:; cat; echo; exit 2",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let put = |name: &str, body: &str| {
        let tmp = ipc.join("input").join(format!(".{name}.tmp"));
        std::fs::write(&tmp, body).unwrap();
        std::fs::rename(&tmp, ipc.join("input").join(name)).unwrap();
    };
    put("001.json", r#"{"text": "hello"}"#);
    put("002.json", "not json");
    put("003.json", r#"{"text": "again"}"#);
    let t = Instant::now();
    while !(ipc.join("errors/002.json").exists()
        && std::fs::read_dir(ipc.join("input")).unwrap().count() == 0)
    {
        if t.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("messages not taken: {:?}", child.wait_with_output());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(ipc.join("input/_close"), "").unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "_close ends it with 0");
    let out = stdout(&o);
    let frames: Vec<serde_json::Value> = out
        .split(session_start())
        .skip(1)
        .map(|f| serde_json::from_str(f.split(session_end()).next().unwrap().trim()).unwrap())
        .collect();
    // Per message: taken, its output as it came, then the result.
    let of = |id: &str, event: &str| -> Vec<serde_json::Value> {
        frames
            .iter()
            .filter(|f| f["message"] == id && f["event"] == event)
            .cloned()
            .collect()
    };
    assert_eq!(of("001", "taken").len(), 1, "{out}");
    let streamed: String = of("001", "output")
        .iter()
        .map(|f| f["data"].as_str().unwrap())
        .collect();
    let frames: Vec<serde_json::Value> = frames
        .into_iter()
        .filter(|f| f["event"] == "result")
        .collect();
    assert_eq!(frames.len(), 2, "{out}");
    assert_eq!(frames[0]["message"], "001");
    assert_eq!(frames[0]["output"].as_str().unwrap(), streamed);
    assert_eq!(frames[0]["exit_code"], 2);
    assert!(
        frames[0]["output"]
            .as_str()
            .unwrap()
            .contains(r#"{"text": "hello"}"#),
        "{out}"
    );
    assert_eq!(frames[1]["message"], "003");
    let why = std::fs::read_to_string(ipc.join("errors/002.json.error")).unwrap();
    assert!(why.contains("not JSON"), "{why}");

    // Idle: the supervisor leaves on its own.
    let t = Instant::now();
    let o = run(
        &env,
        &[
            "b1",
            "--ipc",
            ipc.to_str().unwrap(),
            "--idle",
            "1s",
            "--",
            "cat",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(t.elapsed() < Duration::from_secs(10));

    // copy-self: the supervisor's files for an init container.
    let dir = env.path("copy");
    let line = env.ok(&["supervise", "copy-self", dir.to_str().unwrap()]);
    let argv: Vec<&str> = line.split_whitespace().collect();
    let o = Command::new(argv[0])
        .args(&argv[1..])
        .arg("--version")
        .output()
        .unwrap();
    assert!(stdout(&o).starts_with("botyard "), "{line}: {}", stderr(&o));
}

fn session_start() -> &'static str {
    "---BOTYARD-OUTPUT-START---"
}

fn session_end() -> &'static str {
    "---BOTYARD-OUTPUT-END---"
}

#[test]
fn a_workspace_appears_at_slash_workspace() {
    require_root!();
    if !have_runc() {
        return;
    }
    let env = setup();
    let project = env.path("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(project.join("README"), "hello\n").unwrap();
    // A project the sandbox's user owns: it may write at the top.
    sh(&format!("chown -R 1000:1000 '{}'", project.display()));
    env.ok(&[
        "workspace",
        "create",
        "w",
        "--project",
        project.to_str().unwrap(),
    ]);
    let o = run(
        &env,
        &[
            "b1",
            "--workspace",
            "w",
            "--",
            "sh",
            "-c",
            "pwd; cat README; echo agent > NEW",
        ],
    );
    assert_eq!(stdout(&o), "/workspace\nhello\n", "{}", stderr(&o));
    assert!(
        !project.join("NEW").exists(),
        "the project is untouched until sync"
    );
    let st = env.json(&["workspace", "status", "w", "--json"]);
    assert_eq!(st["pending"]["added"], 1, "{st}");
    env.ok(&["workspace", "unmount", "w"]);
}

/// Each botyard binary gets its own copy of the supervisor's files; gc
/// removes the copies of other binaries once no session runs from them.
#[test]
fn gc_removes_old_supervisor_copies_not_in_use() {
    require_root!();
    if !have_runc() {
        return;
    }
    let env = setup();
    // Another build: the same program at another path is another binary.
    let other = env.path("other-botyard");
    std::fs::copy(env!("CARGO_BIN_EXE_botyard"), &other).unwrap();
    let mut child = Command::new(&other)
        .env("BOTYARD_HOME", &env.store)
        .args(["run", "b1", "--", "sleep", "3"])
        .spawn()
        .unwrap();
    wait_container(&env);
    let sup = env.store.join("supervisor");
    let copies = || -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&sup)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    };
    let theirs = copies();
    assert_eq!(theirs.len(), 1, "{theirs:?}");
    // Made long ago, as far as gc can tell.
    sh(&format!("touch -d '2 hours ago' {}/*", sup.display()));
    let v = env.json(&["gc", "--dry-run", "--json"]);
    assert_eq!(v["supervisors"]["dirs"], 0, "in use, or ours: {v}");
    assert!(child.wait().unwrap().success());
    let v = env.json(&["gc", "--json"]);
    assert_eq!(v["supervisors"]["dirs"], 1, "{v}");
    assert!(
        v["supervisors"]["bytes"].as_u64().unwrap() > 1_000_000,
        "{v}"
    );
    assert!(!theirs[0].exists(), "the other binary's copy is gone");
    // Ours is made by a run, and stays however old.
    assert!(run(&env, &["b1", "--", "true"]).status.success());
    sh(&format!("touch -d '2 hours ago' {}/*", sup.display()));
    let v = env.json(&["gc", "--json"]);
    assert_eq!(v["supervisors"]["dirs"], 0, "{v}");
    assert_eq!(copies().len(), 1);
    assert!(run(&env, &["b1", "--", "true"]).status.success());
}

/// A sandbox's supervisor is the small `botyard-supervisor` built beside
/// botyard when it carries the same supervise code, and botyard itself
/// when it does not (an older build, or not a supervisor at all).
#[test]
fn the_small_supervisor_beside_botyard_is_used_only_when_it_matches() {
    require_root!();
    if !have_runc() {
        return;
    }
    let env = setup();
    let bin = env.path("bin");
    std::fs::create_dir(&bin).unwrap();
    let botyard = bin.join("botyard");
    std::fs::copy(env!("CARGO_BIN_EXE_botyard"), &botyard).unwrap();
    let lean = bin.join("botyard-supervisor");
    let run_with = |label: &str| -> u64 {
        let out = Command::new(&botyard)
            .env("BOTYARD_HOME", &env.store)
            .args(["run", "b1", "--", "echo", "hi"])
            .output()
            .unwrap();
        assert_eq!(stdout(&out), "hi\n", "{label}: {}", stderr(&out));
        // The copy this pair of binaries made (the newest).
        let newest = std::fs::read_dir(env.store.join("supervisor"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .max_by_key(|p| std::fs::metadata(p).unwrap().created().unwrap())
            .unwrap();
        std::fs::metadata(newest.join("botyard")).unwrap().len()
    };
    // The same supervise code: botyard itself with bytes after its end, so
    // the copy shows which file it came from.
    std::fs::copy(&botyard, &lean).unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&lean)
        .unwrap()
        .write_all(&[0u8; 4096])
        .unwrap();
    let lean_size = std::fs::metadata(&lean).unwrap().len();
    assert_eq!(run_with("matching"), lean_size, "the small one supervises");
    // Not this build's supervisor: botyard supervises, and the run works.
    std::fs::write(&lean, "#!/bin/sh\necho 0.0.0-other\n").unwrap();
    let own = std::fs::metadata(&botyard).unwrap().len();
    assert_eq!(run_with("not matching"), own, "botyard supervises");
    std::fs::remove_file(&lean).unwrap();
    assert_eq!(run_with("none beside"), own);
}
