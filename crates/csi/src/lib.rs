//! botyard as a CSI driver: a Kubernetes volume is a bot on the node's
//! store. CreateVolume makes the bot (idempotent by name), NodePublishVolume
//! mounts its writable root at the pod's target path, NodeUnpublishVolume
//! unmounts it and commits it, so a bot's drift is folded into the store
//! whenever its pod stops; ephemeral inline volumes are bots for a pod's
//! lifetime. The privileged work is the plugin's, on the node; the pod sees
//! only a volume.
//!
//! The protocol is the CSI spec's `proto/csi.proto` (v1.12.0, kept in the
//! repository), compiled at build time with a pure-Rust protobuf compiler.

mod driver;
mod serve;
mod volumes;

/// The CSI v1 messages and services, generated from `proto/csi.proto`.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    tonic::include_proto!("csi.v1");
}

pub use driver::{Driver, DEFAULT_AUTH_DIR, DRIVER_NAME, TOPOLOGY_KEY};
pub use serve::{parse_endpoint, serve};
pub use volumes::{volume_id, CsiError, VolumeRecord};
