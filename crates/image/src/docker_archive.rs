//! `docker save` archives: the legacy layout (`manifest.json`, a config and
//! `layer.tar` files verified against the config's `diff_ids`) and the OCI
//! layout newer engines write inside the same tar.

use crate::import::{finish, ImportOutcome, Source};
use crate::import_oci::{load_oci, Blobs, Config, Digest_};
use crate::layer::{apply_tar_stream, Budget, LayerOptions};
use anyhow::{bail, Context, Result};
use fs::MemTree;
use serde::Deserialize;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use store::{ImageName, Progress, Staging, Store, Unit};

enum Member {
    File { pos: u64, size: u64 },
    Symlink(String),
    Other,
}

/// The members of an archive, by normalised path, read by seeking.
struct ArchiveIndex {
    path: PathBuf,
    members: HashMap<String, Member>,
}

fn normalise(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.join("/")
}

impl ArchiveIndex {
    fn build(path: &Path) -> Result<ArchiveIndex> {
        let f = File::open(path)
            .with_context(|| format!("cannot open the docker archive {}", path.display()))?;
        let mut head = vec![0u8; 512];
        let n = (&f).take(512).read(&mut head)?;
        crate::compression::detect(&head[..n])
            .and_then(|c| match c {
                crate::Compression::None => Ok(()),
                _ => bail!("it is compressed; decompress it first (docker save writes plain tar)"),
            })
            .with_context(|| format!("cannot read the docker archive {}", path.display()))?;
        (&f).seek(SeekFrom::Start(0))?;
        let mut ar = tar::Archive::new(f);
        let mut members = HashMap::new();
        for e in ar.entries_with_seek()? {
            let e = e.with_context(|| {
                format!(
                    "the docker archive {} is truncated or corrupt",
                    path.display()
                )
            })?;
            let name = normalise(&String::from_utf8_lossy(&e.path_bytes()));
            let m = match e.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => Member::File {
                    pos: e.raw_file_position(),
                    size: e.size(),
                },
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let t = e
                        .link_name_bytes()
                        .map(|t| String::from_utf8_lossy(&t).into_owned())
                        .unwrap_or_default();
                    if e.header().entry_type() == tar::EntryType::Symlink {
                        let dir = name.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                        Member::Symlink(if t.starts_with('/') {
                            normalise(&t)
                        } else {
                            normalise(&format!("{dir}/{t}"))
                        })
                    } else {
                        Member::Symlink(normalise(&t))
                    }
                }
                _ => Member::Other,
            };
            members.insert(name, m);
        }
        let len = std::fs::metadata(path)?.len();
        for m in members.values() {
            if let Member::File { pos, size } = m {
                if pos + size > len {
                    bail!("the docker archive {} is truncated", path.display());
                }
            }
        }
        Ok(ArchiveIndex {
            path: path.to_path_buf(),
            members,
        })
    }

    fn locate(&self, name: &str) -> Result<(u64, u64)> {
        let mut n = normalise(name);
        for _ in 0..16 {
            match self.members.get(&n) {
                Some(Member::File { pos, size }) => return Ok((*pos, *size)),
                Some(Member::Symlink(t)) => n = t.clone(),
                _ => bail!(
                    "the docker archive {} has no file {name}",
                    self.path.display()
                ),
            }
        }
        bail!(
            "too many links for {name} in the docker archive {}",
            self.path.display()
        )
    }

    fn read(&self, name: &str) -> Result<Box<dyn Read + Send + '_>> {
        let (pos, size) = self.locate(name)?;
        let mut f = File::open(&self.path)?;
        f.seek(SeekFrom::Start(pos))?;
        Ok(Box::new(f.take(size)))
    }

    fn read_small(&self, name: &str) -> Result<Vec<u8>> {
        let mut data = Vec::new();
        self.read(name)?.take(16 << 20).read_to_end(&mut data)?;
        Ok(data)
    }
}

impl Blobs for ArchiveIndex {
    fn open(&self, d: &Digest_) -> Result<Box<dyn Read + Send + '_>> {
        self.read(&format!("blobs/{}/{}", d.alg, d.hex))
    }
    fn read_named(&self, name: &str) -> Result<Vec<u8>> {
        self.read_small(name)
    }
    fn describe(&self) -> String {
        format!("docker archive {}", self.path.display())
    }
}

