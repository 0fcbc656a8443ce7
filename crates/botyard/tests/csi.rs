//! The CSI plugin against the spec, without a cluster: a real `botyard
//! csi` on a real unix socket, called the way kubelet and the sidecars call
//! it, with real mounts. Each RPC's idempotency and error codes are the
//! ones the CSI spec states.

mod common;
use common::*;
use csi::proto::{
    self, controller_client::ControllerClient, identity_client::IdentityClient,
    node_client::NodeClient, volume_capability,
};
use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::Code;

struct Plugin<'a> {
    env: &'a Env,
    /// Unmount the pods' volumes when dropped (not when killed on purpose).
    cleanup: bool,
    child: Child,
    rt: tokio::runtime::Runtime,
    channel: Channel,
}

impl Drop for Plugin<'_> {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.cleanup {
            fs::unmount_below(&self.env.path("pods"));
            let _ = self.env.run(&["bot", "ls"]);
        }
    }
}

fn start(env: &Env) -> Plugin<'_> {
    start_with(env, &[])
}

fn start_with<'a>(env: &'a Env, extra: &[&str]) -> Plugin<'a> {
    start_on(env, "node-1", extra)
}

/// The plugin of node `node`, whose store is `env`'s.
fn start_on<'a>(env: &'a Env, node: &str, extra: &[&str]) -> Plugin<'a> {
    let sock = env.path("csi/csi.sock");
    let child = env
        .cmd()
        .args(["csi", "--endpoint"])
        .arg(format!("unix://{}", sock.display()))
        .args(["--node-id", node])
        .args(extra)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the plugin did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let channel = rt.block_on(async {
        tonic::transport::Endpoint::try_from("http://[::]:50051")
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let p = sock.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                        tokio::net::UnixStream::connect(p).await?,
                    ))
                }
            }))
            .await
            .unwrap()
    });
    Plugin {
        env,
        cleanup: true,
        child,
        rt,
        channel,
    }
}

fn mount_cap(mode: volume_capability::access_mode::Mode) -> proto::VolumeCapability {
    proto::VolumeCapability {
        access_type: Some(volume_capability::AccessType::Mount(
            volume_capability::MountVolume::default(),
        )),
        access_mode: Some(volume_capability::AccessMode { mode: mode as i32 }),
    }
}

fn rw() -> proto::VolumeCapability {
    mount_cap(volume_capability::access_mode::Mode::SingleNodeWriter)
}

fn params(kv: &[(&str, &str)]) -> HashMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn create_req(name: &str, p: &[(&str, &str)]) -> proto::CreateVolumeRequest {
    proto::CreateVolumeRequest {
        name: name.into(),
        volume_capabilities: vec![rw()],
        parameters: params(p),
        ..Default::default()
    }
}

fn publish_req(id: &str, target: &Path, readonly: bool) -> proto::NodePublishVolumeRequest {
    proto::NodePublishVolumeRequest {
        volume_id: id.into(),
        target_path: target.to_str().unwrap().into(),
        volume_capability: Some(rw()),
        readonly,
        ..Default::default()
    }
}

fn unpublish_req(id: &str, target: &Path) -> proto::NodeUnpublishVolumeRequest {
    proto::NodeUnpublishVolumeRequest {
        volume_id: id.into(),
        target_path: target.to_str().unwrap().into(),
    }
}

impl Plugin<'_> {
    fn controller(&self) -> ControllerClient<Channel> {
        ControllerClient::new(self.channel.clone())
    }
    fn node(&self) -> NodeClient<Channel> {
        NodeClient::new(self.channel.clone())
    }
    fn create(&self, r: proto::CreateVolumeRequest) -> Result<proto::Volume, tonic::Status> {
        self.rt
            .block_on(self.controller().create_volume(r))
            .map(|r| r.into_inner().volume.unwrap())
    }
    fn publish(&self, r: proto::NodePublishVolumeRequest) -> Result<(), tonic::Status> {
        self.rt
            .block_on(self.node().node_publish_volume(r))
            .map(|_| ())
    }
    fn unpublish(&self, r: proto::NodeUnpublishVolumeRequest) -> Result<(), tonic::Status> {
        self.rt
            .block_on(self.node().node_unpublish_volume(r))
            .map(|_| ())
    }
}

fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> (Code, String) {
    let e = r.expect_err("the call should fail");
    (e.code(), e.message().to_string())
}

