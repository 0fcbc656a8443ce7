//! Helpers shared by the integration tests: a fresh store per test, running
//! the real `botyard` binary, building real trees and archives, and reading
//! back what the store holds as a manifest comparable with a real directory.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use store::{EntryKind, Hash, Store};

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Skips a test that needs root, saying why, when not root. CI runs as root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !common::is_root() {
            eprintln!("SKIPPED: this test needs root (mknod, chown, trusted xattrs, mounts); CI runs it as root");
            return;
        }
    };
}

/// Skips a test whose external tool is missing, saying how to get it, unless
/// running in CI, where a missing tool is a failure.
pub fn have_tool(tool: &str, package: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("{tool} is missing in CI; scripts/deps.sh must install {package}");
        }
        eprintln!("SKIPPED: {tool} not found; install the Debian package {package} (scripts/deps.sh does)");
    }
    found
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub store: PathBuf,
}

impl Drop for Env {
    fn drop(&mut self) {
        // Tests make trees deeper than a recursive removal survives.
        let _ = store::walk::remove_path(self.dir.path());
    }
}

/// The hash a `--json` output gives at `key` (with or without `blake3:`).
pub fn json_hash(v: &serde_json::Value, key: &str) -> Hash {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {v}"))
        .trim_start_matches("blake3:")
        .parse()
        .unwrap()
}

/// Asserts that the directory `dir` holds exactly `tree` of `env`'s store.
pub fn assert_dir_is_tree(env: &Env, dir: &Path, tree: Hash) {
    assert_same(&manifest_of_tree(&env.store(), tree), &manifest_of_dir(dir));
}

/// A filesystem of `kind` (xfs with reflink, btrfs, else ext4) on a loop
/// device, mounted until dropped.
pub struct LoopFs {
    pub mnt: PathBuf,
}

impl LoopFs {
    pub fn new(dir: &Path, kind: &str, size: &str) -> LoopFs {
        let img = dir.join(format!("{kind}.img"));
        let mnt = dir.join(kind);
        std::fs::create_dir_all(&mnt).unwrap();
        let mkfs = match kind {
            "xfs" => "mkfs.xfs -q -m reflink=1",
            "btrfs" => "mkfs.btrfs -q",
            _ => "mkfs.ext4 -q -F",
        };
        sh(&format!(
            "truncate -s {size} '{i}' && {mkfs} '{i}' && mount -o loop '{i}' '{m}'",
            i = img.display(),
            m = mnt.display()
        ));
        LoopFs { mnt }
    }

    /// Bytes in use, after flushing delayed allocations.
    pub fn used(&self) -> u64 {
        sh(&format!("sync -f '{}'", self.mnt.display()));
        let s = rustix::fs::statvfs(&self.mnt).unwrap();
        (s.f_blocks - s.f_bfree) * s.f_frsize
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let ok = std::process::Command::new("umount")
            .arg(&self.mnt)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.mnt)
                .status();
        }
    }
}

impl Env {
    /// An initialised store at `store` (on a filesystem of the test's
    /// choosing), the rest of the test's files in a temporary directory.
    pub fn with_store(store: PathBuf) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("botyard-test-")
            .tempdir()
            .unwrap();
        let e = Env { dir, store };
        e.ok(&["init"]);
        e
    }

    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("botyard-test-")
            .tempdir()
            .unwrap();
        let store = dir.path().join("store");
        let e = Env { dir, store };
        e.ok(&["init"]);
        e
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn cmd(&self) -> Command {
        // Another build may stand in, to show a regression test fails on it.
        let bin = std::env::var_os("BOTYARD_TEST_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_botyard").into());
        let mut c = Command::new(bin);
        c.env("BOTYARD_HOME", &self.store).env_remove("CI_QUIET");
        c
    }

    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Runs botyard and expects success; returns stdout.
    pub fn ok<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        let out = self.run(args);
        let shown: Vec<String> = args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        assert!(
            out.status.success(),
            "botyard {shown:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn json<S: AsRef<OsStr>>(&self, args: &[S]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    /// Runs botyard and expects a clean failure: non-zero exit and a
    /// one-line error. Returns that line.
    pub fn fails<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        let out = self.run(args);
        let shown: Vec<String> = args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        assert!(
            !out.status.success(),
            "botyard {shown:?} succeeded but should have failed"
        );
        assert_eq!(
            out.status.code(),
            Some(1),
            "botyard {shown:?} did not exit 1"
        );
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| !l.starts_with("botyard: note:"))
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "expected a one-line error from {shown:?}, got: {err}"
        );
        assert!(lines[0].starts_with("botyard: error: "), "{err}");
        lines[0].to_string()
    }

    pub fn store(&self) -> Store {
        Store::open(&self.store).unwrap()
    }

    /// The tree an image points at.
    pub fn tree_of(&self, name: &str) -> Hash {
        self.store().image(&name.parse().unwrap()).unwrap().tree
    }

    pub fn fsck_ok(&self) {
        let v = self.json(&["fsck", "--json"]);
        assert_eq!(v["ok"], true, "fsck found problems: {v}");
    }

    /// Every stored object and tree name, to prove a failed command added
    /// nothing.
    pub fn contents(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for top in ["objects", "refs"] {
            walk_names(&self.store.join(top), &mut out);
        }
        let store = Store::open(&self.store).unwrap();
        out.extend(
            store
                .tree_hashes()
                .unwrap()
                .iter()
                .map(|h| format!("tree {h}")),
        );
        out
    }
}

