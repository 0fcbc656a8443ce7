//! The OCI runtime bundle of a session: `config.json` for runc (or crun,
//! youki), whose root is the bot's merged view. It never holds a secret:
//! those travel on the supervisor's stdin.

use serde_json::{json, Value};
use std::path::PathBuf;

/// Network access of a sandbox.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Network {
    /// Its own network namespace with only a loopback device.
    #[default]
    None,
    /// The host's network.
    Host,
}

impl std::str::FromStr for Network {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "none" => Ok(Network::None),
            "host" => Ok(Network::Host),
            other => anyhow::bail!("unknown network '{other}'; use none or host"),
        }
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Network::None => "none",
            Network::Host => "host",
        })
    }
}

#[derive(Clone, Debug)]
pub struct BindMount {
    pub source: PathBuf,
    /// Absolute path inside the sandbox.
    pub dest: String,
    pub read_only: bool,
}

#[derive(Clone, Debug)]
pub struct SandboxSpec {
    pub root: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub hostname: String,
    pub network: Network,
    pub memory: Option<u64>,
    /// CPUs (fractions allowed).
    pub cpus: Option<f64>,
    pub pids: Option<i64>,
    pub mounts: Vec<BindMount>,
}

/// What root gets inside a sandbox (Docker's default set); anyone else
/// gets nothing.
const ROOT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_MKNOD",
    "CAP_AUDIT_WRITE",
    "CAP_SETFCAP",
];

pub fn config(s: &SandboxSpec) -> Value {
    let caps: Vec<&str> = if s.uid == 0 {
        ROOT_CAPS.to_vec()
    } else {
        vec![]
    };
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "nodev", "mode=755", "size=65536k"]}),
    ];
    if s.network == Network::None {
        mounts.push(
            json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
                           "options": ["nosuid", "noexec", "nodev", "ro"]}),
        );
    } else {
        mounts.push(
            json!({"destination": "/sys", "type": "bind", "source": "/sys",
                           "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}),
        );
        mounts.push(
            json!({"destination": "/etc/resolv.conf", "type": "bind", "source": "/etc/resolv.conf",
                           "options": ["bind", "ro"]}),
        );
    }
    for m in &s.mounts {
        let mut opts = vec!["rbind", "nosuid", "nodev"];
        if m.read_only {
            opts.push("ro");
        }
        mounts.push(json!({"destination": m.dest, "type": "bind",
                           "source": m.source, "options": opts}));
    }
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    if s.network == Network::None {
        namespaces.push(json!({"type": "network"}));
    }
    let mut resources = json!({"devices": [{"allow": false, "access": "rwm"}]});
    if let Some(m) = s.memory {
        resources["memory"] = json!({"limit": m, "swap": m});
    }
    if let Some(c) = s.cpus {
        let period = 100_000u64;
        resources["cpu"] = json!({"quota": (c * period as f64) as i64, "period": period});
    }
    if let Some(p) = s.pids {
        resources["pids"] = json!({"limit": p});
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": s.uid, "gid": s.gid},
            "args": s.args,
            "env": s.env,
            "cwd": s.cwd,
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps, "ambient": []
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 4096}],
            "noNewPrivileges": true
        },
        "root": {"path": s.root, "readonly": false},
        "hostname": s.hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "resources": resources,
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}
