//! Sessions: an agent's command in a sandbox whose root is a bot, started
//! through a [`Backend`] (the first: an OCI runtime, runc by default, in
//! its own pid, mount, ipc, uts and network namespaces, non-root, with
//! limits); the supervisor that runs as the sandbox's first process; the
//! IPC protocol between them and the host ([`ipc`]); and the mount
//! allowlist and secret handling around them. Secrets travel only on the
//! supervisor's stdin: never in a file, an argument or the bundle.

mod allowlist;
mod backend;
mod bundle;
mod copy_self;
mod gc;
pub mod ipc;
mod limits;
mod oci;
mod run;
mod runtime;
mod supervise;
mod supervise_cli;
mod supervisor_image;

pub use allowlist::{
    default_path as default_allowlist_path, AllowedRoot, Allowlist, MountSpec, DEFAULT_BLOCKED,
    MOUNT_BASE,
};
pub use backend::{
    backend, secrets_from_env, Backend, Group, RunIo, RunOptions, RunOutcome, Sandbox, Signal,
    DEFAULT_GID, DEFAULT_IDLE, DEFAULT_OUTPUT_CAP, DEFAULT_TIMEOUT, DEFAULT_UID,
};
pub use bundle::{config, BindMount, Network, SandboxSpec};
pub use copy_self::{copy_self, supervisor_dir};
pub use gc::{gc_supervisors, SupervisorGc};
pub use limits::{parse_cpus, parse_memory, parse_pids, Limits, DEFAULT_PIDS};
pub use oci::{reap, reap_all, valid_env_name, Oci};
pub use run::{run, run_with, IPC_AT, SUPERVISOR_AT, WORKSPACE_AT};
pub use runtime::Runtime;
pub use supervise::{supervise, SuperviseOptions};
pub use supervise_cli::{run_supervise, SuperviseAction, SuperviseArgs};
pub use supervisor_image::{write_supervisor_image, SupervisorImage};
