//! What a CSI volume is on a node: a bot, named from the volume's name so
//! that two names never become the same bot, with a record of what it was
//! created with (for idempotency) and of where it is published.

use anyhow::{Context, Result};
use std::path::PathBuf;
use store::Store;

/// A CSI call's failure: the gRPC code the spec asks for and a message
/// that names the fix.
#[derive(Debug)]
pub struct CsiError {
    pub code: tonic::Code,
    pub message: String,
}

impl CsiError {
    pub fn new(code: tonic::Code, message: impl Into<String>) -> CsiError {
        CsiError {
            code,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> CsiError {
        CsiError::new(tonic::Code::InvalidArgument, message)
    }
    pub fn not_found(message: impl Into<String>) -> CsiError {
        CsiError::new(tonic::Code::NotFound, message)
    }
}

impl From<anyhow::Error> for CsiError {
    fn from(e: anyhow::Error) -> CsiError {
        let code = if store::is_no_space(&e) {
            tonic::Code::ResourceExhausted
        } else if store::is_kind(&e, store::ErrorKind::Busy) {
            tonic::Code::Aborted
        } else if store::is_kind(&e, store::ErrorKind::AlreadyExists) {
            tonic::Code::AlreadyExists
        } else {
            tonic::Code::Internal
        };
        CsiError::new(code, format!("{e:#}"))
    }
}

impl From<CsiError> for tonic::Status {
    fn from(e: CsiError) -> tonic::Status {
        tonic::Status::new(e.code, e.message)
    }
}

pub type CsiResult<T> = std::result::Result<T, CsiError>;

/// Volume ids that do not come straight from a name start with this, and
/// no name may: so a name and a hashed name never meet.
const HASHED: &str = "v-h";

/// The bot id (and volume id) for a volume name: the name itself when it
/// is a valid bot id (PVC names `pvc-UUID` are), else `v-h` and a hash of
/// it. A name that is a valid id but starts with `v-h` is refused, so two
/// names never map to one bot.
pub fn volume_id(name: &str) -> CsiResult<String> {
    if name.is_empty() {
        return Err(CsiError::invalid(
            "the volume name is missing; the CO must name every volume",
        ));
    }
    if bot::validate_id(name).is_ok() {
        if name.starts_with(HASHED) {
            return Err(CsiError::invalid(format!(
                "volume name {} starts with {HASHED:?}, which botyard keeps for names it hashes; pick another name",
                store::quote_str(name)
            )));
        }
        return Ok(name.to_string());
    }
    Ok(format!(
        "{HASHED}{}",
        &store::Hash::of(name.as_bytes()).to_hex()[..32]
    ))
}

/// What a volume was created with, kept under `STORE/csi/volumes/ID.json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VolumeRecord {
    pub name: String,
    pub image: String,
    pub driver: String,
    /// An ephemeral inline volume: its bot goes when the pod's volume is
    /// unpublished.
    #[serde(default)]
    pub ephemeral: bool,
    /// Target paths it is published at.
    #[serde(default)]
    pub published: Vec<PathBuf>,
}

/// The records of a node's store.
pub struct Volumes {
    pub store: Store,
}

impl Volumes {
    fn dir(&self) -> PathBuf {
        self.store.root().join("csi").join("volumes")
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir().join(format!("{id}.json"))
    }

    pub fn get(&self, id: &str) -> Result<Option<VolumeRecord>> {
        if bot::validate_id(id).is_err() {
            return Ok(None);
        }
        match std::fs::read(self.path(id)) {
            Ok(b) => Ok(Some(serde_json::from_slice(&b).with_context(|| {
                format!(
                    "the record of volume {id} is damaged; delete the volume and create it again"
                )
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read the record of volume {id}")),
        }
    }

    pub fn put(&self, id: &str, r: &VolumeRecord) -> Result<()> {
        let dir = self.dir();
        std::fs::create_dir_all(&dir)?;
        store::write_file_atomic(&dir, &self.path(id), &serde_json::to_vec(r)?, 0o600)
    }

    pub fn remove(&self, id: &str) -> Result<()> {
        match std::fs::remove_file(self.path(id)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every volume id, sorted.
    pub fn ids(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(self.dir()) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if let Some(id) = n.strip_suffix(".json") {
                    if bot::validate_id(id).is_ok() {
                        out.push(id.to_string());
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_ids_without_collisions() {
        let a = volume_id("pvc-0f3e").unwrap();
        assert_eq!(a, "pvc-0f3e");
        let b = volume_id("Data_Vol").unwrap();
        let c = volume_id("data-vol").unwrap();
        assert!(b.starts_with(HASHED) && b != c);
        assert!(bot::validate_id(&b).is_ok());
        assert_ne!(volume_id("A").unwrap(), volume_id("B").unwrap());
        assert_eq!(
            volume_id(&b).unwrap_err().code,
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            volume_id("").unwrap_err().code,
            tonic::Code::InvalidArgument
        );
        assert!(bot::validate_id(&volume_id(&"x".repeat(300)).unwrap()).is_ok());
    }
}
