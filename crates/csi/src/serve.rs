//! `botyard csi`: the Identity, Controller and Node services over gRPC on
//! a unix socket, each call run off the async threads on the one
//! [`Driver`].

use crate::driver::{Driver, DRIVER_NAME};
use crate::proto::{self, controller_server, identity_server, node_server};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tonic::{Request, Response, Status};

/// Where the plugin listens: `unix:///PATH`, `unix:/PATH` or a path.
pub fn parse_endpoint(s: &str) -> Result<PathBuf> {
    let p = s
        .strip_prefix("unix://")
        .or_else(|| s.strip_prefix("unix:"))
        .unwrap_or(s);
    if p.is_empty() || !p.starts_with('/') {
        bail!("endpoint {s}: write unix:///PATH, like unix:///csi/csi.sock");
    }
    Ok(PathBuf::from(p))
}

#[derive(Clone)]
struct Plugin {
    driver: Arc<Driver>,
    /// One lock per volume: calls on one volume take turns, calls on
    /// others (and Probe, a long image pull meanwhile) go on.
    locks: Arc<Mutex<HashMap<String, Arc<Mutex<()>>>>>,
}

impl Plugin {
    /// Runs `f` on the driver off the async threads, holding the lock of
    /// volume `key` if one is given.
    async fn call<T: Send + 'static>(
        &self,
        key: Option<String>,
        f: impl FnOnce(&Driver) -> crate::volumes::CsiResult<T> + Send + 'static,
    ) -> Result<Response<T>, Status> {
        let d = self.driver.clone();
        let locks = self.locks.clone();
        tokio::task::spawn_blocking(move || {
            let lock = key.map(|k| {
                let mut all = locks.lock().unwrap_or_else(|e| e.into_inner());
                all.entry(k).or_default().clone()
            });
            let _held = lock
                .as_ref()
                .map(|l| l.lock().unwrap_or_else(|e| e.into_inner()));
            f(&d)
        })
        .await
        .map_err(|e| Status::internal(format!("the call failed: {e}")))?
        .map(Response::new)
        .map_err(Status::from)
    }
}

fn unimplemented(what: &str) -> Status {
    Status::unimplemented(format!("{what} is not offered by botyard's plugin"))
}