fn walk_names(p: &Path, out: &mut BTreeSet<String>) {
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            walk_names(&e.path(), out);
        } else {
            out.insert(e.path().display().to_string());
        }
    }
}

/// Everything a root filesystem needs to know about one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desc {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, u32),
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    pub size: u64,
    pub content: Option<Hash>,
    pub target: Option<Vec<u8>>,
    pub dev: Option<(u32, u32)>,
    /// The other members of its hard-link group, if any.
    pub links: Option<BTreeSet<Vec<u8>>>,
}

pub type Manifest = BTreeMap<Vec<u8>, Desc>;

fn xattrs_of(p: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut buf = vec![0u8; 65536];
    let n = rustix::fs::llistxattr(c.as_c_str(), &mut buf[..]).unwrap_or(0);
    let mut out = Vec::new();
    for name in buf[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cn = std::ffi::CString::new(name).unwrap();
        let mut v = vec![0u8; 65536];
        let m = rustix::fs::lgetxattr(c.as_c_str(), cn.as_c_str(), &mut v[..]).unwrap();
        out.push((name.to_vec(), v[..m].to_vec()));
    }
    out.sort();
    out
}

/// Hashes a file by streaming it (some test files are over 4 GiB).
pub fn hash_file(p: &Path) -> Hash {
    let mut h = blake3::Hasher::new();
    let mut f = std::fs::File::open(p).unwrap();
    std::io::copy(&mut f, &mut h).unwrap();
    h.finalize().into()
}

/// A manifest of a real directory (its root excluded), never following
/// symlinks.
pub fn manifest_of_dir(root: &Path) -> Manifest {
    let mut m = Manifest::new();
    let mut inodes: HashMap<(u64, u64), BTreeSet<Vec<u8>>> = HashMap::new();
    fn walk(
        root: &Path,
        rel: &[u8],
        m: &mut Manifest,
        inodes: &mut HashMap<(u64, u64), BTreeSet<Vec<u8>>>,
    ) {
        let dir = root.join(OsStr::from_bytes(rel));
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for n in names {
            let mut r = rel.to_vec();
            if !r.is_empty() {
                r.push(b'/');
            }
            r.extend_from_slice(n.as_bytes());
            let p = root.join(OsStr::from_bytes(&r));
            let md = std::fs::symlink_metadata(&p).unwrap();
            let ft = md.file_type();
            use std::os::unix::fs::FileTypeExt;
            let kind = if ft.is_file() {
                "file"
            } else if ft.is_dir() {
                "dir"
            } else if ft.is_symlink() {
                "symlink"
            } else if ft.is_char_device() {
                "chardev"
            } else if ft.is_block_device() {
                "blockdev"
            } else if ft.is_fifo() {
                "fifo"
            } else {
                "socket"
            };
            let content = ft.is_file().then(|| hash_file(&p));
            if ft.is_file() && md.nlink() > 1 {
                inodes
                    .entry((md.dev(), md.ino()))
                    .or_default()
                    .insert(r.clone());
            }
            m.insert(
                r.clone(),
                Desc {
                    kind,
                    mode: md.mode() & 0o7777,
                    uid: md.uid(),
                    gid: md.gid(),
                    mtime: (md.mtime(), md.mtime_nsec() as u32),
                    xattrs: xattrs_of(&p),
                    size: if ft.is_file() { md.len() } else { 0 },
                    content,
                    target: ft.is_symlink().then(|| {
                        std::fs::read_link(&p)
                            .unwrap()
                            .as_os_str()
                            .as_bytes()
                            .to_vec()
                    }),
                    dev: (ft.is_char_device() || ft.is_block_device())
                        .then(|| (rustix::fs::major(md.rdev()), rustix::fs::minor(md.rdev()))),
                    links: None,
                },
            );
            if ft.is_dir() {
                walk(root, &r, m, inodes);
            }
        }
    }
    walk(root, b"", &mut m, &mut inodes);
    for members in inodes.values() {
        for p in members {
            m.get_mut(p).unwrap().links = Some(members.clone());
        }
    }
    m
}

