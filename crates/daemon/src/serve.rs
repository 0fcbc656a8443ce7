//! `botyard serve`: checks, recovery after a crash, the listener, the
//! scheduler loop, and a graceful SIGTERM.

use crate::config::Config;
use crate::db::Db;
use crate::scheduler::Daemon;
use anyhow::{bail, Context, Result};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use store::Store;

/// Where the daemon listens: `unix:PATH` (default: under the store,
/// owner-only) or `tcp:ADDR` (bearer token required).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    Unix(PathBuf),
    Tcp(std::net::SocketAddr),
}

impl std::str::FromStr for Listen {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Listen> {
        if let Some(p) = s.strip_prefix("unix:") {
            return Ok(Listen::Unix(PathBuf::from(p)));
        }
        if let Some(a) = s.strip_prefix("tcp:") {
            return Ok(Listen::Tcp(a.parse().with_context(|| {
                format!(
                    "--listen {s}: write tcp:HOST:PORT with an IP address, like tcp:127.0.0.1:7420"
                )
            })?));
        }
        bail!("--listen {s}: write unix:PATH or tcp:HOST:PORT")
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
            Listen::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

pub fn daemon_dir(store: &Store) -> PathBuf {
    store.root().join("daemon")
}

pub fn default_socket(store: &Store) -> PathBuf {
    daemon_dir(store).join("daemon.sock")
}

pub fn token_path(store: &Store) -> PathBuf {
    daemon_dir(store).join("token")
}

/// Refuses a file others could read or change.
fn owner_only(p: &Path, what: &str) -> Result<()> {
    if let Ok(md) = std::fs::symlink_metadata(p) {
        if md.file_type().is_symlink() {
            bail!("{what} {} is a symlink; remove it", p.display());
        }
        if md.mode() & 0o077 != 0 {
            bail!(
                "{what} {} is open to other users (mode {:o}); run chmod {} {} and start again",
                p.display(),
                md.mode() & 0o777,
                if md.is_dir() { "700" } else { "600" },
                p.display()
            );
        }
        if md.uid() != rustix::process::geteuid().as_raw() {
            bail!("{what} {} belongs to another user", p.display());
        }
    }
    Ok(())
}

/// The bearer token for TCP, made at first start (owner-only).
pub fn token(store: &Store) -> Result<String> {
    let p = token_path(store);
    if !p.exists() {
        let mut raw = [0u8; 32];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut raw)?;
        store::write_file_atomic(&daemon_dir(store), &p, hex::encode(raw).as_bytes(), 0o600)?;
    }
    owner_only(&p, "token file")?;
    Ok(std::fs::read_to_string(&p)?.trim().to_string())
}

/// Tells systemd (`Type=notify`) how the daemon is doing, when it set
/// `$NOTIFY_SOCKET`; elsewhere does nothing.
fn sd_notify(state: &str) {
    use std::os::unix::ffi::OsStrExt;
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let bytes = path.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name)
        }
        None => std::os::unix::net::SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(bytes)),
    };
    if let (Ok(sock), Ok(addr)) = (std::os::unix::net::UnixDatagram::unbound(), addr) {
        let _ = sock.send_to_addr(state.as_bytes(), &addr);
    }
}

fn ready_notice(listen: &Listen) -> String {
    format!(
        "READY=1\nMAINPID={}\nSTATUS=listening on {listen}",
        std::process::id()
    )
}

/// Runs the daemon until SIGTERM or SIGINT; `ready` is called once it
/// listens.
/// Raises this process's soft descriptor limit to its hard one (at most
/// 65536); returns the soft limit now in force.
fn raise_nofile() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let r = getrlimit(Resource::Nofile);
    let want = r.maximum.unwrap_or(65536).min(65536);
    if r.current.is_some_and(|c| c < want) {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(want),
                maximum: r.maximum,
            },
        );
    }
    getrlimit(Resource::Nofile).current.unwrap_or(want)
}

/// How long and how many connections the API keeps.
#[derive(Clone, Copy)]
struct ConnLimits {
    /// A request's headers (and, between requests, the next one's) must
    /// arrive within this long, or the connection is closed.
    header_timeout: std::time::Duration,
    /// Connections served at once; more wait to be accepted.
    max: usize,
}

impl From<&crate::Config> for ConnLimits {
    fn from(c: &crate::Config) -> Self {
        ConnLimits {
            header_timeout: c.header_timeout,
            max: c.max_connections,
        }
    }
}

enum Accept {
    Unix(tokio::net::UnixListener),
    Tcp(tokio::net::TcpListener),
}

enum Stream {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

/// Serves `app` one task per connection, with a header (and keep-alive
/// idle) timeout and a connection limit, so clients that send half a
/// request cannot pile up until descriptors run out. Returns on `shutdown`;
/// connections still open finish on their own tasks.
async fn serve_with_limits(
    l: Accept,
    app: axum::Router,
    limits: ConnLimits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max));
    tokio::pin!(shutdown);
    loop {
        // A free slot first: beyond the limit, connections wait in the
        // kernel's backlog rather than take descriptors.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = &mut shutdown => return,
        };
        macro_rules! conn {
            ($io:expr) => {{
                let app = app.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            app.clone().oneshot(req.map(axum::body::Body::new))
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(limits.header_timeout)
                        .serve_connection(TokioIo::new($io), svc)
                        .await;
                    drop(permit);
                });
            }};
        }
        tokio::select! {
            r = async {
                match &l {
                    Accept::Unix(u) => u.accept().await.map(|(s, _)| Stream::Unix(s)),
                    Accept::Tcp(t) => t.accept().await.map(|(s, _)| Stream::Tcp(s)),
                }
            } => match r {
                Ok(Stream::Unix(s)) => conn!(s),
                Ok(Stream::Tcp(s)) => {
                    let _ = s.set_nodelay(true);
                    conn!(s)
                }
                // Out of descriptors or the like: wait a moment, go on.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            },
            _ = &mut shutdown => return,
        }
    }
}

