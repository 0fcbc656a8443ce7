//! The daemon against real runc sandboxes: groups, messages delivered to
//! kept-alive sessions, fairness under the global limit, retries, bad
//! requests, the token, SIGTERM, and SIGKILL followed by a restart.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A store with image bb:1 (busybox) and bot b1.
fn setup() -> Env {
    busybox_env(&[
        "sh", "echo", "cat", "sleep", "date", "true", "false", "yes", "head",
    ])
}

fn curl(sock: &Path, args: &[&str]) -> (u16, String) {
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            r#"
import http.client, socket, sys
class C(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX); self.sock.connect(sys.argv[1])
c = C("botyard"); body = sys.argv[4].encode() if len(sys.argv) > 4 else None
c.request(sys.argv[2], sys.argv[3], body=body, headers={"Content-Type": "application/json"})
r = c.getresponse(); print(r.status); sys.stdout.write(r.read().decode())
"#,
        )
        .arg(sock)
        .args(args)
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    let (code, body) = s.split_once('\n').unwrap_or((&s, ""));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn wait_done(env: &Env, id: &str) -> serde_json::Value {
    let out = env.run(&["message", "wait", id, "--json", "--timeout", "60s"]);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)))
}

fn add_group(env: &Env, name: &str, bot: &str, agent: &str) {
    env.ok(&["group", "add", name, "--bot", bot, "--agent", agent]);
}

/// Waits until message `id` is delivered to its session.
fn wait_running(env: &Env, id: &str) {
    let t = Instant::now();
    while env.json(&["message", "show", id, "--json"])["state"] != "running" {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "message {id} never ran"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn send(env: &Env, group: &str, text: &str) -> String {
    env.ok(&["message", "send", group, text]).trim().to_string()
}

#[test]
fn messages_run_in_kept_alive_sessions_and_the_api_matches_its_document() {
    require_root!();
    if !have_tool("runc", "runc") {
        return;
    }
    let env = setup();
    let err = env.fails(&["message", "send", "g", "x"]);
    assert!(
        err.contains("not running") && err.contains("botyard serve"),
        "{err}"
    );
    let _d = start(&env, "max_sessions = 2\n", &[]);
    let mode = std::fs::metadata(socket(&env)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        mode.permissions().mode() & 0o777,
        0o600,
        "owner-only socket"
    );
    add_group(&env, "g", "b1", "sh -c 'echo got:; cat; echo; echo pid=$$'");
    let err = env.fails(&["group", "add", "g", "--bot", "b1", "--agent", "true"]);
    assert!(err.contains("already exists"), "{err}");
    let err = env.fails(&["group", "add", "h", "--bot", "nope", "--agent", "true"]);
    assert!(err.contains("no bot nope"), "{err}");
    let ids: Vec<String> = (0..3)
        .map(|i| send(&env, "g", &format!("hello {i}")))
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let m = wait_done(&env, id);
        assert_eq!(m["state"], "done", "{m}");
        assert!(
            m["output"]
                .as_str()
                .unwrap()
                .contains(&format!("hello {i}")),
            "{m}"
        );
    }
    let metrics = curl(&socket(&env), &["GET", "/metrics"]).1;
    assert!(
        metrics.contains("botyard_session_starts_total 1"),
        "one sandbox for three messages: {metrics}"
    );
    for name in [
        "botyard_messages_queued",
        "botyard_sessions_live 1",
        "botyard_queue_wait_seconds_count 3",
        "botyard_store_physical_bytes",
        "botyard_bot_unique_bytes{bot=\"b1\"}",
    ] {
        assert!(metrics.contains(name), "{name} missing: {metrics}");
    }
    let st = env.json(&["status", "--json"]);
    assert_eq!(st["sessions"][0]["answered"], 3, "{st}");
    let ls = env.json(&["message", "ls", "--group", "g", "--state", "done", "--json"]);
    assert_eq!(ls.as_array().unwrap().len(), 3);

    // The OpenAPI document lists exactly the routes, and each answers.
    let (code, doc) = curl(&socket(&env), &["GET", "/v1/openapi.json"]);
    assert_eq!(code, 200);
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    let mut documented: Vec<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.clone(), p.clone()))
        })
        .collect();
    documented.sort();
    let mut routes: Vec<(String, String)> = daemon::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    routes.sort();
    assert_eq!(documented, routes);
    // Deletions last, so every other route sees what it needs.
    routes.sort_by_key(|(m, _)| m == "delete");
    for (method, path) in &routes {
        let path = path.replace("{group}", "g").replace("{id}", &ids[0]);
        let body = if method == "post" {
            Some(r#"{"name": "x", "bot": "b1", "agent": ["true"]}"#)
        } else {
            None
        };
        let mut args = vec![method.to_uppercase(), path.clone()];
        args.extend(body.map(String::from));
        let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let (code, body) = curl(&socket(&env), &a);
        assert!(
            code != 404 || method == "delete",
            "{method} {path}: {code} {body}"
        );
        assert_ne!(code, 405, "{method} {path}");
    }
    // Server-sent events of a finished message end with its output.
    let (code, sse) = curl(
        &socket(&env),
        &["GET", &format!("/v1/messages/{}/events", ids[1])],
    );
    assert_eq!(code, 200);
    assert!(
        sse.contains("event: state") && sse.contains("event: result") && sse.contains("hello 1"),
        "{sse}"
    );
}