/// A manifest of a tree in the store, reading each file's object.
pub fn manifest_of_tree(store: &Store, root: Hash) -> Manifest {
    let mut m = Manifest::new();
    let mut groups: HashMap<Vec<u8>, BTreeSet<Vec<u8>>> = HashMap::new();
    fn walk(
        store: &Store,
        h: Hash,
        rel: &[u8],
        m: &mut Manifest,
        groups: &mut HashMap<Vec<u8>, BTreeSet<Vec<u8>>>,
    ) {
        let t = store.read_tree(&h).unwrap();
        for e in t.entries() {
            let mut r = rel.to_vec();
            if !r.is_empty() {
                r.push(b'/');
            }
            r.extend_from_slice(&e.name);
            let mut d = Desc {
                kind: e.kind.label(),
                mode: e.mode,
                uid: e.uid,
                gid: e.gid,
                mtime: (e.mtime, e.mtime_nsec),
                xattrs: e.xattrs.clone(),
                size: 0,
                content: None,
                target: None,
                dev: None,
                links: None,
            };
            match &e.kind {
                EntryKind::File(f) => {
                    d.size = f.size;
                    let bytes = if f.size == 0 {
                        Vec::new()
                    } else {
                        std::fs::read(store.object_path(&f.object)).unwrap()
                    };
                    assert_eq!(
                        Hash::of(&bytes),
                        f.object,
                        "object content does not match its name"
                    );
                    d.content = Some(f.object);
                    if let Some(l) = &f.link {
                        groups.entry(l.clone()).or_default().insert(r.clone());
                    }
                }
                EntryKind::Symlink(t) => d.target = Some(t.clone()),
                EntryKind::CharDev { major, minor } | EntryKind::BlockDev { major, minor } => {
                    d.dev = Some((*major, *minor))
                }
                _ => {}
            }
            m.insert(r.clone(), d);
            if let EntryKind::Dir(sub) = &e.kind {
                walk(store, *sub, &r, m, groups);
            }
        }
    }
    walk(store, root, b"", &mut m, &mut groups);
    for members in groups.values() {
        for p in members {
            m.get_mut(p).unwrap().links = Some(members.clone());
        }
    }
    m
}

/// Asserts two manifests are equal, naming the first difference.
pub fn assert_same(a: &Manifest, b: &Manifest) {
    for (k, v) in a {
        match b.get(k) {
            None => panic!(
                "{} is missing from the second manifest",
                String::from_utf8_lossy(k)
            ),
            Some(w) => assert_eq!(v, w, "entry {} differs", String::from_utf8_lossy(k)),
        }
    }
    for k in b.keys() {
        assert!(
            a.contains_key(k),
            "{} is extra in the second manifest",
            String::from_utf8_lossy(k)
        );
    }
}

