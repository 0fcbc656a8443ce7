//! Refs: the named entry points into the store. Every ref is a small JSON
//! file replaced atomically, so a reader sees the old value or the new one.

use crate::atomic::write_file_atomic;
use crate::hash::Hash;
use crate::names::ImageName;
use crate::store::{now_rfc3339, Store};
use anyhow::{bail, Context, Result};
use std::fs;

/// What `refs/images/NAME/TAG` holds.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ImageRef {
    /// The root tree of the image.
    pub tree: Hash,
    /// Where it came from: `dir:PATH`, `tar:PATH`, `oci:PATH:REF`,
    /// `docker-archive:PATH`, `registry:REF`.
    pub source: String,
    /// The source's own digest (an OCI manifest digest), when it has one.
    pub digest: Option<String>,
    /// When the image was built, from its config, when known.
    pub created: Option<String>,
    /// When botyard imported it.
    pub imported: String,
    /// Regular files, directories and other entries, and the bytes of the
    /// regular files (what a plain copy would take; hard links counted once).
    pub files: u64,
    pub dirs: u64,
    pub others: u64,
    pub bytes: u64,
}

impl ImageRef {
    pub fn new(tree: Hash, source: String) -> ImageRef {
        ImageRef {
            tree,
            source,
            digest: None,
            created: None,
            imported: now_rfc3339(),
            files: 0,
            dirs: 0,
            others: 0,
            bytes: 0,
        }
    }
}

impl Store {
    fn image_ref_path(&self, name: &ImageName) -> std::path::PathBuf {
        self.refs_dir().join("images").join(name.ref_rel_path())
    }

    /// Reads one image ref; a missing one is an error naming `image ls`.
    pub fn image(&self, name: &ImageName) -> Result<ImageRef> {
        match self.try_image(name)? {
            Some(r) => Ok(r),
            None => bail!("no image {name} in the store; see `botyard image ls` for what is there"),
        }
    }

