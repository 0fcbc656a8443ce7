//! The supervisor image, end to end with real parts: built by
//! scripts/supervisor-image.sh (the static `botyard-supervisor`, writing
//! itself as an OCI layout with `supervise image`), pushed to a real `docker-registry` on
//! loopback with skopeo, pulled back with `botyard image pull`, and run in
//! a runc container whose root is a busybox-only image with no libc, the
//! way a pod's image volume mounts it at /run/botyard.

mod common;
use common::*;
use std::io::Read;
use std::path::PathBuf;

#[test]
fn the_supervisor_image_round_trips_a_registry_and_runs_without_a_libc() {
    require_root!();
    if !have_tool("skopeo", "skopeo")
        || !have_tool("docker-registry", "docker-registry")
        || !have_tool("runc", "runc")
    {
        return;
    }
    let env = busybox_env(&["sh", "echo", "cat", "ls"]);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let layout = env.path("supervisor-layout");
    let bin = sh(&format!(
        "bash '{}' '{}' test1",
        root.join("scripts/supervisor-image.sh").display(),
        layout.display()
    ));
    let bin = PathBuf::from(bin.trim());

    // The layout: one manifest, one layer holding exactly /botyard.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "test1"
    );
    let blob = |d: &serde_json::Value| {
        std::fs::read(
            layout
                .join("blobs/sha256")
                .join(d.as_str().unwrap().trim_start_matches("sha256:")),
        )
        .unwrap()
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(&index["manifests"][0]["digest"])).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(std::io::Cursor::new(blob(
        &layers[0]["digest"],
    ))));
    let mut entries = Vec::new();
    for e in tar.entries().unwrap() {
        let mut e = e.unwrap();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        entries.push((
            e.path().unwrap().display().to_string(),
            e.header().mode().unwrap(),
            data,
        ));
    }
    assert_eq!(entries.len(), 1, "nothing but the binary");
    assert_eq!((entries[0].0.as_str(), entries[0].1), ("botyard", 0o755));
    assert_eq!(entries[0].2, std::fs::read(&bin).unwrap());
    // The same binary and tag give the same image, byte for byte.
    let again = env.path("again");
    let o = std::process::Command::new(&bin)
        .args(["supervise", "image", "--tag", "test1", "--json"])
        .arg(&again)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let written: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(written["digest"], index["manifests"][0]["digest"]);
    // The dynamically linked build refuses, saying how to get a static one.
    let e = env.fails(&["supervise", "image", env.path("dyn").to_str().unwrap()]);
    assert!(
        e.contains("dynamically linked") && e.contains("supervisor-image.sh"),
        "{e}"
    );

    // Through a real registry and back.
    let reg = Registry::start(env.dir.path());
    let reference = format!("127.0.0.1:{}/botyard/supervisor:test1", reg.port);
    sh(&format!(
        "skopeo copy -q --dest-tls-verify=false oci:'{}':test1 docker://{reference}",
        layout.display()
    ));
    env.ok(&["image", "pull", &reference, "--insecure"]);
    env.ok(&[
        "bot",
        "create",
        "sup",
        "--image",
        "botyard/supervisor:test1",
        "--driver",
        "copy",
    ]);
    let pulled = env.store.join("bots/sup/root");
    assert_eq!(
        std::fs::read(pulled.join("botyard")).unwrap(),
        std::fs::read(&bin).unwrap()
    );
    let names: Vec<_> = std::fs::read_dir(&pulled)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["botyard"]);

    // An agent image with busybox alone: no libc, no loader.
    env.ok(&[
        "bot", "create", "agent", "--image", "bb:1", "--driver", "copy",
    ]);
    let rootfs = env.store.join("bots/agent/root");
    assert!(!rootfs.join("lib").exists() && !rootfs.join("usr/lib").exists());
    let bundle = env.path("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    sh(&format!("cd '{}' && runc spec", bundle.display()));
    let cfg_path = bundle.join("config.json");
    let mut c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    c["root"] = serde_json::json!({"path": rootfs, "readonly": false});
    c["process"]["terminal"] = false.into();
    c["process"]["args"] = serde_json::json!([
        "/run/botyard/botyard",
        "supervise",
        "--",
        "/bin/sh",
        "-c",
        // And what an init container does with it: copy-self.
        "echo from the agent; ls /run/botyard; \
         /run/botyard/botyard supervise copy-self /tmp/s >/dev/null && /tmp/s/botyard supervise -- echo copied"
    ]);
    c["mounts"].as_array_mut().unwrap().push(
        serde_json::json!({"destination": "/run/botyard", "type": "bind",
            "source": pulled, "options": ["rbind", "ro"]}),
    );
    std::fs::write(&cfg_path, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    let o = std::process::Command::new("runc")
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(format!("botyard-supervisor-image-{}", std::process::id()))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(out, "from the agent\nbotyard\ncopied\n");
    env.fsck_ok();
}
