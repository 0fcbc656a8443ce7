//! The CSI calls, one function each, blocking, on the node's store: the
//! gRPC layer ([`crate::serve`]) runs them off the async threads, the calls
//! on one volume one at a time (they mount and commit; the CO retries what
//! times out).

use crate::proto::{self, volume_capability};
use crate::volumes::{volume_id, CsiError, CsiResult, VolumeRecord, Volumes};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use store::Store;

/// The driver's name, as the CSIDriver object and the StorageClass's
/// `provisioner` spell it.
pub const DRIVER_NAME: &str = "csi.botyard.io";
/// The topology key: each node provisions its own volumes (the store is
/// node-local).
pub const TOPOLOGY_KEY: &str = "topology.csi.botyard.io/node";
/// What kubelet puts in an ephemeral inline volume's context.
const EPHEMERAL_KEY: &str = "csi.storage.k8s.io/ephemeral";

/// StorageClass parameters a volume may have; any other is refused.
/// `driver` defaults to `copy`, the one `hostUsers: false` pods can use;
/// `insecure: "true"` pulls over plain HTTP (a registry on loopback).
/// `registrySecret: NAME` logs in with `AUTH_DIR/NAME/.dockerconfigjson`
/// (a dockerconfigjson Secret mounted into the plugin).
const PARAMETERS: [&str; 4] = ["image", "driver", "insecure", "registrySecret"];

/// Where the plugin finds the registry Secrets the chart mounts.
pub const DEFAULT_AUTH_DIR: &str = "/etc/botyard/registry-auth";

/// Whether `image` names a registry (`HOST[:PORT]/REPOSITORY:TAG`, the
/// host having a dot or a port, or being localhost) rather than a store
/// name.
fn is_registry_reference(image: &str) -> bool {
    image
        .split_once('/')
        .is_some_and(|(host, _)| host.contains('.') || host.contains(':') || host == "localhost")
}

pub struct Driver {
    pub store: Store,
    pub node_id: String,
    /// Targets must be below this (the kubelet's `pods` directory), when
    /// set: a caller of the socket cannot mount a bot anywhere else.
    pods_dir: Option<PathBuf>,
    /// Where `registrySecret` names are looked up.
    auth_dir: PathBuf,
    volumes: Volumes,
    /// Every this long, published volumes' bots share their drift with
    /// the store (`bot commit --live`); `None`: never.
    pub live_commit_every: Option<std::time::Duration>,
}

/// Where a page of a list starts and how long it is, from a request's
/// `starting_token` (an index this node gave) and `max_entries`.
fn page(token: &str, max_entries: i32, len: usize) -> CsiResult<(usize, usize)> {
    let start = match token {
        "" => 0,
        t => t
            .parse::<usize>()
            .ok()
            .filter(|&n| n <= len)
            .ok_or_else(|| {
                CsiError::new(
                    tonic::Code::Aborted,
                    format!(
                        "starting_token {} is not one this node gave; list again from the start",
                        store::quote_str(t)
                    ),
                )
            })?,
    };
    let max = if max_entries > 0 {
        max_entries as usize
    } else {
        usize::MAX
    };
    Ok((start, max))
}

fn invalid(msg: impl Into<String>) -> CsiError {
    CsiError::invalid(msg)
}

impl Driver {
    pub fn new(store: Store, node_id: String) -> Driver {
        Driver {
            volumes: Volumes {
                store: store.clone(),
            },
            store,
            node_id,
            pods_dir: None,
            auth_dir: PathBuf::from(DEFAULT_AUTH_DIR),
            live_commit_every: None,
        }
    }

    /// Shares the drift of every published volume's bot with the store,
    /// without unpublishing (`bot commit --live`); the bytes it shared.
    pub fn live_commit_published(&self) -> anyhow::Result<u64> {
        let mut shared = 0;
        for id in self.volumes.ids()? {
            let published = self
                .volumes
                .get(&id)?
                .is_some_and(|r| !r.published.is_empty());
            if published {
                shared += bot::commit_live(&self.store, &id, &store::NoProgress)?.shared_bytes;
            }
        }
        Ok(shared)
    }

