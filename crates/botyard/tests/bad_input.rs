//! Hostile and broken input: each case fails with one line naming the
//! problem, exits 1, and leaves the store exactly as it was.

mod common;
use common::*;
use tar::EntryType;

/// Imports `data` as a tarball and expects a clean failure mentioning `want`.
fn refused(env: &Env, data: &[u8], want: &str) {
    let before = env.contents();
    let f = env.path("bad.tar");
    std::fs::write(&f, data).unwrap();
    let err = env.fails(&["image", "import", "bad:1", "--tar", f.to_str().unwrap()]);
    assert!(err.contains(want), "expected '{want}' in: {err}");
    assert_eq!(env.contents(), before, "a failed import changed the store");
    assert_eq!(
        std::fs::read_dir(env.store.join("tmp")).unwrap().count(),
        0,
        "staging left behind"
    );
    env.fsck_ok();
}

fn seeded() -> Env {
    let env = Env::new();
    let mut t = RawTar::new();
    t.file("etc/hostname", b"seed\n");
    std::fs::write(env.path("seed.tar"), t.finish()).unwrap();
    env.ok(&[
        "image",
        "import",
        "seed:1",
        "--tar",
        env.path("seed.tar").to_str().unwrap(),
    ]);
    env
}

#[test]
fn unsafe_tar_entries_are_refused() {
    let env = seeded();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            RawTar::new()
                .file("ok", b"1")
                .file("/etc/shadow", b"x")
                .finish(),
            "absolute path",
        ),
        (RawTar::new().file("../escape", b"x").finish(), "'..'"),
        (RawTar::new().file("a/../../escape", b"x").finish(), "'..'"),
        (
            RawTar::new()
                .entry(b"usr/l", EntryType::Symlink, b"", Some(b"../../etc/shadow"))
                .finish(),
            "escapes the image root",
        ),
        (
            RawTar::new()
                .file("f", b"1")
                .entry(b"h", EntryType::Link, b"", Some(b"../f"))
                .finish(),
            "escapes the root",
        ),
        (
            RawTar::new()
                .entry(b"h", EntryType::Link, b"", Some(b"missing"))
                .finish(),
            "hard link target does not exist",
        ),
        (
            RawTar::new()
                .entry(b"l", EntryType::Symlink, b"", Some(b"/etc"))
                .file("l/passwd", b"x")
                .finish(),
            "is not a directory",
        ),
        (
            RawTar::new()
                .entry(b"x", EntryType::new(b'V'), b"", None)
                .finish(),
            "does not import",
        ),
    ];
    for (data, want) in cases {
        refused(&env, &data, want);
    }
}

#[test]
fn truncated_corrupt_and_unknown_archives_are_refused() {
    let env = seeded();
    let mut t = RawTar::new();
    for i in 0..20 {
        t.file(&format!("f{i}"), &vec![i as u8 + 1; 10_000]);
    }
    let good = t.finish();
    // Cut inside a file's data.
    refused(&env, &good[..good.len() / 2 + 100], "truncated");
    // Cut inside the gzip stream.
    let gz = gzip(&good);
    refused(&env, &gz[..gz.len() / 2], "truncated or corrupt");
    // A header whose checksum does not match.
    let mut bad = good.clone();
    bad[512 * 21] ^= 0x55;
    refused(&env, &bad, "corrupt");
    refused(
        &env,
        &[0xfd, b'7', b'z', b'X', b'Z', 0, 0, 0, 1, 2],
        "xz compression is not supported",
    );
    refused(&env, &[0x42u8; 4096], "unknown compression");
    refused(&env, b"", "empty");
}

