//! What the daemon would create on a cluster, without a cluster: `botyard
//! kube manifests` prints a group's objects from the store's daemon state
//! (no daemon running), and every object validates strictly against the
//! Kubernetes 1.33 and 1.37 schemas (`kubernetes-validate`, in
//! `.venv-tools`, made by scripts/deps.sh). The settings reach it from the
//! config file, the flags and the environment alike.

mod common;
use common::*;
use std::path::PathBuf;

fn validator() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let v = root.join(".venv-tools/bin/kubernetes-validate");
    if v.exists() {
        return Some(v);
    }
    if std::env::var_os("CI").is_some() {
        panic!("{} is missing in CI; scripts/deps.sh makes it", v.display());
    }
    eprintln!("SKIPPED: {} not found; run scripts/deps.sh", v.display());
    None
}

fn validate(validator: &std::path::Path, env: &Env, yaml: &str, what: &str) {
    let f = env.path("objects.yaml");
    std::fs::write(&f, yaml).unwrap();
    for v in ["1.33.0", "1.37.0"] {
        let o = std::process::Command::new(validator)
            .args(["--strict", "--quiet", "-k", v])
            .arg(&f)
            .output()
            .unwrap();
        let out = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            o.status.success() && !out.contains("ERROR"),
            "{what} against Kubernetes {v}: {out}\n{yaml}"
        );
    }
}

/// The agent container and the pod spec of a session object.
fn pod_of(session: &serde_json::Value) -> &serde_json::Value {
    match session["kind"].as_str().unwrap() {
        "Job" => &session["spec"]["template"]["spec"],
        _ => &session["spec"],
    }
}

fn check_restricted(c: &serde_json::Value) {
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{c}");
    assert_eq!(sc["privileged"], false, "{c}");
    assert_eq!(
        sc["capabilities"]["drop"],
        serde_json::json!(["ALL"]),
        "{c}"
    );
    assert!(sc["capabilities"]["add"].is_null(), "{c}");
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{c}");
}

