//! The supervisor's OCI image, written by the supervisor itself: this
//! binary, which must be statically linked, at `/botyard`, and nothing
//! else. Pods side-load it (an `image` volume, or an init container that
//! runs `botyard supervise copy-self`), so it starts in any agent image,
//! one without a libc too. Written as an OCI image layout (no container
//! engine needed), byte for byte the same for the same binary and tag.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;

const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// What [`write_supervisor_image`] wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SupervisorImage {
    /// The manifest's digest (`sha256:…`).
    pub digest: String,
    pub tag: String,
    /// Bytes of the one layer, compressed.
    pub layer_bytes: u64,
}

fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// Writes the supervisor image for this binary into the empty or missing
/// directory `dir` as an OCI image layout tagged `tag`.
pub fn write_supervisor_image(dir: &Path, tag: &str) -> Result<SupervisorImage> {
    if tag.is_empty()
        || tag.len() > 128
        || !tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        bail!(
            "tag {} is not an image tag; use letters, digits, '.', '_' and '-'",
            store::quote_str(tag)
        );
    }
    if !crate::copy_self::is_static()? {
        bail!("this botyard is dynamically linked, and the supervisor image must run where there is no libc; build a static one with scripts/supervisor-image.sh");
    }
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!(
            "{} is not empty; give a new directory for the image layout",
            dir.display()
        );
    }
    let exe = std::fs::read("/proc/self/exe").context("cannot read this binary")?;
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)
        .with_context(|| format!("cannot create {}", blobs.display()))?;
    let put = |data: &[u8]| -> Result<String> {
        let d = sha256(data);
        std::fs::write(blobs.join(&d["sha256:".len()..]), data)?;
        Ok(d)
    };

    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_path("botyard")?;
    h.set_size(exe.len() as u64);
    h.set_mode(0o755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    tar.append(&h, exe.as_slice())?;
    let tar = tar.into_inner()?;
    let diff_id = sha256(&tar);
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar)?;
    let layer = gz.finish()?;
    let layer_digest = put(&layer)?;

    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/botyard"], "Cmd": ["supervise", "--help"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "botyard supervise image", "comment": "the static botyard supervisor"}],
    }))?;
    let config_digest = put(&config)?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": LAYER_TYPE, "digest": layer_digest, "size": layer.len()}],
        "annotations": {"org.opencontainers.image.title": "botyard supervisor"},
    }))?;
    let digest = put(&manifest)?;
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": MANIFEST_TYPE, "digest": digest, "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    }))?;
    std::fs::write(dir.join("index.json"), index)?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(SupervisorImage {
        digest,
        tag: tag.to_string(),
        layer_bytes: layer.len() as u64,
    })
}