/// A user namespace mapping 0..65536 to `base`.., held by a child process
/// (killed when the first value drops), and a descriptor of it.
fn user_namespace(base: u32) -> (KillOnDrop, std::os::fd::OwnedFd) {
    let child = std::process::Command::new("unshare")
        .args(["-U", "sleep", "60"])
        .spawn()
        .unwrap();
    let pid = child.id();
    let t = Instant::now();
    // Written once the child is in its namespace (its ns link changes).
    let own = std::fs::read_link("/proc/self/ns/user").unwrap();
    while std::fs::read_link(format!("/proc/{pid}/ns/user")).unwrap() == own {
        assert!(t.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(5));
    }
    for m in ["uid_map", "gid_map"] {
        std::fs::write(format!("/proc/{pid}/{m}"), format!("0 {base} 65536")).unwrap();
    }
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/user")).unwrap();
    (KillOnDrop(child), ns.into())
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn is_mount_point(p: &Path) -> bool {
    fs::is_mount_point(p)
}

#[test]
fn identity_and_controller_follow_the_spec() {
    require_root!();
    let env = busybox_env(&["sh", "cat", "echo"]);
    let p = start(&env);
    let info =
        p.rt.block_on(
            IdentityClient::new(p.channel.clone()).get_plugin_info(proto::GetPluginInfoRequest {}),
        )
        .unwrap()
        .into_inner();
    assert_eq!(info.name, csi::DRIVER_NAME);
    assert!(!info.vendor_version.is_empty());
    let probe =
        p.rt.block_on(IdentityClient::new(p.channel.clone()).probe(proto::ProbeRequest {}))
            .unwrap()
            .into_inner();
    assert_eq!(probe.ready, Some(true));

    // Bad requests: INVALID_ARGUMENT, with the fix named.
    let (c, m) = code(p.create(create_req("", &[("image", "bb:1")])));
    assert_eq!(c, Code::InvalidArgument, "{m}");
    let mut no_caps = create_req("pvc-1", &[("image", "bb:1")]);
    no_caps.volume_capabilities.clear();
    assert_eq!(code(p.create(no_caps)).0, Code::InvalidArgument);
    let (c, m) = code(p.create(create_req("pvc-1", &[("image", "bb:1"), ("colour", "red")])));
    assert_eq!(c, Code::InvalidArgument);
    assert!(m.contains("colour") && m.contains("image"), "{m}");
    let (c, m) = code(p.create(create_req("pvc-1", &[])));
    assert_eq!(c, Code::InvalidArgument);
    assert!(m.contains("image"), "{m}");
    let (c, m) = code(p.create(create_req("pvc-1", &[("image", "nope:1")])));
    assert_eq!(c, Code::InvalidArgument);
    assert!(m.contains("nope:1") && m.contains("import or pull"), "{m}");
    let (c, _) = code(p.create(create_req("pvc-1", &[("image", "bb:1"), ("driver", "zfs")])));
    assert_eq!(c, Code::InvalidArgument);
    let mut block = create_req("pvc-1", &[("image", "bb:1")]);
    block.volume_capabilities = vec![proto::VolumeCapability {
        access_type: Some(volume_capability::AccessType::Block(Default::default())),
        access_mode: rw().access_mode,
    }];
    assert_eq!(code(p.create(block)).0, Code::InvalidArgument);
    let mut multi = create_req("pvc-1", &[("image", "bb:1")]);
    multi.volume_capabilities = vec![mount_cap(
        volume_capability::access_mode::Mode::MultiNodeMultiWriter,
    )];
    assert_eq!(code(p.create(multi)).0, Code::InvalidArgument);
    assert!(
        env.json(&["bot", "ls", "--json"]).as_array().unwrap().len() == 1,
        "nothing was made"
    );

    // Create: a bot, the node as topology; again: the same; other
    // parameters: ALREADY_EXISTS.
    let v = p.create(create_req("pvc-1", &[("image", "bb:1")])).unwrap();
    assert_eq!(v.volume_id, "pvc-1");
    assert_eq!(
        v.accessible_topology[0]
            .segments
            .get(csi::TOPOLOGY_KEY)
            .map(String::as_str),
        Some("node-1")
    );
    let again = p.create(create_req("pvc-1", &[("image", "bb:1")])).unwrap();
    assert_eq!(again, v);
    let (c, m) = code(p.create(create_req(
        "pvc-1",
        &[("image", "bb:1"), ("driver", "overlay")],
    )));
    assert_eq!(c, Code::AlreadyExists, "{m}");
    let show = env.json(&["bot", "show", "pvc-1", "--json"]);
    assert_eq!(show["image"], "bb:1");
    assert_eq!(
        show["driver"], "copy",
        "copy is the default: userns pods can use it"
    );
    let same = p
        .create(create_req(
            "pvc-1",
            &[("image", "bb:1"), ("driver", "copy")],
        ))
        .unwrap();
    assert_eq!(same, v);
    // A bot made by hand is never taken over (DeleteVolume would remove it).
    env.ok(&["bot", "create", "pvc-hand", "--image", "bb:1"]);
    let (c, m) = code(p.create(create_req("pvc-hand", &[("image", "bb:1")])));
    assert_eq!(c, Code::AlreadyExists, "{m}");
    assert!(m.contains("not a volume of this driver"), "{m}");
    assert_eq!(
        env.json(&["bot", "show", "pvc-hand", "--json"])["driver"],
        "overlay"
    );
    // A name that is not a bot id maps to one; two such names never meet.
    let odd = p
        .create(create_req("Data_Vol", &[("image", "bb:1")]))
        .unwrap();
    let odd2 = p
        .create(create_req("data_vol", &[("image", "bb:1")]))
        .unwrap();
    assert_ne!(odd.volume_id, odd2.volume_id);
    assert!(bot::validate_id(&odd.volume_id).is_ok());

    // Validate, list, capacity.
    let ctl = || p.controller();
    let (c, _) = code(p.rt.block_on(ctl().validate_volume_capabilities(
        proto::ValidateVolumeCapabilitiesRequest {
            volume_id: "pvc-nope".into(),
            volume_capabilities: vec![rw()],
            ..Default::default()
        },
    )));
    assert_eq!(c, Code::NotFound);
    let ok =
        p.rt.block_on(ctl().validate_volume_capabilities(
            proto::ValidateVolumeCapabilitiesRequest {
                volume_id: "pvc-1".into(),
                volume_capabilities: vec![rw()],
                ..Default::default()
            },
        ))
        .unwrap()
        .into_inner();
    assert!(ok.confirmed.is_some(), "{}", ok.message);
    let listed =
        p.rt.block_on(ctl().list_volumes(proto::ListVolumesRequest {
            max_entries: 2,
            starting_token: String::new(),
        }))
        .unwrap()
        .into_inner();
    assert_eq!(listed.entries.len(), 2);
    assert!(!listed.next_token.is_empty());
    let rest =
        p.rt.block_on(ctl().list_volumes(proto::ListVolumesRequest {
            max_entries: 0,
            starting_token: listed.next_token,
        }))
        .unwrap()
        .into_inner();
    assert_eq!(rest.entries.len(), 1, "the bot made by hand is no volume");
    let (c, _) = code(p.rt.block_on(ctl().list_volumes(proto::ListVolumesRequest {
        max_entries: 0,
        starting_token: "zzz".into(),
    })));
    assert_eq!(c, Code::Aborted);
    let cap =
        p.rt.block_on(ctl().get_capacity(proto::GetCapacityRequest::default()))
            .unwrap()
            .into_inner();
    assert!(cap.available_capacity > 0);

    // Delete: gone, and again is fine; a missing id is refused.
    for id in [&odd.volume_id, &odd2.volume_id] {
        p.rt.block_on(ctl().delete_volume(proto::DeleteVolumeRequest {
            volume_id: id.clone(),
            secrets: Default::default(),
        }))
        .unwrap();
    }
    p.rt.block_on(ctl().delete_volume(proto::DeleteVolumeRequest {
        volume_id: odd.volume_id.clone(),
        secrets: Default::default(),
    }))
    .unwrap();
    assert_eq!(
        code(p.rt.block_on(ctl().delete_volume(proto::DeleteVolumeRequest::default()))).0,
        Code::InvalidArgument
    );
    assert!(env.run(&["bot", "show", &odd.volume_id]).status.code() != Some(0));
    drop(p);
    env.fsck_ok();
}

#[test]
fn a_published_volume_is_the_bots_root_and_its_writes_are_committed_at_unpublish() {
    require_root!();
    for driver in ["copy", "overlay"] {
        publish_and_commit(driver);
    }
}

fn publish_and_commit(driver: &str) {
    let env = busybox_env(&["sh", "cat", "echo"]);
    let p = start(&env);
    p.create(create_req(
        "pvc-a",
        &[("image", "bb:1"), ("driver", driver)],
    ))
    .unwrap();
    let target = env.path("pods/uid-1/volumes/kubernetes.io~csi/pvc-a/mount");

    // Bad publishes.
    let mut r = publish_req("pvc-a", &target, false);
    r.target_path.clear();
    assert_eq!(code(p.publish(r)).0, Code::InvalidArgument);
    let mut r = publish_req("pvc-a", &target, false);
    r.volume_capability = None;
    assert_eq!(code(p.publish(r)).0, Code::InvalidArgument);
    assert_eq!(
        code(p.publish(publish_req("", &target, false))).0,
        Code::InvalidArgument
    );
    let (c, m) = code(p.publish(publish_req("pvc-nope", &target, false)));
    assert_eq!(c, Code::NotFound, "{m}");

    // Publish: the image's root, writable; twice is the same.
    p.publish(publish_req("pvc-a", &target, false)).unwrap();
    p.publish(publish_req("pvc-a", &target, false)).unwrap();
    assert!(target.join("bin/busybox").exists());
    // What a runtime does for a pod with its own user namespace: an
    // idmapped mount of the volume. The copy driver's directory takes it;
    // a merged overlay does not (which is why copy is the default).
    let idmapped = env.path(&format!("idmapped-{driver}"));
    let (ns_holder, ns) = user_namespace(100_000);
    let r = fs::mount_clone_idmapped(&fs::walk::open_dir(&target).unwrap(), &idmapped, true, &ns);
    match driver {
        "copy" => {
            r.unwrap();
            use std::os::unix::fs::MetadataExt;
            let md = std::fs::metadata(idmapped.join("bin/busybox")).unwrap();
            assert_eq!(
                md.uid(),
                100_000,
                "root's file shows as the namespace's root"
            );
            fs::unmount(&idmapped).unwrap();
        }
        _ => {
            let e = format!("{:#}", r.unwrap_err());
            assert!(e.contains("merged overlay"), "{e}");
        }
    }
    drop(ns_holder);
    std::fs::write(target.join("root/note"), "written in the pod").unwrap();
    let stats =
        p.rt.block_on(
            p.node()
                .node_get_volume_stats(proto::NodeGetVolumeStatsRequest {
                    volume_id: "pvc-a".into(),
                    volume_path: target.to_str().unwrap().into(),
                    staging_target_path: String::new(),
                }),
        )
        .unwrap()
        .into_inner();
    assert!(stats.usage[0].used > 0 && stats.usage[0].available > 0);
    // Not deletable while published.
    let (c, _) = code(
        p.rt.block_on(p.controller().delete_volume(proto::DeleteVolumeRequest {
            volume_id: "pvc-a".into(),
            secrets: Default::default(),
        })),
    );
    assert_eq!(c, Code::FailedPrecondition);

    // Unpublish: unmounted and committed; twice is fine.
    p.unpublish(unpublish_req("pvc-a", &target)).unwrap();
    p.unpublish(unpublish_req("pvc-a", &target)).unwrap();
    assert!(!is_mount_point(&target));
    let show = env.json(&["bot", "show", "pvc-a", "--json"]);
    assert!(show["mounted_at"].is_null(), "{show}");
    assert_eq!(show["uncommitted_bytes"], 0, "{show}");
    assert_ne!(show["tree"], show["image_tree"], "the write was committed");

    // Published again (a new pod): the write is there. Read-only is honoured.
    let ro = env.path("pods/uid-2/volumes/kubernetes.io~csi/pvc-a/mount");
    p.publish(publish_req("pvc-a", &ro, true)).unwrap();
    assert_eq!(
        std::fs::read_to_string(ro.join("root/note")).unwrap(),
        "written in the pod"
    );
    let e = std::fs::write(ro.join("root/other"), "x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    p.unpublish(unpublish_req("pvc-a", &ro)).unwrap();

    let info =
        p.rt.block_on(p.node().node_get_info(proto::NodeGetInfoRequest {}))
            .unwrap()
            .into_inner();
    assert_eq!(info.node_id, "node-1");
    assert_eq!(
        info.accessible_topology
            .unwrap()
            .segments
            .get(csi::TOPOLOGY_KEY)
            .map(String::as_str),
        Some("node-1")
    );
    p.rt.block_on(p.controller().delete_volume(proto::DeleteVolumeRequest {
        volume_id: "pvc-a".into(),
        secrets: Default::default(),
    }))
    .unwrap();
    drop(p);
    assert_eq!(fs::mounts_below(&env.store).len(), 0);
    env.fsck_ok();
}

#[test]
fn an_ephemeral_inline_volume_lives_as_long_as_its_pod() {
    require_root!();
    let env = busybox_env(&["sh"]);
    let p = start(&env);
    let target = env.path("pods/uid-3/volumes/kubernetes.io~csi/scratch/mount");
    let mut r = publish_req("csi-0a1b2c", &target, false);
    r.volume_context = params(&[("image", "bb:1"), ("csi.storage.k8s.io/ephemeral", "true")]);
    p.publish(r).unwrap();
    assert!(target.join("bin/busybox").exists());
    assert_eq!(
        env.json(&["bot", "show", "csi-0a1b2c", "--json"])["image"],
        "bb:1"
    );
    p.unpublish(unpublish_req("csi-0a1b2c", &target)).unwrap();
    assert!(
        env.run(&["bot", "show", "csi-0a1b2c"]).status.code() != Some(0),
        "the bot went with the pod"
    );
    let mut bad = publish_req("csi-0a1b2d", &target, false);
    bad.volume_context = params(&[("csi.storage.k8s.io/ephemeral", "true")]);
    assert_eq!(code(p.publish(bad)).0, Code::InvalidArgument);
    drop(p);
    env.fsck_ok();
}

/// Stores are node-local: a volume another node made is not on this one,
/// and publishing it here says so instead of making an empty bot.
#[test]
fn a_volume_of_another_node_is_not_found_here() {
    require_root!();
    let (one, two) = (busybox_env(&["sh"]), busybox_env(&["sh"]));
    let p1 = start_on(&one, "node-1", &[]);
    let p2 = start_on(&two, "node-2", &[]);
    let v = p1
        .create(create_req("pvc-x", &[("image", "bb:1")]))
        .unwrap();
    let topo = &v.accessible_topology[0].segments;
    assert!(topo.values().any(|n| n == "node-1"), "{topo:?}");
    let target = two.path("pods/uid-9/volumes/kubernetes.io~csi/pvc-x/mount");
    let (c, m) = code(p2.publish(publish_req(&v.volume_id, &target, false)));
    assert_eq!(c, Code::NotFound, "{m}");
    assert!(m.contains("node-2") && m.contains("another node"), "{m}");
    assert!(!target.exists() || std::fs::read_dir(&target).unwrap().next().is_none());
    assert!(two.run(&["bot", "show", &v.volume_id]).status.code() != Some(0));
    drop((p1, p2));
    one.fsck_ok();
    two.fsck_ok();
}

/// The issue's proof, the way kubelet and the runtime do it: a volume
/// created and published over the socket; a runc container in a new user
/// namespace (its root is host uid 100000, 65,536 ids) whose /usr, /etc,
/// /var, /home, /root and /opt are idmapped bind mounts of the volume's
/// subdirectories (made here as a runtime makes them; runc 1.1 cannot),
/// with the default capabilities of a pod and none added; inside, as root,
/// `dpkg -i` of real .debs and a clean `dpkg --audit`. Then unpublish,
/// publish again for a second container: the packages are there; on the
/// host the files belong to root, not to the shifted ids.
#[test]
fn a_user_namespace_container_installs_packages_on_a_published_volume() {
    require_root!();
    if !have_tool("debootstrap", "debootstrap")
        || !have_tool("dpkg-deb", "dpkg")
        || !have_tool("runc", "runc")
    {
        return;
    }
    let rootfs = sh(&format!(
        "bash '{}/../../scripts/debian-rootfs.sh'",
        env!("CARGO_MANIFEST_DIR")
    ));
    // The store where the chart's docs put it for such pods: on btrfs,
    // where each copy volume is a snapshot of the image's root.
    let loop_dir = tempfile::tempdir().unwrap();
    let lfs = LoopFs::new(loop_dir.path(), "btrfs", "2G");
    let env = Env::with_store(lfs.mnt.join("store"));
    env.ok(&[
        "image",
        "import",
        "-q",
        "debian:bookworm",
        "--dir",
        rootfs.trim(),
    ]);
    let lib = build_deb(env.dir.path(), "botyard-test-lib", None);
    let app = build_deb(env.dir.path(), "botyard-test-app", Some("botyard-test-lib"));
    let p = start(&env);
    let v = p
        .create(create_req("pvc-deb", &[("image", "debian:bookworm")]))
        .unwrap();
    assert_eq!(
        v.volume_context.get("driver").map(String::as_str),
        Some("copy")
    );
    let show = env.json(&["bot", "show", "pvc-deb", "--json"]);
    assert_eq!(show["snapshot"], true, "{show}");

    let run_pod = |pod: &str, target: &Path, script: &str| -> String {
        let (holder, ns) = user_namespace(100_000);
        let b = env.path(&format!("{pod}/bundle"));
        let root = b.join("rootfs");
        for d in [
            "usr", "etc", "var", "home", "root", "opt", "tmp", "proc", "dev", "sys",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        for (l, t) in [
            ("bin", "usr/bin"),
            ("sbin", "usr/sbin"),
            ("lib", "usr/lib"),
            ("lib64", "usr/lib64"),
        ] {
            std::os::unix::fs::symlink(t, root.join(l)).unwrap();
        }
        sh(&format!(
            "chown -R 100000:100000 '{}'",
            env.path(pod).display()
        ));
        std::fs::copy(&lib, root.join("tmp/lib.deb")).unwrap();
        std::fs::copy(&app, root.join("tmp/app.deb")).unwrap();
        sh(&format!(
            "chown 100000:100000 '{}'/tmp/*.deb",
            root.display()
        ));
        // The runtime's idmapped mounts of the volume's subPaths.
        let mut mounts = Vec::new();
        for d in ["usr", "etc", "var", "home", "root", "opt"] {
            let at = env.path(&format!("{pod}/idmapped/{d}"));
            let src = fs::walk::open_dir(&target.join(d)).unwrap();
            fs::mount_clone_idmapped(&src, &at, true, &ns).unwrap();
            mounts.push(
                serde_json::json!({"destination": format!("/{d}"), "type": "bind",
                "source": at, "options": ["rbind", "rw"]}),
            );
        }
        drop(holder);
        sh(&format!("cd '{}' && runc spec", b.display()));
        let cfg_path = b.join("config.json");
        let mut c: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
        c["process"]["terminal"] = false.into();
        c["process"]["args"] = serde_json::json!(["/bin/sh", "-c", script]);
        c["process"]["env"] =
            serde_json::json!(["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"]);
        // A pod's default capabilities (what containerd gives), none added.
        let caps = serde_json::json!([
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_FSETID",
            "CAP_FOWNER",
            "CAP_MKNOD",
            "CAP_NET_RAW",
            "CAP_SETGID",
            "CAP_SETUID",
            "CAP_SETFCAP",
            "CAP_SETPCAP",
            "CAP_NET_BIND_SERVICE",
            "CAP_SYS_CHROOT",
            "CAP_KILL",
            "CAP_AUDIT_WRITE"
        ]);
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set] = caps.clone();
        }
        c["root"] = serde_json::json!({"path": "rootfs", "readonly": false});
        c["linux"]["namespaces"] = serde_json::json!([{"type": "user"}, {"type": "pid"},
            {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "network"}]);
        let map = serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["uidMappings"] = map.clone();
        c["linux"]["gidMappings"] = map;
        let base = c["mounts"].as_array().unwrap().clone();
        let mut all: Vec<serde_json::Value> = base
            .into_iter()
            .filter(|m| m["destination"] != "/sys/fs/cgroup")
            .collect();
        all.extend(mounts);
        c["mounts"] = all.into();
        std::fs::write(&cfg_path, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
        let o = std::process::Command::new("runc")
            .args(["run", "--bundle"])
            .arg(&b)
            .arg(format!("botyard-csi-test-{pod}-{}", std::process::id()))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        for d in ["usr", "etc", "var", "home", "root", "opt"] {
            fs::unmount(&env.path(&format!("{pod}/idmapped/{d}"))).unwrap();
        }
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "{pod}: {out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        out
    };

    let target = env.path("pods/uid-1/volumes/kubernetes.io~csi/pvc-deb/mount");
    p.publish(publish_req("pvc-deb", &target, false)).unwrap();
    let out = run_pod(
        "pod1",
        &target,
        "id -u; dpkg -i /tmp/lib.deb /tmp/app.deb >/dev/null && dpkg --audit && dpkg -s botyard-test-app | grep Status",
    );
    assert_eq!(out, "0\nStatus: install ok installed\n");
    p.unpublish(unpublish_req("pvc-deb", &target)).unwrap();

    let target2 = env.path("pods/uid-2/volumes/kubernetes.io~csi/pvc-deb/mount");
    p.publish(publish_req("pvc-deb", &target2, false)).unwrap();
    let out = run_pod(
        "pod2",
        &target2,
        "dpkg --audit && dpkg -s botyard-test-app | grep Status && cat /var/lib/botyard-test-app/stamp",
    );
    assert_eq!(out, "Status: install ok installed\ninstalled\n");
    use std::os::unix::fs::MetadataExt;
    for f in [
        "usr/share/botyard-test-lib/data",
        "var/lib/botyard-test-app/stamp",
        "etc/botyard-test-lib.conf",
    ] {
        let md = std::fs::metadata(target2.join(f)).unwrap();
        assert_eq!(
            (md.uid(), md.gid()),
            (0, 0),
            "{f} belongs to root on the host"
        );
    }
    p.unpublish(unpublish_req("pvc-deb", &target2)).unwrap();
    drop(p);
    env.fsck_ok();
}

/// Mount points exactly at `p` (a volume mounted twice shows twice).
fn mounts_at(p: &Path) -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(p.to_str().unwrap()))
        .count()
}

