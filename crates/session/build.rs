// Names this build's supervise code: a hash of the crate's sources, the same
// in `botyard` and in the small `botyard-supervisor` built beside it, so a
// sandbox runs the small one only when both speak the same protocol.
use std::hash::Hasher;

fn main() {
    println!("cargo:rerun-if-changed=src");
    let mut files = Vec::new();
    let mut dirs = vec![std::path::PathBuf::from("src")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("a source directory") {
            let p = e.expect("a source directory entry").path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    // FNV-1a: stable across compilers, unlike std's default hasher.
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    for f in files {
        h.write(f.to_string_lossy().as_bytes());
        h.write(&std::fs::read(&f).expect("a source file"));
    }
    println!(
        "cargo:rustc-env=BOTYARD_SUPERVISE_BUILD={}-{:016x}",
        std::env::var("CARGO_PKG_VERSION").unwrap(),
        h.finish()
    );
}

struct Fnv(u64);

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}
