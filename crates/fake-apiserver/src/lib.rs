//! A FAKE Kubernetes API server, for botyard's tests and benchmarks where
//! no cluster can run. It is not Kubernetes and must not be mistaken for
//! one: it serves only the calls botyard's session backend makes (pods,
//! Jobs and PersistentVolumeClaims in namespaces: create, get, list,
//! watch, delete; a pod's log and attach over WebSocket, protocols
//! `v5.channel.k8s.io` and `v4.channel.k8s.io`), keeps objects in memory,
//! and checks nothing a real API server would (no schemas, no admission,
//! no RBAC: the strict schema checks are the job of `kubernetes-validate`
//! in the tests).
//!
//! Its fake kubelet runs a pod's containers on this host, each in
//! bubblewrap: a tmpfs root holding the host's `/usr /lib /lib64 /bin
//! /sbin /etc` read-only, an image's own files on top for images given as
//! directories, and the pod's volumes: emptyDirs, image volumes (the
//! image's directory, read-only) and ReadWriteMany claims mapped to host
//! directories. Other claims (bots' volumes, which the CSI driver's own
//! tests cover with real mounts) count for scheduling but are not
//! mounted. A pod whose claim does not exist stays Pending
//! (`Unschedulable`), and one whose image is unknown waits in
//! `ErrImagePull`, with the messages Kubernetes gives. Its Job controller
//! makes one pod per Job, ends the Job with it, enforces
//! `activeDeadlineSeconds` and removes finished Jobs after
//! `ttlSecondsAfterFinished`.
//!
//! Every request is counted, every request body kept, and a fixed latency
//! can be added to each call.

use anyhow::{Context, Result};
use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc, Notify};

/// What the fake serves and runs.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Added to every call before it is answered.
    pub latency: Duration,
    /// Images its kubelet can "pull": a reference, and a directory whose
    /// top-level entries appear at `/` of a container of that image (over
    /// the host's system directories), or `None` for an image that is the
    /// host's system alone. Any other image waits in `ErrImagePull`.
    pub images: HashMap<String, Option<PathBuf>>,
    /// ReadWriteMany claims: their names and the host directories that
    /// hold them (the daemon's mount of the same claim).
    pub shared_claims: HashMap<String, PathBuf>,
    /// Where emptyDirs are made.
    pub work: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Pod,
    Job,
    Claim,
}

impl Kind {
    fn kind(self) -> &'static str {
        match self {
            Kind::Pod => "Pod",
            Kind::Job => "Job",
            Kind::Claim => "PersistentVolumeClaim",
        }
    }
    fn api_version(self) -> &'static str {
        match self {
            Kind::Job => "batch/v1",
            _ => "v1",
        }
    }
}

type Key = (Kind, String, String);

/// One change, as a watch sends it.
#[derive(Clone, Debug)]
pub struct Event {
    pub rv: u64,
    pub kind: Kind,
    pub type_: &'static str,
    pub object: Value,
}

/// A running pod's output and stdin.
#[derive(Default)]
struct PodIo {
    log: Mutex<Vec<u8>>,
    log_done: AtomicBool,
    log_grew: Notify,
    stdin: Mutex<Option<mpsc::UnboundedSender<Option<Vec<u8>>>>>,
    /// `stdinOnce`: the first attach that ends closes stdin for good.
    attached_once: AtomicBool,
    kill: Notify,
    killed: AtomicBool,
}

#[derive(Default)]
struct Inner {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    events: Vec<Event>,
    calls: Vec<(String, String)>,
    bodies: Vec<String>,
    pods: HashMap<(String, String), Arc<PodIo>>,
    uid: u64,
}

struct Shared {
    opts: Options,
    inner: Mutex<Inner>,
    changes: broadcast::Sender<Event>,
}

type St = Arc<Shared>;

/// The fake, serving on loopback until dropped.
pub struct FakeApi {
    pub addr: SocketAddr,
    shared: St,
    rt: Option<tokio::runtime::Runtime>,
}

