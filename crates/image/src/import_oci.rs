//! OCI image layouts, and the blob-reading machinery shared with docker
//! archives and registry pulls.

use crate::import::{finish, ImportOutcome, Source};
use crate::import_tar::Counting;
use crate::layer::{apply_tar_stream, Budget, LayerOptions};
use anyhow::{bail, Context, Result};
use fs::MemTree;
use serde::Deserialize;
use sha2::Digest;
use std::collections::HashMap;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use store::{ImageName, Progress, Staging, Store, Unit};

pub(crate) const REF_ANNOTATION: &str = "org.opencontainers.image.ref.name";

#[derive(Deserialize, Debug, Clone)]
pub(crate) struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    pub platform: Option<Platform>,
}

#[derive(Deserialize, Debug, Clone)]
pub(crate) struct Platform {
    pub architecture: String,
    pub os: String,
}

#[derive(Deserialize, Debug)]
pub(crate) struct Index {
    pub manifests: Vec<Descriptor>,
}

#[derive(Deserialize, Debug)]
pub(crate) struct Manifest {
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

#[derive(Deserialize, Debug, Default)]
pub(crate) struct Config {
    pub created: Option<String>,
    pub rootfs: Option<RootFs>,
}

#[derive(Deserialize, Debug, Default)]
pub(crate) struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// Something that holds blobs by content digest.
pub(crate) trait Blobs {
    /// Opens the blob with this digest (already validated).
    fn open(&self, digest: &Digest_) -> Result<Box<dyn Read + Send + '_>>;
    /// Reads a small file at the top of the layout (`index.json`).
    fn read_named(&self, name: &str) -> Result<Vec<u8>>;
    fn describe(&self) -> String;
}

/// A validated `ALG:HEX` content digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Digest_ {
    pub alg: &'static str,
    pub hex: String,
}

impl Digest_ {
    pub fn parse(s: &str) -> Result<Digest_> {
        let (alg, hex) = s.split_once(':').unwrap_or(("", s));
        let (alg, len) = match alg {
            "sha256" => ("sha256", 64),
            "sha512" => ("sha512", 128),
            _ => bail!(
                "digest '{}' uses an unsupported algorithm; expected sha256 or sha512",
                short(s)
            ),
        };
        if hex.len() != len
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            bail!("digest '{}' is malformed", short(s));
        }
        Ok(Digest_ {
            alg,
            hex: hex.to_string(),
        })
    }

    /// Hashes a stream with this digest's algorithm.
    pub fn of_reader(&self, r: &mut dyn Read) -> Result<(String, u64)> {
        fn run<D: sha2::Digest + std::io::Write>(
            mut d: D,
            r: &mut dyn Read,
        ) -> Result<(String, u64)> {
            let n = std::io::copy(r, &mut d)?;
            Ok((hex::encode(d.finalize()), n))
        }
        match self.alg {
            "sha512" => run(sha2::Sha512::new(), r),
            _ => run(sha2::Sha256::new(), r),
        }
    }
}

impl std::fmt::Display for Digest_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.alg, self.hex)
    }
}

fn short(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Reads a whole blob, checking its size and digest before returning it.
pub(crate) fn read_verified(blobs: &dyn Blobs, d: &Descriptor, limit: u64) -> Result<Vec<u8>> {
    let dg = Digest_::parse(&d.digest)?;
    if d.size > limit {
        bail!(
            "blob {dg} is {} bytes; refusing metadata larger than {limit}",
            d.size
        );
    }
    let mut data = Vec::new();
    blobs.open(&dg)?.take(limit + 1).read_to_end(&mut data)?;
    check_blob(&dg, d.size, &mut data.as_slice(), blobs)?;
    Ok(data)
}

/// Verifies a blob's size and digest by reading it through.
pub(crate) fn verify_blob(blobs: &dyn Blobs, d: &Descriptor) -> Result<()> {
    let dg = Digest_::parse(&d.digest)?;
    let mut r = blobs.open(&dg)?;
    check_blob(&dg, d.size, &mut r, blobs)
}

fn check_blob(dg: &Digest_, size: u64, r: &mut dyn Read, blobs: &dyn Blobs) -> Result<()> {
    let (got, n) = dg
        .of_reader(r)
        .with_context(|| format!("cannot read blob {dg} in {}", blobs.describe()))?;
    if n != size {
        bail!("blob {dg} in {} has {n} bytes, its descriptor says {size}; the image is corrupt, fetch it again", blobs.describe());
    }
    if got != dg.hex {
        bail!(
            "blob {dg} in {} does not match its digest (its content hashes to {}:{got}); the image is corrupt or tampered with, fetch it again",
            blobs.describe(),
            dg.alg
        );
    }
    Ok(())
}

/// The `GOARCH` name of this machine, as image platforms spell it.
pub(crate) fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn is_index(media_type: &str) -> bool {
    media_type.contains("image.index") || media_type.contains("manifest.list")
}

/// Picks this machine's platform from an index, or the only manifest.
pub(crate) fn pick_platform(index: &Index, what: &str) -> Result<Descriptor> {
    if index.manifests.len() == 1 {
        return Ok(index.manifests[0].clone());
    }
    let arch = host_arch();
    index
        .manifests
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == arch)
        })
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("{what} has no image for linux/{arch}"))
}