    /// Looks registry Secrets up in `dir` instead of [`DEFAULT_AUTH_DIR`].
    pub fn with_auth_dir(mut self, dir: &Path) -> Driver {
        self.auth_dir = dir.to_path_buf();
        self
    }

    /// Refuses targets outside `KUBELET_DIR/pods`.
    pub fn with_kubelet_dir(mut self, kubelet_dir: &Path) -> anyhow::Result<Driver> {
        let pods = kubelet_dir.join("pods");
        std::fs::create_dir_all(&pods)?;
        self.pods_dir = Some(std::fs::canonicalize(&pods).map_err(|e| {
            anyhow::anyhow!(
                "cannot resolve the kubelet's pods directory {}: {e}",
                pods.display()
            )
        })?);
        Ok(self)
    }

    /// `target` with its existing part resolved, if it is allowed: no
    /// `..`, and below the pods directory (compared by components) when one
    /// is set.
    fn allowed_target(&self, target: &Path) -> CsiResult<PathBuf> {
        use std::path::Component;
        if !target.is_absolute()
            || target
                .components()
                .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        {
            return Err(invalid(format!(
                "target_path {} must be absolute, without . or ..",
                store::quote_path(target)
            )));
        }
        // The deepest part that exists, resolved; the rest is made below it.
        let mut existing = target.to_path_buf();
        let mut rest = Vec::new();
        while !existing.exists() {
            match (existing.file_name(), existing.parent()) {
                (Some(n), Some(p)) => {
                    rest.push(n.to_os_string());
                    existing = p.to_path_buf();
                }
                _ => break,
            }
        }
        let mut resolved = std::fs::canonicalize(&existing).map_err(|e| {
            CsiError::new(
                tonic::Code::Internal,
                format!("cannot resolve {}: {e}", existing.display()),
            )
        })?;
        for n in rest.into_iter().rev() {
            resolved.push(n);
        }
        if let Some(pods) = &self.pods_dir {
            if !resolved.starts_with(pods) {
                return Err(invalid(format!(
                    "target_path {} is not below the kubelet's pods directory {}; only kubelet's volume paths are published to",
                    store::quote_path(target),
                    pods.display()
                )));
            }
        }
        Ok(resolved)
    }

    fn topology(&self) -> proto::Topology {
        proto::Topology {
            segments: HashMap::from([(TOPOLOGY_KEY.to_string(), self.node_id.clone())]),
        }
    }

    fn volume(&self, id: &str, r: &VolumeRecord) -> proto::Volume {
        proto::Volume {
            volume_id: id.to_string(),
            capacity_bytes: 0,
            volume_context: HashMap::from([
                ("image".to_string(), r.image.clone()),
                ("driver".to_string(), r.driver.clone()),
            ]),
            accessible_topology: vec![self.topology()],
            ..Default::default()
        }
    }

    /// Which of `caps` botyard cannot give, if any: a bot is a filesystem
    /// on one node.
    fn unsupported(caps: &[proto::VolumeCapability]) -> Option<String> {
        use volume_capability::access_mode::Mode;
        for c in caps {
            match &c.access_type {
                Some(volume_capability::AccessType::Mount(_)) => {}
                Some(volume_capability::AccessType::Block(_)) => {
                    return Some(
                        "block access: a bot is a filesystem; use volumeMode: Filesystem".into(),
                    )
                }
                None => return Some("a capability without an access type".into()),
            }
            let mode = c
                .access_mode
                .as_ref()
                .and_then(|m| Mode::try_from(m.mode).ok())
                .unwrap_or(Mode::Unknown);
            match mode {
                Mode::SingleNodeWriter
                | Mode::SingleNodeReaderOnly
                | Mode::SingleNodeSingleWriter
                | Mode::SingleNodeMultiWriter => {}
                other => {
                    return Some(format!(
                        "access mode {}: a bot lives on one node; use ReadWriteOnce or ReadWriteOncePod",
                        other.as_str_name()
                    ))
                }
            }
        }
        None
    }

