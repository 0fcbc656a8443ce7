//! `botyard serve --runtime kubernetes` against the project's FAKE API
//! server (crates/fake-apiserver; no Kubernetes API server can run here):
//! the same queue as on one host, each session a pod made through the
//! API, its supervisor side-loaded, its secrets handed over an attach,
//! its output read from the pod's log. The fake's kubelet runs the pod's
//! containers in bubblewrap on this host. What is checked here is the
//! backend's behaviour against the API; the objects themselves are checked
//! against the real schemas in tests/kube.rs.

mod common;
use common::*;
use fake_apiserver::{FakeApi, Kind, Options};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SUPERVISOR: &str = "botyard/supervisor:test";
const SECRET: &str = "s3cr3t-only-over-stdin";

/// A store with bot b1 (image bb:1), and a fake API server whose kubelet
/// knows bb:1 (the host's system stands in for it) and the supervisor's
/// image (a directory holding this build's botyard).
fn setup(latency: Duration) -> (Env, FakeApi, PathBuf) {
    let env = busybox_env(&["sh", "cat"]);
    let sup = env.path("supervisor-image");
    std::fs::create_dir_all(&sup).unwrap();
    let bin = std::env::var_os("BOTYARD_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_botyard").into());
    if std::fs::hard_link(&bin, sup.join("botyard")).is_err() {
        std::fs::copy(&bin, sup.join("botyard")).unwrap();
    }
    let shared = env.path("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let mut o = Options {
        latency,
        work: env.path("fake-kubelet"),
        ..Default::default()
    };
    o.images.insert("bb:1".into(), None);
    o.images.insert(SUPERVISOR.into(), Some(sup));
    o.shared_claims
        .insert("botyard-shared".into(), shared.clone());
    let fake = FakeApi::start(o, 0).unwrap();
    fake.create(
        Kind::Claim,
        "botyard",
        serde_json::json!({"metadata": {"name": "botyard-shared"},
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}}),
    )
    .unwrap();
    std::fs::write(env.path("kubeconfig"), fake.kubeconfig("botyard")).unwrap();
    (env, fake, shared)
}

fn config(shared: Option<&Path>, extra: &str) -> String {
    let mut c = format!(
        "secrets = [\"API_KEY\"]\nmax_tries = 2\n{extra}\n[kubernetes]\nnamespace = \"botyard\"\nsupervisor_image = \"{SUPERVISOR}\"\npending_timeout = \"30s\"\nttl_after_finished = \"2s\"\n"
    );
    if let Some(s) = shared {
        c.push_str(&format!(
            "shared_claim = \"botyard-shared\"\nshared_mount = \"{}\"\n",
            s.display()
        ));
    }
    c
}

fn serve<'a>(env: &'a Env, cfg: &str, flags: &[&str]) -> Daemon<'a> {
    let kc = env.path("kubeconfig");
    let mut args = vec!["--runtime", "kubernetes"];
    args.extend_from_slice(flags);
    start_with_vars(
        env,
        cfg,
        &args,
        &[("KUBECONFIG", kc.to_str().unwrap()), ("API_KEY", SECRET)],
    )
}

fn send(env: &Env, group: &str, text: &str) -> String {
    env.ok(&["message", "send", group, text]).trim().to_string()
}

fn wait_done(env: &Env, id: &str) -> serde_json::Value {
    let out = env.run(&["message", "wait", id, "--json", "--timeout", "90s"]);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)))
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(60), "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The agent: answers with the message and the length of its secret.
const AGENT: &str = "sh -c 'read m; echo \"got $m key=${#API_KEY}\"'";

fn session_pods(fake: &FakeApi) -> Vec<serde_json::Value> {
    fake.objects(Kind::Pod)
}