/// Builds a directory with every kind of entry and metadata a root
/// filesystem has. Needs root for devices, ownership and security xattrs.
pub fn rich_tree(root: &Path, with_sparse: bool) {
    sh(&format!(
        r#"set -e
        cd '{r}'
        mkdir -p etc usr/bin usr/lib/deep/a/b/c/d/e/f/g/h var/empty
        printf 'root:x:0:0::/root:/bin/sh\n' > etc/passwd
        printf '#!/bin/sh\necho hi\n' > usr/bin/hello; chmod 4755 usr/bin/hello
        : > etc/empty
        printf same > usr/lib/one; printf same > usr/lib/two
        chown 1000:1001 usr/lib/two; chmod 600 usr/lib/two
        printf deep > usr/lib/deep/a/b/c/d/e/f/g/h/file
        printf linked > usr/bin/ln1; ln usr/bin/ln1 usr/bin/ln2; ln usr/bin/ln1 etc/ln3
        ln -s ../lib/one usr/bin/rel; ln -s /etc/passwd usr/bin/abs
        mkfifo var/fifo
        mknod var/null c 1 3; mknod var/loop b 7 0
        chmod 1777 var/empty
        setfattr -n user.note -v hello etc/passwd
        setfattr -n security.capability -v 0sAQAAAgAgAAAAAAAAAAAAAAAAAAA= usr/bin/hello
        setfattr -h -n trusted.linknote -v x usr/bin/rel
        touch -d '2021-05-06 07:08:09.123456789' etc/passwd
        touch -h -d '2020-01-01 00:00:00.5' usr/bin/rel
        python3 -c "import socket; s=socket.socket(socket.AF_UNIX); s.bind('var/sock')"
        "#,
        r = root.display()
    ));
    // A non-UTF-8 name and a name of the kernel's full 255 bytes.
    std::fs::write(root.join(OsStr::from_bytes(b"etc/caf\xe9")), b"latin1").unwrap();
    std::fs::write(root.join("etc").join("n".repeat(255)), b"long").unwrap();
    if with_sparse {
        let f = std::fs::File::create(root.join("var/sparse")).unwrap();
        f.set_len(64 << 20).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_at(b"tail", (64 << 20) - 4).unwrap();
    }
}

/// Writes a tar with raw, unchecked entry names (for hostile archives).
pub struct RawTar {
    pub data: Vec<u8>,
}

impl RawTar {
    pub fn new() -> RawTar {
        RawTar { data: Vec::new() }
    }

    pub fn entry(
        &mut self,
        name: &[u8],
        kind: tar::EntryType,
        body: &[u8],
        link: Option<&[u8]>,
    ) -> &mut Self {
        let mut h = tar::Header::new_ustar();
        {
            let old = h.as_old_mut();
            old.name = [0; 100];
            old.name[..name.len()].copy_from_slice(name);
            if let Some(l) = link {
                old.linkname = [0; 100];
                old.linkname[..l.len()].copy_from_slice(l);
            }
        }
        h.set_entry_type(kind);
        h.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_size(body.len() as u64);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        self.data.extend_from_slice(h.as_bytes());
        self.data.extend_from_slice(body);
        let pad = (512 - body.len() % 512) % 512;
        self.data.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    pub fn file(&mut self, name: &str, body: &[u8]) -> &mut Self {
        self.entry(name.as_bytes(), tar::EntryType::Regular, body, None)
    }

    pub fn finish(&mut self) -> Vec<u8> {
        let mut d = self.data.clone();
        d.extend(std::iter::repeat_n(0u8, 1024));
        d
    }
}

pub fn sh(script: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "shell failed: {script}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// Writes a minimal OCI image layout by hand with the given layers (tar
/// bytes, gzipped here), so tests control every byte.
pub fn write_oci_layout(dir: &Path, tag: &str, layers: &[Vec<u8>]) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| -> (String, u64) {
        let h = sha256_hex(data);
        std::fs::write(blobs.join(&h), data).unwrap();
        (format!("sha256:{h}"), data.len() as u64)
    };
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for l in layers {
        diff_ids.push(format!("sha256:{}", sha256_hex(l)));
        let (d, s) = put(&gzip(l));
        descs.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": s}));
    }
    let config = serde_json::json!({
        "created": "2024-01-02T03:04:05Z", "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids}, "config": {}
    });
    let (cd, cs) = put(&serde_json::to_vec(&config).unwrap());
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": descs
    });
    let (md, ms) = put(&serde_json::to_vec(&manifest).unwrap());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
                        "annotations": {"org.opencontainers.image.ref.name": tag}}]
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// A store with image bb:1 (a static busybox root with `commands` linked
/// into /bin) and bot b1 made from it: sandboxes start fast on it.
pub fn busybox_env(commands: &[&str]) -> Env {
    let env = Env::new();
    let root = env.path("rootfs");
    for d in [
        "bin", "etc", "tmp", "proc", "sys", "dev", "root", "run", "mnt",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for c in commands {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(c)).unwrap();
    }
    sh(&format!("chmod 1777 '{}'", root.join("tmp").display()));
    env.ok(&["image", "import", "bb:1", "--dir", root.to_str().unwrap()]);
    env.ok(&["bot", "create", "b1", "--image", "bb:1"]);
    env
}

