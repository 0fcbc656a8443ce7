//! Images from real tools: an OCI layout written by umoci (with a second
//! layer of whiteouts), the docker archive skopeo makes of it, and the same
//! image pulled from a real registry (Debian's docker-registry) on loopback.
//! All three must give the tree of the unpacked rootfs.

mod common;
use common::*;

/// Builds an OCI layout with umoci: tag v1 with a base layer, tag v2 adding
/// a layer that deletes a file, empties a directory and adds new content.
/// Returns the rootfs as v2 left it.
fn umoci_layout(env: &Env) -> std::path::PathBuf {
    let l = env.path("layout");
    let b = env.path("bundle");
    sh(&format!(
        r#"set -e
        umoci init --layout '{l}'
        umoci new --image '{l}:v1'
        umoci unpack --image '{l}:v1' '{b}'
        cd '{b}/rootfs'
        mkdir -p etc usr/share/doc/pkg var/cache
        printf 'ID=botyard-test\n' > etc/os-release
        printf 'doc\n' > usr/share/doc/pkg/README
        printf 'gone\n' > etc/removed
        printf 'x\n' > var/cache/a; printf 'y\n' > var/cache/b
        ln -s ../etc/os-release usr/os-release
        chown 123:456 etc/os-release
        umoci repack --image '{l}:v1' '{b}'
        rm etc/removed var/cache/a var/cache/b
        printf 'new\n' > var/cache/c
        printf 'changed\n' > usr/share/doc/pkg/README
        umoci repack --image '{l}:v2' '{b}'
        "#,
        l = l.display(),
        b = b.display()
    ));
    b.join("rootfs")
}

#[test]
fn oci_layout_docker_archive_and_registry_give_the_same_tree() {
    require_root!();
    if !have_tool("umoci", "umoci")
        || !have_tool("skopeo", "skopeo")
        || !have_tool("docker-registry", "docker-registry")
    {
        return;
    }
    let env = Env::new();
    let rootfs = umoci_layout(&env);
    let l = env.path("layout");

    env.ok(&[
        "image",
        "import",
        "img:v1",
        "--oci",
        &format!("{}:v1", l.display()),
    ]);
    let v = env.json(&[
        "image",
        "import",
        "img:v2",
        "--oci",
        &format!("{}:v2", l.display()),
        "--json",
    ]);
    assert!(v["digest"].as_str().unwrap().starts_with("sha256:"));
    // umoci (Go's archive/tar) rounds mtimes to whole seconds in its layers.
    let seconds = |mut m: Manifest| {
        m.values_mut()
            .for_each(|d| d.mtime = (d.mtime.0 + (d.mtime.1 >= 500_000_000) as i64, 0));
        m
    };
    let want = seconds(manifest_of_dir(&rootfs));
    let got = manifest_of_tree(&env.store(), env.tree_of("img:v2"));
    assert_same(&want, &got);
    assert!(
        !got.contains_key(b"etc/removed".as_slice()),
        "the whiteout was not applied"
    );
    let v1 = manifest_of_tree(&env.store(), env.tree_of("img:v1"));
    assert!(v1.contains_key(b"etc/removed".as_slice()));
    // Several images in the layout and no ref: the error lists them.
    let err = env.fails(&["image", "import", "x:1", "--oci", l.to_str().unwrap()]);
    assert!(err.contains("v1") && err.contains("v2"), "{err}");

    // docker save format, as skopeo writes it.
    let archive = env.path("img.tar");
    sh(&format!(
        "skopeo copy -q oci:'{}':v2 docker-archive:'{}':test/img:v2",
        l.display(),
        archive.display()
    ));
    env.ok(&[
        "image",
        "import",
        "img:archive",
        "--docker-archive",
        archive.to_str().unwrap(),
    ]);
    assert_eq!(env.tree_of("img:archive"), env.tree_of("img:v2"));

    // A real registry on loopback.
    let reg = Registry::start(env.dir.path());
    sh(&format!(
        "skopeo copy -q --dest-tls-verify=false oci:'{}':v2 docker://127.0.0.1:{}/test/img:v2",
        l.display(),
        reg.port
    ));
    let reference = format!("127.0.0.1:{}/test/img:v2", reg.port);
    let v = env.json(&["image", "pull", &reference, "--insecure", "--json"]);
    assert_eq!(v["name"], "test/img:v2");
    assert_eq!(env.tree_of("test/img:v2"), env.tree_of("img:v2"));
    assert_eq!(
        v["written"]["new_objects"], 0,
        "pulling stored content wrote objects"
    );
    env.ok(&[
        "image",
        "pull",
        &reference,
        "--insecure",
        "--as",
        "pulled:1",
    ]);
    assert_eq!(env.tree_of("pulled:1"), env.tree_of("img:v2"));
    let err = env.fails(&[
        "image",
        "pull",
        &format!("127.0.0.1:{}/test/nope:v9", reg.port),
        "--insecure",
    ]);
    assert!(err.contains("cannot pull"), "{err}");
    env.fsck_ok();
}

#[test]
fn opaque_directories_and_whiteouts_follow_the_oci_rules() {
    let env = Env::new();
    let l1 = RawTar::new()
        .entry(b"opt/", tar::EntryType::Directory, b"", None)
        .file("opt/old1", b"1")
        .file("opt/old2", b"2")
        .file("keep/a", b"a")
        .file("keep/b", b"b")
        .finish();
    // Layer 2: opt is opaque (but gets new content in the same layer, listed
    // before the marker), keep/a is whited out.
    let l2 = RawTar::new()
        .file("opt/new", b"n")
        .file("opt/.wh..wh..opq", b"")
        .file("keep/.wh.a", b"")
        .finish();
    let layout = env.path("layout");
    write_oci_layout(&layout, "t", &[l1, l2]);
    let v = env.json(&[
        "image",
        "import",
        "w:1",
        "--oci",
        &format!("{}:t", layout.display()),
        "--json",
    ]);
    assert_eq!(v["stats"]["files"], 2, "{v}");
    let m = manifest_of_tree(&env.store(), env.tree_of("w:1"));
    let names: Vec<String> = m
        .keys()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert_eq!(names, ["keep", "keep/b", "opt", "opt/new"]);
    let r = env.json(&["image", "inspect", "w:1", "--json"]);
    assert_eq!(r["image"]["created"], "2024-01-02T03:04:05Z");
    // In a plain tarball the same names are ordinary files.
    let raw = RawTar::new().file("keep/.wh.a", b"").finish();
    std::fs::write(env.path("plain.tar"), raw).unwrap();
    env.ok(&[
        "image",
        "import",
        "p:1",
        "--tar",
        env.path("plain.tar").to_str().unwrap(),
    ]);
    let m = manifest_of_tree(&env.store(), env.tree_of("p:1"));
    assert!(m.contains_key(b"keep/.wh.a".as_slice()));
}
