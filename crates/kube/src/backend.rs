//! The Kubernetes session backend: each session of a daemon's group is a
//! pod (a Job's, or a warm pod), behind the same [`session::Backend`]
//! interface the runc backend implements, so the daemon's queue works the
//! same on a cluster.
//!
//! A session start costs these API calls: the bot's claim looked up (it
//! was made when the group was added), the Job or pod created, one watch
//! of the session's pods, one attach (the secrets line on stdin) and one
//! log stream (the supervisor's frames). Messages go into
//! `groups/GROUP/ipc` on the shared volume the daemon has mounted, or,
//! without one, over the attached stdin. The watch tells when the pod
//! runs, ends, stays Pending too long (the attempt fails with Kubernetes'
//! reason) or is deleted under the session (the attempt fails and the
//! daemon retries, as after a crashed sandbox).

use crate::names;
use crate::objects::{self, SessionObject, SessionSpec};
use crate::settings::{Mode, Settings};
use anyhow::{anyhow, bail, Context, Result};
use futures_util::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kubeapi::api::{
    Api, AttachParams, DeleteParams, ListParams, LogParams, PostParams, WatchEvent, WatchParams,
};
use kubeapi::Client;
use session::ipc::{Channel, StdinFrame};
use session::{Backend, Group, RunIo, RunOptions, RunOutcome, Sandbox, Signal};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::Store;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};

/// How long a pod deleted with TERM gets before it is deleted again with
/// no grace.
const GRACE: Duration = Duration::from_secs(30);

/// Sessions on a Kubernetes cluster.
pub struct KubeBackend {
    rt: Arc<tokio::runtime::Runtime>,
    client: Client,
    settings: Arc<Settings>,
    limits: session::Limits,
    /// The daemon's hard deadline of a session (a Job's
    /// `activeDeadlineSeconds`).
    deadline: Duration,
    /// Session ids: unique across restarts of the daemon (they start at
    /// the clock's milliseconds).
    next: AtomicU64,
}

/// The Kubernetes backend: the client from the in-cluster config, or
/// else the kubeconfig (`KUBECONFIG`, `~/.kube/config`). `limits` are
/// what each session's pod is given (the config's own, never this
/// machine's share); `deadline` is the daemon's.
pub fn backend(
    settings: Settings,
    limits: session::Limits,
    deadline: Duration,
) -> Result<Arc<dyn Backend>> {
    Ok(Arc::new(KubeBackend::new(settings, limits, deadline)?))
}

fn not_found(e: &kubeapi::Error) -> bool {
    matches!(e, kubeapi::Error::Api(s) if s.code == 404)
}

fn conflict(e: &kubeapi::Error) -> bool {
    matches!(e, kubeapi::Error::Api(s) if s.code == 409)
}

impl KubeBackend {
    pub fn new(
        settings: Settings,
        limits: session::Limits,
        deadline: Duration,
    ) -> Result<KubeBackend> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("botyard-kube")
            .enable_all()
            .build()?;
        let client = rt.block_on(Client::try_default()).context(
            "cannot reach Kubernetes: no in-cluster service account and no kubeconfig; run in a pod, or set KUBECONFIG",
        )?;
        if settings.shared_claim.is_some() && !settings.shared_mount.is_dir() {
            bail!(
                "kubernetes.shared_claim is set, but its mount {} is not a directory here; mount the claim there or set kubernetes.shared_mount",
                store::quote_path(&settings.shared_mount)
            );
        }
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(1);
        Ok(KubeBackend {
            rt: Arc::new(rt),
            client,
            settings: Arc::new(settings),
            limits,
            deadline,
            next: AtomicU64::new(start),
        })
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kubeapi::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kubeapi::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.settings.namespace)
    }

    /// The host directory of group `g`'s IPC on the shared volume.
    fn ipc_dir(&self, group: &str) -> Result<Option<PathBuf>> {
        Ok(match &self.settings.shared_claim {
            Some(_) => Some(self.settings.shared_mount.join(names::ipc_path(group)?)),
            None => None,
        })
    }

    /// Makes the bot's claim unless it exists.
    async fn ensure_claim(&self, claim: &PersistentVolumeClaim) -> Result<()> {
        let api: Api<PersistentVolumeClaim> = self.api();
        let name = claim.metadata.name.clone().unwrap_or_default();
        match api.create(&PostParams::default(), claim).await {
            Ok(_) => Ok(()),
            Err(e) if conflict(&e) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot create the bot's claim {name}")),
        }
    }
}

