//! Sessions on one host: an agent's command in a sandbox whose root is a
//! bot, started by an OCI runtime (runc by default) in its own pid, mount,
//! ipc, uts and network namespaces, non-root, with limits; the supervisor
//! that runs as the sandbox's first process; and the mount allowlist and
//! secret handling around them. Secrets travel only on the supervisor's
//! stdin: never in a file, an argument or the bundle.

mod allowlist;
mod bundle;
mod copy_self;
mod gc;
mod limits;
mod reap;
mod run;
mod runtime;
mod supervise;

pub use allowlist::{
    default_path as default_allowlist_path, AllowedRoot, Allowlist, MountSpec, DEFAULT_BLOCKED,
    MOUNT_BASE,
};
pub use bundle::{config, BindMount, Network, SandboxSpec};
pub use copy_self::{copy_self, supervisor_dir};
pub use gc::{gc_supervisors, SupervisorGc};
pub use limits::{parse_cpus, parse_memory, parse_pids, Limits, DEFAULT_PIDS};
pub use reap::{reap, reap_all};
pub use run::{
    run, run_with, valid_env_name, RunIo, RunOptions, RunOutcome, IPC_AT, SUPERVISOR_AT,
    WORKSPACE_AT,
};
pub use runtime::Runtime;
pub use supervise::{supervise, SuperviseOptions, END_MARKER, START_MARKER};