/// Builds a small real .deb with dpkg-deb: files, a conffile, a postinst.
pub fn build_deb(dir: &Path, name: &str, depends: Option<&str>) -> PathBuf {
    let root = dir.join(format!("{name}-pkg"));
    let dep = depends
        .map(|d| format!("Depends: {d}\n"))
        .unwrap_or_default();
    sh(&format!(
        r#"set -e
        r='{r}'
        mkdir -p "$r/DEBIAN" "$r/usr/share/{name}" "$r/etc"
        printf 'Package: {name}\nVersion: 1.0\nArchitecture: all\nMaintainer: botyard tests <tests@botyard.invalid>\n{dep}Description: botyard test package\n' > "$r/DEBIAN/control"
        printf '/etc/{name}.conf\n' > "$r/DEBIAN/conffiles"
        printf 'setting=1\n' > "$r/etc/{name}.conf"
        yes {name} | head -c 200000 > "$r/usr/share/{name}/data"
        printf '#!/bin/sh\nset -e\nmkdir -p /var/lib/{name}\necho installed > /var/lib/{name}/stamp\n' > "$r/DEBIAN/postinst"
        chmod 755 "$r/DEBIAN/postinst"
        dpkg-deb --root-owner-group -b "$r" '{out}' >/dev/null
        "#,
        r = root.display(),
        out = dir.join(format!("{name}.deb")).display(),
    ));
    dir.join(format!("{name}.deb"))
}

/// Debian's docker-registry on a free loopback port, for as long as it lives.
pub struct Registry {
    child: std::process::Child,
    pub port: u16,
}

impl Registry {
    pub fn start(dir: &Path) -> Registry {
        Registry::start_with(dir, None)
    }

    /// A registry that lets in only `user` with `password` (htpasswd).
    pub fn start_with_login(dir: &Path, user: &str, password: &str) -> Registry {
        let file = dir.join("htpasswd");
        sh(&format!(
            "htpasswd -Bbn '{user}' '{password}' > '{}'",
            file.display()
        ));
        Registry::start_with(dir, Some(&file))
    }

    fn start_with(dir: &Path, htpasswd: Option<&Path>) -> Registry {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let data = dir.join("registry");
        std::fs::create_dir_all(&data).unwrap();
        let cfg = dir.join("registry.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n{}",
                data.display(),
                htpasswd
                    .map(|f| format!("auth:\n  htpasswd:\n    realm: botyard-test\n    path: {}\n", f.display()))
                    .unwrap_or_default()
            ),
        )
        .unwrap();
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Registry { child, port };
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("docker-registry did not start on port {port}");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `botyard serve`, killed when dropped.
pub struct Daemon<'a> {
    pub env: &'a Env,
    pub child: Option<std::process::Child>,
}

impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Sandboxes a killed daemon left are reaped by the next bot command.
        let _ = self.env.run(&["bot", "ls"]);
    }
}

/// The daemon's default socket in `env`'s store.
pub fn socket(env: &Env) -> PathBuf {
    env.store.join("daemon/daemon.sock")
}

/// Starts the daemon with `config` (TOML) and `extra` arguments; returns
/// once it listens.
pub fn start<'a>(env: &'a Env, config: &str, extra: &[&str]) -> Daemon<'a> {
    start_with_vars(env, config, extra, &[])
}

/// [`start`] with these environment variables set for the daemon.
pub fn start_with_vars<'a>(
    env: &'a Env,
    config: &str,
    extra: &[&str],
    vars: &[(&str, &str)],
) -> Daemon<'a> {
    let cfg = env.path("daemon.toml");
    std::fs::write(&cfg, config).unwrap();
    let mut args = vec!["serve", "--config", cfg.to_str().unwrap()];
    args.extend_from_slice(extra);
    let child = env
        .cmd()
        .envs(vars.iter().copied())
        .args(&args)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    let tcp = extra.iter().any(|a| a.starts_with("tcp:"));
    // Listening, not just a socket file a killed daemon left.
    while !tcp && std::os::unix::net::UnixStream::connect(socket(env)).is_err()
        || tcp && t.elapsed() < std::time::Duration::from_millis(500)
    {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(20),
            "the daemon did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Daemon {
        env,
        child: Some(child),
    }
}