#[test]
fn manifests_are_what_the_daemon_would_create_and_validate_strictly() {
    require_root!();
    let Some(validator) = validator() else { return };
    let env = busybox_env(&["sh"]);
    let secret = "s3cr3t-never-in-an-object";
    let config = "secrets = [\"API_KEY\"]\ndeadline = \"20m\"\nmemory = \"512M\"\ncpus = 1.5\n";
    let group = "Ops Team ü_1";
    {
        let _d = start_with_vars(&env, config, &[], &[("API_KEY", secret)]);
        env.ok(&[
            "group",
            "add",
            group,
            "--bot",
            "b1",
            "--agent",
            "sh -c 'echo hi'",
            "--main",
            "--secret",
            "API_KEY",
        ]);
        env.ok(&["group", "add", "web", "--bot", "b1", "--agent", "cat"]);
    }
    // The daemon is gone: the state is read from the store.
    let cfg = env.path("daemon.toml");
    for (mode, sideload, shared) in [
        ("job", "image-volume", false),
        ("job", "init-container", true),
        ("warm", "image-volume", true),
        ("warm", "init-container", false),
    ] {
        let text = if shared {
            format!(
                "{config}[kubernetes]\nshared_claim = \"botyard-shared\"\nnamespace = \"agents\"\n"
            )
        } else {
            config.to_string()
        };
        std::fs::write(&cfg, &text).unwrap();
        let args = [
            "kube",
            "manifests",
            "--group",
            group,
            "--config",
            cfg.to_str().unwrap(),
            "--kube-mode",
            mode,
            "--supervisor-sideload",
            sideload,
            "--session",
            "7",
        ];
        let yaml = env.ok(&args);
        assert!(!yaml.contains(secret), "a secret in the manifests");
        validate(&validator, &env, &yaml, &format!("{mode}/{sideload}"));
        let mut j = args.to_vec();
        j.push("--json");
        let objs = env.json(&j);
        let (claim, session) = (&objs[0], &objs[1]);

        // The bot's claim, of botyard's class.
        assert_eq!(claim["kind"], "PersistentVolumeClaim");
        assert_eq!(claim["spec"]["storageClassName"], "botyard");
        let claim_name = claim["metadata"]["name"].as_str().unwrap();
        assert!(claim_name.starts_with("bot-ops-team-1-"), "{claim_name}");
        assert_eq!(
            claim["metadata"]["annotations"]["botyard.dev/group-name"],
            group
        );
        let ns = if shared { "agents" } else { "botyard" };
        assert_eq!(session["metadata"]["namespace"], ns);

        // The session, by mode.
        let name = session["metadata"]["name"].as_str().unwrap();
        assert!(name.len() <= 57 && name.ends_with("-7"), "{name}");
        assert_eq!(session["metadata"]["labels"]["botyard.dev/session"], "7");
        match mode {
            "job" => {
                assert_eq!(session["kind"], "Job");
                let s = &session["spec"];
                assert_eq!(s["backoffLimit"], 0);
                assert_eq!(s["activeDeadlineSeconds"], 1200);
                assert_eq!(s["ttlSecondsAfterFinished"], 600);
            }
            _ => assert_eq!(session["kind"], "Pod"),
        }
        let pod = pod_of(session);
        assert_eq!(pod["hostUsers"], false);
        assert_eq!(pod["automountServiceAccountToken"], false);
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        let agent = &pod["containers"][0];
        check_restricted(agent);
        assert_eq!(agent["stdin"], true);
        assert_eq!(agent["stdinOnce"], true);
        assert_eq!(agent["image"], "bb:1", "the bot's image");
        assert_eq!(agent["resources"]["limits"]["memory"], "512000000");
        assert_eq!(agent["resources"]["limits"]["cpu"], "1500m");
        let cmd: Vec<&str> = agent["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(
            cmd[..3],
            ["/run/botyard/botyard", "supervise", "--secrets-on-stdin"]
        );
        assert_eq!(cmd[cmd.len() - 3..], ["sh", "-c", "echo hi"]);
        let env_names: Vec<&str> = agent["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(env_names, ["PATH", "HOME"], "no secret in the environment");

        let mounts = agent["volumeMounts"].as_array().unwrap();
        let at = |p: &str| {
            mounts
                .iter()
                .find(|m| m["mountPath"] == p)
                .unwrap_or_else(|| panic!("nothing at {p}: {mounts:?}"))
        };
        for d in ["usr", "etc", "var", "home", "root", "opt"] {
            let m = at(&format!("/{d}"));
            assert_eq!(m["name"], "bot");
            assert_eq!(m["subPath"], d);
        }
        let volumes = pod["volumes"].as_array().unwrap();
        let vol = |n: &str| volumes.iter().find(|v| v["name"] == n).cloned();
        assert_eq!(
            vol("bot").unwrap()["persistentVolumeClaim"]["claimName"],
            claim_name
        );
        let ipc = at("/run/botyard-ipc");
        if shared {
            assert_eq!(ipc["name"], "shared");
            assert_eq!(ipc["subPath"], format!("groups/{group}/ipc"));
            assert_eq!(
                vol("shared").unwrap()["persistentVolumeClaim"]["claimName"],
                "botyard-shared"
            );
        } else {
            assert_eq!(ipc["name"], "ipc");
            assert!(vol("ipc").unwrap()["emptyDir"].is_object());
        }
        let sup = at("/run/botyard");
        assert_eq!(sup["readOnly"], true);
        let supervisor = vol("supervisor").unwrap();
        match sideload {
            "image-volume" => {
                assert!(supervisor["image"]["reference"]
                    .as_str()
                    .unwrap()
                    .starts_with("botyard/supervisor:"));
                assert!(pod["initContainers"].is_null());
            }
            _ => {
                assert!(supervisor["emptyDir"].is_object());
                let init = &pod["initContainers"][0];
                check_restricted(init);
                assert_eq!(
                    init["command"],
                    serde_json::json!(["/botyard", "supervise", "copy-self", "/run/botyard"])
                );
            }
        }
    }

    // The same choices from the environment; the flag beats it.
    std::fs::write(&cfg, config).unwrap();
    let out = env
        .cmd()
        .env("BOTYARD_KUBE_MODE", "warm")
        .env("BOTYARD_SUPERVISOR_SIDELOAD", "init-container")
        .args(["kube", "manifests", "--group", "web", "--json"])
        .args(["--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let objs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(objs[1]["kind"], "Pod");
    assert!(pod_of(&objs[1])["initContainers"].is_array());
    let out = env
        .cmd()
        .env("BOTYARD_KUBE_MODE", "warm")
        .args([
            "kube",
            "manifests",
            "--group",
            "web",
            "--json",
            "--kube-mode",
            "job",
        ])
        .output()
        .unwrap();
    let objs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(objs[1]["kind"], "Job");
    // The supervisor always waits for the daemon's attach (secrets, maybe
    // none); without a shared volume its messages come on stdin too.
    let cmd = &pod_of(&objs[1])["containers"][0]["command"];
    assert!(cmd.to_string().contains("\"--secrets-on-stdin\""), "{cmd}");
    assert!(cmd.to_string().contains("\"--ipc-stdin\""), "{cmd}");
}

#[test]
fn bad_kubernetes_settings_and_names_get_one_line_errors() {
    require_root!();
    let env = busybox_env(&["sh"]);
    // No daemon ever ran here.
    let e = env.fails(&["kube", "manifests", "--group", "web"]);
    assert!(
        e.contains("no daemon state") && e.contains("group add"),
        "{e}"
    );
    {
        let _d = start(&env, "", &[]);
        env.ok(&["group", "add", "web", "--bot", "b1", "--agent", "cat"]);
        env.ok(&["group", "add", "..x", "--bot", "b1", "--agent", "cat"]);
        env.ok(&[
            "group",
            "add",
            "ws",
            "--bot",
            "b1",
            "--agent",
            "cat",
            "--workspace",
            "proj",
            "--user",
            "alice",
        ]);
        env.ok(&[
            "group",
            "add",
            "host-ws",
            "--bot",
            "b1",
            "--agent",
            "cat",
            "--workspace",
            "proj",
        ]);
        // Seed 002's traversal: refused when the group is added.
        for bad in ["a/b", "..", "x\ty"] {
            let e = env.fails(&[
                "group",
                "add",
                "u",
                "--bot",
                "b1",
                "--agent",
                "cat",
                "--workspace",
                "proj",
                "--user",
                bad,
            ]);
            assert!(
                e.contains("user")
                    && (e.contains("separator")
                        || e.contains("traversal")
                        || e.contains("control")),
                "{e}"
            );
        }
    }
    let e = env.fails(&["kube", "manifests", "--group", "nope"]);
    assert!(e.contains("no group") && e.contains("group ls"), "{e}");
    // A bad choice is a usage error (exit 2), naming what is allowed.
    for (flag, value, allowed) in [
        ("--kube-mode", "statefulset", ["job", "warm"]),
        (
            "--supervisor-sideload",
            "copy",
            ["image-volume", "init-container"],
        ),
    ] {
        let o = env.run(&["kube", "manifests", "--group", "web", flag, value]);
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{e}");
        assert!(e.contains(allowed[0]) && e.contains(allowed[1]), "{e}");
    }
    let cfg = env.path("bad.toml");
    let with_config = |group: &str, json: bool| {
        let mut a = vec![
            "kube".to_string(),
            "manifests".into(),
            "--group".into(),
            group.into(),
            "--config".into(),
            cfg.display().to_string(),
        ];
        if json {
            a.push("--json".into());
        }
        a
    };
    for (table, key) in [
        ("shared_claim = \"Not/A/Claim\"", "kubernetes.shared_claim"),
        ("namespace = \"Agents\"", "kubernetes.namespace"),
        ("mode = \"cron\"", "kubernetes.mode"),
        ("pending_timeout = \"later\"", "kubernetes.pending_timeout"),
        ("shared_clam = \"x\"", "shared_clam"),
    ] {
        std::fs::write(&cfg, format!("[kubernetes]\n{table}\n")).unwrap();
        let e = env.fails(&with_config("web", false));
        assert!(e.contains(key), "{key}: {e}");
    }
    // A group named like a traversal is fine as a label (hashed) and on
    // the shared volume is its own directory, never the parent.
    std::fs::write(&cfg, "[kubernetes]\nshared_claim = \"shared\"\n").unwrap();
    let objs = env.json(&with_config("..x", true));
    let text = objs.to_string();
    assert!(text.contains("\"subPath\":\"groups/..x/ipc\""), "{text}");
    // A user's workspace: its own directory of the shared volume, read
    // only for a group that is not the main one.
    let objs = env.json(&with_config("ws", true));
    let mounts = &pod_of(&objs[1])["containers"][0]["volumeMounts"];
    let ws = mounts
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == "/workspace")
        .unwrap_or_else(|| panic!("{mounts}"));
    assert_eq!(ws["subPath"], "users/alice/proj");
    assert_eq!(ws["readOnly"], true);
    let e = env.fails(&["kube", "manifests", "--group", "ws"]);
    assert!(e.contains("shared_claim"), "{e}");
    let e = env.fails(&with_config("host-ws", false));
    assert!(e.contains("--user"), "{e}");
    // No limits in the config: none in the pod (this machine's share of
    // itself means nothing on a cluster).
    let agent = &pod_of(&objs[1])["containers"][0];
    assert!(agent["resources"].is_null(), "{agent}");
}