fn daemon_stderr(d: &mut Daemon) -> String {
    let mut c = d.child.take().unwrap();
    let _ = c.kill();
    let out = c.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn round_trip(mode: &str, sideload: &str, shared: bool) {
    require_root!();
    let (env, fake, dir) = setup(Duration::ZERO);
    let cfg = config(shared.then_some(dir.as_path()), "");
    let mut d = serve(
        &env,
        &cfg,
        &["--kube-mode", mode, "--supervisor-sideload", sideload],
    );
    let mut add = vec![
        "group", "add", "web", "--bot", "b1", "--agent", AGENT, "--secret", "API_KEY",
    ];
    if shared {
        add.extend(["--workspace", "proj", "--user", "alice"]);
    }
    env.ok(&add);
    // The bot's claim is made when the group is added.
    let claims = fake.objects(Kind::Claim);
    assert!(
        claims
            .iter()
            .any(|c| c["spec"]["storageClassName"] == "botyard"),
        "{claims:?}"
    );
    let calls_before = fake.calls().len();
    let a = send(&env, "web", "\"one\"");
    let m = wait_done(&env, &a);
    assert_eq!(m["state"], "done", "{m}");
    let out = m["output"].as_str().unwrap_or_default();
    assert!(out.contains("got \"one\" key=22"), "{mode}/{sideload}: {m}");
    // The next message goes to the same pod, through IPC.
    let b = send(&env, "web", "\"two\"");
    let m = wait_done(&env, &b);
    assert!(m["output"].as_str().unwrap().contains("got \"two\""), "{m}");
    let made: Vec<_> = fake
        .events()
        .into_iter()
        .filter(|e| e.type_ == "ADDED" && e.kind == Kind::Pod)
        .collect();
    assert_eq!(made.len(), 1, "one pod for both messages: {made:?}");
    let pod = &made[0].object;
    assert_eq!(pod["spec"]["hostUsers"], false);
    assert_eq!(
        pod["metadata"]["labels"]["botyard.dev/group"]
            .as_str()
            .map(|l| l.starts_with("g-web-")),
        Some(true)
    );
    // What `kube manifests` prints for that session is what was created.
    let kind = if mode == "job" { Kind::Job } else { Kind::Pod };
    let created = fake
        .events()
        .into_iter()
        .find(|e| e.type_ == "ADDED" && e.kind == kind)
        .unwrap()
        .object;
    let id = created["metadata"]["labels"]["botyard.dev/session"]
        .as_str()
        .unwrap()
        .to_string();
    let printed = env.json(&[
        "kube",
        "manifests",
        "--group",
        "web",
        "--session",
        &id,
        "--json",
        "--config",
        env.path("daemon.toml").to_str().unwrap(),
        "--kube-mode",
        mode,
        "--supervisor-sideload",
        sideload,
    ]);
    assert_eq!(printed[1]["spec"], created["spec"]);
    assert_eq!(printed[1]["metadata"]["name"], created["metadata"]["name"]);
    assert_eq!(
        printed[1]["metadata"]["labels"],
        created["metadata"]["labels"]
    );
    let claim = &fake.objects(Kind::Claim);
    let claim = claim
        .iter()
        .find(|c| c["metadata"]["name"] == printed[0]["metadata"]["name"])
        .unwrap();
    assert_eq!(printed[0]["spec"], claim["spec"]);
    // API calls of the session's start: claim, object, watch, attach, log.
    let start_calls: Vec<_> = fake.calls()[calls_before..]
        .iter()
        .filter(|(m, _)| m != "DELETE")
        .cloned()
        .collect();
    assert!(start_calls.len() <= 6, "{start_calls:?}");
    if shared {
        assert!(dir.join("groups/web/ipc/input").is_dir());
        assert!(dir.join("users/alice/proj").is_dir());
    }
    // The secret went over the attach only: in no request, no object, no
    // log of the pod, no line of the daemon.
    assert!(!fake.everything_seen().contains(SECRET));
    for p in session_pods(&fake) {
        let name = p["metadata"]["name"].as_str().unwrap();
        assert!(!fake.log("botyard", name).contains(SECRET));
    }
    let st = env.ok(&["status"]);
    assert!(st.contains("sessions run on kubernetes"), "{st}");
    assert_eq!(st.contains("emptyDir"), !shared, "{st}");
    let err = daemon_stderr(&mut d);
    assert!(!err.contains(SECRET), "{err}");
}

#[test]
fn a_job_per_session_with_the_supervisor_image_volume_and_a_shared_volume() {
    round_trip("job", "image-volume", true);
}

#[test]
fn a_warm_pod_with_an_init_container_and_messages_over_stdin() {
    round_trip("warm", "init-container", false);
}

#[test]
fn pending_pods_fail_with_the_reason_kubernetes_gives() {
    require_root!();
    let (env, fake, dir) = setup(Duration::ZERO);
    // An image no registry has.
    // A short wait for pods that will never run.
    let cfg = config(Some(&dir), "")
        .replace("pending_timeout = \"30s\"", "pending_timeout = \"3s\"")
        .replace(
            "[kubernetes]\n",
            "[kubernetes]\nimage = \"registry.invalid/agent:9\"\n",
        );
    {
        let _d = serve(&env, &cfg, &[]);
        env.ok(&["group", "add", "web", "--bot", "b1", "--agent", "cat"]);
        let m = wait_done(&env, &send(&env, "web", "\"x\""));
        assert_eq!(m["state"], "failed", "{m}");
        let e = m["error"].as_str().unwrap_or_default();
        assert!(
            e.contains("ErrImagePull") && e.contains("registry.invalid/agent:9"),
            "{e}"
        );
        assert!(e.contains("pending_timeout"), "{e}");
        // Nothing of the failed attempts is left running.
        wait_for("the pending pods are removed", || {
            session_pods(&fake).is_empty()
        });
    }
    // A shared claim that does not exist: the pod cannot be scheduled.
    let cfg = config(Some(&dir), "")
        .replace("pending_timeout = \"30s\"", "pending_timeout = \"3s\"")
        .replace("\"botyard-shared\"", "\"no-such-claim\"");
    let _d = serve(&env, &cfg, &[]);
    env.ok(&["group", "add", "other", "--bot", "b1", "--agent", "cat"]);
    let m = wait_done(&env, &send(&env, "other", "\"x\""));
    let e = m["error"].as_str().unwrap_or_default();
    assert!(
        e.contains("Unschedulable") && e.contains("no-such-claim"),
        "{e}"
    );
}

#[test]
fn a_pod_deleted_under_a_session_is_retried_like_a_crashed_sandbox() {
    require_root!();
    let (env, fake, dir) = setup(Duration::ZERO);
    let _d = serve(&env, &config(Some(&dir), ""), &[]);
    env.ok(&[
        "group",
        "add",
        "slow",
        "--bot",
        "b1",
        "--agent",
        "sh -c 'read m; sleep 60'",
    ]);
    let id = send(&env, "slow", "\"x\"");
    for attempt in 1..=2 {
        let mut name = String::new();
        wait_for("a running session pod", || {
            let running = session_pods(&fake)
                .into_iter()
                .find(|p| p["status"]["phase"] == "Running");
            if let Some(p) = running {
                name = p["metadata"]["name"].as_str().unwrap().to_string();
                true
            } else {
                false
            }
        });
        // As `kubectl delete pod`, or a node that went away.
        assert!(
            fake.delete(Kind::Pod, "botyard", &name),
            "attempt {attempt}"
        );
    }
    let m = wait_done(&env, &id);
    assert_eq!(m["state"], "failed", "{m}");
    assert_eq!(m["attempts"], 2, "{m}");
    let e = m["error"].as_str().unwrap_or_default();
    assert!(e.contains("deleted under the session"), "{e}");
}

#[test]
fn a_restarted_daemon_removes_the_pods_it_left_and_runs_the_message_again() {
    require_root!();
    let (env, fake, dir) = setup(Duration::ZERO);
    let cfg = config(Some(&dir), "");
    let first;
    {
        let mut d = serve(&env, &cfg, &[]);
        env.ok(&[
            "group",
            "add",
            "g",
            "--bot",
            "b1",
            "--agent",
            "sh -c 'read m; case \"$m\" in *slow*) sleep 3;; esac; echo \"ok $m\"'",
        ]);
        first = send(&env, "g", "\"slow\"");
        wait_for("the session's pod runs", || {
            session_pods(&fake)
                .iter()
                .any(|p| p["status"]["phase"] == "Running")
        });
        // SIGKILL: the daemon leaves its pod behind.
        let c = d.child.as_mut().unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
        d.child = None;
    }
    let left: Vec<String> = session_pods(&fake)
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left.len(), 1);
    let _d = serve(&env, &cfg, &[]);
    // The old pod is deleted, not adopted: the message runs again in a
    // new session.
    wait_for("the old pod is removed", || {
        !session_pods(&fake)
            .iter()
            .any(|p| p["metadata"]["name"] == left[0].as_str())
    });
    let m = wait_done(&env, &first);
    assert_eq!(m["state"], "done", "{m}");
    assert!(m["output"].as_str().unwrap().contains("ok \"slow\""), "{m}");
    let next = send(&env, "g", "\"fast\"");
    let m = wait_done(&env, &next);
    assert_eq!(m["state"], "done", "{m}");
}

#[test]
fn sigterm_lets_the_running_message_finish_and_ends_the_pods() {
    require_root!();
    let (env, fake, dir) = setup(Duration::ZERO);
    let mut d = serve(
        &env,
        &config(Some(&dir), "grace = \"30s\""),
        &["--kube-mode", "warm"],
    );
    env.ok(&[
        "group",
        "add",
        "g",
        "--bot",
        "b1",
        "--agent",
        "sh -c 'read m; sleep 2; echo \"finished $m\"'",
    ]);
    let id = send(&env, "g", "\"work\"");
    wait_for("the message runs", || {
        env.json(&["message", "show", &id, "--json"])["state"] == "running"
    });
    let c = d.child.as_mut().unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(c.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let t = Instant::now();
    while c.try_wait().unwrap().is_none() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the daemon did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    d.child = None;
    let store = env.store();
    let db = daemon::open_state(&store).unwrap();
    let m = db.message(id.parse().unwrap()).unwrap().unwrap();
    assert_eq!(m.state, "done", "{m:?}");
    // The warm pod was closed and deleted on the way out.
    assert!(session_pods(&fake).is_empty(), "{:?}", session_pods(&fake));
}