impl Backend for KubeBackend {
    fn name(&self) -> String {
        format!("kubernetes (namespace {})", self.settings.namespace)
    }

    fn runs_on_host(&self) -> bool {
        false
    }

    fn notes(&self) -> Vec<String> {
        let mut n = vec![format!(
            "sessions are {} with the supervisor by {}",
            match self.settings.mode {
                Mode::Job => "Jobs",
                Mode::Warm => "warm pods",
            },
            self.settings.sideload
        )];
        if self.settings.shared_claim.is_none() {
            n.push("no kubernetes.shared_claim: each pod's IPC is an emptyDir, so messages a pod holds are lost with it (the daemon delivers them again), and groups get no workspace".into());
        }
        n
    }

    fn admit_group(&self, store: &Store, g: &Group, others: &[Group]) -> Result<()> {
        let label = names::group_label(&g.name);
        if let Some(o) = others
            .iter()
            .find(|o| o.name != g.name && names::group_label(&o.name) == label)
        {
            bail!(
                "group {} would share Kubernetes names with group {}; pick another name",
                store::quote_str(&g.name),
                store::quote_str(&o.name)
            );
        }
        if !g.mounts.is_empty() {
            bail!(
                "group {} has host mounts, which a pod on a cluster cannot see; use --workspace with --user (the shared volume) instead",
                store::quote_str(&g.name)
            );
        }
        let spec = crate::group_spec(store, &self.settings, self.limits, g)?;
        // Every object a session makes must build, so check one now.
        let sess = SessionSpec {
            id: 1,
            deadline: Duration::from_secs(60),
            idle: Duration::from_secs(60),
            output_cap: 1,
        };
        objects::session_object(&self.settings, &spec, &sess)?;
        let claim = objects::bot_claim(&self.settings, &spec);
        self.rt.block_on(self.ensure_claim(&claim))
    }

    fn prepare(&self, store: &Store, opts: &RunOptions) -> Result<Arc<dyn Sandbox>> {
        let Some(g) = &opts.group else {
            bail!("the Kubernetes backend runs the daemon's groups only; `botyard run` starts sandboxes on this host");
        };
        if opts.ipc.is_none() {
            bail!("the Kubernetes backend runs kept-alive sessions only");
        }
        let spec = crate::group_spec(store, &self.settings, self.limits, g)?;
        let secrets = session::secrets_from_env(&opts.secrets)?;
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let sess = SessionSpec {
            id,
            deadline: self.deadline,
            idle: opts.idle,
            output_cap: opts.output_cap,
        };
        let object = objects::session_object(&self.settings, &spec, &sess)?;
        let claim = objects::bot_claim(&self.settings, &spec);
        let channel = match self.ipc_dir(&g.name)? {
            Some(dir) => {
                Channel::clear(&dir)?;
                let c = Channel::open(&dir)?;
                open_to_the_pod(&dir)?;
                Some(c)
            }
            None => None,
        };
        let (lines_tx, lines_rx) = mpsc::unbounded_channel();
        Ok(Arc::new(KubeSandbox {
            rt: self.rt.clone(),
            client: self.client.clone(),
            settings: self.settings.clone(),
            group: g.name.clone(),
            id,
            object,
            claim,
            secrets: Mutex::new(Some(secrets)),
            channel,
            lines: lines_tx,
            lines_rx: Mutex::new(Some(lines_rx)),
            pod: Arc::new(Mutex::new(None)),
            done: Mutex::new(None),
        }))
    }

    fn reap(&self, _store: &Store, _bot: &str) -> Result<bool> {
        // Bots live on the nodes' stores, not in this one.
        Ok(false)
    }

    /// Deletes every session pod and Job the daemon left: a restarted
    /// daemon queues the messages that were running again, so a fresh
    /// session takes them, with its secrets handed over anew.
    fn reap_all(&self, _store: &Store) -> Result<u64> {
        let sel = format!("{}=botyard", objects::LABEL_MANAGED_BY);
        let lp = ListParams::default().labels(&format!("{sel},{}", objects::LABEL_SESSION));
        self.rt.block_on(async {
            let jobs: Api<Job> = self.api();
            let pods: Api<Pod> = self.api();
            let mut n = 0;
            for j in jobs.list(&lp).await.context("cannot list botyard's Jobs")? {
                let name = j.metadata.name.unwrap_or_default();
                match jobs.delete(&name, &DeleteParams::background()).await {
                    Ok(_) => n += 1,
                    Err(e) if not_found(&e) => {}
                    Err(e) => return Err(e).context(format!("cannot delete the Job {name}")),
                }
            }
            for p in pods.list(&lp).await.context("cannot list botyard's pods")? {
                let name = p.metadata.name.unwrap_or_default();
                match pods.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => n += 1,
                    Err(e) if not_found(&e) => {}
                    Err(e) => return Err(e).context(format!("cannot delete the pod {name}")),
                }
            }
            Ok(n)
        })
    }
}