    /// The image and driver a volume asks for, checked.
    fn wanted(
        &self,
        params: &HashMap<String, String>,
    ) -> CsiResult<(store::ImageName, bot::Driver)> {
        if let Some(k) = params
            .keys()
            .filter(|k| !k.starts_with("csi.storage.k8s.io/"))
            .find(|k| !PARAMETERS.contains(&k.as_str()))
        {
            return Err(invalid(format!(
                "unknown parameter {}; a botyard StorageClass takes image (NAME:TAG or HOST/REPOSITORY:TAG), driver (overlay or copy) and insecure",
                store::quote_str(k)
            )));
        }
        let image = params
            .get("image")
            .ok_or_else(|| invalid("the parameter image (NAME:TAG) is missing; set it in the StorageClass or the inline volume's volumeAttributes"))?;
        let insecure = match params.get("insecure").map(String::as_str) {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(invalid(format!(
                    "parameter insecure is {}; write \"true\" or \"false\"",
                    store::quote_str(other)
                )))
            }
        };
        let driver: bot::Driver = match params.get("driver") {
            Some(d) => d
                .parse()
                .map_err(|e: anyhow::Error| invalid(format!("parameter driver: {e}")))?,
            // The driver whose volumes pods with user namespaces can use
            // (a plain directory takes the runtime's idmapped mount; a
            // merged overlay does not).
            None => bot::Driver::Copy,
        };
        let secret = params.get("registrySecret");
        if let Some(s) = secret {
            store::validate_segment("parameter registrySecret", s, 253)
                .map_err(|e| invalid(format!("{e}")))?;
        }
        let name = if is_registry_reference(image) {
            self.pulled(image, insecure, secret.map(String::as_str))?
        } else {
            let name: store::ImageName = image
                .parse()
                .map_err(|e: store::NameError| invalid(format!("parameter image: {e}")))?;
            if let Err(e) = self.store.image(&name) {
                return Err(invalid(format!(
                    "image {name} is not in this node's store ({e:#}); import or pull it on the node first, or name it by its registry (HOST/REPOSITORY:TAG)"
                )));
            }
            name
        };
        Ok((name, driver))
    }

    /// The store's name for a registry image, pulled first if the store
    /// lacks it.
    fn pulled(
        &self,
        reference: &str,
        insecure: bool,
        secret: Option<&str>,
    ) -> CsiResult<store::ImageName> {
        let name = image::default_name_for(reference)
            .map_err(|e| invalid(format!("parameter image: {e:#}")))?;
        if self.store.image(&name).is_ok() {
            return Ok(name);
        }
        let credentials = match secret {
            None => None,
            Some(s) => {
                let file = self.auth_dir.join(s).join(".dockerconfigjson");
                let registry = image::registry_of(reference)
                    .map_err(|e| invalid(format!("parameter image: {e:#}")))?;
                let c = image::credentials_from_file(&file, &registry).map_err(|e| {
                    invalid(format!(
                        "registrySecret {}: {e:#}; mount the Secret at {}",
                        store::quote_str(s),
                        self.auth_dir.join(s).display()
                    ))
                })?;
                if c.is_none() {
                    return Err(invalid(format!(
                        "registrySecret {} has no login for {registry}",
                        store::quote_str(s)
                    )));
                }
                c
            }
        };
        let opts = image::PullOptions {
            insecure,
            max_size: None,
            credentials,
        };
        image::pull(&self.store, reference, &name, opts, &store::NoProgress).map_err(|e| {
            let mut err = CsiError::from(e);
            if err.code == tonic::Code::Internal {
                // The registry's answer, not ours: the CO retries.
                err.code = tonic::Code::Unavailable;
            }
            err.message = format!("cannot pull {reference}: {}", err.message);
            err
        })?;
        Ok(name)
    }

    pub fn create_volume(
        &self,
        req: proto::CreateVolumeRequest,
    ) -> CsiResult<proto::CreateVolumeResponse> {
        let id = volume_id(&req.name)?;
        if req.volume_capabilities.is_empty() {
            return Err(invalid(
                "volume_capabilities is missing; ask for a mount capability",
            ));
        }
        if let Some(why) = Self::unsupported(&req.volume_capabilities) {
            return Err(invalid(why));
        }
        let (image, driver) = self.wanted(&req.parameters)?;
        // The class's image is pulled for other volumes; this one starts
        // from its source's state and image.
        if let Some(src) = &req.volume_content_source {
            return self.create_from(&id, &req, src, driver);
        }
        let want = VolumeRecord {
            name: req.name.clone(),
            image: image.to_string(),
            driver: driver.to_string(),
            ephemeral: false,
            published: Vec::new(),
        };
        if let Some(have) = self.volumes.get(&id)? {
            let same =
                (&have.name, &have.image, &have.driver) == (&want.name, &want.image, &want.driver);
            if same {
                // The same request again, or the retry of one cut short
                // before its bot was made.
                self.make(&id, &have, &image, driver, false)?;
                return Ok(proto::CreateVolumeResponse {
                    volume: Some(self.volume(&id, &have)),
                });
            }
            if have.name == want.name {
                return Err(CsiError::new(
                    tonic::Code::AlreadyExists,
                    format!(
                        "volume {} exists with image {} and driver {}; delete it or ask for the same",
                        store::quote_str(&req.name),
                        have.image,
                        have.driver
                    ),
                ));
            }
        }
        self.make(&id, &want, &image, driver, true)?;
        Ok(proto::CreateVolumeResponse {
            volume: Some(self.volume(&id, &want)),
        })
    }

    /// CreateVolume from a snapshot (its state, committed or not, when it
    /// was taken) or from another volume (what that volume's bot last
    /// committed: at its last unpublish or live commit). Idempotent by name
    /// like any CreateVolume; the image of the new volume is the source's.
    fn create_from(
        &self,
        id: &str,
        req: &proto::CreateVolumeRequest,
        src: &proto::VolumeContentSource,
        driver: bot::Driver,
    ) -> CsiResult<proto::CreateVolumeResponse> {
        use proto::volume_content_source::Type;
        let (start, label) = match &src.r#type {
            Some(Type::Snapshot(s)) => {
                let snap = bot::load_snapshot(&self.store, &s.snapshot_id)?.ok_or_else(|| {
                    CsiError::not_found(format!(
                        "no snapshot {} on node {}",
                        store::quote_str(&s.snapshot_id),
                        self.node_id
                    ))
                })?;
                (
                    bot::Start {
                        tree: snap.tree,
                        image: snap.image.clone(),
                        image_tree: snap.image_tree,
                    },
                    format!("volume from snapshot {}", snap.id),
                )
            }
            Some(Type::Volume(v)) => {
                if self.volumes.get(&v.volume_id)?.is_none() {
                    return Err(CsiError::not_found(format!(
                        "no volume {} on node {} to clone",
                        store::quote_str(&v.volume_id),
                        self.node_id
                    )));
                }
                let r = bot::Bot::new(&self.store, &v.volume_id)?.load()?;
                (
                    bot::Start {
                        tree: r.tree,
                        image: r.image.clone(),
                        image_tree: r.image_tree,
                    },
                    format!("volume cloned from {}", v.volume_id),
                )
            }
            None => {
                return Err(invalid(
                    "volume_content_source names neither a snapshot nor a volume",
                ))
            }
        };
        let want = VolumeRecord {
            name: req.name.clone(),
            image: start.image.clone(),
            driver: driver.to_string(),
            ephemeral: false,
            published: Vec::new(),
        };
        match self.volumes.get(id)? {
            Some(have)
                if (&have.name, &have.image, &have.driver)
                    == (&want.name, &want.image, &want.driver) => {}
            Some(have) if have.name == want.name => {
                return Err(CsiError::new(
                    tonic::Code::AlreadyExists,
                    format!(
                        "volume {} exists from another source or with other parameters",
                        store::quote_str(&req.name)
                    ),
                ))
            }
            _ => {
                let b = bot::Bot::new(&self.store, id)?;
                if b.exists()? {
                    return Err(CsiError::new(
                        tonic::Code::AlreadyExists,
                        format!("bot {id} exists and is not a volume of this driver; name the volume otherwise"),
                    ));
                }
                self.volumes.put(id, &want)?;
            }
        }
        if !bot::Bot::new(&self.store, id)?.exists()? {
            bot::make_at(&self.store, id, start, driver, &label)?;
        }
        let mut v = self.volume(id, &want);
        v.content_source = Some(src.clone());
        Ok(proto::CreateVolumeResponse { volume: Some(v) })
    }

    fn snapshot_of(&self, s: &bot::Snapshot) -> proto::Snapshot {
        let created = humantime::parse_rfc3339_weak(&s.created)
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .unwrap_or_default();
        proto::Snapshot {
            size_bytes: s.size as i64,
            snapshot_id: s.id.clone(),
            source_volume_id: s.bot.clone(),
            creation_time: Some(prost_types::Timestamp {
                seconds: created.as_secs() as i64,
                nanos: created.subsec_nanos() as i32,
            }),
            ready_to_use: true,
            group_snapshot_id: String::new(),
        }
    }

    /// A snapshot of a volume as it is now, published or not; idempotent
    /// by name.
    pub fn create_snapshot(
        &self,
        req: proto::CreateSnapshotRequest,
    ) -> CsiResult<proto::CreateSnapshotResponse> {
        if req.source_volume_id.is_empty() {
            return Err(invalid(
                "source_volume_id is missing; name the volume to snapshot",
            ));
        }
        let sid = volume_id(&req.name)?;
        if let Some(have) = bot::load_snapshot(&self.store, &sid)? {
            if have.bot == req.source_volume_id {
                return Ok(proto::CreateSnapshotResponse {
                    snapshot: Some(self.snapshot_of(&have)),
                });
            }
            return Err(CsiError::new(
                tonic::Code::AlreadyExists,
                format!(
                    "snapshot {} exists of volume {}; delete it or name this one otherwise",
                    store::quote_str(&req.name),
                    store::quote_str(&have.bot)
                ),
            ));
        }
        if self.volumes.get(&req.source_volume_id)?.is_none() {
            return Err(CsiError::not_found(format!(
                "no volume {} on node {}",
                store::quote_str(&req.source_volume_id),
                self.node_id
            )));
        }
        let s = bot::snapshot(
            &self.store,
            &req.source_volume_id,
            &sid,
            &req.name,
            &store::NoProgress,
        )?;
        Ok(proto::CreateSnapshotResponse {
            snapshot: Some(self.snapshot_of(&s)),
        })
    }

    pub fn delete_snapshot(&self, req: proto::DeleteSnapshotRequest) -> CsiResult<()> {
        if req.snapshot_id.is_empty() {
            return Err(invalid("snapshot_id is missing"));
        }
        bot::remove_snapshot(&self.store, &req.snapshot_id)?;
        Ok(())
    }

    pub fn list_snapshots(
        &self,
        req: proto::ListSnapshotsRequest,
    ) -> CsiResult<proto::ListSnapshotsResponse> {
        let all: Vec<bot::Snapshot> = bot::snapshots(&self.store)?
            .into_iter()
            .filter(|s| req.snapshot_id.is_empty() || s.id == req.snapshot_id)
            .filter(|s| req.source_volume_id.is_empty() || s.bot == req.source_volume_id)
            .collect();
        let (start, max) = page(&req.starting_token, req.max_entries, all.len())?;
        let entries: Vec<_> = all
            .iter()
            .skip(start)
            .take(max)
            .map(|s| proto::list_snapshots_response::Entry {
                snapshot: Some(self.snapshot_of(s)),
            })
            .collect();
        let next = if start + entries.len() < all.len() {
            (start + entries.len()).to_string()
        } else {
            String::new()
        };
        Ok(proto::ListSnapshotsResponse {
            entries,
            next_token: next,
        })
    }

    /// The record first (so a crash leaves something DeleteVolume finds),
    /// then the bot; a bot that exists already was made by an earlier,
    /// interrupted call. A `fresh` volume never takes over a bot someone
    /// made by hand (DeleteVolume would remove it).
    fn make(
        &self,
        id: &str,
        r: &VolumeRecord,
        image: &store::ImageName,
        driver: bot::Driver,
        fresh: bool,
    ) -> CsiResult<()> {
        let b = bot::Bot::new(&self.store, id)?;
        if fresh && b.exists()? {
            return Err(CsiError::new(
                tonic::Code::AlreadyExists,
                format!("bot {id} exists and is not a volume of this driver; name the volume otherwise, or remove the bot (`botyard bot rm {id}`)"),
            ));
        }
        self.volumes.put(id, r)?;
        if !b.exists()? {
            bot::create(&self.store, id, image, driver)?;
        }
        Ok(())
    }

    pub fn delete_volume(
        &self,
        req: proto::DeleteVolumeRequest,
    ) -> CsiResult<proto::DeleteVolumeResponse> {
        if req.volume_id.is_empty() {
            return Err(invalid("volume_id is missing"));
        }
        let id = &req.volume_id;
        let Some(r) = self.volumes.get(id)? else {
            // Gone already: deleting is idempotent.
            return Ok(proto::DeleteVolumeResponse {});
        };
        if !r.published.is_empty() {
            return Err(CsiError::new(
                tonic::Code::FailedPrecondition,
                format!(
                    "volume {id} is still published at {}; unpublish it first",
                    r.published[0].display()
                ),
            ));
        }
        self.remove_bot(id)?;
        self.volumes.remove(id)?;
        Ok(proto::DeleteVolumeResponse {})
    }

    fn remove_bot(&self, id: &str) -> CsiResult<()> {
        let b = bot::Bot::new(&self.store, id)?;
        if b.exists()? {
            if b.mounted_at().is_some() {
                bot::unmount(&self.store, id)?;
            }
            bot::remove(&self.store, id, true)?;
        }
        Ok(())
    }

    pub fn validate_volume_capabilities(
        &self,
        req: proto::ValidateVolumeCapabilitiesRequest,
    ) -> CsiResult<proto::ValidateVolumeCapabilitiesResponse> {
        if req.volume_id.is_empty() {
            return Err(invalid("volume_id is missing"));
        }
        if req.volume_capabilities.is_empty() {
            return Err(invalid("volume_capabilities is missing"));
        }
        if self.volumes.get(&req.volume_id)?.is_none() {
            return Err(CsiError::not_found(format!(
                "no volume {} on node {}",
                store::quote_str(&req.volume_id),
                self.node_id
            )));
        }
        if let Some(why) = Self::unsupported(&req.volume_capabilities) {
            return Ok(proto::ValidateVolumeCapabilitiesResponse {
                confirmed: None,
                message: why,
            });
        }
        Ok(proto::ValidateVolumeCapabilitiesResponse {
            confirmed: Some(proto::validate_volume_capabilities_response::Confirmed {
                volume_context: req.volume_context,
                volume_capabilities: req.volume_capabilities,
                parameters: req.parameters,
                mutable_parameters: req.mutable_parameters,
            }),
            message: String::new(),
        })
    }

    pub fn list_volumes(
        &self,
        req: proto::ListVolumesRequest,
    ) -> CsiResult<proto::ListVolumesResponse> {
        let ids = self.volumes.ids()?;
        let (start, max) = page(&req.starting_token, req.max_entries, ids.len())?;
        let mut entries = Vec::new();
        let mut next = String::new();
        for (i, id) in ids.iter().enumerate().skip(start) {
            if entries.len() == max {
                next = i.to_string();
                break;
            }
            if let Some(r) = self.volumes.get(id)? {
                entries.push(proto::list_volumes_response::Entry {
                    volume: Some(self.volume(id, &r)),
                    status: None,
                });
            }
        }
        Ok(proto::ListVolumesResponse {
            entries,
            next_token: next,
        })
    }

    /// Free bytes of the store's filesystem.
    pub fn capacity(&self) -> CsiResult<i64> {
        let st = rustix::fs::statvfs(self.store.root()).map_err(|e| {
            CsiError::new(
                tonic::Code::Internal,
                format!("cannot read the store's free space: {e}"),
            )
        })?;
        Ok((st.f_bavail.saturating_mul(st.f_frsize)).min(i64::MAX as u64) as i64)
    }

    pub fn node_publish(&self, req: proto::NodePublishVolumeRequest) -> CsiResult<()> {
        if req.volume_id.is_empty() {
            return Err(invalid("volume_id is missing"));
        }
        if req.target_path.is_empty() {
            return Err(invalid("target_path is missing"));
        }
        let Some(cap) = req.volume_capability.as_ref() else {
            return Err(invalid("volume_capability is missing"));
        };
        if let Some(why) = Self::unsupported(std::slice::from_ref(cap)) {
            return Err(invalid(why));
        }
        let id = &req.volume_id;
        let target = self.allowed_target(Path::new(&req.target_path))?;
        let ephemeral = req
            .volume_context
            .get(EPHEMERAL_KEY)
            .is_some_and(|v| v == "true");
        let mut r = match self.volumes.get(id)? {
            Some(r) => r,
            None if ephemeral => {
                let params: HashMap<String, String> = req
                    .volume_context
                    .iter()
                    .filter(|(k, _)| !k.starts_with("csi.storage.k8s.io/"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let (image, driver) = self.wanted(&params)?;
                let r = VolumeRecord {
                    name: id.clone(),
                    image: image.to_string(),
                    driver: driver.to_string(),
                    ephemeral: true,
                    published: Vec::new(),
                };
                self.make(id, &r, &image, driver, true)?;
                r
            }
            None => {
                return Err(CsiError::not_found(format!(
                    "no volume {} on node {}; was it created on another node?",
                    store::quote_str(id),
                    self.node_id
                )))
            }
        };
        let readonly = req.readonly
            || cap.access_mode.as_ref().is_some_and(|m| {
                m.mode == volume_capability::access_mode::Mode::SingleNodeReaderOnly as i32
            });
        std::fs::create_dir_all(&target).map_err(|e| {
            CsiError::new(
                tonic::Code::Internal,
                format!("cannot make the target {}: {e}", target.display()),
            )
        })?;
        if fs::is_mount_point(&target) {
            if r.published.contains(&target) {
                return Ok(()); // published there already
            }
            return Err(CsiError::new(
                tonic::Code::FailedPrecondition,
                format!(
                    "{} is already a mount point of something else",
                    target.display()
                ),
            ));
        }
        // The target is recorded before it is mounted, so a plugin killed
        // in between finds it on the retry (and unpublish or delete never
        // miss a mount it made).
        if !r.published.contains(&target) {
            r.published.push(target.clone());
            self.volumes.put(id, &r)?;
        }
        // The bot's own mount, once, at its home; each target is a clone
        // of it (read-only where asked).
        let root = self.bot_root(id)?;
        let fd = fs::walk::open_dir(&root)?;
        let to = self.open_target(&target)?;
        fs::mount_clone_onto(&fd, &to, &target, !readonly)?;
        Ok(())
    }

    /// The (made) target, opened for mounting on: beneath the pods
    /// directory without following any symlink when one is set, so what is
    /// mounted on is what [`Driver::allowed_target`] checked.
    fn open_target(&self, target: &Path) -> CsiResult<rustix::fd::OwnedFd> {
        let flags = rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY;
        let base = self.pods_dir.as_deref().unwrap_or(Path::new("/"));
        let rel = target.strip_prefix(base).unwrap_or(target);
        let opened = fs::walk::open_path(
            &fs::walk::open_dir(base)?,
            rel.as_os_str().as_encoded_bytes(),
            flags,
        );
        let why = match opened {
            Ok(Some(fd)) => return Ok(fd),
            Ok(None) => "it went away".to_string(),
            Err(e) => e.to_string(),
        };
        Err(invalid(format!(
            "target_path {} changed while it was being published ({why}: a symlink on the way?); retry",
            store::quote_path(target)
        )))
    }

    /// Where the bot's root is: mounted for an overlay bot (at its default
    /// place), the directory itself for a copy bot.
    fn bot_root(&self, id: &str) -> CsiResult<PathBuf> {
        let b = bot::Bot::new(&self.store, id)?;
        let r = b.load()?;
        Ok(match r.driver {
            bot::Driver::Copy => b.default_mount(),
            bot::Driver::Overlay => match b.mounted_at() {
                Some(p) => p,
                None => bot::mount(&self.store, id, None, bot::MountOptions::default())?,
            },
        })
    }

    pub fn node_unpublish(&self, req: proto::NodeUnpublishVolumeRequest) -> CsiResult<()> {
        if req.volume_id.is_empty() {
            return Err(invalid("volume_id is missing"));
        }
        if req.target_path.is_empty() {
            return Err(invalid("target_path is missing"));
        }
        let id = &req.volume_id;
        // Resolved as at publish, so the recorded target is found.
        let target = self.allowed_target(Path::new(&req.target_path))?;
        let Some(mut r) = self.volumes.get(id)? else {
            // Unknown: nothing of ours is there (idempotent).
            return Ok(());
        };
        if fs::is_mount_point(&target) && r.published.contains(&target) {
            fs::unmount(&target)?;
        }
        let _ = std::fs::remove_dir(&target);
        r.published.retain(|p| p != &target);
        self.volumes.put(id, &r)?;
        if r.published.is_empty() {
            self.settle(id, &r)?;
        }
        Ok(())
    }

    /// The last publication went: the bot's drift is folded into the store
    /// (or, ephemeral, the bot goes).
    fn settle(&self, id: &str, r: &VolumeRecord) -> CsiResult<()> {
        if r.ephemeral {
            self.remove_bot(id)?;
            self.volumes.remove(id)?;
            return Ok(());
        }
        let b = bot::Bot::new(&self.store, id)?;
        if b.mounted_at().is_some() {
            bot::unmount(&self.store, id)?;
        }
        bot::commit(&self.store, id, "volume unpublished", &store::NoProgress)?;
        Ok(())
    }

    pub fn volume_stats(
        &self,
        req: proto::NodeGetVolumeStatsRequest,
    ) -> CsiResult<proto::NodeGetVolumeStatsResponse> {
        if req.volume_id.is_empty() {
            return Err(invalid("volume_id is missing"));
        }
        if req.volume_path.is_empty() {
            return Err(invalid("volume_path is missing"));
        }
        let Some(r) = self.volumes.get(&req.volume_id)? else {
            return Err(CsiError::not_found(format!(
                "no volume {}",
                store::quote_str(&req.volume_id)
            )));
        };
        let path = self.allowed_target(Path::new(&req.volume_path))?;
        if !r.published.contains(&path) {
            return Err(CsiError::not_found(format!(
                "volume {} is not published at {}",
                req.volume_id, req.volume_path
            )));
        }
        let info = bot::show(&self.store, &req.volume_id)?;
        let used = info.uncommitted_bytes as i64;
        let available = self.capacity()?;
        Ok(proto::NodeGetVolumeStatsResponse {
            usage: vec![proto::VolumeUsage {
                available,
                total: available + used,
                used,
                unit: proto::volume_usage::Unit::Bytes as i32,
            }],
            volume_condition: None,
        })
    }

    pub fn node_info(&self) -> proto::NodeGetInfoResponse {
        proto::NodeGetInfoResponse {
            node_id: self.node_id.clone(),
            max_volumes_per_node: 0,
            accessible_topology: Some(self.topology()),
        }
    }
}