#[tonic::async_trait]
impl identity_server::Identity for Plugin {
    async fn get_plugin_info(
        &self,
        _: Request<proto::GetPluginInfoRequest>,
    ) -> Result<Response<proto::GetPluginInfoResponse>, Status> {
        Ok(Response::new(proto::GetPluginInfoResponse {
            name: DRIVER_NAME.into(),
            vendor_version: env!("CARGO_PKG_VERSION").into(),
            manifest: Default::default(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _: Request<proto::GetPluginCapabilitiesRequest>,
    ) -> Result<Response<proto::GetPluginCapabilitiesResponse>, Status> {
        use proto::plugin_capability::{self, service::Type};
        let svc = |t: Type| proto::PluginCapability {
            r#type: Some(plugin_capability::Type::Service(
                plugin_capability::Service { r#type: t as i32 },
            )),
        };
        Ok(Response::new(proto::GetPluginCapabilitiesResponse {
            capabilities: vec![
                svc(Type::ControllerService),
                svc(Type::VolumeAccessibilityConstraints),
            ],
        }))
    }

    async fn probe(
        &self,
        _: Request<proto::ProbeRequest>,
    ) -> Result<Response<proto::ProbeResponse>, Status> {
        self.call(None, |d| {
            // Ready when the store can be opened.
            store::Store::open(d.store.root())?;
            Ok(proto::ProbeResponse { ready: Some(true) })
        })
        .await
    }
}

#[tonic::async_trait]
impl controller_server::Controller for Plugin {
    async fn create_volume(
        &self,
        r: Request<proto::CreateVolumeRequest>,
    ) -> Result<Response<proto::CreateVolumeResponse>, Status> {
        let req = r.into_inner();
        let key = crate::volume_id(&req.name).unwrap_or_default();
        self.call(Some(key), move |d| d.create_volume(req)).await
    }

    async fn delete_volume(
        &self,
        r: Request<proto::DeleteVolumeRequest>,
    ) -> Result<Response<proto::DeleteVolumeResponse>, Status> {
        let req = r.into_inner();
        self.call(Some(req.volume_id.clone()), move |d| d.delete_volume(req))
            .await
    }

    async fn controller_publish_volume(
        &self,
        _: Request<proto::ControllerPublishVolumeRequest>,
    ) -> Result<Response<proto::ControllerPublishVolumeResponse>, Status> {
        Err(unimplemented(
            "ControllerPublishVolume (attachRequired is false)",
        ))
    }

    async fn controller_unpublish_volume(
        &self,
        _: Request<proto::ControllerUnpublishVolumeRequest>,
    ) -> Result<Response<proto::ControllerUnpublishVolumeResponse>, Status> {
        Err(unimplemented(
            "ControllerUnpublishVolume (attachRequired is false)",
        ))
    }

    async fn validate_volume_capabilities(
        &self,
        r: Request<proto::ValidateVolumeCapabilitiesRequest>,
    ) -> Result<Response<proto::ValidateVolumeCapabilitiesResponse>, Status> {
        let req = r.into_inner();
        self.call(Some(req.volume_id.clone()), move |d| {
            d.validate_volume_capabilities(req)
        })
        .await
    }

    async fn list_volumes(
        &self,
        r: Request<proto::ListVolumesRequest>,
    ) -> Result<Response<proto::ListVolumesResponse>, Status> {
        let req = r.into_inner();
        self.call(None, move |d| d.list_volumes(req)).await
    }

    async fn get_capacity(
        &self,
        _: Request<proto::GetCapacityRequest>,
    ) -> Result<Response<proto::GetCapacityResponse>, Status> {
        self.call(None, |d| {
            Ok(proto::GetCapacityResponse {
                available_capacity: d.capacity()?,
                maximum_volume_size: None,
                minimum_volume_size: None,
            })
        })
        .await
    }

    async fn controller_get_capabilities(
        &self,
        _: Request<proto::ControllerGetCapabilitiesRequest>,
    ) -> Result<Response<proto::ControllerGetCapabilitiesResponse>, Status> {
        use proto::controller_service_capability::{self as c, rpc::Type};
        let rpc = |t: Type| proto::ControllerServiceCapability {
            r#type: Some(c::Type::Rpc(c::Rpc { r#type: t as i32 })),
        };
        Ok(Response::new(proto::ControllerGetCapabilitiesResponse {
            capabilities: vec![
                rpc(Type::CreateDeleteVolume),
                rpc(Type::ListVolumes),
                rpc(Type::GetCapacity),
                rpc(Type::CreateDeleteSnapshot),
                rpc(Type::ListSnapshots),
                rpc(Type::CloneVolume),
            ],
        }))
    }

    async fn create_snapshot(
        &self,
        r: Request<proto::CreateSnapshotRequest>,
    ) -> Result<Response<proto::CreateSnapshotResponse>, Status> {
        let req = r.into_inner();
        // Under the source volume's lock: not while it is being published.
        self.call(Some(req.source_volume_id.clone()), move |d| {
            d.create_snapshot(req)
        })
        .await
    }

    async fn delete_snapshot(
        &self,
        r: Request<proto::DeleteSnapshotRequest>,
    ) -> Result<Response<proto::DeleteSnapshotResponse>, Status> {
        let req = r.into_inner();
        self.call(None, move |d| {
            d.delete_snapshot(req)?;
            Ok(proto::DeleteSnapshotResponse {})
        })
        .await
    }

    async fn list_snapshots(
        &self,
        r: Request<proto::ListSnapshotsRequest>,
    ) -> Result<Response<proto::ListSnapshotsResponse>, Status> {
        let req = r.into_inner();
        self.call(None, move |d| d.list_snapshots(req)).await
    }

    async fn get_snapshot(
        &self,
        _: Request<proto::GetSnapshotRequest>,
    ) -> Result<Response<proto::GetSnapshotResponse>, Status> {
        Err(unimplemented("GetSnapshot"))
    }

    async fn controller_expand_volume(
        &self,
        _: Request<proto::ControllerExpandVolumeRequest>,
    ) -> Result<Response<proto::ControllerExpandVolumeResponse>, Status> {
        Err(unimplemented(
            "ControllerExpandVolume (a bot has no fixed size)",
        ))
    }

    async fn controller_get_volume(
        &self,
        _: Request<proto::ControllerGetVolumeRequest>,
    ) -> Result<Response<proto::ControllerGetVolumeResponse>, Status> {
        Err(unimplemented("ControllerGetVolume"))
    }

    async fn controller_modify_volume(
        &self,
        _: Request<proto::ControllerModifyVolumeRequest>,
    ) -> Result<Response<proto::ControllerModifyVolumeResponse>, Status> {
        Err(unimplemented("ControllerModifyVolume"))
    }
}

#[tonic::async_trait]
impl node_server::Node for Plugin {
    async fn node_stage_volume(
        &self,
        _: Request<proto::NodeStageVolumeRequest>,
    ) -> Result<Response<proto::NodeStageVolumeResponse>, Status> {
        Err(unimplemented(
            "NodeStageVolume (no STAGE_UNSTAGE_VOLUME capability)",
        ))
    }

    async fn node_unstage_volume(
        &self,
        _: Request<proto::NodeUnstageVolumeRequest>,
    ) -> Result<Response<proto::NodeUnstageVolumeResponse>, Status> {
        Err(unimplemented(
            "NodeUnstageVolume (no STAGE_UNSTAGE_VOLUME capability)",
        ))
    }

    async fn node_publish_volume(
        &self,
        r: Request<proto::NodePublishVolumeRequest>,
    ) -> Result<Response<proto::NodePublishVolumeResponse>, Status> {
        let req = r.into_inner();
        self.call(Some(req.volume_id.clone()), move |d| {
            d.node_publish(req)
                .map(|()| proto::NodePublishVolumeResponse {})
        })
        .await
    }

    async fn node_unpublish_volume(
        &self,
        r: Request<proto::NodeUnpublishVolumeRequest>,
    ) -> Result<Response<proto::NodeUnpublishVolumeResponse>, Status> {
        let req = r.into_inner();
        self.call(Some(req.volume_id.clone()), move |d| {
            d.node_unpublish(req)
                .map(|()| proto::NodeUnpublishVolumeResponse {})
        })
        .await
    }

    async fn node_get_volume_stats(
        &self,
        r: Request<proto::NodeGetVolumeStatsRequest>,
    ) -> Result<Response<proto::NodeGetVolumeStatsResponse>, Status> {
        let req = r.into_inner();
        self.call(Some(req.volume_id.clone()), move |d| d.volume_stats(req))
            .await
    }

    async fn node_expand_volume(
        &self,
        _: Request<proto::NodeExpandVolumeRequest>,
    ) -> Result<Response<proto::NodeExpandVolumeResponse>, Status> {
        Err(unimplemented("NodeExpandVolume (a bot has no fixed size)"))
    }

    async fn node_get_capabilities(
        &self,
        _: Request<proto::NodeGetCapabilitiesRequest>,
    ) -> Result<Response<proto::NodeGetCapabilitiesResponse>, Status> {
        use proto::node_service_capability::{self as c, rpc::Type};
        Ok(Response::new(proto::NodeGetCapabilitiesResponse {
            capabilities: vec![proto::NodeServiceCapability {
                r#type: Some(c::Type::Rpc(c::Rpc {
                    r#type: Type::GetVolumeStats as i32,
                })),
            }],
        }))
    }