impl FakeApi {
    /// Starts serving on `127.0.0.1` at `port` (0: any).
    pub fn start(opts: Options, port: u16) -> Result<FakeApi> {
        std::fs::create_dir_all(&opts.work)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fake-apiserver")
            .enable_all()
            .build()?;
        let (changes, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared {
            opts,
            inner: Mutex::new(Inner::default()),
            changes,
        });
        let listener = rt.block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new()
            .route(
                "/api/v1/namespaces/{ns}/pods/{name}/attach",
                axum::routing::any(attach),
            )
            .fallback(handle)
            .with_state(shared.clone());
        rt.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeApi {
            addr,
            shared,
            rt: Some(rt),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig that points at the fake, namespace `ns` by default.
    pub fn kubeconfig(&self, ns: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\nusers:\n- name: fake\n  user:\n    token: fake-token\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: {ns}\ncurrent-context: fake\n",
            self.url()
        )
    }

    /// Every call so far: method and path (no query).
    pub fn calls(&self) -> Vec<(String, String)> {
        self.shared.inner.lock().unwrap().calls.clone()
    }

    /// Every request body so far, and every state every object had: what
    /// a secret must never be found in.
    pub fn everything_seen(&self) -> String {
        let i = self.shared.inner.lock().unwrap();
        let mut s = i.bodies.join("\n");
        for e in &i.events {
            s.push('\n');
            s.push_str(&e.object.to_string());
        }
        s
    }

    /// Objects of `kind` now.
    pub fn objects(&self, kind: Kind) -> Vec<Value> {
        let i = self.shared.inner.lock().unwrap();
        i.objects
            .iter()
            .filter(|(k, _)| k.0 == kind)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Every change so far.
    pub fn events(&self) -> Vec<Event> {
        self.shared.inner.lock().unwrap().events.clone()
    }

    /// What pod `name` wrote (stdout and stderr), so far.
    pub fn log(&self, ns: &str, name: &str) -> String {
        pod_io(&self.shared, ns, name)
            .map(|p| String::from_utf8_lossy(&p.log.lock().unwrap()).into_owned())
            .unwrap_or_default()
    }

    /// Deletes an object as `kubectl delete` would (a pod's containers are
    /// killed at once).
    pub fn delete(&self, kind: Kind, ns: &str, name: &str) -> bool {
        delete_object(&self.shared, kind, ns, name).is_some()
    }

    /// Makes an object as `kubectl create` would.
    pub fn create(&self, kind: Kind, ns: &str, object: Value) -> Result<Value> {
        let rt = self.rt.as_ref().unwrap();
        let _g = rt.enter();
        create_object(&self.shared, kind, ns, object).map_err(|(_, m)| anyhow::anyhow!(m))
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        let pods: Vec<Arc<PodIo>> = self
            .shared
            .inner
            .lock()
            .unwrap()
            .pods
            .values()
            .cloned()
            .collect();
        for p in pods {
            p.killed.store(true, Ordering::SeqCst);
            p.kill.notify_waiters();
            p.kill.notify_one();
        }
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

fn status(code: StatusCode, reason: &str, message: String) -> Response {
    (
        code,
        axum::Json(json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code.as_u16()
        })),
    )
        .into_response()
}

fn now() -> String {
    // RFC 3339 in UTC, seconds.
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + t).to_string()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match h {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query(q: &Option<String>) -> HashMap<String, String> {
    q.as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// Equality and existence terms, comma-separated.
fn matches(selector: Option<&String>, object: &Value) -> bool {
    let Some(sel) = selector else { return true };
    let labels = &object["metadata"]["labels"];
    sel.split(',').filter(|t| !t.is_empty()).all(|t| {
        match t.split_once("==").or_else(|| t.split_once('=')) {
            Some((k, v)) => labels[k.trim()].as_str() == Some(v.trim()),
            None => !labels[t.trim()].is_null(),
        }
    })
}

fn record(s: &St, method: &Method, path: &str, body: &[u8]) {
    let mut i = s.inner.lock().unwrap();
    i.calls.push((method.to_string(), path.to_string()));
    if !body.is_empty() {
        i.bodies.push(String::from_utf8_lossy(body).into_owned());
    }
}

/// Parses `/api/v1/namespaces/NS/pods[/NAME[/log]]` and the like.
fn route(path: &str) -> Option<(Kind, String, Option<String>, Option<String>)> {
    let p: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (ns, rest) = match p.as_slice() {
        ["api", "v1", "namespaces", ns, rest @ ..] => (*ns, rest),
        ["apis", "batch", "v1", "namespaces", ns, rest @ ..] => (*ns, rest),
        _ => return None,
    };
    let batch = p[0] == "apis";
    let (kind, rest) = match rest {
        ["pods", rest @ ..] if !batch => (Kind::Pod, rest),
        ["persistentvolumeclaims", rest @ ..] if !batch => (Kind::Claim, rest),
        ["jobs", rest @ ..] if batch => (Kind::Job, rest),
        _ => return None,
    };
    match rest {
        [] => Some((kind, ns.into(), None, None)),
        [name] => Some((kind, ns.into(), Some((*name).into()), None)),
        [name, sub] => Some((kind, ns.into(), Some((*name).into()), Some((*sub).into()))),
        _ => None,
    }
}

async fn handle(State(s): State<St>, RawQuery(q): RawQuery, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    if path == "/fake/calls" {
        // The fake's own: how many calls it answered (not counted).
        let n = s.inner.lock().unwrap().calls.len();
        return axum::Json(json!({ "calls": n })).into_response();
    }
    let body = axum::body::to_bytes(req.into_body(), 64 << 20)
        .await
        .unwrap_or_default();
    record(&s, &method, &path, &body);
    if !s.opts.latency.is_zero() {
        tokio::time::sleep(s.opts.latency).await;
    }
    let Some((kind, ns, name, sub)) = route(&path) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("the fake API server does not serve {path}"),
        );
    };
    let q = query(&q);
    match (method.as_str(), name, sub.as_deref()) {
        ("POST", None, None) => {
            let obj: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", e.to_string()),
            };
            match create_object(&s, kind, &ns, obj) {
                Ok(o) => (StatusCode::CREATED, axum::Json(o)).into_response(),
                Err((code, m)) => status(
                    code,
                    if code == StatusCode::CONFLICT {
                        "AlreadyExists"
                    } else {
                        "BadRequest"
                    },
                    m,
                ),
            }
        }
        ("GET", None, None) if q.get("watch").map(String::as_str) == Some("true") => {
            watch(s, kind, ns, q)
        }
        ("GET", None, None) => {
            let i = s.inner.lock().unwrap();
            let items: Vec<Value> = i
                .objects
                .iter()
                .filter(|(k, v)| k.0 == kind && k.1 == ns && matches(q.get("labelSelector"), v))
                .map(|(_, v)| v.clone())
                .collect();
            axum::Json(json!({
                "apiVersion": kind.api_version(), "kind": format!("{}List", kind.kind()),
                "metadata": {"resourceVersion": i.rv.to_string()}, "items": items
            }))
            .into_response()
        }
        ("GET", Some(name), None) => {
            let i = s.inner.lock().unwrap();
            match i.objects.get(&(kind, ns.clone(), name.clone())) {
                Some(o) => axum::Json(o.clone()).into_response(),
                None => not_found(kind, &name),
            }
        }
        ("DELETE", Some(name), None) => match delete_object(&s, kind, &ns, &name) {
            Some(o) => axum::Json(o).into_response(),
            None => not_found(kind, &name),
        },
        ("GET", Some(name), Some("log")) if kind == Kind::Pod => {
            let io = pod_io(&s, &ns, &name);
            match io {
                Some(io) => log_stream(io, q.get("follow").map(String::as_str) == Some("true")),
                None => status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!("container \"agent\" in pod \"{name}\" is waiting to start"),
                ),
            }
        }
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("the fake API server does not serve {method} {path}"),
        ),
    }
}