/// The pod's root is some id of its user namespace the daemon cannot
/// know, and it alone mounts this directory (by subPath): let it write.
fn open_to_the_pod(dir: &std::path::Path) -> Result<()> {
    use rustix::fs::{Mode, OFlags};
    // On the directories themselves, never through a symlink.
    let flags = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::RDONLY;
    let top = rustix::fs::open(dir, flags, Mode::empty())
        .with_context(|| format!("cannot open {}", dir.display()))?;
    let mut fds = vec![];
    for sub in ["input", "errors"] {
        fds.push(
            rustix::fs::openat(&top, sub, flags, Mode::empty())
                .with_context(|| format!("cannot open {}/{sub}", dir.display()))?,
        );
    }
    fds.push(top);
    for fd in &fds {
        rustix::fs::fchmod(fd, Mode::from_raw_mode(0o777))
            .with_context(|| format!("cannot open {} to the session's pod", dir.display()))?;
    }
    Ok(())
}

/// One session's pod.
struct KubeSandbox {
    rt: Arc<tokio::runtime::Runtime>,
    client: Client,
    settings: Arc<Settings>,
    group: String,
    id: u64,
    object: SessionObject,
    claim: PersistentVolumeClaim,
    secrets: Mutex<Option<serde_json::Map<String, serde_json::Value>>>,
    /// On the shared volume; `None`: messages go over stdin.
    channel: Option<Channel>,
    lines: mpsc::UnboundedSender<Vec<u8>>,
    lines_rx: Mutex<Option<mpsc::UnboundedReceiver<Vec<u8>>>>,
    /// The pod's name once known (a Job names its pod itself).
    pod: Arc<Mutex<Option<String>>>,
    /// The end of the task `start` left following the pod.
    done: Mutex<Option<oneshot::Receiver<Result<RunOutcome>>>>,
}

impl KubeSandbox {
    fn name(&self) -> String {
        names::session_name(&self.group, self.id)
    }

    fn selector(&self) -> String {
        format!(
            "{}={},{}={}",
            objects::LABEL_GROUP,
            names::group_label(&self.group),
            objects::LABEL_SESSION,
            self.id
        )
    }

    /// Deletes the session's object and its pod, the pod with `grace`
    /// (a Job's own deletion would leave its pod the default grace).
    fn delete(&self, grace: u32) -> impl std::future::Future<Output = Result<()>> + Send + 'static {
        let (client, ns, kind) = (
            self.client.clone(),
            self.settings.namespace.clone(),
            self.object_kind(),
        );
        let pod = match kind {
            ObjectKind::Pod(ref p) => Some(p.clone()),
            ObjectKind::Job(_) => self.pod.lock().unwrap().clone(),
        };
        async move {
            let dp = DeleteParams::background().grace_period(grace);
            let pods = Api::<Pod>::namespaced(client.clone(), &ns);
            let mut res = Ok(());
            if let ObjectKind::Job(name) = &kind {
                res = Api::<Job>::namespaced(client, &ns)
                    .delete(name, &dp)
                    .await
                    .map(|_| ());
            }
            if let Some(p) = pod {
                let r = pods.delete(&p, &dp).await.map(|_| ());
                if res.is_ok() {
                    res = r;
                }
            }
            match res {
                Err(e) if !not_found(&e) => Err(e).context("cannot delete the session's pod"),
                _ => Ok(()),
            }
        }
    }

    fn object_kind(&self) -> ObjectKind {
        match self.settings.mode {
            Mode::Job => ObjectKind::Job(self.name()),
            Mode::Warm => ObjectKind::Pod(self.name()),
        }
    }
}

#[derive(Clone, Debug)]
enum ObjectKind {
    Job(String),
    Pod(String),
}

/// Where a pod stands, as the session needs it.
enum PodState {
    Pending(String),
    Running,
    Ended { exit_code: i32, reason: String },
}

