//! botyard on Kubernetes: what a group's session runs as on a cluster.
//!
//! * [`settings`]: the `[kubernetes]` table of the daemon's config, with
//!   [`Mode`] (a Job per session, or a warm pod per group) and
//!   [`Sideload`] (how the supervisor reaches the pod), each one enum for
//!   flag, environment variable, config key and Helm value;
//! * [`names`]: object names and label values derived from group names
//!   (DNS labels that never collide) and the group's directories on the
//!   shared volume (refused, never rewritten, when unsafe);
//! * [`objects`]: the bot's claim and the session's Job or pod, typed
//!   `k8s-openapi` values built by pure functions, with no secret in them.
//!
//! This crate talks to no cluster; it builds what is sent to one.

mod backend;
pub mod group;
pub mod names;
pub mod objects;
pub mod settings;

pub use backend::{backend, KubeBackend};
pub use group::group_spec;
pub use objects::{
    bot_claim, manifests, pod_spec, session_job, session_object, to_yaml, warm_pod, GroupSpec,
    SessionObject, SessionSpec,
};
pub use settings::{Mode, RawSettings, Settings, Sideload};
