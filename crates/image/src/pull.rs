//! Pulling from an OCI registry: the manifests and blobs are fetched into a
//! temporary OCI layout inside the store's `tmp/`, then imported exactly like
//! `--oci`, so every blob is verified against its digest by the same code.

use crate::import::{finish, ImportOutcome, Source};
use crate::import_oci::{load_oci, pick_platform, Index, LayoutDir, Manifest};
use anyhow::{bail, Context, Result};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use std::path::{Path, PathBuf};
use store::{ImageName, Progress, Store, Unit};

const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

#[derive(Clone, Debug, Default)]
pub struct PullOptions {
    /// Talk plain HTTP (a registry on loopback without TLS).
    pub insecure: bool,
    /// Bytes of file data the image may expand to (default: the store's
    /// free space).
    pub max_size: Option<u64>,
    /// A login for the registry; anonymous without.
    pub credentials: Option<crate::Credentials>,
}

/// The registry a reference names (`host[:port]`).
pub fn registry_of(reference: &str) -> Result<String> {
    Ok(parse_ref(reference)?.resolve_registry().to_string())
}

/// Says who the registry turned away and what to do, instead of the
/// client's own words; anything else is left as it is.
fn refused(e: anyhow::Error, registry: &str, who: Option<&str>) -> anyhow::Error {
    use oci_client::errors::OciDistributionError as E;
    let denied = e.chain().any(|c| {
        matches!(
            c.downcast_ref::<E>(),
            Some(E::AuthenticationFailure(_) | E::UnauthorizedError { .. })
        )
    });
    if !denied {
        return e;
    }
    match who {
        Some(u) => anyhow::anyhow!(
            "registry {registry} refused the login of {}; check the credentials in the auth file",
            store::quote_str(u)
        ),
        None => anyhow::anyhow!(
            "registry {registry} needs a login; pass --auth-file with a Docker config that has one for {registry}"
        ),
    }
}

fn parse_ref(reference: &str) -> Result<Reference> {
    reference.parse::<Reference>().map_err(|e| {
        anyhow::anyhow!(
            "'{reference}' is not an image reference ({e}); use REGISTRY/REPOSITORY:TAG"
        )
    })
}

/// The store name for a pulled reference: its repository and tag
/// (`127.0.0.1:5000/tools/debian:12` becomes `tools/debian:12`).
pub fn default_name_for(reference: &str) -> Result<ImageName> {
    let r = parse_ref(reference)?;
    let tag = r.tag().unwrap_or("latest");
    format!("{}:{tag}", r.repository()).parse().map_err(|e| {
        anyhow::anyhow!("cannot name the pulled image after '{reference}': {e}; pass --as NAME:TAG")
    })
}

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Pulls `reference` and imports it as `name`.
pub fn pull(
    store: &Store,
    reference: &str,
    name: &ImageName,
    opts: PullOptions,
    progress: &dyn Progress,
) -> Result<ImportOutcome> {
    let r = parse_ref(reference)?;
    let tmp = TempDir(store.tmp_dir().join(format!(
        "pull-{}-{}",
        std::process::id(),
        rand_suffix()
    )));
    std::fs::create_dir_all(tmp.0.join("blobs/sha256"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let registry = r.resolve_registry().to_string();
    let who = opts.credentials.as_ref().map(|c| c.username.clone());
    let top = rt
        .block_on(fetch(&r, &tmp.0, &opts, progress))
        .map_err(|e| refused(e, &registry, who.as_deref()))
        .with_context(|| format!("cannot pull {reference}"))?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": top.0, "digest": top.1, "size": top.2}],
    });
    std::fs::write(tmp.0.join("index.json"), serde_json::to_vec(&index)?)?;
    std::fs::write(
        tmp.0.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let layout = LayoutDir { dir: tmp.0.clone() };
    let (tree, digest, config, staging) = load_oci(store, &layout, None, opts.max_size, progress)?;
    finish(
        staging,
        &tree,
        name,
        Source {
            label: format!("registry:{reference}"),
            digest: Some(digest),
            created: config.created,
        },
        progress,
    )
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn blob_path(dir: &Path, digest: &str) -> Result<PathBuf> {
    let d = crate::import_oci::Digest_::parse(digest)?;
    let p = dir.join("blobs").join(d.alg);
    std::fs::create_dir_all(&p)?;
    Ok(p.join(&d.hex))
}

/// Fetches the manifest chain, config and layers; returns the top
/// manifest's media type, digest and size.
async fn fetch(
    r: &Reference,
    dir: &Path,
    opts: &PullOptions,
    progress: &dyn Progress,
) -> Result<(String, String, u64)> {
    let client = Client::new(ClientConfig {
        protocol: if opts.insecure {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        ..Default::default()
    });
    let auth = match &opts.credentials {
        Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
        None => RegistryAuth::Anonymous,
    };
    let (raw, digest) = client.pull_manifest_raw(r, &auth, MANIFEST_TYPES).await?;
    let top_type = media_type_of(&raw);
    let top = (top_type.clone(), digest.clone(), raw.len() as u64);
    std::fs::write(blob_path(dir, &digest)?, &raw)?;
    let mut raw = raw;
    let mut mtype = top_type;
    for _ in 0..4 {
        if mtype.contains("index") || mtype.contains("list") {
            let idx: Index =
                serde_json::from_slice(&raw).context("the registry sent an invalid image index")?;
            let d = pick_platform(&idx, "the image index")?;
            let (m, dg) = client
                .pull_manifest_raw(
                    &r.clone_with_digest(d.digest.clone()),
                    &auth,
                    MANIFEST_TYPES,
                )
                .await?;
            std::fs::write(blob_path(dir, &dg)?, &m)?;
            mtype = media_type_of(&m);
            raw = m;
            continue;
        }
        let m: Manifest =
            serde_json::from_slice(&raw).context("the registry sent an invalid image manifest")?;
        let total: u64 = m.layers.iter().map(|l| l.size).sum::<u64>() + m.config.size;
        progress.phase("downloading", Some(total), Unit::Bytes);
        for d in std::iter::once(&m.config).chain(m.layers.iter()) {
            let path = blob_path(dir, &d.digest)?;
            let mut f = tokio::fs::File::create(&path).await?;
            client
                .pull_blob(r, d.digest.as_str(), &mut f)
                .await
                .with_context(|| format!("cannot download blob {}", d.digest))?;
            // tokio writes in the background; the import reads the file next.
            tokio::io::AsyncWriteExt::flush(&mut f).await?;
            progress.advance(d.size);
        }
        return Ok(top);
    }
    bail!("image indexes nest too deeply")
}

fn media_type_of(raw: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(raw)
        .ok()
        .and_then(|v| {
            v.get("mediaType")
                .and_then(|m| m.as_str())
                .map(String::from)
        })
        .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into())
}