/// Resolves a descriptor to an image manifest, descending through indexes.
pub(crate) fn resolve_manifest(
    blobs: &dyn Blobs,
    mut d: Descriptor,
) -> Result<(Descriptor, Manifest)> {
    for _ in 0..4 {
        let data = read_verified(blobs, &d, 16 << 20)?;
        let v: serde_json::Value = serde_json::from_slice(&data).with_context(|| {
            format!(
                "manifest {} in {} is not valid JSON",
                d.digest,
                blobs.describe()
            )
        })?;
        let mt = v
            .get("mediaType")
            .and_then(|m| m.as_str())
            .unwrap_or(&d.media_type)
            .to_string();
        if is_index(&mt) || (v.get("manifests").is_some() && v.get("layers").is_none()) {
            let idx: Index = serde_json::from_value(v).context("bad image index")?;
            d = pick_platform(&idx, &format!("index {}", d.digest))?;
            continue;
        }
        let m: Manifest = serde_json::from_value(v).with_context(|| {
            format!(
                "manifest {} in {} is not an image manifest",
                d.digest,
                blobs.describe()
            )
        })?;
        return Ok((d, m));
    }
    bail!("image indexes nest too deeply in {}", blobs.describe())
}

/// Applies a manifest's layers in order into a new tree, each verified
/// against its digest before a byte of it is parsed.
pub(crate) fn apply_layers(
    blobs: &dyn Blobs,
    layers: &[Descriptor],
    staging: &Staging,
    budget: &Budget,
    progress: &dyn Progress,
) -> Result<MemTree> {
    for l in layers {
        if l.media_type.contains("encrypted") {
            bail!("layer {} is encrypted; decrypt the image first", l.digest);
        }
    }
    let total: u64 = layers.iter().map(|l| l.size).sum();
    progress.phase("verifying layers", Some(total), Unit::Bytes);
    for l in layers {
        verify_blob(blobs, l)?;
        progress.advance(l.size);
    }
    progress.phase("importing layers", Some(total), Unit::Bytes);
    let mut tree = MemTree::default();
    for (i, l) in layers.iter().enumerate() {
        let dg = Digest_::parse(&l.digest)?;
        let label = format!("layer {} ({dg}) of {}", i + 1, blobs.describe());
        let raw = Counting {
            inner: blobs.open(&dg)?,
            progress,
        };
        let r = crate::compression::decompress(BufReader::with_capacity(256 * 1024, raw))
            .with_context(|| format!("cannot read {label}"))?;
        apply_tar_stream(
            &mut tree,
            r,
            staging,
            LayerOptions { whiteouts: true },
            budget,
            &label,
        )?;
    }
    Ok(tree)
}

/// An OCI image layout directory.
pub(crate) struct LayoutDir {
    pub dir: PathBuf,
}

impl Blobs for LayoutDir {
    fn open(&self, d: &Digest_) -> Result<Box<dyn Read + Send + '_>> {
        let p = self.dir.join("blobs").join(d.alg).join(&d.hex);
        let f = std::fs::File::open(&p)
            .with_context(|| format!("blob {d} is missing from {}", self.describe()))?;
        Ok(Box::new(f))
    }
    fn read_named(&self, name: &str) -> Result<Vec<u8>> {
        let p = self.dir.join(name);
        let f = std::fs::File::open(&p).with_context(|| {
            format!(
                "{} is not an OCI image layout (no {name})",
                self.dir.display()
            )
        })?;
        let mut data = Vec::new();
        f.take(16 << 20).read_to_end(&mut data)?;
        Ok(data)
    }
    fn describe(&self) -> String {
        format!("OCI layout {}", self.dir.display())
    }
}

/// Splits `DIR[:REF]`: the whole argument if it is a directory, else at the
/// last `:`.
pub fn split_oci_arg(arg: &str) -> (PathBuf, Option<String>) {
    if Path::new(arg).is_dir() {
        return (PathBuf::from(arg), None);
    }
    match arg.rsplit_once(':') {
        Some((d, r)) if !r.contains('/') && !r.is_empty() => {
            (PathBuf::from(d), Some(r.to_string()))
        }
        _ => (PathBuf::from(arg), None),
    }
}