fn pod_state(p: &Pod) -> PodState {
    let status = p.status.clone().unwrap_or_default();
    let agent = status
        .container_statuses
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.name == "agent");
    if let Some(t) = agent
        .as_ref()
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.as_ref())
    {
        return PodState::Ended {
            exit_code: t.exit_code,
            reason: t.reason.clone().unwrap_or_default(),
        };
    }
    match status.phase.as_deref() {
        Some("Running") => PodState::Running,
        Some("Succeeded") => PodState::Ended {
            exit_code: 0,
            reason: String::new(),
        },
        Some("Failed") => PodState::Ended {
            exit_code: 137,
            reason: status.reason.unwrap_or_else(|| "Failed".into()),
        },
        _ => {
            // The reason a person would look for first: the container's
            // (an image that cannot be pulled), else the scheduler's.
            let waiting = agent
                .and_then(|c| c.state)
                .and_then(|s| s.waiting)
                .filter(|w| w.reason.as_deref() != Some("ContainerCreating"))
                .map(|w| {
                    format!(
                        "{}: {}",
                        w.reason.unwrap_or_default(),
                        w.message.unwrap_or_default()
                    )
                });
            let unscheduled = status
                .conditions
                .unwrap_or_default()
                .into_iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False")
                .map(|c| {
                    format!(
                        "{}: {}",
                        c.reason.unwrap_or_default(),
                        c.message.unwrap_or_default()
                    )
                });
            PodState::Pending(
                waiting
                    .or(unscheduled)
                    .unwrap_or_else(|| "waiting to be scheduled and started".into()),
            )
        }
    }
}