#[test]
fn oci_blobs_must_match_their_digests() {
    let env = seeded();
    let layout = env.path("layout");
    let layer = RawTar::new().file("etc/os-release", b"ID=test\n").finish();
    write_oci_layout(&layout, "v1", &[layer]);
    env.ok(&[
        "image",
        "import",
        "ok:1",
        "--oci",
        &format!("{}:v1", layout.display()),
    ]);
    let before = env.contents();
    // Replace the layer with other bytes of the same length.
    let blobs = layout.join("blobs/sha256");
    for e in std::fs::read_dir(&blobs).unwrap() {
        let p = e.unwrap().path();
        let data = std::fs::read(&p).unwrap();
        if data.starts_with(&[0x1f, 0x8b]) {
            let mut other = data.clone();
            let n = other.len();
            other[n - 9] ^= 1;
            std::fs::write(&p, other).unwrap();
        }
    }
    let err = env.fails(&[
        "image",
        "import",
        "bad:1",
        "--oci",
        &format!("{}:v1", layout.display()),
    ]);
    assert!(err.contains("does not match its digest"), "{err}");
    assert_eq!(env.contents(), before);
    let err = env.fails(&[
        "image",
        "import",
        "bad:1",
        "--oci",
        &format!("{}:v2", layout.display()),
    ]);
    assert!(
        err.contains("no image tagged 'v2'") && err.contains("v1"),
        "{err}"
    );
    env.fsck_ok();
}

#[test]
fn bad_names_and_missing_images_are_refused() {
    let env = seeded();
    let before = env.contents();
    let long = format!("{}:1", "a".repeat(129));
    for (name, want) in [
        ("../x:1", "'..'"),
        ("a/../b:1", "'..'"),
        ("/abs:1", "empty"),
        ("UPPER:1", "lowercase"),
        ("a:-x", "tag"),
        (long.as_str(), "limit is 128"),
    ] {
        let err = env.fails(&[
            "image",
            "import",
            name,
            "--tar",
            env.path("seed.tar").to_str().unwrap(),
        ]);
        assert!(err.contains(want), "{name}: expected '{want}' in {err}");
    }
    let err = env.fails(&["image", "inspect", "nope:1"]);
    assert!(
        err.contains("no image nope:1") && err.contains("image ls"),
        "{err}"
    );
    let err = env.fails(&["image", "rm", "seed:1", "nope:1"]);
    assert!(err.contains("no image nope:1"), "{err}");
    env.ok(&["image", "inspect", "seed:1"]); // rm removed nothing
    assert_eq!(env.contents(), before);
}

#[test]
fn a_path_that_is_not_a_store_is_refused() {
    let env = Env::new();
    let not_store = env.path("plain");
    std::fs::create_dir(&not_store).unwrap();
    std::fs::write(not_store.join("file"), b"x").unwrap();
    let out = env
        .cmd()
        .env("BOTYARD_HOME", &not_store)
        .args(["image", "ls"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("is not a botyard store"), "{err}");
    let out = env
        .cmd()
        .env("BOTYARD_HOME", &not_store)
        .args(["init"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not empty"),
        "init must not take over a used directory"
    );
    let out = env
        .cmd()
        .env("BOTYARD_HOME", env.path("absent"))
        .args(["df"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("botyard init"));
    assert!(
        !env.path("absent").exists(),
        "a read command created a store"
    );
}

#[test]
fn a_full_disk_fails_cleanly() {
    require_root!();
    let env = Env::new();
    let small = env.path("small");
    std::fs::create_dir(&small).unwrap();
    sh(&format!(
        "mount -t tmpfs -o size=6m tmpfs '{}'",
        small.display()
    ));
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(small.clone());
    let store = small.join("store");
    let out = env
        .cmd()
        .env("BOTYARD_HOME", &store)
        .arg("init")
        .output()
        .unwrap();
    assert!(out.status.success());
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("small"), b"fits").unwrap();
    let ok = env
        .cmd()
        .env("BOTYARD_HOME", &store)
        .args(["image", "import", "s:1", "--dir"])
        .arg(&src)
        .output()
        .unwrap();
    assert!(ok.status.success());
    for i in 0..8 {
        std::fs::write(src.join(format!("big{i}")), vec![i as u8 + 1; 1 << 20]).unwrap();
    }
    let e2 = Env {
        dir: tempfile::tempdir().unwrap(),
        store: store.clone(),
    };
    let before = e2.contents();
    let err = e2.fails(&["image", "import", "s:1", "--dir", src.to_str().unwrap()]);
    assert!(
        err.contains("No space left") && err.contains("botyard gc"),
        "{err}"
    );
    assert_eq!(e2.contents(), before, "a failed import changed the store");
    e2.fsck_ok();
    assert_eq!(std::fs::read_dir(store.join("tmp")).unwrap().count(), 0);
}