    pub fn try_image(&self, name: &ImageName) -> Result<Option<ImageRef>> {
        let path = self.image_ref_path(name);
        match fs::read(&path) {
            Ok(d) => Ok(Some(serde_json::from_slice(&d).with_context(|| {
                format!("ref {} is damaged; run `botyard fsck`", path.display())
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Points NAME:TAG at a new value atomically. The caller must have made
    /// the tree and its objects durable first ([`crate::Staging::commit`]).
    pub fn set_image(&self, name: &ImageName, r: &ImageRef) -> Result<()> {
        if !self.has_tree(&r.tree)? {
            bail!(
                "refusing to point {name} at tree {} which is not in the store",
                r.tree
            );
        }
        let path = self.image_ref_path(name);
        let dir = path.parent().unwrap();
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let data = serde_json::to_vec_pretty(r)?;
        write_file_atomic(&self.tmp_dir(), &path, &data, 0o644)
    }

    /// Removes NAME:TAG; its data stays until `gc`.
    pub fn remove_image(&self, name: &ImageName) -> Result<ImageRef> {
        let r = self.image(name)?;
        let path = self.image_ref_path(name);
        fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        let dir = path.parent().unwrap();
        let _ = fs::remove_dir(dir); // only succeeds when no other tag is left
        crate::atomic::fsync_dir(&self.refs_dir().join("images"))?;
        Ok(r)
    }

    /// Every image ref, sorted by name; unreadable refs are returned as errors
    /// so `fsck` can name them and `gc` can refuse to run.
    pub fn images(&self) -> Result<Vec<(ImageName, Result<ImageRef>)>> {
        let base = self.refs_dir().join("images");
        let mut out = Vec::new();
        for d in fs::read_dir(&base).with_context(|| format!("cannot read {}", base.display()))? {
            let d = d?;
            if !d.file_type()?.is_dir() {
                continue;
            }
            let dname = d.file_name().to_string_lossy().into_owned();
            for t in fs::read_dir(d.path())? {
                let t = t?;
                let tag = t.file_name().to_string_lossy().into_owned();
                let Ok(name) = ImageName::from_ref_rel(&dname, &tag) else {
                    out.push((
                        ImageName {
                            name: dname.replace('+', "/"),
                            tag: tag.clone(),
                        },
                        Err(anyhow::anyhow!(
                            "ref file {} has an invalid name",
                            t.path().display()
                        )),
                    ));
                    continue;
                };
                let r = fs::read(t.path())
                    .map_err(anyhow::Error::from)
                    .and_then(|data| {
                        serde_json::from_slice::<ImageRef>(&data).map_err(anyhow::Error::from)
                    })
                    .with_context(|| format!("ref {} cannot be read", t.path().display()));
                out.push((name, r));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

impl Store {
    /// Refs of other kinds (`refs/KIND/ID`, bots for instance) and the trees
    /// each keeps alive. The store does not know those kinds; by convention
    /// every ref is a JSON object whose top-level string fields named `tree`
    /// or ending in `_tree` name trees to keep (`null`: no tree yet).
    pub fn other_refs(&self) -> Result<Vec<(String, Result<Vec<Hash>>)>> {
        let mut out = Vec::new();
        for kind in fs::read_dir(self.refs_dir())? {
            let kind = kind?;
            let kname = kind.file_name().to_string_lossy().into_owned();
            if kname == "images" || !kind.file_type()?.is_dir() {
                continue;
            }
            for r in fs::read_dir(kind.path())? {
                let r = r?;
                let name = format!("{kname}/{}", r.file_name().to_string_lossy());
                let trees = fs::read(r.path())
                    .map_err(anyhow::Error::from)
                    .and_then(|d| {
                        serde_json::from_slice::<serde_json::Value>(&d).map_err(anyhow::Error::from)
                    })
                    .and_then(|v| {
                        let obj = v
                            .as_object()
                            .ok_or_else(|| anyhow::anyhow!("not a JSON object"))?;
                        obj.iter()
                            .filter(|(k, v)| (*k == "tree" || k.ends_with("_tree")) && !v.is_null())
                            .map(|(k, v)| {
                                v.as_str()
                                    .and_then(|s| s.parse::<Hash>().ok())
                                    .ok_or_else(|| anyhow::anyhow!("field {k} is not a tree hash"))
                            })
                            .collect()
                    })
                    .with_context(|| format!("ref {} cannot be read", r.path().display()));
                out.push((name, trees));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Writes `refs/KIND/ID` atomically (see [`Store::other_refs`] for the
    /// convention its JSON must follow).
    pub fn write_ref(&self, kind: &str, id: &str, value: &serde_json::Value) -> Result<()> {
        crate::names::validate_segment("ref kind", kind, 64)?;
        crate::names::validate_segment("ref id", id, 128)?;
        let dir = self.refs_dir().join(kind);
        fs::create_dir_all(&dir)?;
        write_file_atomic(
            &self.tmp_dir(),
            &dir.join(id),
            &serde_json::to_vec_pretty(value)?,
            0o644,
        )
    }

    pub fn read_ref(&self, kind: &str, id: &str) -> Result<Option<serde_json::Value>> {
        let p = self.refs_dir().join(kind).join(id);
        match fs::read(&p) {
            Ok(d) => {
                Ok(Some(serde_json::from_slice(&d).with_context(|| {
                    format!("ref {} is damaged", p.display())
                })?))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
        }
    }

    /// Reads `refs/KIND/ID` as a `T`; `what` names it in the error when it
    /// does not decode ("snapshot ID is damaged; run `botyard fsck`").
    pub fn read_record<T: serde::de::DeserializeOwned>(
        &self,
        kind: &str,
        id: &str,
        what: &str,
    ) -> Result<Option<T>> {
        match self.read_ref(kind, id)? {
            Some(v) => {
                Ok(Some(serde_json::from_value(v).with_context(|| {
                    format!("{what} is damaged; run `botyard fsck`")
                })?))
            }
            None => Ok(None),
        }
    }

    pub fn remove_ref(&self, kind: &str, id: &str) -> Result<()> {
        let dir = self.refs_dir().join(kind);
        fs::remove_file(dir.join(id))?;
        crate::atomic::fsync_dir(&dir)
    }
}
