//! botyard's image import: every source becomes one immutable tree in the
//! store under a `NAME:TAG` ref.
//!
//! Sources: a directory ([`import_dir`]), a rootfs tarball, plain, gzip or
//! zstd ([`import_tar`]), an OCI image layout ([`import_oci`]), a `docker
//! save` archive ([`import_docker_archive`]) and an OCI registry
//! ([`pull`]). Layers apply in order with OCI whiteouts honoured. Archives
//! are hostile input: absolute paths, `..`, links escaping the root, unknown
//! entry types and blobs that do not match their digests are refused before
//! any ref changes; nothing is ever extracted to the host filesystem.
//! This crate knows nothing of bots.

mod compression;
mod credentials;
mod docker_archive;
mod import;
mod import_dir;
mod import_oci;
mod import_tar;
mod layer;
mod pull;

pub use compression::{detect, Compression};
pub use credentials::{credentials_for, credentials_from_file, Credentials};
pub use docker_archive::import_docker_archive;
pub use import::{ImportOutcome, Source};
pub use import_dir::import_dir;
pub use import_oci::{import_oci, split_oci_arg};
pub use import_tar::import_tar;
pub use layer::{apply_tar, apply_tar_stream, Budget, LayerOptions};
pub use pull::{default_name_for, pull, registry_of, PullOptions};