    async fn node_get_info(
        &self,
        _: Request<proto::NodeGetInfoRequest>,
    ) -> Result<Response<proto::NodeGetInfoResponse>, Status> {
        Ok(Response::new(self.driver.node_info()))
    }
}

/// Serves the plugin on `endpoint` until SIGTERM or SIGINT; `ready` is
/// called once it listens.
pub fn serve(driver: Driver, endpoint: &str, ready: impl FnOnce(&std::path::Path)) -> Result<()> {
    let path = parse_endpoint(endpoint)?;
    // A client that hangs up mid-write must not kill the plugin.
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot make {}", parent.display()))?;
    }
    match std::fs::symlink_metadata(&path) {
        Ok(md) => {
            use std::os::unix::fs::FileTypeExt;
            if !md.file_type().is_socket() {
                bail!(
                    "{} exists and is not a socket; remove it or pick another --endpoint",
                    path.display()
                );
            }
            if std::os::unix::net::UnixStream::connect(&path).is_ok() {
                bail!("a plugin already listens on {}", path.display());
            }
            std::fs::remove_file(&path)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let driver = Arc::new(driver);
    if let Some(every) = driver.live_commit_every {
        let d = driver.clone();
        std::thread::spawn(move || loop {
            std::thread::sleep(every);
            if let Err(e) = d.live_commit_published() {
                eprintln!("botyard csi: live commit: {e:#}; no more live commits");
                return;
            }
        });
    }
    let plugin = Plugin {
        driver,
        locks: Default::default(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        let listener = tokio::net::UnixListener::bind(&path)
            .with_context(|| format!("cannot listen on {}", path.display()))?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        ready(&path);
        let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
        tonic::transport::Server::builder()
            .add_service(identity_server::IdentityServer::new(plugin.clone()))
            .add_service(controller_server::ControllerServer::new(plugin.clone()))
            .add_service(node_server::NodeServer::new(plugin))
            .serve_with_incoming_shutdown(incoming, async move {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            })
            .await
            .context("the gRPC server failed")?;
        anyhow::Ok(())
    })?;
    let _ = std::fs::remove_file(&path);
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn endpoints_parse() {
        for (s, p) in [
            ("unix:///csi/csi.sock", "/csi/csi.sock"),
            ("unix:/csi/csi.sock", "/csi/csi.sock"),
            ("/csi/csi.sock", "/csi/csi.sock"),
        ] {
            assert_eq!(super::parse_endpoint(s).unwrap().to_str().unwrap(), p);
        }
        for bad in ["unix://", "tcp://1.2.3.4:5", "csi.sock"] {
            assert!(super::parse_endpoint(bad).is_err(), "{bad}");
        }
    }
}
