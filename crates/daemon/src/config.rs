//! The daemon's settings: built-in defaults, a TOML file, and (for the
//! listen address) the command line.

use anyhow::{Context, Result};
use std::path::Path;
use std::time::Duration;

/// What runs the daemon's sessions: an OCI runtime on this host (runc by
/// default), or a Kubernetes cluster (`kubernetes`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Runtime {
    Host(session::Runtime),
    /// Each session a pod; the `[kubernetes]` table says how.
    Kubernetes,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime::Host(session::Runtime::default())
    }
}

impl std::str::FromStr for Runtime {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Runtime> {
        match s {
            "kubernetes" => Ok(Runtime::Kubernetes),
            other => other.parse().map(Runtime::Host).map_err(|_| {
                anyhow::anyhow!(
                    "unknown runtime {}; use runc, crun, youki, a path to an OCI runtime, or kubernetes",
                    store::quote_str(other)
                )
            }),
        }
    }
}

impl std::fmt::Display for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Runtime::Host(r) => r.fmt(f),
            Runtime::Kubernetes => f.write_str("kubernetes"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    /// Live sandboxes at once, over all groups.
    pub max_sessions: usize,
    /// An idle session is closed after this long.
    pub idle_keepalive: Duration,
    /// A busy session whose agent prints nothing for this long is stopped
    /// (the deadline runs from the delivery and from each output).
    pub deadline: Duration,
    /// While other groups wait for a slot, a session whose group still has
    /// messages keeps its slot for at least this long, so a sandbox's
    /// start is spread over several quick messages.
    pub turn: Duration,
    pub max_tries: i64,
    /// Commit a group's bot when its session closes.
    pub commit_on_close: bool,
    pub max_message_size: u64,
    /// Bytes of an answer kept; the rest is cut and the message marked
    /// `truncated`.
    pub output_cap: u64,
    /// SIGTERM: how long running messages may take to finish.
    pub grace: Duration,
    /// What runs sessions' sandboxes.
    pub runtime: Runtime,
    /// What each session's sandbox may use (default: a share of the machine).
    pub limits: session::Limits,
    /// Only the limits the config file set: what a pod on a cluster gets,
    /// where this machine's share means nothing.
    pub configured_limits: session::Limits,
    /// A request's headers must arrive within this long (and the next
    /// request on a kept-alive connection too), or the connection closes.
    pub header_timeout: Duration,
    /// Every this long, the bots of live sessions (on this host) share
    /// their drift with the store without a commit (`bot commit --live`);
    /// `None`: never (the default).
    pub live_commit_every: Option<Duration>,
    /// API connections served at once.
    pub max_connections: usize,
    /// Environment variables of the daemon that groups may hand to their
    /// agents as secrets; no other is ever read for a group.
    pub secrets: Vec<String>,
    /// The `[kubernetes]` table as written: the Kubernetes backend reads
    /// and checks it (the daemon does not know the backends' settings).
    pub kubernetes: toml::Table,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_sessions: 5,
            idle_keepalive: Duration::from_secs(30 * 60),
            deadline: Duration::from_secs(30 * 60),
            turn: Duration::from_secs(2),
            max_tries: 5,
            commit_on_close: true,
            max_message_size: 1_000_000,
            output_cap: session::DEFAULT_OUTPUT_CAP,
            grace: Duration::from_secs(30),
            runtime: Runtime::default(),
            limits: session::Limits::host_default(),
            configured_limits: session::Limits {
                memory: None,
                cpus: None,
                pids: None,
            },
            secrets: Vec::new(),
            header_timeout: Duration::from_secs(10),
            live_commit_every: None,
            max_connections: 1024,
            kubernetes: toml::Table::new(),
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    max_sessions: Option<usize>,
    idle_keepalive: Option<String>,
    deadline: Option<String>,
    turn: Option<String>,
    max_tries: Option<i64>,
    commit_on_close: Option<bool>,
    max_message_size: Option<u64>,
    output_cap: Option<u64>,
    grace: Option<String>,
    runtime: Option<String>,
    memory: Option<String>,
    cpus: Option<toml::Value>,
    pids: Option<toml::Value>,
    secrets: Option<Vec<String>>,
    header_timeout: Option<String>,
    live_commit_every: Option<String>,
    max_connections: Option<usize>,
    kubernetes: Option<toml::Table>,
}

impl Config {
    pub fn load(file: Option<&Path>) -> Result<Config> {
        let mut c = Config::default();
        let Some(file) = file else { return Ok(c) };
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the config {}", file.display()))?;
        let raw: Raw = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("config {}: {}", file.display(), e.message()))?;
        let dur = |s: Option<String>, d: Duration, name: &str| -> Result<Duration> {
            match s {
                Some(s) => humantime::parse_duration(&s).with_context(|| {
                    format!(
                        "config {}: {name} = \"{s}\" is not a duration",
                        file.display()
                    )
                }),
                None => Ok(d),
            }
        };
        c.max_sessions = raw.max_sessions.unwrap_or(c.max_sessions).max(1);
        c.idle_keepalive = dur(raw.idle_keepalive, c.idle_keepalive, "idle_keepalive")?;
        c.deadline = dur(raw.deadline, c.deadline, "deadline")?;
        c.turn = dur(raw.turn, c.turn, "turn")?;
        c.max_tries = raw.max_tries.unwrap_or(c.max_tries).max(1);
        c.commit_on_close = raw.commit_on_close.unwrap_or(c.commit_on_close);
        c.max_message_size = raw.max_message_size.unwrap_or(c.max_message_size);
        c.output_cap = raw.output_cap.unwrap_or(c.output_cap);
        c.grace = dur(raw.grace, c.grace, "grace")?;
        c.header_timeout = dur(raw.header_timeout, c.header_timeout, "header_timeout")?;
        if raw.live_commit_every.is_some() {
            c.live_commit_every = Some(dur(
                raw.live_commit_every,
                Duration::ZERO,
                "live_commit_every",
            )?)
            .filter(|d| !d.is_zero());
        }
        c.max_connections = raw.max_connections.unwrap_or(c.max_connections).max(1);
        let bad = |key: &str, e: anyhow::Error| {
            anyhow::anyhow!("config {}: {key}: {e:#}", file.display())
        };
        if let Some(r) = raw.runtime {
            c.runtime = r.parse().map_err(|e| bad("runtime", e))?;
        }
        if let Some(m) = raw.memory {
            c.limits.memory =
                session::parse_memory(&m, workspace::parse_size).map_err(|e| bad("memory", e))?;
            c.configured_limits.memory = c.limits.memory;
        }
        let text = |v: toml::Value| match v {
            toml::Value::String(s) => s,
            other => other.to_string(),
        };
        if let Some(v) = raw.cpus {
            c.limits.cpus = session::parse_cpus(&text(v)).map_err(|e| bad("cpus", e))?;
            c.configured_limits.cpus = c.limits.cpus;
        }
        if let Some(v) = raw.pids {
            c.limits.pids = session::parse_pids(&text(v)).map_err(|e| bad("pids", e))?;
            c.configured_limits.pids = c.limits.pids;
        }
        if let Some(s) = raw.secrets {
            for n in &s {
                if !session::valid_env_name(n) {
                    anyhow::bail!(
                        "config {}: secrets: {} is not an environment variable name",
                        file.display(),
                        store::quote_str(n)
                    );
                }
            }
            c.secrets = s;
        }
        if let Some(k) = raw.kubernetes {
            c.kubernetes = k;
        }
        Ok(c)
    }
}
