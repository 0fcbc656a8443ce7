use crate::import::{finish, ImportOutcome, Source};
use crate::layer::{apply_tar_stream, Budget, LayerOptions};
use anyhow::{Context, Result};
use fs::MemTree;
use std::io::{BufReader, Read};
use std::path::Path;
use store::{ImageName, Progress, Staging, Store, Unit};

/// Counts bytes read, for progress bars over compressed input.
pub(crate) struct Counting<'a, R> {
    pub inner: R,
    pub progress: &'a dyn Progress,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

/// Imports a root filesystem tarball (plain, gzip or zstd, told by content).
pub fn import_tar(
    store: &Store,
    name: &ImageName,
    path: &Path,
    max_size: Option<u64>,
    progress: &dyn Progress,
) -> Result<ImportOutcome> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open the tarball {}", path.display()))?;
    let size = file.metadata()?.len();
    let label = format!("tarball {}", path.display());
    let staging = Staging::new(store, progress)?;
    progress.phase("importing", Some(size), Unit::Bytes);
    let counted = BufReader::with_capacity(
        256 * 1024,
        Counting {
            inner: file,
            progress,
        },
    );
    let reader =
        crate::compression::decompress(counted).with_context(|| format!("cannot read {label}"))?;
    let mut tree = MemTree::default();
    let budget = Budget::new(store, max_size);
    apply_tar_stream(
        &mut tree,
        reader,
        &staging,
        LayerOptions::default(),
        &budget,
        &label,
    )?;
    let canon = std::fs::canonicalize(path)?;
    let source = Source {
        label: format!("tar:{}", canon.display()),
        digest: None,
        created: None,
    };
    finish(staging, &tree, name, source, progress)
}