/// A server must outlive a client that hangs up while it writes: the
/// write fails with EPIPE instead of SIGPIPE killing the process (the CLI
/// keeps the default for its own output, `botyard bot diff | head`).
fn ignore_sigpipe() {
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// Opens the daemon's state of `store` to read it (the daemon may run or
/// not). Fails, saying what to do, when the daemon never ran there.
pub fn open_state(store: &Store) -> Result<Db> {
    let path = daemon_dir(store).join("state.db");
    if !path.exists() {
        anyhow::bail!(
            "no daemon state in {}; start `botyard serve` and add the group with `botyard group add` first",
            store.root().display()
        );
    }
    Db::open(&path)
}

pub fn serve(
    store: Store,
    listen: Option<Listen>,
    config: Config,
    backend: Arc<dyn session::Backend>,
    ready: impl FnOnce(&Listen),
) -> Result<()> {
    ignore_sigpipe();
    let dir = daemon_dir(&store);
    std::fs::create_dir_all(&dir)?;
    let md = std::fs::metadata(&dir)?;
    if md.mode() & 0o077 != 0 {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    }
    owner_only(&dir, "daemon directory")?;
    let db_path = dir.join("state.db");
    owner_only(&db_path, "database")?;
    let db = Db::open(&db_path)?;
    let requeued =
        db.requeue_running("the daemon stopped while this message was running; delivered again")?;
    if requeued > 0 {
        eprintln!("botyard serve: {requeued} messages that were running when the daemon stopped are queued again");
    }
    let daemon = Daemon::new(store, db, config, backend);
    let reaped = daemon.backend.reap_all(&daemon.store)?;
    if reaped > 0 {
        eprintln!("botyard serve: removed {reaped} sandboxes left behind");
    }
    let store = daemon.store.clone();
    let listen = listen.unwrap_or_else(|| Listen::Unix(default_socket(&store)));
    let token = match &listen {
        // A deployment hands the token in (a Kubernetes Secret); else the
        // store keeps one.
        Listen::Tcp(_) => Some(match std::env::var("BOTYARD_TOKEN") {
            Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
            _ => token(&store)?,
        }),
        Listen::Unix(_) => None,
    };
    let daemon = Arc::new(daemon);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let sched = {
        let (d, stop) = (daemon.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Err(e) = d.tick() {
                    eprintln!("botyard serve: scheduling: {e:#}");
                }
                // Woken by events; timers need no finer grain than this.
                d.wait(std::time::Duration::from_millis(100));
            }
        })
    };
    let live = daemon
        .config
        .live_commit_every
        .filter(|_| daemon.backend.runs_on_host())
        .map(|every| {
            let (d, stop) = (daemon.clone(), stop.clone());
            std::thread::spawn(move || d.live_commits(every, &stop))
        });
    let app = crate::api::router(daemon.clone(), token);
    let mut limits = ConnLimits::from(&daemon.config);
    // Room for every connection the limit allows, and the sessions' pipes.
    let nofile = raise_nofile();
    let fit = (nofile.saturating_sub(256) / 2).max(16) as usize;
    if limits.max > fit {
        eprintln!(
            "botyard serve: note: serving at most {fit} connections at once (max_connections = {}), as the descriptor limit is {nofile}",
            limits.max
        );
        limits.max = fit;
    }
    let res: Result<()> = rt.block_on(async {
        // Installed before READY is sent: a SIGTERM right after it must
        // drain, not kill.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        };
        match &listen {
            Listen::Unix(p) => {
                if let Ok(md) = std::fs::symlink_metadata(p) {
                    if !md.file_type().is_socket() {
                        bail!("{} exists and is not a socket; remove it or pick another --listen", p.display());
                    }
                    if std::os::unix::net::UnixStream::connect(p).is_ok() {
                        bail!("a daemon already listens on {}", p.display());
                    }
                    std::fs::remove_file(p)?;
                }
                if let Some(parent) = p.parent() {
                    let pm = std::fs::metadata(parent)?;
                    if pm.mode() & 0o022 != 0 && pm.mode() & 0o1000 == 0 {
                        bail!("the socket's directory {} is writable by others; pick another --listen", parent.display());
                    }
                }
                let l = tokio::net::UnixListener::bind(p).with_context(|| format!("cannot listen on {}", p.display()))?;
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600))?;
                ready(&listen);
                sd_notify(&ready_notice(&listen));
                serve_with_limits(Accept::Unix(l), app, limits, shutdown).await;
                let _ = std::fs::remove_file(p);
            }
            Listen::Tcp(a) => {
                let l = tokio::net::TcpListener::bind(a).await.with_context(|| format!("cannot listen on {a}"))?;
                ready(&listen);
                sd_notify(&ready_notice(&listen));
                serve_with_limits(Accept::Tcp(l), app, limits, shutdown).await;
            }
        }
        Ok(())
    });
    // Stop taking work, let running messages finish, close sessions.
    sd_notify("STOPPING=1\nSTATUS=draining");
    daemon.drain();
    stop.store(true, Ordering::Relaxed);
    let _ = sched.join();
    if let Some(l) = live {
        let _ = l.join();
    }
    res
}
