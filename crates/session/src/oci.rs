//! The OCI backend: a sandbox is a bundle run by runc (or crun, youki, a
//! path), in its own pid, mount, ipc, uts and network namespaces,
//! non-root, with limits, on a staged copy of the bot's mount. What a
//! session leaves on disk (`state.json` in the bot's session directory)
//! lets the next command reap it after a killed botyard.

use crate::allowlist::{Allowlist, MOUNT_BASE};
use crate::backend::{Backend, RunIo, RunOptions, RunOutcome, Sandbox, Signal};
use crate::bundle::{config, BindMount, SandboxSpec};
use crate::ipc::Channel;
use crate::runtime::Runtime;
use crate::{IPC_AT, SUPERVISOR_AT, WORKSPACE_AT};
use anyhow::{bail, Context, Result};
use bot::{Bot, Driver};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::Store;

/// Sessions in sandboxes of an OCI runtime on this host.
pub struct Oci {
    runtime: Runtime,
}

impl Oci {
    pub fn new(runtime: Runtime) -> Oci {
        Oci { runtime }
    }
}

/// What a running session leaves on disk, so the next command can clean up
/// after a killed botyard.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SessionState {
    container_id: String,
    runtime: String,
    pid: u32,
    started: String,
    /// The run mounted the bot, so cleaning up unmounts it.
    mounted_by_run: bool,
}