/// Sends `call` to a fresh plugin, SIGKILLs the plugin `delay` later
/// (whether or not the call ended), and returns a new plugin to retry on.
fn killed_during<'a, F, Fut>(env: &'a Env, delay: Duration, call: F) -> Plugin<'a>
where
    F: FnOnce(Channel) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut p = start(env);
    let fut = call(p.channel.clone());
    p.rt.spawn(fut);
    std::thread::sleep(delay);
    p.cleanup = false;
    drop(p);
    start(env)
}

/// The plugin killed with SIGKILL in the middle of CreateVolume,
/// NodePublishVolume and NodeUnpublishVolume, then restarted: the retried
/// call succeeds, nothing is mounted twice, no byte a pod wrote is lost,
/// and fsck passes.
#[test]
fn a_plugin_killed_in_the_middle_of_a_call_recovers_on_the_retry() {
    require_root!();
    let env = busybox_env(&["sh"]);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("csi fault test seed {seed}");
    let mut x = seed | 1;
    let mut delay = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        Duration::from_micros(x % 60_000)
    };
    for (i, driver) in ["copy", "overlay", "copy", "overlay", "copy", "overlay"]
        .iter()
        .enumerate()
    {
        let id = format!("pvc-{i}");
        let req = create_req(&id, &[("image", "bb:1"), ("driver", driver)]);
        let r = req.clone();
        let p = killed_during(&env, delay(), move |ch| async move {
            let _ = ControllerClient::new(ch).create_volume(r).await;
        });
        let v = p
            .create(req.clone())
            .expect("the retried CreateVolume succeeds");
        assert_eq!(p.create(req).unwrap(), v);
        drop(p);

        let target = env.path(&format!("pods/{i}/volumes/kubernetes.io~csi/{id}/mount"));
        let r = publish_req(&id, &target, false);
        let p = killed_during(&env, delay(), move |ch| async move {
            let _ = NodeClient::new(ch).node_publish_volume(r).await;
        });
        p.publish(publish_req(&id, &target, false))
            .expect("the retried NodePublishVolume succeeds");
        assert_eq!(mounts_at(&target), 1, "{id} is mounted once at its target");
        std::fs::write(target.join("root/written"), format!("by pod {i}")).unwrap();

        let r = unpublish_req(&id, &target);
        let p2 = {
            let mut p = p;
            p.cleanup = false;
            drop(p);
            killed_during(&env, delay(), move |ch| async move {
                let _ = NodeClient::new(ch).node_unpublish_volume(r).await;
            })
        };
        p2.unpublish(unpublish_req(&id, &target))
            .expect("the retried NodeUnpublishVolume succeeds");
        assert_eq!(mounts_at(&target), 0, "{id} is no longer mounted");
        let again = env.path(&format!("pods/{i}b/volumes/kubernetes.io~csi/{id}/mount"));
        p2.publish(publish_req(&id, &again, false)).unwrap();
        assert_eq!(
            std::fs::read_to_string(again.join("root/written")).unwrap(),
            format!("by pod {i}"),
            "the pod's write survived"
        );
        p2.unpublish(unpublish_req(&id, &again)).unwrap();
        drop(p2);
    }
    assert!(fs::mounts_below(&env.path("pods")).is_empty());
    env.fsck_ok();
}

