use crate::import::{finish, ImportOutcome, Source};
use anyhow::Result;
use std::path::Path;
use store::{ImageName, Progress, Staging, Store};

/// Imports a directory as it is (a rootfs built by debootstrap, say). Files
/// whose stat is unchanged since the last import of the same directory are
/// not read again.
pub fn import_dir(
    store: &Store,
    name: &ImageName,
    dir: &Path,
    progress: &dyn Progress,
) -> Result<ImportOutcome> {
    if !dir.is_dir() {
        anyhow::bail!(
            "{} is not a directory; give --dir the root of an unpacked filesystem",
            dir.display()
        );
    }
    let canon = std::fs::canonicalize(dir)?;
    if canon.starts_with(store.root()) || store.root().starts_with(&canon) {
        anyhow::bail!(
            "{} overlaps the store at {}; import a directory outside the store",
            dir.display(),
            store.root().display()
        );
    }
    let staging = Staging::new(store, progress)?;
    let tree = fs::scan_dir(&canon, &staging, fs::ScanOptions::default(), progress)?;
    let source = Source {
        label: format!("dir:{}", canon.display()),
        digest: None,
        created: None,
    };
    finish(staging, &tree, name, source, progress)
}
