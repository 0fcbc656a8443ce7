//! The seam between sessions and what runs their sandboxes: one
//! [`Backend`] interface (prepare, start, deliver, close, kill, wait, reap
//! leftovers), the options every caller builds from the same defaults,
//! and how a run ended. [`crate::Oci`] (runc and its kin) is the first
//! backend; callers hold a `dyn Backend` and never know which one.

use crate::allowlist::MountSpec;
use crate::bundle::Network;
use crate::limits::Limits;
use crate::runtime::Runtime;
use anyhow::Result;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use store::Store;

/// The user and group an agent runs as unless told otherwise.
pub const DEFAULT_UID: u32 = 1000;
pub const DEFAULT_GID: u32 = 1000;
/// How long a one-off run may take unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How long a kept-alive supervisor waits for a message before it exits.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(30 * 60);
/// Bytes of output kept: of a run, or of each message's answer.
pub const DEFAULT_OUTPUT_CAP: u64 = 10_000_000;

/// A group as the daemon keeps it: a bot, the agent command, and how its
/// sessions run. Backends read it to check a group and to name what they
/// make for it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Group {
    pub name: String,
    pub bot: String,
    /// The agent's argv.
    pub agent: Vec<String>,
    #[serde(default)]
    pub main: bool,
    #[serde(default)]
    pub mounts: Vec<String>,
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default)]
    pub workspace: Option<String>,
    /// On Kubernetes: whose workspace it is (`users/USER/WORKSPACE` on the
    /// shared volume). One host ignores it.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub created: String,
}

/// What a session runs, on which bot, with what it may see and use.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub bot: String,
    /// A mounted workspace's merged view.
    pub workspace: Option<PathBuf>,
    pub mounts: Vec<MountSpec>,
    pub allowlist: PathBuf,
    pub main: bool,
    /// Names of environment variables of this process to hand over.
    pub secrets: Vec<String>,
    /// `None`: no limit on the run as a whole (a kept-alive session, whose
    /// messages each have a deadline kept by the caller).
    pub timeout: Option<Duration>,
    pub network: Network,
    pub limits: Limits,
    pub uid: u32,
    pub gid: u32,
    /// Bytes of output kept: of the whole run, or in IPC mode of each
    /// message's answer (the supervisor cuts it and says so).
    pub output_cap: u64,
    /// A host directory for the supervisor's IPC mode.
    pub ipc: Option<PathBuf>,
    pub idle: Duration,
    pub args: Vec<String>,
    /// The daemon's group this session serves (`None` for `botyard run`):
    /// a backend that makes objects for it names them after the group.
    pub group: Option<Group>,
}

impl RunOptions {
    /// The defaults `botyard run` and the daemon share: the default
    /// allowlist, no network, a share of the machine, user 1000:1000,
    /// 30 minutes, 10 MB of output.
    pub fn new(bot: &str, args: Vec<String>) -> RunOptions {
        RunOptions {
            bot: bot.to_string(),
            workspace: None,
            mounts: Vec::new(),
            allowlist: crate::allowlist::default_path(),
            main: false,
            secrets: Vec::new(),
            timeout: Some(DEFAULT_TIMEOUT),
            network: Network::None,
            limits: Limits::host_default(),
            uid: DEFAULT_UID,
            gid: DEFAULT_GID,
            output_cap: DEFAULT_OUTPUT_CAP,
            ipc: None,
            idle: DEFAULT_IDLE,
            args,
            group: None,
        }
    }

    /// A session kept alive across messages delivered through `ipc`: no
    /// timeout on the whole (each message's deadline is the caller's), and
    /// the supervisor outlives the caller's own idle keep-alive by a
    /// minute, so the caller is the one who closes it.
    pub fn kept_alive(bot: &str, args: Vec<String>, ipc: PathBuf, idle: Duration) -> RunOptions {
        RunOptions {
            timeout: None,
            ipc: Some(ipc),
            idle: idle + Duration::from_secs(60),
            ..RunOptions::new(bot, args)
        }
    }
}

/// How a run ended.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RunOutcome {
    /// The command's exit code (128 + n for signal n).
    pub exit_code: i32,
    pub timed_out: bool,
    pub output_capped: bool,
    pub interrupted: bool,
    pub container_id: String,
    /// The runtime ended on its own, so it removed the container itself.
    pub runtime_cleaned_up: bool,
}