#[test]
fn output_streams_as_it_arrives_and_extends_the_deadline() {
    require_root!();
    if !have_tool("runc", "runc") {
        return;
    }
    let env = setup();
    let _d = start(&env, "deadline = \"2s\"\nmax_tries = 1\n", &[]);
    // Silent for 1.5 s at a time, 4.5 s in all: within the deadline only
    // because each line of output extends it.
    add_group(
        &env,
        "g",
        "b1",
        "sh -c 'echo first; sleep 1.5; echo second; sleep 1.5; echo third; sleep 1.5; echo last'",
    );
    let id = send(&env, "g", "x");
    let mut follow = env
        .cmd()
        .args(["message", "wait", &id, "--follow", "--timeout", "60s"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(follow.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "first");
    // The first line came while the agent was still at work.
    let m = env.json(&["message", "show", &id, "--json"]);
    assert_eq!(m["state"], "running", "{m}");
    // A second watcher, late, sees the output from the start.
    let (code, sse) = curl(
        &socket(&env),
        &["GET", &format!("/v1/messages/{id}/events")],
    );
    assert_eq!(code, 200);
    let outputs: Vec<&str> = sse
        .split("\n\n")
        .filter(|e| e.starts_with("event: output"))
        .collect();
    assert!(outputs.len() >= 2, "output came in frames: {sse}");
    assert!(outputs[0].contains("first"), "{sse}");
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    assert_eq!(rest, ["second", "third", "last"]);
    assert!(follow.wait().unwrap().success());
    let m = env.json(&["message", "show", &id, "--json"]);
    assert_eq!(m["state"], "done", "{m}");
    assert_eq!(m["output"], "first\nsecond\nthird\nlast\n");

    // --json: one object per event, the message last.
    let out = env.ok(&["message", "wait", &id, "--follow", "--json"]);
    let last: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "result", "{out}");
    assert_eq!(last["data"]["state"], "done", "{out}");
    let err = env.fails(&["message", "wait", "999999", "--follow"]);
    assert!(err.contains("no message 999999"), "{err}");
    // Every stream ended, and the daemon kept nothing for them.
    let st = env.json(&["status", "--json"]);
    assert_eq!(st["watched_messages"], 0, "{st}");
}

#[test]
fn bad_requests_get_clear_codes() {
    require_root!();
    if !have_tool("runc", "runc") {
        return;
    }
    let env = setup();
    env.ok(&["bot", "create", "b2", "--image", "bb:1"]);
    let d = start(&env, "max_message_size = 100\n", &[]);
    add_group(&env, "g", "b1", "cat");
    add_group(&env, "gone", "b2", "cat");
    let s = socket(&env);
    assert_eq!(curl(&s, &["POST", "/v1/groups/nope/messages", "{}"]).0, 404);
    let (code, body) = curl(&s, &["POST", "/v1/groups/g/messages", "{not json"]);
    assert_eq!(code, 400);
    assert!(body.contains("not JSON"), "{body}");
    let big = format!("{{\"t\": \"{}\"}}", "x".repeat(200));
    assert_eq!(curl(&s, &["POST", "/v1/groups/g/messages", &big]).0, 413);
    env.ok(&["bot", "rm", "b2"]);
    let (code, body) = curl(&s, &["POST", "/v1/groups/gone/messages", "{}"]);
    assert_eq!(code, 409);
    assert!(body.contains("gone"), "{body}");
    assert_eq!(curl(&s, &["GET", "/v1/messages/999999"]).0, 404);
    assert_eq!(curl(&s, &["GET", "/v1/messages?state=bogus"]).0, 400);
    drop(d);

    // Unsafe permissions: refused, with the fix.
    sh(&format!(
        "chmod 644 '{}'",
        env.store.join("daemon/state.db").display()
    ));
    let out = env.run(&["serve"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("open to other users") && err.contains("chmod 600"),
        "{err}"
    );
    sh(&format!(
        "chmod 600 '{}'",
        env.store.join("daemon/state.db").display()
    ));

    // TCP needs the token; a wrong or missing one gets 401 and nothing else.
    let port = 20000 + (std::process::id() % 20000);
    let addr = format!("tcp:127.0.0.1:{port}");
    let _d = start(&env, "", &["--listen", &addr]);
    let token = std::fs::read_to_string(env.store.join("daemon/token")).unwrap();
    let meta = std::fs::metadata(env.store.join("daemon/token")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let http = |auth: Option<&str>| {
        let mut c = Command::new("python3");
        c.arg("-c").arg(
            "import http.client,sys\nc=http.client.HTTPConnection('127.0.0.1', int(sys.argv[1]))\nh={'Authorization': 'Bearer '+sys.argv[2]} if len(sys.argv)>2 else {}\nc.request('GET','/v1/groups',headers=h)\nr=c.getresponse()\nprint(r.status)\nprint(r.read().decode())",
        );
        c.arg(port.to_string());
        if let Some(a) = auth {
            c.arg(a);
        }
        String::from_utf8_lossy(&c.output().unwrap().stdout).into_owned()
    };
    let t = Instant::now();
    while !http(Some(token.trim())).starts_with("200") {
        assert!(t.elapsed() < Duration::from_secs(10), "TCP never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(http(None).trim(), "401\nunauthorized");
    assert_eq!(http(Some("wrong")).trim(), "401\nunauthorized");
    let v = env
        .cmd()
        .env("BOTYARD_TOKEN", token.trim())
        .args(["group", "ls", "--json", "--daemon", &addr])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&v.stdout).contains("\"g\""),
        "{}",
        String::from_utf8_lossy(&v.stderr)
    );
}

#[test]
fn groups_take_turns_and_failed_runs_are_retried_then_failed() {
    require_root!();
    if !have_tool("runc", "runc") {
        return;
    }
    let env = setup();
    env.ok(&["bot", "create", "b2", "--image", "bb:1"]);
    let _d = start(
        &env,
        "max_sessions = 1\nmax_tries = 2\nturn = \"0s\"\n",
        &[],
    );
    add_group(&env, "busy", "b1", "sh -c 'sleep 0.5; cat'");
    add_group(&env, "other", "b2", "sh -c 'cat'");
    let busy: Vec<String> = (0..3)
        .map(|i| send(&env, "busy", &format!("b{i}")))
        .collect();
    let other = send(&env, "other", "o");
    let last_busy = wait_done(&env, &busy[2]);
    let o = wait_done(&env, &other);
    assert_eq!(o["state"], "done");
    assert!(
        o["finished"].as_f64().unwrap() < last_busy["finished"].as_f64().unwrap(),
        "one busy group must not starve the other: {o} {last_busy}"
    );
    // An agent that fails is retried with backoff, then failed with the reason.
    add_group(&env, "bad", "b1", "sh -c 'echo oops; exit 3'");
    let id = send(&env, "bad", "x");
    let out = env.run(&["message", "wait", &id, "--json", "--timeout", "60s"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "wait exits 1 for a failed message"
    );
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(m["state"], "failed", "{m}");
    assert_eq!(m["attempts"], 2, "{m}");
    assert!(
        m["error"].as_str().unwrap().contains("exited with code 3"),
        "{m}"
    );
    // Removing a group fails its messages, queued and running alike.
    add_group(&env, "slow", "b2", "sleep 30");
    let running = send(&env, "slow", "1");
    let queued = send(&env, "slow", "2");
    wait_running(&env, &running);
    env.ok(&["group", "rm", "slow"]);
    for id in [&running, &queued] {
        let m = wait_done(&env, id);
        assert_eq!(m["state"], "failed", "{m}");
        assert!(m["error"].as_str().unwrap().contains("removed"), "{m}");
    }
}

#[test]
fn sigterm_drains_and_sigkill_loses_no_message() {
    require_root!();
    if !have_tool("runc", "runc") {
        return;
    }
    let env = setup();
    let mut d = start(&env, "", &[]);
    add_group(&env, "g", "b1", "sh -c 'sleep 1; cat > /tmp/last'");
    let first = send(&env, "g", "first");
    wait_running(&env, &first);
    // SIGTERM: the running message finishes, the daemon exits 0.
    let child = d.child.take().unwrap();
    sh(&format!("kill -TERM {}", child.id()));
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = sh(&format!(
        "runc list | grep -c '{}' || true",
        env.store.display()
    ));
    assert_eq!(st.trim(), "0", "no sandbox left after SIGTERM");
    // The closed session's bot was committed.
    let show = env.json(&["bot", "show", "b1", "--json"]);
    assert!(show["committed"].is_string(), "{show}");
    assert_eq!(show["uncommitted_bytes"], 0, "{show}");
    assert!(env.ok(&["bot", "diff", "b1"]).contains("tmp/last"));

    // SIGKILL in the middle: after a restart every accepted message is done.
    let mut d = start(&env, "", &[]);
    assert_eq!(
        env.json(&["message", "show", &first, "--json"])["state"],
        "done"
    );
    let ids: Vec<String> = (0..3).map(|i| send(&env, "g", &format!("m{i}"))).collect();
    wait_running(&env, &ids[0]);
    let mut child = d.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    drop(d);
    let _d = start(&env, "", &[]);
    for id in &ids {
        let m = wait_done(&env, id);
        assert_eq!(m["state"], "done", "{m}");
    }
    let m0 = env.json(&["message", "show", &ids[0], "--json"]);
    assert_eq!(
        m0["attempts"], 2,
        "the message running at the kill was delivered again: {m0}"
    );
}

#[test]
fn a_hung_agent_meets_its_deadline_and_a_workspace_group_needs_its_mount() {
    require_root!();
    if !have_tool("runc", "runc") {
        return;
    }
    let env = setup();
    let _d = start(&env, "deadline = \"2s\"\nmax_tries = 1\n", &[]);
    add_group(&env, "hang", "b1", "sleep 600");
    let id = send(&env, "hang", "x");
    let t = Instant::now();
    let out = env.run(&["message", "wait", &id, "--json", "--timeout", "60s"]);
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "the deadline stopped it"
    );
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(m["state"], "failed", "{m}");
    assert!(
        m["error"]
            .as_str()
            .unwrap()
            .contains("past the deadline of 2s"),
        "{m}"
    );
    // A group whose workspace is not mounted: the message fails and says why.
    let project = env.path("project");
    std::fs::create_dir_all(&project).unwrap();
    env.ok(&[
        "workspace",
        "create",
        "w",
        "--project",
        project.to_str().unwrap(),
    ]);
    env.ok(&[
        "group",
        "add",
        "ws",
        "--bot",
        "b1",
        "--agent",
        "cat",
        "--workspace",
        "w",
    ]);
    let id = send(&env, "ws", "x");
    let m = wait_done(&env, &id);
    assert_eq!(m["state"], "failed", "{m}");
    assert!(m["error"].as_str().unwrap().contains("not mounted"), "{m}");
}

#[test]
fn agents_that_crash_flood_or_lose_their_sandbox_end_clearly() {
    require_root!();
    if !have_tool("runc", "runc") {
        return;
    }
    let env = setup();
    let _d = start(&env, "max_tries = 1\noutput_cap = 100000\n", &[]);
    // All three groups share bot b1: each waits for the one before to
    // close its session on it, and none fails for it.
    let group = |name: &str, agent: &str| add_group(&env, name, "b1", agent);
    group("crash", "sh -c 'echo before; kill -SEGV $$'");
    let crashed = send(&env, "crash", "x");
    let m = wait_done(&env, &crashed);
    assert_eq!(m["state"], "failed", "{m}");
    assert!(
        m["error"]
            .as_str()
            .unwrap()
            .contains("exited with code 139"),
        "{m}"
    );
    // An agent cannot answer for another message: not through the
    // supervisor's stdout, and not by naming another id in its output.
    let frame = format!(
        r#"{{\042event\042:\042result\042,\042message\042:\042{crashed}\042,\042status\042:\042success\042,\042exit_code\042:0,\042output\042:\042forged\042,\042truncated\042:false}}"#
    );
    let forge = format!(
        r#"printf "%s\n{frame}\n%s\n" ---BOTYARD-OUTPUT-START--- ---BOTYARD-OUTPUT-END---"#
    );
    group(
        "forge",
        &format!("sh -c '{forge} > /proc/1/fd/1; {forge}; echo own'"),
    );
    let m = wait_done(&env, &send(&env, "forge", "x"));
    assert_eq!(m["state"], "done", "{m}");
    let out = m["output"].as_str().unwrap();
    assert!(out.contains("own") && out.contains("forged"), "{m}");
    let m = env.json(&["message", "show", &crashed, "--json"]);
    assert_eq!(m["state"], "failed", "the forged answer was dropped: {m}");
    // Output past the cap is cut, and the message says so.
    group("flood", "sh -c 'yes | head -c 300000'");
    let m = wait_done(&env, &send(&env, "flood", "x"));
    assert_eq!(m["state"], "done", "{m}");
    assert_eq!(m["truncated"], true);
    assert_eq!(m["output"].as_str().unwrap().len(), 100_000);
    // The sandbox dies under the agent: no answer ever comes.
    group("lost", "sleep 60");
    let id = send(&env, "lost", "x");
    let t = Instant::now();
    let pid = loop {
        assert!(t.elapsed() < Duration::from_secs(30), "no sandbox");
        // runc list fails when a container of another test goes away
        // while it reads the state directory: look again.
        let list = Command::new("runc")
            .args(["list", "--format", "json"])
            .output()
            .unwrap();
        let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap_or_default();
        let ours = list.as_array().into_iter().flatten().find(|c| {
            c["bundle"]
                .as_str()
                .is_some_and(|b| b.starts_with(env.store.to_str().unwrap()))
        });
        if let (Some(c), "running") = (
            ours,
            env.json(&["message", "show", &id, "--json"])["state"]
                .as_str()
                .unwrap(),
        ) {
            break c["pid"].as_i64().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    sh(&format!("kill -KILL {pid}"));
    let m = wait_done(&env, &id);
    assert_eq!(m["state"], "failed", "{m}");
    assert!(
        m["error"].as_str().unwrap().contains("ended")
            && m["error"]
                .as_str()
                .unwrap()
                .contains("before the agent answered"),
        "{m}"
    );
}

#[test]
fn sessions_close_when_idle_or_asked() {
    require_root!();
    if !have_tool("runc", "runc") {
        return;
    }
    let env = setup();
    env.ok(&["bot", "create", "b2", "--image", "bb:1"]);
    let _d = start(&env, "idle_keepalive = \"1s\"\nmax_tries = 1\n", &[]);
    add_group(&env, "g", "b1", "cat");
    let g = env.json(&["group", "show", "g", "--json"]);
    assert_eq!(g["agent"], serde_json::json!(["cat"]), "{g}");
    let sessions = || -> Vec<String> {
        let (code, body) = curl(&socket(&env), &["GET", "/v1/sessions"]);
        assert_eq!(code, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s["group"].as_str().unwrap().to_string())
            .collect()
    };
    let until_no_session = || {
        let t = Instant::now();
        while !sessions().is_empty() {
            assert!(t.elapsed() < Duration::from_secs(20), "{:?}", sessions());
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // send --follow: the answer printed as it comes.
    let out = env.ok(&["message", "send", "g", "one", "--follow"]);
    assert_eq!(out.trim(), r#"{"text":"one"}"#);
    assert_eq!(sessions(), ["g"], "kept alive after its message");
    // Idle past idle_keepalive: closed.
    until_no_session();
    // Asked through the API: closed; asked again: nothing to close.
    wait_done(&env, &send(&env, "g", "two"));
    assert_eq!(sessions(), ["g"]);
    let (code, _) = curl(&socket(&env), &["DELETE", "/v1/sessions/g"]);
    assert_eq!(code, 202);
    until_no_session();
    let (code, body) = curl(&socket(&env), &["DELETE", "/v1/sessions/g"]);
    assert_eq!(code, 404, "{body}");
    // A busy session asked to close is stopped, and its message says why.
    add_group(&env, "h", "b2", "sleep 60");
    let id = send(&env, "h", "x");
    wait_running(&env, &id);
    // A watcher that leaves is let go while the message still runs.
    let watched = || env.json(&["status", "--json"])["watched_messages"].clone();
    let mut follower = env
        .cmd()
        .args(["message", "wait", &id, "--follow"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while watched() != 1 {
        assert!(t.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(50));
    }
    follower.kill().unwrap();
    follower.wait().unwrap();
    while watched() != 0 {
        assert!(t.elapsed() < Duration::from_secs(20), "the stream was kept");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, _) = curl(&socket(&env), &["DELETE", "/v1/sessions/h"]);
    assert_eq!(code, 202);
    let m = wait_done(&env, &id);
    assert_eq!(m["state"], "failed", "{m}");
    assert!(
        m["error"].as_str().unwrap().contains("closed on request"),
        "{m}"
    );
    let metrics = curl(&socket(&env), &["GET", "/metrics"]).1;
    assert!(
        metrics.contains("botyard_session_starts_total 3"),
        "{metrics}"
    );
}

#[test]
fn a_full_disk_refuses_new_messages_with_507() {
    require_root!();
    let env = Env::new();
    // The daemon's state on a small tmpfs that then fills up.
    let small = env.store.join("daemon");
    std::fs::create_dir_all(&small).unwrap();
    sh(&format!(
        "mount -t tmpfs -o size=2m,mode=700 tmpfs '{}'",
        small.display()
    ));
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _guard = Unmount(small.clone());
    let root = env.path("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    env.ok(&["image", "import", "e:1", "--dir", root.to_str().unwrap()]);
    env.ok(&["bot", "create", "b1", "--image", "e:1"]);
    let _d = start(&env, "", &[]);
    add_group(&env, "g", "b1", "cat");
    sh(&format!(
        "dd if=/dev/zero of='{}/fill' bs=64k 2>/dev/null || true",
        small.display()
    ));
    let s = socket(&env);
    let body = format!("{{\"t\": \"{}\"}}", "x".repeat(50_000));
    let mut code = 0;
    for _ in 0..20 {
        code = curl(&s, &["POST", "/v1/groups/g/messages", &body]).0;
        if code == 507 {
            break;
        }
    }
    assert_eq!(code, 507, "a full disk refuses new messages");
    std::fs::remove_file(small.join("fill")).unwrap();
    let (code, _) = curl(&s, &["POST", "/v1/groups/g/messages", "{}"]);
    assert_eq!(code, 202, "and accepts them again once there is room");
}

/// No systemd runs as PID 1 here, so the unit is checked by
/// `systemd-analyze verify` and the notify protocol against a socket of
/// our own, as systemd would hand it over in `$NOTIFY_SOCKET`.
#[test]
fn the_unit_file_verifies_and_the_daemon_speaks_sd_notify() {
    require_root!();
    if !have_tool("systemd-analyze", "systemd") {
        return;
    }
    let env = Env::new();
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../contrib/botyard.service"
    ))
    .unwrap();
    assert!(unit.contains("Type=notify"), "{unit}");
    let ours = env.path("botyard.service");
    std::fs::write(
        &ours,
        unit.replace("/usr/local/bin/botyard", env!("CARGO_BIN_EXE_botyard")),
    )
    .unwrap();
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&ours)
        .output()
        .unwrap();
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&o.stderr)
    );

    let notify = env.path("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut child = env
        .cmd()
        .arg("serve")
        .env("NOTIFY_SOCKET", &notify)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("READY=1 within 20 s");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg}");
    assert!(msg.contains(&format!("MAINPID={}", child.id())), "{msg}");
    // Ready means listening.
    assert!(std::os::unix::net::UnixStream::connect(socket(&env)).is_ok());
    sh(&format!("kill -TERM {}", child.id()));
    let n = sock.recv(&mut buf).expect("STOPPING=1 on SIGTERM");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.lines().any(|l| l == "STOPPING=1"), "{msg}");
    assert!(child.wait().unwrap().success());
}

/// The daemon as a container's PID 1: its own root, namespaces and /run,
/// the host's userland bind-mounted read-only (for runc and the loader),
/// /dev and /sys from the host and the store as a volume. It starts the
/// sessions' sandboxes from inside; the CLI talks to it from outside
/// through the socket in the store.
#[test]
fn the_daemon_runs_in_a_container() {
    require_root!();
    if !have_tool("runc", "runc") {
        return;
    }
    let env = setup();
    let bundle = env.path("daemon-bundle");
    std::fs::create_dir_all(bundle.join("rootfs")).unwrap();
    let exe = Path::new(env!("CARGO_BIN_EXE_botyard"));
    let bind = |path: &Path, mode: &str| serde_json::json!({"destination": path, "type": "bind", "source": path, "options": ["rbind", mode]});
    let mut mounts = vec![
        serde_json::json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        serde_json::json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["mode=755"]}),
        serde_json::json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["mode=1777"]}),
        bind(Path::new("/dev"), "rw"),
        bind(Path::new("/sys"), "rw"),
        bind(&env.store, "rw"),
        bind(exe.parent().unwrap(), "ro"),
    ];
    for p in ["/usr", "/etc", "/lib", "/lib64", "/bin", "/sbin"] {
        if Path::new(p).exists() {
            mounts.push(bind(Path::new(p), "ro"));
        }
    }
    // Every capability this host allows (mounts, runc), as a privileged
    // container has.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let bnd = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .map(|h| u64::from_str_radix(h.trim(), 16).unwrap())
        .unwrap();
    const NAMES: [&str; 41] = [
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ];
    let caps: Vec<String> = (0..NAMES.len())
        .filter(|i| bnd & (1 << i) != 0)
        .map(|i| format!("CAP_{}", NAMES[i]))
        .collect();
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "user": {"uid": 0, "gid": 0},
            "args": [exe, "serve"],
            "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", format!("BOTYARD_HOME={}", env.store.display())],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "botyard-daemon",
        "mounts": mounts,
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "network"}],
        },
    });
    std::fs::write(bundle.join("config.json"), config.to_string()).unwrap();
    let id = format!("botyard-test-daemon-{}", std::process::id());
    struct Gone(String);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = Command::new("runc")
                .args(["delete", "--force", &self.0])
                .output();
        }
    }
    let _gone = Gone(id.clone());
    let child = Command::new("runc")
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while std::os::unix::net::UnixStream::connect(socket(&env)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the daemon did not start in its container"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    add_group(
        &env,
        "g",
        "b1",
        "sh -c 'echo host:; cat /proc/sys/kernel/hostname; cat > /tmp/seen; cat /tmp/seen'",
    );
    let msg = send(&env, "g", "from outside");
    let m = wait_done(&env, &msg);
    assert_eq!(m["state"], "done", "{m}");
    let out = m["output"].as_str().unwrap();
    assert!(
        out.contains("b1") && out.contains("from outside"),
        "the agent ran in its own sandbox: {out}"
    );
    // SIGTERM to the container: the daemon, its PID 1, drains and exits 0.
    let o = Command::new("runc")
        .args(["kill", &id, "TERM"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("listening on unix:"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Committed on close, from inside the container.
    let show = env.json(&["bot", "show", "b1", "--json"]);
    assert!(show["committed"].is_string(), "{show}");
}

/// Groups name secrets only from the operator's list: a name the daemon's
/// `secrets` config key does not hold is a 400, however much else is in
/// the daemon's environment.
#[test]
fn groups_may_name_only_the_secrets_the_operator_listed() {
    require_root!();
    if !have_tool("runc", "runc") {
        return;
    }
    let env = setup();
    let _d = start_with_vars(
        &env,
        "secrets = [\"AGENT_TOKEN\"]\n",
        &[],
        &[
            ("AGENT_TOKEN", "token-for-agents"),
            ("CLOUD_KEY", "daemon-own-credential"),
        ],
    );
    let err = env.fails(&[
        "group",
        "add",
        "thief",
        "--bot",
        "b1",
        "--agent",
        "sh -c 'echo $CLOUD_KEY'",
        "--secret",
        "CLOUD_KEY",
    ]);
    assert!(
        err.contains("CLOUD_KEY") && err.contains("`secrets` config"),
        "{err}"
    );
    let (code, _) = curl(
        &socket(&env),
        &[
            "POST",
            "/v1/groups",
            r#"{"name":"t2","bot":"b1","agent":["cat"],"secrets":["HOME"]}"#,
        ],
    );
    assert_eq!(code, 400);
    env.ok(&[
        "group",
        "add",
        "g",
        "--bot",
        "b1",
        "--agent",
        "sh -c 'echo got:$AGENT_TOKEN:$CLOUD_KEY'",
        "--secret",
        "AGENT_TOKEN",
    ]);
    let id = send(&env, "g", "{}");
    let m = wait_done(&env, &id);
    let out = m["output"].as_str().unwrap_or_default();
    assert!(out.contains("got:token-for-agents:"), "{m}");
    assert!(!out.contains("daemon-own-credential"), "{m}");
}

/// Clients that send half a request are cut off after the header timeout,
/// and beyond the connection limit new ones wait rather than take
/// descriptors: the API keeps answering (a bounded number of slow clients
/// on loopback, for a bounded time).
#[test]
fn slow_clients_cannot_starve_the_daemon() {
    require_root!();
    let env = setup();
    let port = 20000 + (std::process::id() % 20000) + 7;
    let addr = format!("tcp:127.0.0.1:{port}");
    let _d = start(
        &env,
        "header_timeout = \"1s\"\nmax_connections = 64\n",
        &["--listen", &addr],
    );
    let token = std::fs::read_to_string(env.store.join("daemon/token")).unwrap();
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            r#"
import socket, sys, time
port, token = int(sys.argv[1]), sys.argv[2]
def ask():
    c = socket.create_connection(("127.0.0.1", port), timeout=8)
    c.sendall(("GET /v1/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n" % token).encode())
    data = b""
    while True:
        b = c.recv(65536)
        if not b: break
        data += b
    return data.split(b"\r\n")[0].decode()
deadline = time.time() + 10
while True:
    try:
        ask(); break
    except OSError:
        if time.time() > deadline: raise
        time.sleep(0.05)
slow = []
for i in range(200):
    s = socket.socket(); s.settimeout(8); s.connect_ex(("127.0.0.1", port))
    s.send(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")
    slow.append(s)
t = time.time(); status = ask(); answered = time.time() - t
# The first ones the daemon took are closed after the header timeout.
closed = 0
for s in slow[:16]:
    s.settimeout(4)
    try:
        s.recv(1024)  # a 408 or the end of the stream: either way, let go
        closed += 1
    except socket.timeout:
        pass
print(status); print("%.1f" % answered); print(closed)
"#,
        )
        .arg(port.to_string())
        .arg(token.trim())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        out.status.success() && lines.len() == 3,
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(lines[0].contains("200"), "{text}");
    let waited: f64 = lines[1].parse().unwrap();
    assert!(waited < 8.0, "the API answered only after {waited} s");
    assert_eq!(lines[2], "16", "{text}");
}

/// Found by the CSI plugin's tests: a client that hangs up before its
/// answer is written made the write raise SIGPIPE, which killed the server.
#[test]
fn clients_that_hang_up_do_not_kill_the_daemon() {
    require_root!();
    let env = setup();
    let mut d = start(&env, "", &[]);
    use std::io::Write;
    for _ in 0..50 {
        let mut s = std::os::unix::net::UnixStream::connect(socket(&env)).unwrap();
        let _ = s.write_all(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n");
        drop(s);
    }
    std::thread::sleep(Duration::from_millis(300));
    let child = d.child.as_mut().unwrap();
    assert!(child.try_wait().unwrap().is_none(), "the daemon died");
    let (code, _) = curl(&socket(&env), &["GET", "/v1/status"]);
    assert_eq!(code, 200);
}
