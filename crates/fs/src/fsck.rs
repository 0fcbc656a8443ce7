//! `fsck` of everything under the store: the store's own check, and the
//! layers built from it (caches: a damaged one is noted, not a problem).

use crate::layer::{check_layers, LayerCheck};
use anyhow::Result;
use store::{FsckReport, Progress, Store};

/// What [`fsck`] found.
#[derive(Debug, serde::Serialize)]
pub struct Fsck {
    /// No problem in the store (damaged layers are rebuilt, so they do not count).
    pub ok: bool,
    pub report: FsckReport,
    pub layers: LayerCheck,
}

/// Checks the store, then its layers.
pub fn fsck(store: &Store, progress: &dyn Progress) -> Result<Fsck> {
    let report = store.fsck(progress)?;
    let layers = check_layers(store)?;
    Ok(Fsck {
        ok: report.ok(),
        report,
        layers,
    })
}