fn pod_io(s: &St, ns: &str, name: &str) -> Option<Arc<PodIo>> {
    s.inner
        .lock()
        .unwrap()
        .pods
        .get(&(ns.to_string(), name.to_string()))
        .cloned()
}

fn not_found(kind: Kind, name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{} \"{name}\" not found", kind.kind().to_lowercase()),
    )
}

fn emit(s: &St, i: &mut Inner, kind: Kind, type_: &'static str, object: Value) {
    let e = Event {
        rv: i.rv,
        kind,
        type_,
        object,
    };
    i.events.push(e.clone());
    let _ = s.changes.send(e);
}

fn create_object(
    s: &St,
    kind: Kind,
    ns: &str,
    mut obj: Value,
) -> std::result::Result<Value, (StatusCode, String)> {
    let Some(name) = obj["metadata"]["name"].as_str().map(String::from) else {
        return Err((StatusCode::BAD_REQUEST, "metadata.name is required".into()));
    };
    if let Some(n) = obj["metadata"]["namespace"].as_str() {
        if n != ns {
            return Err((
                StatusCode::BAD_REQUEST,
                "the namespace of the object does not match the namespace of the request".into(),
            ));
        }
    }
    let mut i = s.inner.lock().unwrap();
    let key = (kind, ns.to_string(), name.clone());
    if i.objects.contains_key(&key) {
        return Err((
            StatusCode::CONFLICT,
            format!("{} \"{name}\" already exists", kind.kind().to_lowercase()),
        ));
    }
    i.rv += 1;
    i.uid += 1;
    let m = obj["metadata"].as_object_mut().unwrap();
    m.insert("namespace".into(), ns.into());
    m.insert("uid".into(), format!("fake-uid-{}", i.uid).into());
    m.insert("resourceVersion".into(), i.rv.to_string().into());
    m.insert("creationTimestamp".into(), now().into());
    obj["apiVersion"] = kind.api_version().into();
    obj["kind"] = kind.kind().into();
    obj["status"] = match kind {
        Kind::Pod => json!({"phase": "Pending"}),
        Kind::Claim => json!({"phase": "Bound"}),
        Kind::Job => json!({}),
    };
    i.objects.insert(key, obj.clone());
    if kind == Kind::Pod {
        i.pods
            .insert((ns.to_string(), name.clone()), Arc::new(PodIo::default()));
    }
    emit(s, &mut i, kind, "ADDED", obj.clone());
    drop(i);
    match kind {
        Kind::Pod => {
            tokio::spawn(kubelet(s.clone(), ns.to_string(), name));
        }
        Kind::Job => {
            tokio::spawn(job_controller(s.clone(), ns.to_string(), name));
        }
        Kind::Claim => {}
    }
    Ok(obj)
}