/// Pushes the busybox root of `env` to `reg` as `repo_tag` (with a login
/// if given); returns its reference.
fn push_busybox(env: &Env, reg: &Registry, repo_tag: &str, login: Option<(&str, &str)>) -> String {
    let layer = env.path("layer.tar");
    sh(&format!(
        "tar -C '{}' -cf '{}' .",
        env.path("rootfs").display(),
        layer.display()
    ));
    let layout = env.path("layout");
    write_oci_layout(&layout, "1", &[std::fs::read(&layer).unwrap()]);
    let reference = format!("127.0.0.1:{}/{repo_tag}", reg.port);
    let creds = login
        .map(|(u, p)| format!("--dest-creds '{u}:{p}'"))
        .unwrap_or_default();
    sh(&format!(
        "skopeo copy -q --dest-tls-verify=false {creds} oci:'{}':1 docker://{reference}",
        layout.display()
    ));
    reference
}

/// An image named by its registry is pulled at the first CreateVolume that
/// needs it (the node's store lacked it), once.
#[test]
fn create_volume_pulls_an_image_the_node_lacks_from_its_registry() {
    require_root!();
    if !have_tool("skopeo", "skopeo") || !have_tool("docker-registry", "docker-registry") {
        return;
    }
    let env = busybox_env(&["sh"]);
    let reg = Registry::start(env.dir.path());
    let reference = push_busybox(&env, &reg, "bots/bb:1", None);
    let p = start(&env);
    let params = [("image", reference.as_str()), ("insecure", "true")];
    let v = p.create(create_req("pvc-r1", &params)).unwrap();
    assert_eq!(
        v.volume_context.get("image").map(String::as_str),
        Some("bots/bb:1")
    );
    let images = env.ok(&["image", "ls"]);
    assert!(images.contains("bots/bb:1"), "{images}");
    assert_eq!(
        env.json(&["bot", "show", "pvc-r1", "--json"])["image"],
        "bots/bb:1"
    );
    // The second volume finds it in the store (the registry is gone).
    drop(reg);
    p.create(create_req("pvc-r2", &params)).unwrap();
    let target = env.path("pods/r/volumes/kubernetes.io~csi/pvc-r2/mount");
    p.publish(publish_req("pvc-r2", &target, false)).unwrap();
    assert!(target.join("bin/busybox").exists());
    p.unpublish(unpublish_req("pvc-r2", &target)).unwrap();
    // A registry that does not answer: UNAVAILABLE (the CO retries), named.
    let gone = format!("127.0.0.1:{}/bots/other:1", 1);
    let (c, m) = code(p.create(create_req(
        "pvc-r3",
        &[("image", gone.as_str()), ("insecure", "true")],
    )));
    assert_eq!(c, Code::Unavailable, "{m}");
    assert!(m.contains("cannot pull") && m.contains(&gone), "{m}");
    let (c, _) = code(p.create(create_req(
        "pvc-r4",
        &[("image", reference.as_str()), ("insecure", "maybe")],
    )));
    assert_eq!(c, Code::InvalidArgument);
    drop(p);
    env.fsck_ok();
}