/// Whether `n` can name an environment variable (and so a secret).
pub fn valid_env_name(n: &str) -> bool {
    !n.is_empty()
        && !n.starts_with(|c: char| c.is_ascii_digit())
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Backend for Oci {
    fn name(&self) -> String {
        self.runtime.to_string()
    }

    fn admit_group(&self, store: &Store, g: &crate::Group, _others: &[crate::Group]) -> Result<()> {
        if Bot::new(store, &g.bot).and_then(|b| b.load()).is_err() {
            bail!(
                "no bot {} in the store; make it with `botyard bot create`",
                store::quote_str(&g.bot)
            );
        }
        Ok(())
    }

    fn prepare(&self, store: &Store, opts: &RunOptions) -> Result<Arc<dyn Sandbox>> {
        if opts.args.is_empty() {
            bail!("no command to run; put it after --, like `botyard run BOT -- sh -c 'echo hi'`");
        }
        let bot = Bot::new(store, &opts.bot)?;
        bot.load()?;
        let runtime = self.runtime.resolve()?;
        let secrets = crate::backend::secrets_from_env(&opts.secrets)?;
        let channel = match &opts.ipc {
            Some(dir) => Some(Channel::create(dir, opts.uid, opts.gid)?),
            None => None,
        };
        Ok(Arc::new(OciSandbox {
            store: store.clone(),
            bot,
            opts: opts.clone(),
            runtime,
            secrets: Mutex::new(Some(secrets)),
            channel,
            running: Mutex::new(None),
            container_id: Mutex::new(None),
        }))
    }

    fn reap(&self, store: &Store, id: &str) -> Result<bool> {
        reap(store, id)
    }

    fn reap_all(&self, store: &Store) -> Result<u64> {
        reap_all(store)
    }
}

struct OciSandbox {
    store: Store,
    bot: Bot,
    opts: RunOptions,
    runtime: PathBuf,
    /// Taken by `start`.
    secrets: Mutex<Option<serde_json::Map<String, serde_json::Value>>>,
    channel: Option<Channel>,
    running: Mutex<Option<Running>>,
    container_id: Mutex<Option<String>>,
}

/// What `start` made, removed by [`Running::teardown`].
struct Held {
    store: Store,
    bot: String,
    runtime: PathBuf,
    dir: PathBuf,
    /// The session's state file.
    state: PathBuf,
    container_id: String,
    lock: Option<std::fs::File>,
    staged: Option<Unstage>,
    mounted_by_run: bool,
}

impl Held {
    /// Removes the container (unless the runtime did), the staged mounts,
    /// the bot's mount if the run made it, and the session's state.
    fn teardown(mut self, runtime_cleaned_up: bool) -> Result<()> {
        if !runtime_cleaned_up {
            let _ = Command::new(&self.runtime)
                .args(["delete", "--force", &self.container_id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        // The copies go first: the bot's own mount is in use while they exist.
        drop(self.staged.take());
        let r = if self.mounted_by_run {
            unmount_retrying(&self.store, &self.bot)
        } else {
            Ok(())
        };
        let _ = std::fs::remove_file(&self.state);
        drop(self.lock.take());
        r
    }
}

struct Running {
    held: Held,
    exited: Receiver<std::io::Result<ExitStatus>>,
    pumps: Vec<std::thread::JoinHandle<()>>,
    capped: Arc<AtomicBool>,
    started: Instant,
}

impl OciSandbox {
    fn kill_id(&self, id: &str, sig: Signal) {
        let _ = Command::new(&self.runtime)
            .args(["kill", "--all", id, &sig.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Mounts, stages and writes the bundle; what it made is in `held`.
    fn stage(&self, held: &mut Held) -> Result<SandboxSpec> {
        let opts = &self.opts;
        let store = &self.store;
        let dir = &held.dir;
        // Every host directory the sandbox sees is opened and checked
        // once, and a copy of exactly that mount is staged under the
        // session's directory (closed to other users) for the runtime.
        let allow = Allowlist::load(&opts.allowlist)?;
        let staged = dir.join("mnt");
        unstage(&staged);
        held.staged = Some(Unstage(staged.clone()));
        let mut checked = Vec::new();
        for m in &opts.mounts {
            checked.push(allow.check(m, opts.main)?);
        }
        let stage = |i: usize, fd: &rustix::fd::OwnedFd, writable: bool| -> Result<PathBuf> {
            let at = staged.join(i.to_string());
            fs::mount_clone(fd, &at, writable)?;
            Ok(at)
        };
        let mut binds = Vec::new();
        for (i, m) in checked.iter().enumerate() {
            binds.push(BindMount {
                source: stage(i, &m.source, !m.read_only)
                    .with_context(|| format!("cannot mount {}", m.resolved.display()))?,
                dest: format!("{MOUNT_BASE}/{}", m.dest.display()),
                read_only: m.read_only,
            });
        }
        if let Some(w) = &opts.workspace {
            let fd = rustix::fs::open(
                w,
                rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .map_err(std::io::Error::from)
            .with_context(|| format!("cannot open the workspace at {}", w.display()))?;
            binds.push(BindMount {
                source: stage(checked.len(), &fd, true)?,
                dest: WORKSPACE_AT.into(),
                read_only: false,
            });
        }
        if let Some(ch) = &self.channel {
            binds.push(BindMount {
                source: ch.dir().to_path_buf(),
                dest: IPC_AT.into(),
                read_only: false,
            });
        }
        let (sup_dir, entry) = crate::copy_self::supervisor_dir(
            &store.root().join("supervisor"),
            Path::new(SUPERVISOR_AT),
        )?;
        binds.insert(
            0,
            BindMount {
                source: sup_dir,
                dest: SUPERVISOR_AT.into(),
                read_only: true,
            },
        );

        // The bot's root: an overlay bot is mounted for the run if it is
        // not (nosuid,nodev); the sandbox gets a copy of that mount, staged
        // with the others.
        let r = self.bot.load()?;
        let bot_root = match r.driver {
            Driver::Copy => self.bot.default_mount(),
            Driver::Overlay => match self.bot.mounted_at() {
                Some(p) => p,
                None => {
                    let p = bot::mount(store, &opts.bot, None, bot::MountOptions::default())?;
                    held.mounted_by_run = true;
                    p
                }
            },
        };
        let root = staged.join("root");
        rustix::fs::open(
            &bot_root,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(std::io::Error::from)
        .map_err(anyhow::Error::from)
        .and_then(|fd| fs::mount_clone(&fd, &root, true))
        .context("cannot prepare the bot's root for the sandbox")?;

        let state = SessionState {
            container_id: held.container_id.clone(),
            runtime: self.runtime.display().to_string(),
            pid: std::process::id(),
            started: store::now_rfc3339(),
            mounted_by_run: held.mounted_by_run,
        };
        store::replace_file(dir, &held.state, &serde_json::to_vec(&state)?, 0o600)?;
        let mut args = entry;
        args.push("supervise".into());
        if self
            .secrets
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|s| !s.is_empty())
        {
            args.push("--secrets-on-stdin".into());
        }
        if self.channel.is_some() {
            args.push("--ipc".into());
            args.push(IPC_AT.into());
            args.push("--idle".into());
            args.push(format!("{}s", opts.idle.as_secs()));
            args.push("--output-cap".into());
            args.push(opts.output_cap.to_string());
        }
        args.push("--".into());
        args.extend(opts.args.iter().cloned());
        let home = if opts.uid == 0 { "/root" } else { "/tmp" };
        Ok(SandboxSpec {
            root,
            args,
            env: vec![
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                format!("HOME={home}"),
                "TERM=xterm".into(),
                format!("BOTYARD_BOT={}", opts.bot),
            ],
            cwd: if opts.workspace.is_some() {
                WORKSPACE_AT.into()
            } else {
                "/".into()
            },
            uid: opts.uid,
            gid: opts.gid,
            hostname: bot::runtime_name(&opts.bot),
            network: opts.network,
            memory: opts.limits.memory,
            cpus: opts.limits.cpus,
            pids: opts.limits.pids,
            mounts: binds,
        })
    }

    /// Starts the runtime on the bundle and hands the supervisor its
    /// secrets and the command its input.
    fn launch(&self, held: &Held, spec: &SandboxSpec, io: RunIo) -> Result<Running0> {
        let bundle = held.dir.join("bundle");
        std::fs::create_dir_all(&bundle)?;
        store::replace_file(
            &held.dir,
            &bundle.join("config.json"),
            &serde_json::to_vec_pretty(&config(spec))?,
            0o600,
        )?;
        let mut cmd = Command::new(&self.runtime);
        cmd.arg("run")
            .arg("--bundle")
            .arg(&bundle)
            .arg(&held.container_id);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe; the runtime dies with us and
        // the next command reaps the sandbox it leaves.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start the runtime {}", self.runtime.display()))?;
        let mut stdin = child.stdin.take().unwrap();
        let secrets = self.secrets.lock().unwrap().take().unwrap_or_default();
        if !secrets.is_empty() {
            let mut line = serde_json::to_vec(&secrets)?;
            line.push(b'\n');
            // A pipe: the bytes go to the supervisor, never to disk.
            stdin.write_all(&line)?;
        }
        drop(secrets);
        // Input for the command: ours when it is not a terminal.
        use std::io::IsTerminal;
        match io.stdin {
            Some(bytes) => {
                std::thread::spawn(move || {
                    let _ = stdin.write_all(&bytes);
                });
            }
            None if !std::io::stdin().is_terminal() && self.channel.is_none() => {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut std::io::stdin().lock(), &mut stdin);
                });
            }
            None => drop(stdin),
        }
        let total = Arc::new(AtomicU64::new(0));
        let run_cap = if self.channel.is_some() {
            u64::MAX
        } else {
            self.opts.output_cap
        };
        let capped = Arc::new(AtomicBool::new(false));
        let pumps = vec![
            pump(
                child.stdout.take().unwrap(),
                io.stdout,
                total.clone(),
                run_cap,
                capped.clone(),
            ),
            pump(
                child.stderr.take().unwrap(),
                io.stderr,
                total,
                run_cap,
                capped.clone(),
            ),
        ];
        // Waited for on a thread, so its end is seen at once.
        let (tx, exited) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        Ok(Running0 {
            exited,
            pumps,
            capped,
        })
    }
}

struct Running0 {
    exited: Receiver<std::io::Result<ExitStatus>>,
    pumps: Vec<std::thread::JoinHandle<()>>,
    capped: Arc<AtomicBool>,
}

impl Sandbox for OciSandbox {
    fn start(&self, io: RunIo) -> Result<()> {
        let mut running = self.running.lock().unwrap();
        if running.is_some() {
            bail!("the sandbox of bot {} is already started", self.opts.bot);
        }
        let store = &self.store;
        reap(store, &self.opts.bot)?;
        let dir = self.bot.session_dir();
        std::fs::create_dir_all(&dir)?;
        let Some(lock) = store::try_lock_file(&self.bot.session_lock())? else {
            let since = std::fs::read_to_string(self.bot.session_state())
                .ok()
                .and_then(|s| serde_json::from_str::<SessionState>(&s).ok())
                .map(|s| format!(" (started {} by pid {})", s.started, s.pid))
                .unwrap_or_default();
            bail!(
                "bot {} is already running a session{since}; a second run is refused, not queued: wait for it to end",
                self.opts.bot
            );
        };
        // Unique on the host: two stores may have bots of the same name.
        let store_tag = &store::Hash::of(store.root().as_os_str().as_encoded_bytes()).to_hex()[..8];
        let container_id = format!(
            "botyard-{store_tag}-{}-{}",
            bot::runtime_name(&self.opts.bot),
            std::process::id()
        );
        let mut held = Held {
            store: store.clone(),
            bot: self.opts.bot.clone(),
            runtime: self.runtime.clone(),
            dir,
            state: self.bot.session_state(),
            container_id: container_id.clone(),
            lock: Some(lock),
            staged: None,
            mounted_by_run: false,
        };
        let launched = self
            .stage(&mut held)
            .and_then(|spec| self.launch(&held, &spec, io));
        match launched {
            Ok(r) => {
                *self.container_id.lock().unwrap() = Some(container_id);
                *running = Some(Running {
                    held,
                    exited: r.exited,
                    pumps: r.pumps,
                    capped: r.capped,
                    started: Instant::now(),
                });
                Ok(())
            }
            Err(e) => {
                held.teardown(false)?;
                Err(e)
            }
        }
    }

    fn deliver(&self, id: &str, body: &[u8]) -> Result<()> {
        match &self.channel {
            Some(ch) => ch.deliver(id, body),
            None => bail!(
                "the session of bot {} takes no messages (no IPC)",
                self.opts.bot
            ),
        }
    }

    fn close(&self) -> Result<()> {
        match &self.channel {
            Some(ch) => ch.close(),
            None => Ok(()),
        }
    }

    fn kill(&self, signal: Signal) {
        if let Some(id) = self.container_id.lock().unwrap().as_deref() {
            self.kill_id(id, signal);
        }
    }

    fn wait(&self, stop: &AtomicBool) -> Result<RunOutcome> {
        let Some(r) = self.running.lock().unwrap().take() else {
            bail!("the sandbox of bot {} was not started", self.opts.bot);
        };
        let id = r.held.container_id.clone();
        let mut out = RunOutcome {
            container_id: id.clone(),
            ..Default::default()
        };
        let mut stopping: Option<Instant> = None;
        let status = loop {
            match r.exited.recv_timeout(Duration::from_millis(10)) {
                Ok(s) => break s,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(e) => {
                    break Err(std::io::Error::other(format!(
                        "lost track of the runtime: {e}"
                    )))
                }
            }
            let stop_now = if r.capped.load(Ordering::Relaxed) && !out.output_capped {
                out.output_capped = true;
                true
            } else if self.opts.timeout.is_some_and(|t| r.started.elapsed() > t) && !out.timed_out {
                out.timed_out = true;
                true
            } else if stop.load(Ordering::Relaxed) && !out.interrupted {
                out.interrupted = true;
                true
            } else {
                false
            };
            if stop_now {
                self.kill_id(&id, Signal::Term);
                stopping.get_or_insert_with(Instant::now);
            }
            // A sandbox that ignores TERM is killed.
            if stopping.is_some_and(|t| t.elapsed() > Duration::from_secs(5)) {
                self.kill_id(&id, Signal::Kill);
                stopping = Some(Instant::now());
            }
        };
        for p in r.pumps {
            let _ = p.join();
        }
        use std::os::unix::process::ExitStatusExt;
        let result = status.map_err(anyhow::Error::from).map(|status| {
            out.exit_code = status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
            // The runtime removes a container whose process ended; one it
            // could not see through (killed, or never started) is removed
            // here.
            out.runtime_cleaned_up = status.signal().is_none() && stopping.is_none();
            out
        });
        let cleaned = result.as_ref().is_ok_and(|o| o.runtime_cleaned_up);
        r.held.teardown(cleaned)?;
        result
    }
}

impl Drop for OciSandbox {
    fn drop(&mut self) {
        // Started and never waited for: stopped and removed now.
        if let Some(r) = self.running.get_mut().unwrap().take() {
            self.kill_id(&r.held.container_id, Signal::Kill);
            let _ = r.held.teardown(false);
        }
    }
}

/// Removes the mounts a run staged for its sandbox (and their mount points).
fn unstage(staged: &Path) {
    fs::unmount_below(staged);
    // A removal never crosses into a mount still there (a staged mount is
    // a bot's root or a host directory): it fails and leaves it alone.
    let _ = fs::walk::remove_path(staged);
}

struct Unstage(PathBuf);

impl Drop for Unstage {
    fn drop(&mut self) {
        unstage(&self.0);
    }
}

/// Unmounts a bot a run mounted; its processes are gone, but the kernel
/// may take a moment to let go.
fn unmount_retrying(store: &Store, id: &str) -> Result<()> {
    let mut last = None;
    for _ in 0..50 {
        match bot::unmount(store, id) {
            Ok(_) => return Ok(()),
            Err(e) if store::is_kind(&e, store::ErrorKind::NotMounted) => return Ok(()),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(last.unwrap()).context("cannot unmount the bot after the run")
}

/// Copies `from` to `to` until EOF, counting into `total`; past `cap`
/// stops copying and sets `capped`.
fn pump(
    mut from: impl Read + Send + 'static,
    mut to: impl Write + Send + 'static,
    total: Arc<AtomicU64>,
    cap: u64,
    capped: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let before = total.fetch_add(n as u64, Ordering::Relaxed);
            if before >= cap {
                capped.store(true, Ordering::Relaxed);
                continue; // drain, so the sandbox is not blocked before it is stopped
            }
            let keep = ((cap - before) as usize).min(n);
            if to.write_all(&buf[..keep]).is_err() {
                break;
            }
            let _ = to.flush();
            if keep < n {
                capped.store(true, Ordering::Relaxed);
            }
        }
    })
}

/// Cleans up after a dead session of bot `id`, if there is one. A live
/// session (its lock held) is left alone.
pub fn reap(store: &Store, id: &str) -> Result<bool> {
    let bot = Bot::new(store, id)?;
    let state_path = bot.session_state();
    let Ok(text) = std::fs::read_to_string(&state_path) else {
        return Ok(false);
    };
    let Some(_lock) = store::try_lock_file(&bot.session_lock())? else {
        return Ok(false); // running
    };
    if let Ok(s) = serde_json::from_str::<SessionState>(&text) {
        for args in [
            vec!["kill", "--all", &s.container_id, "KILL"],
            vec!["delete", "--force", &s.container_id],
        ] {
            let _ = Command::new(&s.runtime)
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        unstage(&bot.session_dir().join("mnt"));
        if s.mounted_by_run {
            unmount_retrying(store, id)?;
        }
    }
    std::fs::remove_file(&state_path)?;
    Ok(true)
}

/// [`reap`] for every bot.
pub fn reap_all(store: &Store) -> Result<u64> {
    let mut n = 0;
    let Ok(rd) = std::fs::read_dir(store.root().join("bots")) else {
        return Ok(0);
    };
    for e in rd.flatten() {
        let id = e.file_name().to_string_lossy().into_owned();
        if Bot::new(store, &id).is_ok() && reap(store, &id)? {
            n += 1;
        }
    }
    Ok(n)
}