fn delete_object(s: &St, kind: Kind, ns: &str, name: &str) -> Option<Value> {
    let mut i = s.inner.lock().unwrap();
    let key = (kind, ns.to_string(), name.to_string());
    let obj = i.objects.remove(&key)?;
    i.rv += 1;
    let mut gone = obj.clone();
    gone["metadata"]["resourceVersion"] = i.rv.to_string().into();
    emit(s, &mut i, kind, "DELETED", gone);
    let mut children = Vec::new();
    match kind {
        Kind::Pod => {
            if let Some(io) = i.pods.get(&(ns.to_string(), name.to_string())) {
                io.killed.store(true, Ordering::SeqCst);
                io.kill.notify_one();
            }
        }
        Kind::Job => {
            // Background propagation: the Job's pods go too.
            for (k, v) in &i.objects {
                if k.0 == Kind::Pod
                    && k.1 == ns
                    && v["metadata"]["labels"]["job-name"].as_str() == Some(name)
                {
                    children.push(k.2.clone());
                }
            }
        }
        Kind::Claim => {}
    }
    drop(i);
    for c in children {
        delete_object(s, Kind::Pod, ns, &c);
    }
    Some(obj)
}

/// Changes object `key` in place (a status update), if it still exists.
fn update(s: &St, kind: Kind, ns: &str, name: &str, f: impl FnOnce(&mut Value)) -> bool {
    let mut i = s.inner.lock().unwrap();
    let key = (kind, ns.to_string(), name.to_string());
    let rv = i.rv + 1;
    let Some(o) = i.objects.get_mut(&key) else {
        return false;
    };
    f(o);
    o["metadata"]["resourceVersion"] = rv.to_string().into();
    let o = o.clone();
    i.rv = rv;
    emit(s, &mut i, kind, "MODIFIED", o);
    true
}

fn get(s: &St, kind: Kind, ns: &str, name: &str) -> Option<Value> {
    s.inner
        .lock()
        .unwrap()
        .objects
        .get(&(kind, ns.to_string(), name.to_string()))
        .cloned()
}