#[derive(Deserialize)]
struct LegacyEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// Imports the image of a `docker save` archive; with several images in it,
/// the one tagged like `name`.
pub fn import_docker_archive(
    store: &Store,
    name: &ImageName,
    path: &Path,
    max_size: Option<u64>,
    progress: &dyn Progress,
) -> Result<ImportOutcome> {
    let idx = ArchiveIndex::build(path)?;
    let label = format!("docker-archive:{}", std::fs::canonicalize(path)?.display());
    if !idx.members.contains_key("manifest.json") {
        if idx.members.contains_key("index.json") {
            let (tree, digest, config, staging) = load_oci(store, &idx, None, max_size, progress)?;
            return finish(
                staging,
                &tree,
                name,
                Source {
                    label,
                    digest: Some(digest),
                    created: config.created,
                },
                progress,
            );
        }
        bail!(
            "{} is not a docker archive (no manifest.json); use --tar for a rootfs tarball",
            path.display()
        );
    }
    let entries: Vec<LegacyEntry> = serde_json::from_slice(&idx.read_small("manifest.json")?)
        .with_context(|| format!("manifest.json in {} is not valid", path.display()))?;
    let entry = match entries.len() {
        0 => bail!("{} holds no image", path.display()),
        1 => &entries[0],
        _ => {
            let want = name.to_string();
            entries
                .iter()
                .find(|e| {
                    e.repo_tags
                        .iter()
                        .flatten()
                        .any(|t| *t == want || t.ends_with(&format!("/{want}")))
                })
                .ok_or_else(|| {
                    let tags: Vec<String> = entries
                        .iter()
                        .flat_map(|e| e.repo_tags.clone().unwrap_or_default())
                        .collect();
                    anyhow::anyhow!(
                        "{} holds {} images ({}); import it as one of those names",
                        path.display(),
                        entries.len(),
                        tags.join(", ")
                    )
                })?
        }
    };
    let config_bytes = idx.read_small(&entry.config)?;
    let stem = entry
        .config
        .rsplit('/')
        .next()
        .unwrap_or("")
        .trim_end_matches(".json");
    let config_id = crate::import_oci::Digest_::parse(&format!("sha256:{stem}")).ok();
    if let Some(dg) = &config_id {
        let (got, _) = dg.of_reader(&mut config_bytes.as_slice())?;
        if got != dg.hex {
            bail!(
                "the image config in {} does not match its digest {dg}; the archive is corrupt",
                path.display()
            );
        }
    }
    let config: Config = serde_json::from_slice(&config_bytes)
        .with_context(|| format!("the image config in {} is not valid JSON", path.display()))?;
    let diff_ids = config
        .rootfs
        .as_ref()
        .map(|r| r.diff_ids.clone())
        .unwrap_or_default();
    if diff_ids.len() != entry.layers.len() {
        bail!(
            "{} lists {} layers but its config has {} diff_ids; the archive is corrupt",
            path.display(),
            entry.layers.len(),
            diff_ids.len()
        );
    }
    let total: u64 = entry
        .layers
        .iter()
        .filter_map(|l| idx.locate(l).ok())
        .map(|(_, s)| s)
        .sum();
    progress.phase("verifying layers", Some(total), Unit::Bytes);
    for (layer, diff_id) in entry.layers.iter().zip(&diff_ids) {
        let dg = Digest_::parse(diff_id)?;
        let mut r = crate::compression::decompress(BufReader::new(idx.read(layer)?))?;
        let (got, _) = dg
            .of_reader(&mut r)
            .with_context(|| format!("cannot read layer {layer}"))?;
        if got != dg.hex {
            bail!(
                "layer {layer} in {} does not match its diff_id {dg}; the archive is corrupt or tampered with",
                path.display()
            );
        }
        progress.advance(idx.locate(layer)?.1);
    }
    let staging = Staging::new(store, progress)?;
    progress.phase("importing layers", None, Unit::Bytes);
    let mut tree = MemTree::default();
    let budget = Budget::new(store, max_size);
    for (i, layer) in entry.layers.iter().enumerate() {
        let lbl = format!("layer {} ({layer}) of {}", i + 1, path.display());
        let r =
            crate::compression::decompress(BufReader::with_capacity(256 * 1024, idx.read(layer)?))?;
        apply_tar_stream(
            &mut tree,
            r,
            &staging,
            LayerOptions { whiteouts: true },
            &budget,
            &lbl,
        )?;
    }
    let digest = config_id.map(|d| d.to_string());
    finish(
        staging,
        &tree,
        name,
        Source {
            label,
            digest,
            created: config.created,
        },
        progress,
    )
}
