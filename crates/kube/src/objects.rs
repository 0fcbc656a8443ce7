//! The objects a group's session runs as, built by pure functions from the
//! settings and the group: the bot's claim (the only object besides
//! sessions the daemon creates) and, per session, a Job or a warm pod.
//!
//! Every pod runs with `hostUsers: false`, as root in its user namespace
//! with every capability dropped, no privilege escalation, the runtime's
//! seccomp profile and no service account token. The bot's root comes from
//! its claim by subPath at `/usr /etc /var /home /root /opt` (seed 000's
//! layout); the supervisor is side-loaded; secrets come over stdin, so
//! none is in any object built here.

use crate::names;
use crate::settings::{Mode, Settings, Sideload};
use anyhow::Result;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, ImageVolumeSource,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, Pod,
    PodSecurityContext, PodSpec, PodTemplateSpec, ResourceRequirements, SeccompProfile,
    SecurityContext, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;
use std::time::Duration;

/// The directories of a bot's root a session's pod mounts from its claim.
pub const ROOT_DIRS: [&str; 6] = ["usr", "etc", "var", "home", "root", "opt"];

pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_GROUP: &str = "botyard.dev/group";
pub const LABEL_SESSION: &str = "botyard.dev/session";
/// The exact group name (a label value cannot hold every name).
pub const ANNOTATION_GROUP: &str = "botyard.dev/group-name";

/// What the builders need to know of a group.
#[derive(Clone, Debug)]
pub struct GroupSpec {
    pub name: String,
    /// The main group's workspace is writable; others read it.
    pub main: bool,
    /// The agent's argv.
    pub agent: Vec<String>,
    /// The bot's image: the agent container's image unless the settings
    /// name one.
    pub image: String,
    /// `--user` and `--workspace`: `users/{user}/{workspace}` on the shared
    /// volume, at `/workspace`.
    pub user: Option<String>,
    pub workspace: Option<String>,
    pub limits: session::Limits,
}

/// What the builders need to know of one session.
#[derive(Clone, Debug)]
pub struct SessionSpec {
    pub id: u64,
    /// The longest the session may live (a Job's `activeDeadlineSeconds`).
    pub deadline: Duration,
    /// The supervisor exits after this long without a message.
    pub idle: Duration,
    pub output_cap: u64,
}

/// One session's object, by mode.
#[derive(Clone, Debug, PartialEq)]
pub enum SessionObject {
    Job(Box<Job>),
    Pod(Box<Pod>),
}

impl SessionObject {
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            SessionObject::Job(j) => serde_json::to_value(j),
            SessionObject::Pod(p) => serde_json::to_value(p),
        }
        .expect("Kubernetes objects serialize")
    }
}

fn labels(group: &str, session: Option<u64>) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([
        (LABEL_MANAGED_BY.to_string(), "botyard".to_string()),
        (LABEL_GROUP.to_string(), names::group_label(group)),
    ]);
    if let Some(s) = session {
        l.insert(LABEL_SESSION.to_string(), s.to_string());
    }
    l
}

fn meta(s: &Settings, name: String, g: &GroupSpec, session: Option<u64>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(s.namespace.clone()),
        labels: Some(labels(&g.name, session)),
        annotations: Some(BTreeMap::from([(
            ANNOTATION_GROUP.to_string(),
            g.name.clone(),
        )])),
        ..Default::default()
    }
}

/// The claim of a group's bot: a volume of botyard's StorageClass, which
/// the CSI driver makes a bot of on the node the pod lands on.
pub fn bot_claim(s: &Settings, g: &GroupSpec) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: meta(s, names::claim_name(&g.name), g, None),
        spec: Some(PersistentVolumeClaimSpec {
            storage_class_name: Some(s.storage_class.clone()),
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(s.bot_volume_size.clone()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn restricted() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        seccomp_profile: Some(runtime_default()),
        ..Default::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        localhost_profile: None,
    }
}

fn mount(name: &str, at: &str, sub_path: Option<String>, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: at.into(),
        sub_path,
        read_only: read_only.then_some(true),
        ..Default::default()
    }
}