fn watch(s: St, kind: Kind, ns: String, q: HashMap<String, String>) -> Response {
    let mut rx = s.changes.subscribe();
    let from: u64 = q
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let timeout = Duration::from_secs(
        q.get("timeoutSeconds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(290),
    );
    let sel = q.get("labelSelector").cloned();
    let ok = move |e: &Event| {
        e.kind == kind
            && e.object["metadata"]["namespace"].as_str() == Some(&ns)
            && matches(sel.as_ref(), &e.object)
    };
    let (first, mut last) = {
        let i = s.inner.lock().unwrap();
        let first: Vec<Event> = if from == 0 {
            i.objects
                .iter()
                .map(|(k, v)| Event {
                    rv: v["metadata"]["resourceVersion"]
                        .as_str()
                        .and_then(|r| r.parse().ok())
                        .unwrap_or(0),
                    kind: k.0,
                    type_: "ADDED",
                    object: v.clone(),
                })
                .filter(|e| ok(e))
                .collect()
        } else {
            i.events
                .iter()
                .filter(|e| e.rv > from && ok(e))
                .cloned()
                .collect()
        };
        (first, i.rv)
    };
    let line = |e: &Event| {
        let mut l = json!({"type": e.type_, "object": e.object}).to_string();
        l.push('\n');
        Ok::<_, std::io::Error>(Bytes::from(l))
    };
    let (tx, body_rx) = mpsc::channel::<std::result::Result<Bytes, std::io::Error>>(64);
    tokio::spawn(async move {
        for e in &first {
            if tx.send(line(e)).await.is_err() {
                return;
            }
        }
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, rx.recv()).await {
                Ok(Ok(e)) => {
                    if e.rv <= last || !ok(&e) {
                        continue;
                    }
                    last = e.rv;
                    if tx.send(line(&e)).await.is_err() {
                        return;
                    }
                }
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
                _ => return,
            }
        }
    });
    let stream = futures_util::stream::unfold(body_rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap()
}