impl Sandbox for KubeSandbox {
    fn start(&self, io: RunIo) -> Result<()> {
        let secrets = self.secrets.lock().unwrap().take().unwrap_or_default();
        let mut secret_line = serde_json::to_vec(&secrets)?;
        drop(secrets);
        secret_line.push(b'\n');
        let lines_rx = self.lines_rx.lock().unwrap().take();
        let (started_tx, started_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        let follow = Follow {
            client: self.client.clone(),
            settings: self.settings.clone(),
            object: self.object.clone(),
            claim: self.claim.clone(),
            selector: self.selector(),
            secret_line,
            lines: lines_rx,
            relay: self.channel.is_none(),
            stdout: io.stdout,
            pod: self.pod.clone(),
        };
        self.rt.spawn(async move {
            let res = follow.run(started_tx).await;
            let _ = done_tx.send(res);
        });
        let started = self
            .rt
            .block_on(started_rx)
            .unwrap_or_else(|_| Err(anyhow!("the session's task ended before the pod ran")));
        match started {
            Ok(()) => {
                *self.done.lock().unwrap() = Some(done_rx);
                Ok(())
            }
            Err(e) => {
                // Nothing of it is left behind.
                let _ = self.rt.block_on(self.delete(0));
                Err(e)
            }
        }
    }

    fn deliver(&self, id: &str, body: &[u8]) -> Result<()> {
        match &self.channel {
            Some(c) => c.deliver(id, body),
            None => {
                if !session::ipc::valid_message_id(id) {
                    bail!("message id {} cannot name a file", store::quote_str(id));
                }
                let frame = StdinFrame::Deliver {
                    v: 1,
                    id: id.to_string(),
                    body: String::from_utf8(body.to_vec())
                        .context("a message for a pod must be UTF-8 text")?,
                };
                self.lines
                    .send(frame.line())
                    .map_err(|_| anyhow!("the session's pod is gone"))
            }
        }
    }

    fn close(&self) -> Result<()> {
        match &self.channel {
            Some(c) => c.close(),
            None => self
                .lines
                .send(StdinFrame::Close { v: 1 }.line())
                .map_err(|_| anyhow!("the session's pod is gone")),
        }
    }

    fn kill(&self, signal: Signal) {
        let grace = match signal {
            Signal::Term => GRACE.as_secs() as u32,
            Signal::Kill => 0,
        };
        let delete = self.delete(grace);
        self.rt.spawn(async move {
            if let Err(e) = delete.await {
                eprintln!("botyard serve: {e:#}");
            }
        });
    }

    fn wait(&self, stop: &AtomicBool) -> Result<RunOutcome> {
        let Some(mut done) = self.done.lock().unwrap().take() else {
            bail!("the session's pod was not started");
        };
        let mut stopping: Option<Instant> = None;
        let res = loop {
            match done.try_recv() {
                Ok(res) => break res,
                Err(oneshot::error::TryRecvError::Closed) => {
                    break Err(anyhow!("the session's task ended without a result"))
                }
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            if stop.load(Ordering::Relaxed) {
                match stopping {
                    None => {
                        self.kill(Signal::Term);
                        stopping = Some(Instant::now());
                    }
                    Some(t) if t.elapsed() > GRACE => {
                        self.kill(Signal::Kill);
                        stopping = Some(Instant::now());
                    }
                    Some(_) => {}
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // A warm pod that ended is removed now, and whatever is left of a
        // session that failed; a Job's TTL removes a finished Job.
        if res.is_err() || matches!(self.object_kind(), ObjectKind::Pod(_)) {
            let _ = self.rt.block_on(self.delete(0));
        }
        let mut out = res?;
        out.container_id = self.name();
        out.interrupted = stopping.is_some();
        Ok(out)
    }
}

/// `e`, or the reason behind it when the pod is gone.
async fn gone_or(pods: &Api<Pod>, name: &str, e: anyhow::Error) -> anyhow::Error {
    match pods.get_opt(name).await {
        Ok(None) => anyhow!("the session's pod {name} was deleted under the session"),
        _ => e,
    }
}

/// The task that makes a session's pod and follows it to its end.
struct Follow {
    client: Client,
    settings: Arc<Settings>,
    object: SessionObject,
    claim: PersistentVolumeClaim,
    selector: String,
    secret_line: Vec<u8>,
    lines: Option<mpsc::UnboundedReceiver<Vec<u8>>>,
    relay: bool,
    stdout: Box<dyn std::io::Write + Send>,
    pod: Arc<Mutex<Option<String>>>,
}

impl Follow {
    async fn run(mut self, started: oneshot::Sender<Result<()>>) -> Result<RunOutcome> {
        let mut started = Some(started);
        let res = self.follow(&mut started).await;
        if let (Some(tx), Err(e)) = (started.take(), &res) {
            let _ = tx.send(Err(anyhow!("{e:#}")));
        }
        res
    }

    async fn follow(
        &mut self,
        started: &mut Option<oneshot::Sender<Result<()>>>,
    ) -> Result<RunOutcome> {
        let ns = self.settings.namespace.clone();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        // The claim was made when the group was added; look, and make it
        // again if someone deleted it.
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &ns);
        let claim_name = self.claim.metadata.name.clone().unwrap_or_default();
        if claims
            .get_opt(&claim_name)
            .await
            .with_context(|| format!("cannot look up the bot's claim {claim_name}"))?
            .is_none()
        {
            match claims.create(&PostParams::default(), &self.claim).await {
                Err(e) if !conflict(&e) => {
                    return Err(e)
                        .with_context(|| format!("cannot create the bot's claim {claim_name}"))
                }
                _ => {}
            }
        }
        match &self.object {
            SessionObject::Job(j) => {
                Api::<Job>::namespaced(self.client.clone(), &ns)
                    .create(&PostParams::default(), j)
                    .await
                    .context("cannot create the session's Job")?;
            }
            SessionObject::Pod(p) => {
                pods.create(&PostParams::default(), p)
                    .await
                    .context("cannot create the session's pod")?;
            }
        }
        let created = Instant::now();
        let pending_timeout = self.settings.pending_timeout;
        let mut version = "0".to_string();
        let mut last_pending = "no pod yet".to_string();
        let mut logs: Option<tokio::task::JoinHandle<()>> = None;
        let mut attached: Option<kubeapi::api::AttachedProcess> = None;
        let mut pump: Option<tokio::task::JoinHandle<()>> = None;
        let outcome = 'watch: loop {
            let wp = WatchParams::default().labels(&self.selector).timeout(290);
            let mut events = pods
                .watch(&wp, &version)
                .await
                .context("cannot watch the session's pod")?
                .boxed();
            loop {
                let next = if started.is_some() {
                    let left = pending_timeout.saturating_sub(created.elapsed());
                    match tokio::time::timeout(left, events.try_next()).await {
                        Ok(n) => n,
                        Err(_) => bail!(
                            "the session's pod did not start within {} ({}): {last_pending}",
                            humantime::format_duration(pending_timeout),
                            "kubernetes.pending_timeout"
                        ),
                    }
                } else {
                    events.try_next().await
                };
                let ev = match next {
                    Ok(Some(ev)) => ev,
                    // The watch timed out: watch again from where it was.
                    Ok(None) => continue 'watch,
                    Err(e) => return Err(e).context("the watch of the session's pod failed"),
                };
                let p = match ev {
                    WatchEvent::Added(p) | WatchEvent::Modified(p) => p,
                    WatchEvent::Deleted(p) => {
                        let name = p.metadata.name.unwrap_or_default();
                        bail!("the session's pod {name} was deleted under the session");
                    }
                    WatchEvent::Bookmark(b) => {
                        version = b.metadata.resource_version;
                        continue;
                    }
                    WatchEvent::Error(s) if s.code == 410 => {
                        version = "0".into();
                        continue 'watch;
                    }
                    WatchEvent::Error(s) => bail!("the watch of the session's pod: {}", s.message),
                };
                if let Some(v) = &p.metadata.resource_version {
                    version = v.clone();
                }
                let name = p.metadata.name.clone().unwrap_or_default();
                *self.pod.lock().unwrap() = Some(name.clone());
                match pod_state(&p) {
                    PodState::Pending(why) => last_pending = why,
                    PodState::Running => {
                        if attached.is_none() {
                            let (a, p) = match self.attach(&pods, &name).await {
                                Ok(a) => a,
                                Err(e) => return Err(gone_or(&pods, &name, e).await),
                            };
                            attached = Some(a);
                            pump = p;
                            logs = match self.stream_logs(&pods, &name).await {
                                Ok(l) => Some(l),
                                Err(e) => return Err(gone_or(&pods, &name, e).await),
                            };
                            if let Some(tx) = started.take() {
                                let _ = tx.send(Ok(()));
                            }
                        }
                    }
                    PodState::Ended { exit_code, reason } => {
                        if logs.is_none() {
                            // It ended before it was seen running: its
                            // output is whole in the log.
                            logs = Some(self.stream_logs(&pods, &name).await?);
                            if let Some(tx) = started.take() {
                                let _ = tx.send(Ok(()));
                            }
                        }
                        break 'watch RunOutcome {
                            exit_code,
                            timed_out: reason == "DeadlineExceeded",
                            ..Default::default()
                        };
                    }
                }
            }
        };
        if let Some(l) = logs {
            let _ = l.await;
        }
        if let Some(p) = pump {
            p.abort();
        }
        drop(attached);
        Ok(outcome)
    }

    /// Attaches to the agent container's stdin and writes the secrets
    /// line; without a shared volume, keeps it open for messages.
    async fn attach(
        &mut self,
        pods: &Api<Pod>,
        name: &str,
    ) -> Result<(
        kubeapi::api::AttachedProcess,
        Option<tokio::task::JoinHandle<()>>,
    )> {
        let ap = AttachParams::default()
            .container("agent")
            .stdin(true)
            .stdout(false)
            .stderr(false);
        let mut a = pods
            .attach(name, &ap)
            .await
            .with_context(|| format!("cannot attach to the session's pod {name}"))?;
        let mut stdin = a.stdin().context("the attach has no stdin")?;
        stdin.write_all(&self.secret_line).await?;
        stdin.flush().await?;
        // Gone from memory once sent.
        self.secret_line.iter_mut().for_each(|b| *b = 0);
        if !self.relay {
            stdin.shutdown().await.ok();
            return Ok((a, None));
        }
        let mut rx = self.lines.take().context("the session was started twice")?;
        let pump = tokio::spawn(async move {
            while let Some(line) = rx.recv().await {
                if stdin.write_all(&line).await.is_err() || stdin.flush().await.is_err() {
                    break;
                }
            }
        });
        Ok((a, Some(pump)))
    }

    /// Follows the agent container's log into the frame reader.
    async fn stream_logs(
        &mut self,
        pods: &Api<Pod>,
        name: &str,
    ) -> Result<tokio::task::JoinHandle<()>> {
        let lp = LogParams {
            container: Some("agent".into()),
            follow: true,
            ..Default::default()
        };
        let stream = pods
            .log_stream(name, &lp)
            .await
            .with_context(|| format!("cannot follow the log of the session's pod {name}"))?;
        let mut out = std::mem::replace(&mut self.stdout, Box::new(std::io::sink()));
        Ok(tokio::spawn(async move {
            let mut lines = Box::pin(stream.lines());
            while let Some(Ok(mut line)) = lines.next().await {
                line.push('\n');
                // The frame reader's callback may write to the database.
                let res = tokio::task::block_in_place(|| out.write_all(line.as_bytes()));
                if res.is_err() {
                    break;
                }
            }
            let _ = out.flush();
        }))
    }
}