fn resources(l: &session::Limits) -> Option<ResourceRequirements> {
    let mut m = BTreeMap::new();
    if let Some(b) = l.memory {
        m.insert("memory".to_string(), Quantity(b.to_string()));
    }
    if let Some(c) = l.cpus {
        m.insert(
            "cpu".to_string(),
            Quantity(format!("{}m", (c * 1000.0).ceil() as u64)),
        );
    }
    (!m.is_empty()).then(|| ResourceRequirements {
        limits: Some(m.clone()),
        requests: Some(m),
        ..Default::default()
    })
}

/// The supervisor's command line in the agent container. It always reads
/// its secrets (perhaps none) from stdin, so nothing runs before the
/// daemon has attached; without a shared volume its messages come on stdin
/// too.
fn command(s: &Settings, g: &GroupSpec, sess: &SessionSpec) -> Vec<String> {
    let mut c = vec![
        format!("{}/botyard", session::SUPERVISOR_AT),
        "supervise".into(),
        "--secrets-on-stdin".into(),
        "--ipc".into(),
        session::IPC_AT.into(),
    ];
    if s.shared_claim.is_none() {
        c.push("--ipc-stdin".into());
    }
    c.extend([
        "--idle".into(),
        format!("{}s", sess.idle.as_secs()),
        "--output-cap".into(),
        sess.output_cap.to_string(),
        "--".into(),
    ]);
    c.extend(g.agent.iter().cloned());
    c
}

/// The pod of one session of group `g`.
pub fn pod_spec(s: &Settings, g: &GroupSpec, sess: &SessionSpec) -> Result<PodSpec> {
    let ipc_path = names::ipc_path(&g.name)?;
    let workspace = match (&g.user, &g.workspace) {
        (Some(u), Some(w)) => Some(names::workspace_path(u, w)?),
        (None, None) => None,
        _ => anyhow::bail!(
            "group {} needs both --user and --workspace for a workspace on the shared volume",
            store::quote_str(&g.name)
        ),
    };
    if workspace.is_some() && s.shared_claim.is_none() {
        anyhow::bail!(
            "group {} has a workspace, which lives on the shared volume; set kubernetes.shared_claim",
            store::quote_str(&g.name)
        );
    }
    let mut volumes = vec![Volume {
        name: "bot".into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: names::claim_name(&g.name),
            read_only: None,
        }),
        ..Default::default()
    }];
    let mut mounts: Vec<VolumeMount> = ROOT_DIRS
        .iter()
        .map(|d| mount("bot", &format!("/{d}"), Some((*d).to_string()), false))
        .collect();
    match &s.shared_claim {
        Some(claim) => {
            volumes.push(Volume {
                name: "shared".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.clone(),
                    read_only: None,
                }),
                ..Default::default()
            });
            mounts.push(mount("shared", session::IPC_AT, Some(ipc_path), false));
            if let Some(w) = workspace {
                mounts.push(mount("shared", session::WORKSPACE_AT, Some(w), !g.main));
            }
        }
        None => {
            volumes.push(Volume {
                name: "ipc".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            });
            mounts.push(mount("ipc", session::IPC_AT, None, false));
        }
    }
    let mut init = Vec::new();
    match s.sideload {
        Sideload::ImageVolume => volumes.push(Volume {
            name: "supervisor".into(),
            image: Some(ImageVolumeSource {
                reference: Some(s.supervisor_image.clone()),
                pull_policy: Some("IfNotPresent".into()),
            }),
            ..Default::default()
        }),
        Sideload::InitContainer => {
            volumes.push(Volume {
                name: "supervisor".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            });
            init.push(Container {
                name: "supervisor".into(),
                image: Some(s.supervisor_image.clone()),
                image_pull_policy: Some("IfNotPresent".into()),
                command: Some(vec![
                    "/botyard".into(),
                    "supervise".into(),
                    "copy-self".into(),
                    session::SUPERVISOR_AT.into(),
                ]),
                volume_mounts: Some(vec![mount(
                    "supervisor",
                    session::SUPERVISOR_AT,
                    None,
                    false,
                )]),
                security_context: Some(restricted()),
                ..Default::default()
            });
        }
    }
    mounts.push(mount("supervisor", session::SUPERVISOR_AT, None, true));
    let home = "/root";
    let agent = Container {
        name: "agent".into(),
        image: Some(s.image.clone().unwrap_or_else(|| g.image.clone())),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(command(s, g, sess)),
        env: Some(vec![
            EnvVar {
                name: "PATH".into(),
                value: Some("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()),
                value_from: None,
            },
            EnvVar {
                name: "HOME".into(),
                value: Some(home.into()),
                value_from: None,
            },
        ]),
        // Secrets arrive here, once, through an attach; never in the spec.
        stdin: Some(true),
        stdin_once: Some(true),
        tty: Some(false),
        volume_mounts: Some(mounts),
        security_context: Some(restricted()),
        resources: resources(&g.limits),
        ..Default::default()
    };
    Ok(PodSpec {
        host_users: Some(false),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        restart_policy: Some("Never".into()),
        security_context: Some(PodSecurityContext {
            seccomp_profile: Some(runtime_default()),
            ..Default::default()
        }),
        init_containers: (!init.is_empty()).then_some(init),
        containers: vec![agent],
        volumes: Some(volumes),
        ..Default::default()
    })
}