fn log_stream(io: Arc<PodIo>, follow: bool) -> Response {
    let (tx, rx) = mpsc::channel::<std::result::Result<Bytes, std::io::Error>>(16);
    tokio::spawn(async move {
        let mut at = 0usize;
        loop {
            let notified = io.log_grew.notified();
            let (chunk, done) = {
                let log = io.log.lock().unwrap();
                (log[at..].to_vec(), io.log_done.load(Ordering::SeqCst))
            };
            if !chunk.is_empty() {
                at += chunk.len();
                if tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                    return;
                }
                continue;
            }
            if done || !follow {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Response::builder()
        .header("content-type", "text/plain")
        .body(Body::from_stream(stream))
        .unwrap()
}

async fn attach(
    State(s): State<St>,
    Path((ns, name)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    method: Method,
    ws: WebSocketUpgrade,
) -> Response {
    record(
        &s,
        &method,
        &format!("/api/v1/namespaces/{ns}/pods/{name}/attach"),
        b"",
    );
    if !s.opts.latency.is_zero() {
        tokio::time::sleep(s.opts.latency).await;
    }
    let q = query(&q);
    let io = pod_io(&s, &ns, &name);
    let Some(io) = io else {
        return not_found(Kind::Pod, &name);
    };
    let running = io.stdin.lock().unwrap().is_some();
    if !running {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("pod {name} does not have a running container with stdin"),
        );
    }
    let want_stdin = q.get("stdin").map(String::as_str) == Some("true");
    ws.protocols(["v5.channel.k8s.io", "v4.channel.k8s.io"])
        .on_upgrade(move |socket| attached(socket, io, want_stdin))
}

async fn attached(mut socket: WebSocket, io: Arc<PodIo>, want_stdin: bool) {
    let v5 = socket.protocol().and_then(|p| p.to_str().ok()) == Some("v5.channel.k8s.io");
    let stdin = if want_stdin && !io.attached_once.swap(true, Ordering::SeqCst) {
        io.stdin.lock().unwrap().clone()
    } else {
        None
    };
    loop {
        tokio::select! {
            m = socket.recv() => match m {
                Some(Ok(Message::Binary(b))) if !b.is_empty() => match b[0] {
                    0 => {
                        if let Some(tx) = &stdin {
                            let _ = tx.send(Some(b[1..].to_vec()));
                        }
                    }
                    255 if v5 && b.get(1) == Some(&0) => {
                        if let Some(tx) = &stdin {
                            let _ = tx.send(None);
                        }
                    }
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                _ => {}
            },
            _ = io.kill.notified() => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                if io.log_done.load(Ordering::SeqCst) {
                    let _ = socket.send(Message::Binary(Bytes::from([&[3u8][..], br#"{"metadata":{},"status":"Success"}"#].concat()))).await;
                    break;
                }
            }
        }
    }
    // stdinOnce: the attach that ends closes the container's stdin.
    if let Some(tx) = &stdin {
        let _ = tx.send(None);
    }
    let _ = socket.send(Message::Close(None)).await;
}

/// The pod's containers as the fake kubelet runs them.
async fn kubelet(s: St, ns: String, name: String) {
    tokio::time::sleep(Duration::from_millis(5)).await;
    // Scheduling and pulling: Pending, with Kubernetes' reasons, until
    // the claims exist and the images are known.
    loop {
        let Some(pod) = get(&s, Kind::Pod, &ns, &name) else {
            return;
        };
        let spec = &pod["spec"];
        let missing = spec["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["persistentVolumeClaim"]["claimName"].as_str())
            .find(|c| get(&s, Kind::Claim, &ns, c).is_none())
            .map(String::from);
        if let Some(c) = missing {
            let msg = format!("0/1 nodes are available: persistentvolumeclaim \"{c}\" not found. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.");
            update(&s, Kind::Pod, &ns, &name, |p| {
                p["status"] = json!({"phase": "Pending", "conditions": [{
                    "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg
                }]});
            });
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let images: Vec<String> = ["initContainers", "containers"]
            .iter()
            .flat_map(|k| spec[*k].as_array().cloned().unwrap_or_default())
            .filter_map(|c| c["image"].as_str().map(String::from))
            .chain(
                spec["volumes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v["image"]["reference"].as_str().map(String::from)),
            )
            .collect();
        if let Some(bad) = images.iter().find(|i| !s.opts.images.contains_key(*i)) {
            let msg = format!("Failed to pull image \"{bad}\": rpc error: code = NotFound desc = failed to pull and unpack image \"{bad}\": not found");
            update(&s, Kind::Pod, &ns, &name, |p| {
                p["status"] = json!({"phase": "Pending",
                    "conditions": [{"type": "PodScheduled", "status": "True"}],
                    "containerStatuses": [{"name": "agent", "ready": false, "restartCount": 0, "image": bad, "imageID": "",
                        "state": {"waiting": {"reason": "ErrImagePull", "message": msg}}}]});
            });
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        break;
    }
    let Some(pod) = get(&s, Kind::Pod, &ns, &name) else {
        return;
    };
    let Some(io) = pod_io(&s, &ns, &name) else {
        return;
    };
    let uid = pod["metadata"]["uid"].as_str().unwrap_or("x").to_string();
    let dir = s.opts.work.join("pods").join(&uid);
    for c in pod["spec"]["initContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let code = match run_container(&s, &pod, &c, &dir, None).await {
            Ok(code) => code,
            Err(e) => {
                io.log
                    .lock()
                    .unwrap()
                    .extend(format!("fake kubelet: {e:#}\n").bytes());
                1
            }
        };
        if code != 0 {
            finish(&s, &ns, &name, &io, code, "Init:Error");
            return;
        }
    }
    let Some(agent) = pod["spec"]["containers"]
        .as_array()
        .and_then(|c| c.first())
        .cloned()
    else {
        return;
    };
    let code = match run_container(&s, &pod, &agent, &dir, Some(&io)).await {
        Ok(code) => code,
        Err(e) => {
            io.log
                .lock()
                .unwrap()
                .extend(format!("fake kubelet: {e:#}\n").bytes());
            128
        }
    };
    let reason = if io.killed.load(Ordering::SeqCst) {
        "Killed"
    } else if code == 0 {
        "Completed"
    } else {
        "Error"
    };
    finish(&s, &ns, &name, &io, code, reason);
    let _ = std::fs::remove_dir_all(&dir);
}

fn finish(s: &St, ns: &str, name: &str, io: &PodIo, code: i32, reason: &str) {
    io.log_done.store(true, Ordering::SeqCst);
    io.log_grew.notify_waiters();
    *io.stdin.lock().unwrap() = None;
    let at = now();
    update(s, Kind::Pod, ns, name, |p| {
        p["status"] = json!({
            "phase": if code == 0 { "Succeeded" } else { "Failed" },
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [{"name": "agent", "ready": false, "restartCount": 0, "image": "", "imageID": "",
                "state": {"terminated": {"exitCode": code, "reason": reason, "finishedAt": at}}}]
        });
    });
}

/// bubblewrap's arguments for container `c` of `pod`.
fn sandbox_args(s: &St, pod: &Value, c: &Value, dir: &std::path::Path) -> Result<Vec<String>> {
    let mut a: Vec<String> = [
        "--die-with-parent",
        "--unshare-pid",
        "--unshare-ipc",
        "--tmpfs",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--tmpfs",
        "/tmp",
        "--ro-bind",
        "/usr",
        "/usr",
        "--ro-bind",
        "/etc",
        "/etc",
    ]
    .map(String::from)
    .to_vec();
    for d in ["/lib", "/lib64", "/bin", "/sbin"] {
        a.extend(["--ro-bind-try".into(), d.into(), d.into()]);
    }
    let image = c["image"].as_str().unwrap_or_default();
    if let Some(Some(root)) = s.opts.images.get(image) {
        for e in std::fs::read_dir(root).with_context(|| format!("image {image}"))? {
            let e = e?;
            let at = format!("/{}", e.file_name().to_string_lossy());
            a.extend(["--ro-bind".into(), e.path().display().to_string(), at]);
        }
    }
    let volumes: HashMap<String, Value> = pod["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| Some((v["name"].as_str()?.to_string(), v.clone())))
        .collect();
    for m in c["volumeMounts"].as_array().into_iter().flatten() {
        let vname = m["name"].as_str().unwrap_or_default();
        let at = m["mountPath"].as_str().unwrap_or_default().to_string();
        let sub = m["subPath"].as_str().unwrap_or_default();
        let ro = m["readOnly"].as_bool().unwrap_or(false);
        let Some(v) = volumes.get(vname) else {
            anyhow::bail!("volume {vname} is not in the pod");
        };
        let src = if let Some(claim) = v["persistentVolumeClaim"]["claimName"].as_str() {
            match s.opts.shared_claims.get(claim) {
                Some(d) => d.join(sub),
                // A bot's volume: the CSI driver's own tests mount those.
                None => continue,
            }
        } else if v.get("emptyDir").is_some() {
            dir.join("volumes").join(vname).join(sub)
        } else if let Some(r) = v["image"]["reference"].as_str() {
            match s.opts.images.get(r) {
                Some(Some(d)) => d.join(sub),
                _ => anyhow::bail!("image volume {r} has no files in the fake"),
            }
        } else {
            anyhow::bail!("the fake kubelet does not know volume {vname}'s kind");
        };
        std::fs::create_dir_all(&src)?;
        let flag = if ro || v.get("image").is_some() {
            "--ro-bind"
        } else {
            "--bind"
        };
        a.extend([flag.into(), src.display().to_string(), at]);
    }
    for e in c["env"].as_array().into_iter().flatten() {
        if let (Some(k), Some(v)) = (e["name"].as_str(), e["value"].as_str()) {
            a.extend(["--setenv".into(), k.into(), v.into()]);
        }
    }
    a.push("--".into());
    for x in c["command"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(c["args"].as_array().into_iter().flatten())
    {
        a.push(x.as_str().unwrap_or_default().to_string());
    }
    Ok(a)
}

/// Runs one container to its end; `io` for the main one (stdin, log).
async fn run_container(
    s: &St,
    pod: &Value,
    c: &Value,
    dir: &std::path::Path,
    io: Option<&Arc<PodIo>>,
) -> Result<i32> {
    let args = sandbox_args(s, pod, c, dir)?;
    let mut cmd = tokio::process::Command::new("bwrap");
    cmd.args(&args)
        .env_clear()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .context("cannot start bwrap (install bubblewrap)")?;
    let mut stdin = child.stdin.take();
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let sink = io.cloned().unwrap_or_default();
    let mut copies = Vec::new();
    for mut r in [
        Box::new(out) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
        Box::new(err),
    ] {
        let sink = sink.clone();
        copies.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            loop {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        sink.log.lock().unwrap().extend_from_slice(&buf[..n]);
                        sink.log_grew.notify_waiters();
                    }
                }
            }
        }));
    }
    if let Some(io) = io {
        let wants_stdin = c["stdin"].as_bool().unwrap_or(false);
        if wants_stdin {
            let (tx, mut rx) = mpsc::unbounded_channel::<Option<Vec<u8>>>();
            *io.stdin.lock().unwrap() = Some(tx);
            let mut w = stdin.take().unwrap();
            tokio::spawn(async move {
                while let Some(Some(b)) = rx.recv().await {
                    if w.write_all(&b).await.is_err() {
                        break;
                    }
                }
            });
        }
        let s2 = s.clone();
        let (ns, name) = (
            pod["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            pod["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        let at = now();
        update(&s2, Kind::Pod, &ns, &name, |p| {
            p["status"] = json!({
                "phase": "Running",
                "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "agent", "ready": true, "restartCount": 0, "image": c["image"], "imageID": "",
                    "state": {"running": {"startedAt": at}}}]
            });
        });
    }
    drop(stdin);
    let kill = io.cloned();
    let status = tokio::select! {
        st = child.wait() => st?,
        _ = async {
            match &kill {
                Some(k) => loop {
                    if k.killed.load(Ordering::SeqCst) { break; }
                    let _ = tokio::time::timeout(Duration::from_millis(100), k.kill.notified()).await;
                },
                None => std::future::pending::<()>().await,
            }
        } => {
            let _ = child.start_kill();
            child.wait().await?
        }
    };
    for c in copies {
        let _ = c.await;
    }
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(9)))
}

/// One pod per Job; the Job ends with it.
async fn job_controller(s: St, ns: String, job: String) {
    let Some(j) = get(&s, Kind::Job, &ns, &job) else {
        return;
    };
    let template = &j["spec"]["template"];
    let juid = j["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let suffix: String = juid
        .bytes()
        .rev()
        .take(5)
        .map(|b| (b'a' + b % 26) as char)
        .collect();
    let pod_name = format!("{job}-{suffix}");
    let mut meta = template["metadata"].clone();
    if !meta.is_object() {
        meta = json!({});
    }
    meta["name"] = pod_name.clone().into();
    let mut labels = meta["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    labels["job-name"] = job.clone().into();
    labels["batch.kubernetes.io/job-name"] = job.clone().into();
    labels["controller-uid"] = juid.clone().into();
    meta["labels"] = labels;
    meta["ownerReferences"] = json!([{"apiVersion": "batch/v1", "kind": "Job", "name": job, "uid": juid, "controller": true}]);
    let pod = json!({"metadata": meta, "spec": template["spec"]});
    if create_object(&s, Kind::Pod, &ns, pod).is_err() {
        return;
    }
    update(&s, Kind::Job, &ns, &job, |j| {
        j["status"] = json!({"active": 1, "startTime": now()});
    });
    let deadline = j["spec"]["activeDeadlineSeconds"]
        .as_u64()
        .map(Duration::from_secs);
    let started = Instant::now();
    let (ok, reason) = loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if get(&s, Kind::Job, &ns, &job).is_none() {
            return;
        }
        match get(&s, Kind::Pod, &ns, &pod_name) {
            None => break (false, "PodDeleted"),
            Some(p) => match p["status"]["phase"].as_str() {
                Some("Succeeded") => break (true, "Completed"),
                Some("Failed") => break (false, "BackoffLimitExceeded"),
                _ => {}
            },
        }
        if deadline.is_some_and(|d| started.elapsed() > d) {
            delete_object(&s, Kind::Pod, &ns, &pod_name);
            break (false, "DeadlineExceeded");
        }
    };
    update(&s, Kind::Job, &ns, &job, |j| {
        j["status"] = json!({
            "succeeded": if ok { 1 } else { 0 }, "failed": if ok { 0 } else { 1 },
            "conditions": [{"type": if ok { "Complete" } else { "Failed" }, "status": "True", "reason": reason}]
        });
    });
    if let Some(ttl) = j["spec"]["ttlSecondsAfterFinished"].as_u64() {
        tokio::time::sleep(Duration::from_secs(ttl)).await;
        delete_object(&s, Kind::Job, &ns, &job);
    }
}