/// Imports an image from an OCI image layout, by its ref name annotation, or
/// the only image in it.
pub fn import_oci(
    store: &Store,
    name: &ImageName,
    dir: &Path,
    reference: Option<&str>,
    max_size: Option<u64>,
    progress: &dyn Progress,
) -> Result<ImportOutcome> {
    let layout = LayoutDir {
        dir: dir.to_path_buf(),
    };
    let (tree, manifest_digest, config, staging) =
        load_oci(store, &layout, reference, max_size, progress)?;
    let canon = std::fs::canonicalize(dir)?;
    let label = match reference {
        Some(r) => format!("oci:{}:{r}", canon.display()),
        None => format!("oci:{}", canon.display()),
    };
    finish(
        staging,
        &tree,
        name,
        Source {
            label,
            digest: Some(manifest_digest),
            created: config.created,
        },
        progress,
    )
}

pub(crate) fn load_oci(
    store: &Store,
    layout: &dyn Blobs,
    reference: Option<&str>,
    max_size: Option<u64>,
    progress: &dyn Progress,
) -> Result<(MemTree, String, Config, Staging)> {
    let index = read_index(layout)?;
    let desc = match reference {
        Some(r) => index
            .manifests
            .iter()
            .find(|d| d.annotations.get(REF_ANNOTATION).map(String::as_str) == Some(r))
            .cloned()
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{} has no image tagged '{r}' (it has: {}); pick one of those",
                    layout.describe(),
                    ref_names(&index)
                )
            })?,
        None if index.manifests.len() == 1 => index.manifests[0].clone(),
        None if index.manifests.is_empty() => bail!("{} holds no image", layout.describe()),
        None => bail!(
            "{} holds {} images ({}); name one as DIR:REF",
            layout.describe(),
            index.manifests.len(),
            ref_names(&index)
        ),
    };
    let (mdesc, manifest) = resolve_manifest(layout, desc)?;
    let config: Config =
        serde_json::from_slice(&read_verified(layout, &manifest.config, 16 << 20)?).with_context(
            || {
                format!(
                    "the image config in {} is not valid JSON",
                    layout.describe()
                )
            },
        )?;
    let staging = Staging::new(store, progress)?;
    let budget = Budget::new(store, max_size);
    let tree = apply_layers(layout, &manifest.layers, &staging, &budget, progress)?;
    Ok((tree, mdesc.digest, config, staging))
}

fn read_index(layout: &dyn Blobs) -> Result<Index> {
    let data = layout.read_named("index.json")?;
    serde_json::from_slice(&data).with_context(|| {
        format!(
            "index.json in {} is not a valid OCI index",
            layout.describe()
        )
    })
}

fn ref_names(index: &Index) -> String {
    let names: Vec<&str> = index
        .manifests
        .iter()
        .map(|d| {
            d.annotations
                .get(REF_ANNOTATION)
                .map(String::as_str)
                .unwrap_or("(untagged)")
        })
        .collect();
    names.join(", ")
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A digest names a blob file: one that parses is only lowercase
        /// hex of its algorithm's length, never a path.
        #[test]
        fn digests_that_parse_are_plain_hex(s in prop_oneof![any::<String>(), "sha(256|512):[0-9a-f./]{60,130}"]) {
            if let Ok(d) = Digest_::parse(&s) {
                prop_assert!(d.hex.len() == 64 || d.hex.len() == 128);
                prop_assert!(d.hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            }
        }

        /// Index, manifest and config documents of any shape decode or
        /// are refused; an index picks a platform or says why not.
        #[test]
        fn oci_documents_decode_or_are_refused(
            doc in prop_oneof![
                any::<String>(),
                "\\{\"manifests\": \\[(\\{\"mediaType\": \"[a-z./+]{0,20}\", \"digest\": \"sha256:[0-9a-f]{0,64}\", \"size\": [0-9]{1,3}(, \"platform\": \\{\"architecture\": \"(amd64|arm64)\", \"os\": \"linux\"\\})?\\}, ?){0,3}\\]\\}",
            ]
        ) {
            let _ = serde_json::from_str::<Manifest>(&doc);
            let _ = serde_json::from_str::<Config>(&doc);
            if let Ok(index) = serde_json::from_str::<Index>(&doc) {
                match pick_platform(&index, "the index") {
                    Ok(d) => prop_assert!(index.manifests.iter().any(|m| m.digest == d.digest)),
                    Err(e) => prop_assert!(!index.manifests.is_empty() || e.to_string().contains("no image")),
                }
            }
        }
    }
}
