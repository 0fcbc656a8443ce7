//! What the Kubernetes backend is told: the `[kubernetes]` table of the
//! daemon's config, with each user-visible choice a small enum that the
//! command line, the environment and the Helm chart spell the same way.

use anyhow::{bail, Context, Result};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// How a group's session runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// A `batch/v1` Job per session: Kubernetes enforces the deadline
    /// (`activeDeadlineSeconds`) and removes it after it finished.
    #[default]
    Job,
    /// One plain pod per active group, kept while the group is busy or
    /// idle within the keep-alive, deleted after.
    Warm,
}

impl Mode {
    pub const ALL: [Mode; 2] = [Mode::Job, Mode::Warm];
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Job => "job",
            Mode::Warm => "warm",
        })
    }
}

impl FromStr for Mode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Mode> {
        match s {
            "job" => Ok(Mode::Job),
            "warm" => Ok(Mode::Warm),
            other => bail!(
                "unknown session mode {}; use job (a Job per session) or warm (a pod per active group)",
                store::quote_str(other)
            ),
        }
    }
}

/// How the supervisor reaches a session's pod without rebuilding the
/// agent's image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sideload {
    /// The pod mounts the supervisor's OCI image read-only (an `image`
    /// volume, Kubernetes 1.31 and later with the ImageVolume feature).
    #[default]
    ImageVolume,
    /// An init container copies the supervisor into an emptyDir
    /// (`botyard supervise copy-self`): works on any Kubernetes.
    InitContainer,
}

impl Sideload {
    pub const ALL: [Sideload; 2] = [Sideload::ImageVolume, Sideload::InitContainer];
}

impl fmt::Display for Sideload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Sideload::ImageVolume => "image-volume",
            Sideload::InitContainer => "init-container",
        })
    }
}

impl FromStr for Sideload {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Sideload> {
        match s {
            "image-volume" => Ok(Sideload::ImageVolume),
            "init-container" => Ok(Sideload::InitContainer),
            other => bail!(
                "unknown supervisor sideload {}; use image-volume (mount the supervisor's image) or init-container (copy it into an emptyDir)",
                store::quote_str(other)
            ),
        }
    }
}

/// The supervisor image this build of botyard goes with.
pub fn default_supervisor_image() -> String {
    format!("botyard/supervisor:{}", env!("CARGO_PKG_VERSION"))
}

/// The Kubernetes backend's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Where sessions' pods and the bots' claims live.
    pub namespace: String,
    pub mode: Mode,
    pub sideload: Sideload,
    /// The supervisor's image: a static `botyard` at `/botyard`, nothing else.
    pub supervisor_image: String,
    /// A ReadWriteMany claim for IPC and workspaces; `None`: an emptyDir
    /// per pod holds IPC (lost with the pod) and groups get no workspace.
    pub shared_claim: Option<String>,
    /// Where the daemon has `shared_claim` mounted: it writes messages
    /// into `groups/GROUP/ipc` there and makes users' workspaces.
    pub shared_mount: PathBuf,
    /// The StorageClass of the bots' claims (botyard's CSI driver).
    pub storage_class: String,
    /// What a bot's claim requests (a bot takes what its files take; the
    /// request is what Kubernetes insists on).
    pub bot_volume_size: String,
    /// The agent container's image, when not the bot's own image.
    pub image: Option<String>,
    /// A Job is removed this long after it finished.
    pub ttl_after_finished: Duration,
    /// A pod still Pending after this long fails the attempt, with the
    /// reason Kubernetes gives.
    pub pending_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            namespace: "botyard".into(),
            mode: Mode::default(),
            sideload: Sideload::default(),
            supervisor_image: default_supervisor_image(),
            shared_claim: None,
            shared_mount: PathBuf::from("/var/lib/botyard-shared"),
            storage_class: "botyard".into(),
            bot_volume_size: "1Gi".into(),
            image: None,
            ttl_after_finished: Duration::from_secs(600),
            pending_timeout: Duration::from_secs(300),
        }
    }
}

/// The `[kubernetes]` table as written.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    pub namespace: Option<String>,
    pub mode: Option<String>,
    pub sideload: Option<String>,
    pub supervisor_image: Option<String>,
    pub shared_claim: Option<String>,
    pub shared_mount: Option<PathBuf>,
    pub storage_class: Option<String>,
    pub bot_volume_size: Option<String>,
    pub image: Option<String>,
    pub ttl_after_finished: Option<String>,
    pub pending_timeout: Option<String>,
}

impl Settings {
    /// The settings the daemon config's `[kubernetes]` table gives.
    pub fn from_table(t: &toml::Table) -> Result<Settings> {
        let raw: RawSettings = toml::Value::Table(t.clone())
            .try_into()
            .map_err(|e: toml::de::Error| anyhow::anyhow!("[kubernetes]: {}", e.message()))?;
        Settings::from_raw(raw)
    }