/// With the kubelet's directory given (the chart gives it), a bot is
/// published only below its pods directory, however the path is written.
#[test]
fn targets_outside_the_kubelets_pods_directory_are_refused() {
    require_root!();
    let env = busybox_env(&["sh"]);
    // The kubelet's directory reached through a symlink, as on hosts
    // that move /var/lib/kubelet.
    let real = env.path("kubelet-real");
    std::fs::create_dir_all(&real).unwrap();
    let kubelet = env.path("kubelet");
    std::os::unix::fs::symlink(&real, &kubelet).unwrap();
    let p = start_with(&env, &["--kubelet-dir", kubelet.to_str().unwrap()]);
    p.create(create_req("pvc-k", &[("image", "bb:1")])).unwrap();
    let outside = env.path("elsewhere");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(kubelet.join("pods/uid-9/volumes")).unwrap();
    std::os::unix::fs::symlink(&outside, kubelet.join("pods/uid-9/volumes/escape")).unwrap();
    for bad in [
        outside.join("mount"),
        kubelet.join("pods/uid-9/volumes/escape/mount"),
        kubelet.join("pods/../../elsewhere/mount"),
        kubelet.join("podsx/mount"),
    ] {
        let (c, m) = code(p.publish(publish_req("pvc-k", &bad, false)));
        assert_eq!(c, Code::InvalidArgument, "{}: {m}", bad.display());
        assert!(fs::mounts_below(&outside).is_empty());
    }
    let good = kubelet.join("pods/uid-9/volumes/kubernetes.io~csi/pvc-k/mount");
    p.publish(publish_req("pvc-k", &good, false)).unwrap();
    assert!(good.join("bin/busybox").exists());
    let resolved = real.join("pods/uid-9/volumes/kubernetes.io~csi/pvc-k/mount");
    assert_eq!(mounts_at(&resolved), 1);
    p.unpublish(unpublish_req("pvc-k", &good)).unwrap();
    assert_eq!(
        mounts_at(&resolved),
        0,
        "unpublished through the same symlink"
    );
    drop(p);
    fs::unmount_below(&real);
    env.fsck_ok();
}