/// Where a run's input comes from and where its output goes.
pub struct RunIo {
    /// The command's stdin (after the secrets); `None`: botyard's own
    /// stdin when it is not a terminal.
    pub stdin: Option<Vec<u8>>,
    pub stdout: Box<dyn Write + Send>,
    pub stderr: Box<dyn Write + Send>,
}

impl RunIo {
    /// This process's stdin, stdout and stderr.
    pub fn inherit() -> RunIo {
        RunIo {
            stdin: None,
            stdout: Box::new(std::io::stdout()),
            stderr: Box::new(std::io::stderr()),
        }
    }
}

/// A signal for a sandbox's processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Term,
    Kill,
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Signal::Term => "TERM",
            Signal::Kill => "KILL",
        })
    }
}

/// Something that runs sessions' sandboxes.
pub trait Backend: Send + Sync {
    /// Its name, for messages.
    fn name(&self) -> String;

    /// What a person running the daemon should know of how it runs
    /// sessions (`botyard status` prints it).
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }

    /// Whether sandboxes run on this host and see this store: its bots,
    /// workspaces and IPC directories. The daemon then resolves a group's
    /// workspace and commits its bot itself; elsewhere (a cluster) the
    /// backend's own machinery does both.
    fn runs_on_host(&self) -> bool {
        true
    }

    /// Checks group `g` before the daemon keeps it, and makes what must
    /// outlive its sessions (on a cluster, the bot's claim). `others` are
    /// the groups kept already. The error is the API caller's to read.
    fn admit_group(&self, store: &Store, g: &Group, others: &[Group]) -> Result<()> {
        let _ = (store, g, others);
        Ok(())
    }

    /// Checks what a session needs that can be checked at once (the bot,
    /// the secrets, the runtime) and opens its message channel; nothing
    /// runs and nothing is mounted yet, so this is quick.
    fn prepare(&self, store: &Store, opts: &RunOptions) -> Result<Arc<dyn Sandbox>>;

    /// Finds what a dead session of bot `bot` left (its botyard was
    /// killed) and removes it: true if there was something.
    fn reap(&self, store: &Store, bot: &str) -> Result<bool>;

    /// [`Backend::reap`] for every bot; how many were cleaned up.
    fn reap_all(&self, store: &Store) -> Result<u64>;
}

/// One session's sandbox. `deliver` and `close` may be called from any
/// thread, before `start` too (messages wait for the supervisor), while
/// another thread is in `wait`.
pub trait Sandbox: Send + Sync {
    /// Mounts and stages what the sandbox sees and starts it, its output
    /// going where `io` says; returns once it runs. On error, nothing it
    /// made is left behind.
    fn start(&self, io: RunIo) -> Result<()>;

    /// Hands message `id` to the supervisor (IPC mode).
    fn deliver(&self, id: &str, body: &[u8]) -> Result<()>;

    /// Asks the supervisor to exit once idle (IPC mode).
    fn close(&self) -> Result<()>;

    /// Signals every process of the sandbox.
    fn kill(&self, signal: Signal);

    /// Waits for the sandbox to end, stopping it (TERM, then KILL) when
    /// `stop` is set or on timeout or output cap, then removes what
    /// `start` made.
    fn wait(&self, stop: &AtomicBool) -> Result<RunOutcome>;
}

/// The backend for a runtime choice.
pub fn backend(runtime: &Runtime) -> Arc<dyn Backend> {
    Arc::new(crate::oci::Oci::new(runtime.clone()))
}

/// The values of secrets `names` from this process's environment, for a
/// sandbox's supervisor to read on its stdin. They go there and nowhere
/// else: never through a file or an argument; until then only in memory.
pub fn secrets_from_env(names: &[String]) -> Result<serde_json::Map<String, serde_json::Value>> {
    let mut secrets = serde_json::Map::new();
    for name in names {
        if !crate::oci::valid_env_name(name) {
            anyhow::bail!(
                "secret name {} is not a valid environment variable name",
                store::quote_str(name)
            );
        }
        let Some(v) = std::env::var_os(name) else {
            anyhow::bail!("secret {name} is not set in botyard's environment; export it first");
        };
        secrets.insert(name.clone(), v.to_string_lossy().into_owned().into());
    }
    Ok(secrets)
}