/// A session as a Job: Kubernetes ends it at the deadline and removes it
/// after `ttl_after_finished`; it never retries (the daemon does).
pub fn session_job(s: &Settings, g: &GroupSpec, sess: &SessionSpec) -> Result<Job> {
    let m = meta(s, names::session_name(&g.name, sess.id), g, Some(sess.id));
    Ok(Job {
        metadata: m.clone(),
        spec: Some(JobSpec {
            active_deadline_seconds: Some(sess.deadline.as_secs().max(1) as i64),
            ttl_seconds_after_finished: Some(s.ttl_after_finished.as_secs() as i32),
            backoff_limit: Some(0),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: m.labels,
                    annotations: m.annotations,
                    ..Default::default()
                }),
                spec: Some(pod_spec(s, g, sess)?),
            },
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// A session as a warm pod: the daemon deletes it when the group has been
/// idle for the keep-alive.
pub fn warm_pod(s: &Settings, g: &GroupSpec, sess: &SessionSpec) -> Result<Pod> {
    Ok(Pod {
        metadata: meta(s, names::session_name(&g.name, sess.id), g, Some(sess.id)),
        spec: Some(pod_spec(s, g, sess)?),
        ..Default::default()
    })
}

/// The session's object in the settings' mode.
pub fn session_object(s: &Settings, g: &GroupSpec, sess: &SessionSpec) -> Result<SessionObject> {
    Ok(match s.mode {
        Mode::Job => SessionObject::Job(Box::new(session_job(s, g, sess)?)),
        Mode::Warm => SessionObject::Pod(Box::new(warm_pod(s, g, sess)?)),
    })
}

/// Every object the daemon creates for a session of `g`, in the order it
/// creates them: the bot's claim, then the session.
pub fn manifests(
    s: &Settings,
    g: &GroupSpec,
    sess: &SessionSpec,
) -> Result<Vec<serde_json::Value>> {
    Ok(vec![
        serde_json::to_value(bot_claim(s, g))?,
        session_object(s, g, sess)?.to_json(),
    ])
}

/// `objects` as one YAML stream, `---` between documents.
pub fn to_yaml(objects: &[serde_json::Value]) -> Result<String> {
    let mut out = String::new();
    for o in objects {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(o)?);
    }
    Ok(out)
}