/// A private registry (htpasswd): the right login pulls, for `image pull
/// --auth-file` and for a StorageClass's `registrySecret`; a wrong or
/// missing one is a one-line error naming the registry; the password never
/// reaches an output, a ref or the store.
#[test]
fn private_registries_take_a_docker_config_login() {
    require_root!();
    if !have_tool("skopeo", "skopeo")
        || !have_tool("docker-registry", "docker-registry")
        || !have_tool("htpasswd", "apache2-utils")
    {
        return;
    }
    let env = busybox_env(&["sh"]);
    let password = "pw-9f3c1a-not-in-any-file";
    let reg = Registry::start_with_login(env.dir.path(), "bot", password);
    let registry = format!("127.0.0.1:{}", reg.port);
    let reference = push_busybox(&env, &reg, "private/bb:1", Some(("bot", password)));
    let config = |user: &str, pass: &str| {
        let auth = sh(&format!("printf '%s' '{user}:{pass}' | base64 -w0"));
        format!(
            r#"{{"auths": {{"{registry}": {{"auth": "{}"}}}}}}"#,
            auth.trim()
        )
    };
    let good = env.path("good.json");
    std::fs::write(&good, config("bot", password)).unwrap();
    let bad = env.path("bad.json");
    std::fs::write(&bad, config("bot", "wrong")).unwrap();
    let other = env.path("other.json");
    std::fs::write(
        &other,
        r#"{"auths": {"elsewhere.example": {"auth": "eDp5"}}}"#,
    )
    .unwrap();

    let mut outputs = String::new();
    let e = env.fails(&["image", "pull", &reference, "--insecure"]);
    assert!(
        e.contains(&registry) && e.contains("needs a login") && e.contains("--auth-file"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    outputs += &e;
    let e = env.fails(&[
        "image",
        "pull",
        &reference,
        "--insecure",
        "--auth-file",
        bad.to_str().unwrap(),
    ]);
    assert!(
        e.contains(&registry) && e.contains("refused the login"),
        "{e}"
    );
    outputs += &e;
    let e = env.fails(&[
        "image",
        "pull",
        &reference,
        "--insecure",
        "--auth-file",
        other.to_str().unwrap(),
    ]);
    assert!(e.contains("no login for") && e.contains(&registry), "{e}");
    outputs += &e;
    outputs += &env.ok(&[
        "image",
        "pull",
        &reference,
        "--insecure",
        "--auth-file",
        good.to_str().unwrap(),
    ]);
    assert!(env.ok(&["image", "ls"]).contains("private/bb:1"));
    env.ok(&["image", "rm", "private/bb:1"]);

    // The same through the plugin, the login from a mounted Secret.
    let auth_dir = env.path("registry-auth");
    std::fs::create_dir_all(auth_dir.join("regcred")).unwrap();
    std::fs::copy(&good, auth_dir.join("regcred/.dockerconfigjson")).unwrap();
    std::fs::create_dir_all(auth_dir.join("wrong")).unwrap();
    std::fs::copy(&bad, auth_dir.join("wrong/.dockerconfigjson")).unwrap();
    let p = start_with(&env, &["--auth-dir", auth_dir.to_str().unwrap()]);
    let (c, m) = code(p.create(create_req(
        "pvc-p0",
        &[("image", &reference), ("insecure", "true")],
    )));
    assert_eq!(c, Code::Unavailable, "{m}");
    assert!(m.contains("needs a login"), "{m}");
    let (c, m) = code(p.create(create_req(
        "pvc-p1",
        &[
            ("image", &reference),
            ("insecure", "true"),
            ("registrySecret", "wrong"),
        ],
    )));
    assert!(m.contains("refused the login"), "{c:?} {m}");
    outputs += &m;
    let (c, m) = code(p.create(create_req(
        "pvc-p2",
        &[
            ("image", &reference),
            ("insecure", "true"),
            ("registrySecret", "../x"),
        ],
    )));
    assert_eq!(c, Code::InvalidArgument, "{m}");
    let (c, m) = code(p.create(create_req(
        "pvc-p3",
        &[
            ("image", &reference),
            ("insecure", "true"),
            ("registrySecret", "absent"),
        ],
    )));
    assert_eq!(c, Code::InvalidArgument, "{m}");
    p.create(create_req(
        "pvc-p4",
        &[
            ("image", &reference),
            ("insecure", "true"),
            ("registrySecret", "regcred"),
        ],
    ))
    .unwrap();
    assert_eq!(
        env.json(&["bot", "show", "pvc-p4", "--json"])["image"],
        "private/bb:1"
    );
    drop(p);

    assert!(!outputs.contains(password), "a password was printed");
    let found = sh(&format!(
        "grep -rlF '{password}' '{}' || true",
        env.store.display()
    ));
    assert_eq!(found.trim(), "", "the password reached the store");
    env.fsck_ok();
}

/// A volume whose image pull hangs (a registry that never answers) holds
/// up only its own calls: Probe, which the liveness probe makes, and calls
/// on other volumes still answer.
#[test]
fn a_hung_pull_does_not_hold_up_the_other_calls() {
    require_root!();
    let env = busybox_env(&["sh"]);
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let p = start(&env);
    let r = create_req(
        "pvc-hung",
        &[
            ("image", &format!("127.0.0.1:{port}/never/answers:1")),
            ("insecure", "true"),
        ],
    );
    let ch = p.channel.clone();
    p.rt.spawn(async move {
        let _ = ControllerClient::new(ch).create_volume(r).await;
    });
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    // Bounded, so a regression fails instead of hanging.
    let limit = Duration::from_secs(10);
    let probe =
        p.rt.block_on(async {
            tokio::time::timeout(
                limit,
                IdentityClient::new(p.channel.clone()).probe(proto::ProbeRequest {}),
            )
            .await
        })
        .expect("Probe was held up behind the hung pull")
        .unwrap()
        .into_inner();
    assert_eq!(probe.ready, Some(true));
    let r = create_req("pvc-other", &[("image", "bb:1")]);
    p.rt.block_on(async {
        tokio::time::timeout(
            limit,
            ControllerClient::new(p.channel.clone()).create_volume(r),
        )
        .await
    })
    .expect("CreateVolume of another volume was held up behind the hung pull")
    .unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    drop(silent);
    drop(p);
    env.fsck_ok();
}

/// With --live-commit-every, what a published volume's bot wrote that the
/// store already holds comes to share the store's extents while the pod
/// runs (here: a copy of an image file, on XFS).
#[test]
fn published_volumes_share_their_drift_periodically() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let lfs = LoopFs::new(tmp.path(), "xfs", "300M");
    let env = Env::with_store(lfs.mnt.join("store"));
    let src = env.path("src");
    std::fs::create_dir_all(src.join("bin")).unwrap();
    std::fs::create_dir_all(src.join("root")).unwrap();
    std::fs::copy("/bin/busybox", src.join("bin/busybox")).unwrap();
    let data: Vec<u8> = (0..16u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    std::fs::write(src.join("root/data"), &data).unwrap();
    env.ok(&["image", "import", "bb:1", "--dir", src.to_str().unwrap()]);
    let p = start_on(&env, "node-1", &["--live-commit-every", "300ms"]);
    let v = p
        .create(create_req("pvc-live", &[("image", "bb:1")]))
        .unwrap();
    let target = env.path("pods/uid-l/volumes/kubernetes.io~csi/pvc-live/mount");
    p.publish(publish_req(&v.volume_id, &target, false))
        .unwrap();
    std::fs::write(target.join("root/copy"), &data).unwrap();
    let used0 = lfs.used();
    let t = Instant::now();
    while used0.saturating_sub(lfs.used()) < 12 << 20 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "nothing was shared: {used0} -> {}",
            lfs.used()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(std::fs::read(target.join("root/copy")).unwrap() == data);
    p.unpublish(unpublish_req(&v.volume_id, &target)).unwrap();
    drop(p);
    env.fsck_ok();
}

/// A node whose store's disk is full answers RESOURCE_EXHAUSTED, naming
/// the disk, and leaves no half-made volume.
#[test]
fn a_full_disk_is_resource_exhausted() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let lfs = LoopFs::new(tmp.path(), "ext4", "64M");
    let env = Env::with_store(lfs.mnt.join("store"));
    // An image of 24 MiB: a copy volume of it needs as much again (ext4
    // cannot share extents).
    let src = env.path("src");
    std::fs::create_dir_all(src.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", src.join("bin/busybox")).unwrap();
    for i in 0..24u32 {
        let data: Vec<u8> = (0..1u32 << 20)
            .map(|j| (j ^ i.wrapping_mul(77)) as u8)
            .collect();
        std::fs::write(src.join(format!("bin/f{i}")), data).unwrap();
    }
    env.ok(&["image", "import", "big:1", "--dir", src.to_str().unwrap()]);
    // Fill what is left.
    let _ = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=1M"])
        .arg(format!("of={}", lfs.mnt.join("filler").display()))
        .stderr(std::process::Stdio::null())
        .status();
    let p = start(&env);
    let (c, m) = code(p.create(create_req(
        "pvc-full",
        &[("image", "big:1"), ("driver", "copy")],
    )));
    assert_eq!(c, Code::ResourceExhausted, "{m}");
    assert!(m.to_lowercase().contains("space"), "{m}");
    assert!(env.run(&["bot", "show", "pvc-full"]).status.code() != Some(0));
    // With room again, the retry succeeds.
    std::fs::remove_file(lfs.mnt.join("filler")).unwrap();
    p.create(create_req(
        "pvc-full",
        &[("image", "big:1"), ("driver", "copy")],
    ))
    .unwrap();
    drop(p);
    env.fsck_ok();
}

/// Snapshots are bot states kept apart from their volumes: taken of a
/// published volume (what it has not committed included), listed, made
/// into new volumes, and deleted; a volume can be cloned from another.
#[test]
fn snapshots_and_clones_follow_the_spec() {
    require_root!();
    let env = busybox_env(&["sh"]);
    let p = start(&env);
    let ctl = || p.controller();
    let snap = |name: &str, source: &str| {
        p.rt.block_on(ctl().create_snapshot(proto::CreateSnapshotRequest {
            source_volume_id: source.into(),
            name: name.into(),
            ..Default::default()
        }))
        .map(|r| r.into_inner().snapshot.unwrap())
    };
    let v = p.create(create_req("pvc-s", &[("image", "bb:1")])).unwrap();
    let target = env.path("pods/uid-s/volumes/kubernetes.io~csi/pvc-s/mount");
    p.publish(publish_req(&v.volume_id, &target, false))
        .unwrap();
    std::fs::write(target.join("root/a"), "before the snapshot").unwrap();
    let s = snap("snap-1", &v.volume_id).unwrap();
    assert!(s.ready_to_use && s.size_bytes > 0, "{s:?}");
    assert_eq!(s.source_volume_id, v.volume_id);
    assert!(s.creation_time.is_some());
    // Idempotent by name; the same name of another volume is refused.
    assert_eq!(
        snap("snap-1", &v.volume_id).unwrap().snapshot_id,
        s.snapshot_id
    );
    let other = p.create(create_req("pvc-o", &[("image", "bb:1")])).unwrap();
    assert_eq!(
        code(snap("snap-1", &other.volume_id)).0,
        Code::AlreadyExists
    );
    assert_eq!(code(snap("snap-2", "pvc-nope")).0, Code::NotFound);
    assert_eq!(code(snap("snap-2", "")).0, Code::InvalidArgument);
    std::fs::write(target.join("root/b"), "after it").unwrap();

    // A volume from the snapshot has what was there when it was taken.
    let mut r = create_req("pvc-r", &[("image", "bb:1")]);
    r.volume_content_source = Some(proto::VolumeContentSource {
        r#type: Some(proto::volume_content_source::Type::Snapshot(
            proto::volume_content_source::SnapshotSource {
                snapshot_id: s.snapshot_id.clone(),
            },
        )),
    });
    let rv = p.create(r.clone()).unwrap();
    assert!(rv.content_source.is_some());
    assert_eq!(p.create(r).unwrap().volume_id, rv.volume_id);
    let rt = env.path("pods/uid-r/volumes/kubernetes.io~csi/pvc-r/mount");
    p.publish(publish_req(&rv.volume_id, &rt, false)).unwrap();
    assert_eq!(
        std::fs::read_to_string(rt.join("root/a")).unwrap(),
        "before the snapshot"
    );
    assert!(!rt.join("root/b").exists());
    p.unpublish(unpublish_req(&rv.volume_id, &rt)).unwrap();
    let mut bad = create_req("pvc-x", &[("image", "bb:1")]);
    bad.volume_content_source = Some(proto::VolumeContentSource {
        r#type: Some(proto::volume_content_source::Type::Snapshot(
            proto::volume_content_source::SnapshotSource {
                snapshot_id: "nope".into(),
            },
        )),
    });
    assert_eq!(code(p.create(bad)).0, Code::NotFound);

    // A clone of a volume: what it committed (at its unpublish).
    p.unpublish(unpublish_req(&v.volume_id, &target)).unwrap();
    let mut c = create_req("pvc-c", &[("image", "bb:1")]);
    c.volume_content_source = Some(proto::VolumeContentSource {
        r#type: Some(proto::volume_content_source::Type::Volume(
            proto::volume_content_source::VolumeSource {
                volume_id: v.volume_id.clone(),
            },
        )),
    });
    let cv = p.create(c).unwrap();
    let ct = env.path("pods/uid-c/volumes/kubernetes.io~csi/pvc-c/mount");
    p.publish(publish_req(&cv.volume_id, &ct, false)).unwrap();
    assert!(ct.join("root/a").exists() && ct.join("root/b").exists());
    p.unpublish(unpublish_req(&cv.volume_id, &ct)).unwrap();

    // Listed by source, by id, a page at a time; kept when the volume goes.
    snap("snap-3", &v.volume_id).unwrap();
    let list = |source: &str, id: &str, max: i32, token: &str| {
        p.rt.block_on(ctl().list_snapshots(proto::ListSnapshotsRequest {
            source_volume_id: source.into(),
            snapshot_id: id.into(),
            max_entries: max,
            starting_token: token.into(),
            ..Default::default()
        }))
        .unwrap()
        .into_inner()
    };
    assert_eq!(list(&v.volume_id, "", 0, "").entries.len(), 2);
    assert_eq!(list("", &s.snapshot_id, 0, "").entries.len(), 1);
    let page = list("", "", 1, "");
    assert_eq!(page.entries.len(), 1);
    assert_eq!(list("", "", 1, &page.next_token).entries.len(), 1);
    p.rt.block_on(ctl().delete_volume(proto::DeleteVolumeRequest {
        volume_id: v.volume_id.clone(),
        ..Default::default()
    }))
    .unwrap();
    env.ok(&["gc"]);
    assert_eq!(list(&v.volume_id, "", 0, "").entries.len(), 2);
    for id in [s.snapshot_id.clone(), s.snapshot_id.clone()] {
        p.rt.block_on(ctl().delete_snapshot(proto::DeleteSnapshotRequest {
            snapshot_id: id,
            ..Default::default()
        }))
        .unwrap();
    }
    assert_eq!(list("", &s.snapshot_id, 0, "").entries.len(), 0);
    drop(p);
    env.ok(&["gc"]);
    env.fsck_ok();
}