    /// The settings a `[kubernetes]` table gives, each value checked.
    pub fn from_raw(raw: RawSettings) -> Result<Settings> {
        let mut s = Settings::default();
        let dur = |v: Option<String>, d: Duration, key: &str| -> Result<Duration> {
            match v {
                None => Ok(d),
                Some(v) => humantime::parse_duration(&v)
                    .with_context(|| format!("kubernetes.{key} = \"{v}\" is not a duration")),
            }
        };
        if let Some(ns) = raw.namespace {
            crate::names::check_dns_label("kubernetes.namespace", &ns)?;
            s.namespace = ns;
        }
        if let Some(m) = raw.mode {
            s.mode = m.parse().context("kubernetes.mode")?;
        }
        if let Some(m) = raw.sideload {
            s.sideload = m.parse().context("kubernetes.sideload")?;
        }
        if let Some(i) = raw.supervisor_image {
            check_image("kubernetes.supervisor_image", &i)?;
            s.supervisor_image = i;
        }
        if let Some(c) = raw.shared_claim {
            crate::names::check_dns_subdomain("kubernetes.shared_claim", &c)?;
            s.shared_claim = Some(c);
        }
        if let Some(m) = raw.shared_mount {
            if !m.is_absolute() {
                bail!(
                    "kubernetes.shared_mount {} must be an absolute path",
                    store::quote_path(&m)
                );
            }
            s.shared_mount = m;
        }
        if let Some(c) = raw.storage_class {
            crate::names::check_dns_subdomain("kubernetes.storage_class", &c)?;
            s.storage_class = c;
        }
        if let Some(q) = raw.bot_volume_size {
            check_quantity("kubernetes.bot_volume_size", &q)?;
            s.bot_volume_size = q;
        }
        if let Some(i) = raw.image {
            check_image("kubernetes.image", &i)?;
            s.image = Some(i);
        }
        s.ttl_after_finished = dur(
            raw.ttl_after_finished,
            s.ttl_after_finished,
            "ttl_after_finished",
        )?;
        s.pending_timeout = dur(raw.pending_timeout, s.pending_timeout, "pending_timeout")?;
        Ok(s)
    }
}

/// An image reference Kubernetes would take: no whitespace or control
/// characters, not empty.
pub fn check_image(what: &str, r: &str) -> Result<()> {
    if r.is_empty() || r.len() > 4096 || r.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!(
            "{what} {} is not an image reference; write it like registry.example/agent:1",
            store::quote_str(r)
        );
    }
    Ok(())
}

/// A Kubernetes quantity of bytes such as 1Gi or 500M.
pub fn check_quantity(what: &str, q: &str) -> Result<()> {
    let digits = q.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &q[digits.len()..];
    let ok = !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
        && [
            "", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
        ]
        .contains(&suffix);
    if !ok {
        bail!(
            "{what} {} is not a size Kubernetes takes; write it like 1Gi or 500M",
            store::quote_str(q)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_choice_reads_back_what_it_prints() {
        for m in Mode::ALL {
            assert_eq!(m.to_string().parse::<Mode>().unwrap(), m);
        }
        for s in Sideload::ALL {
            assert_eq!(s.to_string().parse::<Sideload>().unwrap(), s);
        }
        assert_eq!(Sideload::default().to_string(), "image-volume");
        let e = "sidecar".parse::<Sideload>().unwrap_err().to_string();
        assert!(
            e.contains("image-volume") && e.contains("init-container"),
            "{e}"
        );
    }

    #[test]
    fn a_table_is_checked_value_by_value() {
        let raw: RawSettings = serde_json::from_value(serde_json::json!({
            "mode": "warm", "sideload": "init-container", "shared_claim": "botyard-shared",
            "pending_timeout": "90s"
        }))
        .unwrap();
        let s = Settings::from_raw(raw).unwrap();
        assert_eq!(s.mode, Mode::Warm);
        assert_eq!(s.sideload, Sideload::InitContainer);
        assert_eq!(s.pending_timeout, Duration::from_secs(90));
        for (k, v) in [
            ("namespace", "Bad_NS"),
            ("shared_claim", "a/b"),
            ("bot_volume_size", "lots"),
            ("image", "a b"),
            ("pending_timeout", "soon"),
        ] {
            let raw: RawSettings = serde_json::from_value(serde_json::json!({ k: v })).unwrap();
            let e = format!("{:#}", Settings::from_raw(raw).unwrap_err());
            assert!(e.contains(k), "{k}: {e}");
        }
    }
}
