//! `botyard run`: one command in a sandbox whose root is a bot.

use crate::allowlist::{Allowlist, MountSpec, MOUNT_BASE};
use crate::bundle::{config, BindMount, Network, SandboxSpec};
use crate::runtime::Runtime;
use anyhow::{bail, Context, Result};
use bot::{Bot, Driver};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::Store;

/// Where the supervisor's files appear in a sandbox.
pub const SUPERVISOR_AT: &str = "/run/botyard";
/// Where a workspace appears.
pub const WORKSPACE_AT: &str = "/workspace";
/// Where an IPC directory appears.
pub const IPC_AT: &str = "/run/botyard-ipc";

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub bot: String,
    /// A mounted workspace's merged view.
    pub workspace: Option<PathBuf>,
    pub mounts: Vec<MountSpec>,
    pub allowlist: PathBuf,
    pub main: bool,
    /// Names of environment variables of this process to hand over.
    pub secrets: Vec<String>,
    pub timeout: Duration,
    pub network: Network,
    pub memory: Option<u64>,
    pub cpus: Option<f64>,
    pub pids: Option<i64>,
    pub uid: u32,
    pub gid: u32,
    pub runtime: Runtime,
    /// Bytes of output kept: of the whole run, or in IPC mode of each
    /// message's answer (the supervisor cuts it and says so).
    pub output_cap: u64,
    /// A host directory for the supervisor's IPC mode.
    pub ipc: Option<PathBuf>,
    pub idle: Duration,
    pub args: Vec<String>,
}

/// How a run ended.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RunOutcome {
    /// The command's exit code (128 + n for signal n).
    pub exit_code: i32,
    pub timed_out: bool,
    pub output_capped: bool,
    pub interrupted: bool,
    pub container_id: String,
    /// The runtime ended on its own, so it removed the container itself.
    pub runtime_cleaned_up: bool,
}

/// What a running session leaves on disk, so the next command can clean up
/// after a killed botyard.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct SessionState {
    pub container_id: String,
    pub runtime: String,
    pub pid: u32,
    pub started: String,
    /// The run mounted the bot, so cleaning up unmounts it.
    pub mounted_by_run: bool,
}

pub(crate) fn session_dir(bot: &Bot) -> PathBuf {
    bot.dir().join("session")
}

/// Whether `n` can name an environment variable (and so a secret).
pub fn valid_env_name(n: &str) -> bool {
    !n.is_empty()
        && !n.starts_with(|c: char| c.is_ascii_digit())
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Where a run's input comes from and where its output goes.
pub struct RunIo {
    /// The command's stdin (after the secrets); `None`: botyard's own
    /// stdin when it is not a terminal.
    pub stdin: Option<Vec<u8>>,
    pub stdout: Box<dyn Write + Send>,
    pub stderr: Box<dyn Write + Send>,
}

impl RunIo {
    /// This process's stdin, stdout and stderr.
    pub fn inherit() -> RunIo {
        RunIo {
            stdin: None,
            stdout: Box::new(std::io::stdout()),
            stderr: Box::new(std::io::stderr()),
        }
    }
}

/// Runs `opts.args` in a sandbox on `opts.bot` and waits for it, with this
/// process's stdio; `stop` asks for a clean stop (Ctrl-C).
pub fn run(store: &Store, opts: &RunOptions, stop: &AtomicBool) -> Result<RunOutcome> {
    run_with(store, opts, stop, RunIo::inherit())
}

/// [`run`] with the command's input and output where `io` says (output
/// capped at `opts.output_cap`).
pub fn run_with(
    store: &Store,
    opts: &RunOptions,
    stop: &AtomicBool,
    io: RunIo,
) -> Result<RunOutcome> {
    if opts.args.is_empty() {
        bail!("no command to run; put it after --, like `botyard run BOT -- sh -c 'echo hi'`");
    }
    let bot = Bot::new(store, &opts.bot)?;
    let r = bot.load()?;
    crate::reap::reap(store, &opts.bot)?;
    let dir = session_dir(&bot);
    std::fs::create_dir_all(&dir)?;
    let Some(lock) = store::try_lock_file(&bot.dir().join("session.lock"))? else {
        let since = std::fs::read_to_string(dir.join("state.json"))
            .ok()
            .and_then(|s| serde_json::from_str::<SessionState>(&s).ok())
            .map(|s| format!(" (started {} by pid {})", s.started, s.pid))
            .unwrap_or_default();
        bail!(
            "bot {} is already running a session{since}; a second run is refused, not queued: wait for it to end",
            opts.bot
        );
    };
    let runtime = opts.runtime.resolve()?;

    // Secrets come from this process's environment and go to the sandbox
    // on the supervisor's stdin, never through a file or an argument.
    let mut secrets = serde_json::Map::new();
    for name in &opts.secrets {
        if !valid_env_name(name) {
            bail!("secret name '{name}' is not a valid environment variable name");
        }
        let Some(v) = std::env::var_os(name) else {
            bail!("secret {name} is not set in botyard's environment; export it first");
        };
        secrets.insert(name.clone(), v.to_string_lossy().into_owned().into());
    }

    // Every host directory the sandbox sees is opened and checked once,
    // and a copy of exactly that mount is staged under the session's
    // directory (closed to other users) for the runtime to bind.
    let allow = Allowlist::load(&opts.allowlist)?;
    let staged = dir.join("mnt");
    unstage(&staged);
    let guard = Unstage(staged.clone());
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
    let staged_binds = (|| -> Result<()> {
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
        Ok(())
    })();
    staged_binds?;
    if let Some(ipc) = &opts.ipc {
        // The supervisor runs as the sandbox's user: it takes messages out
        // of input/ and sets bad ones aside in errors/.
        for d in [ipc.clone(), ipc.join("input"), ipc.join("errors")] {
            std::fs::create_dir_all(&d)?;
            std::os::unix::fs::chown(&d, Some(opts.uid), Some(opts.gid))
                .with_context(|| format!("cannot hand {} to the sandbox's user", d.display()))?;
        }
        binds.push(BindMount {
            source: std::fs::canonicalize(ipc)?,
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

    // The bot's root: an overlay bot is mounted for the run if it is not
    // (nosuid,nodev); the sandbox gets a copy of that mount, staged with
    // the others.
    let (bot_root, mounted_by_run) = match r.driver {
        Driver::Copy => (bot.default_mount(), false),
        Driver::Overlay => match bot.mounted_at() {
            Some(p) => (p, false),
            None => (
                bot::mount(store, &opts.bot, None, bot::MountOptions::default())?,
                true,
            ),
        },
    };
    let root = staged.join("root");
    let staged_root = rustix::fs::open(
        &bot_root,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(std::io::Error::from)
    .map_err(anyhow::Error::from)
    .and_then(|fd| fs::mount_clone(&fd, &root, true));
    if let Err(e) = staged_root {
        drop(guard);
        if mounted_by_run {
            unmount_retrying(store, &opts.bot)?;
        }
        return Err(e).context("cannot prepare the bot's root for the sandbox");
    }
    // Unique on the host: two stores may have bots of the same name.
    let store_tag = &store::Hash::of(store.root().as_os_str().as_encoded_bytes()).to_hex()[..8];
    let container_id = format!(
        "botyard-{store_tag}-{}-{}",
        bot::runtime_name(&opts.bot),
        std::process::id()
    );
    let state = SessionState {
        container_id: container_id.clone(),
        runtime: runtime.display().to_string(),
        pid: std::process::id(),
        started: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        mounted_by_run,
    };
    let result = (|| -> Result<RunOutcome> {
        store::write_file_atomic(
            &dir,
            &dir.join("state.json"),
            &serde_json::to_vec(&state)?,
            0o600,
        )?;
        let mut args = entry.clone();
        args.push("supervise".into());
        if !secrets.is_empty() {
            args.push("--secrets-on-stdin".into());
        }
        if opts.ipc.is_some() {
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
        let spec = SandboxSpec {
            root: root.clone(),
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
            memory: opts.memory,
            cpus: opts.cpus,
            pids: opts.pids,
            mounts: binds,
        };
        let bundle = dir.join("bundle");
        std::fs::create_dir_all(&bundle)?;
        store::write_file_atomic(
            &dir,
            &bundle.join("config.json"),
            &serde_json::to_vec_pretty(&config(&spec))?,
            0o600,
        )?;
        let mut cmd = Command::new(&runtime);
        cmd.arg("run")
            .arg("--bundle")
            .arg(&bundle)
            .arg(&container_id);
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
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start the runtime {}", runtime.display()))?;
        supervise_child(child, &runtime, &container_id, secrets, opts, stop, io)
    })();
    // The runtime removes a container whose process ended; one it could
    // not see through (killed, or never started) is removed here.
    if !result.as_ref().is_ok_and(|o| o.runtime_cleaned_up) {
        let _ = Command::new(&runtime)
            .args(["delete", "--force", &container_id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    // The copies go first: the bot's own mount is in use while they exist.
    drop(guard);
    if mounted_by_run {
        unmount_retrying(store, &opts.bot)?;
    }
    let _ = std::fs::remove_file(dir.join("state.json"));
    drop(lock);
    result
}

/// Removes the mounts a run staged for its sandbox (and their mount points).
pub(crate) fn unstage(staged: &Path) {
    fs::unmount_below(staged);
    // Never removed while anything is still mounted there: a staged mount
    // is a bot's root or a host directory.
    if fs::mounts_below(staged).is_empty() {
        let _ = fs::walk::remove_path(staged);
    }
}

struct Unstage(PathBuf);

impl Drop for Unstage {
    fn drop(&mut self) {
        unstage(&self.0);
    }
}

/// Unmounts a bot a run mounted; its processes are gone, but the kernel
/// may take a moment to let go.
pub(crate) fn unmount_retrying(store: &Store, id: &str) -> Result<()> {
    let mut last = None;
    for _ in 0..50 {
        match bot::unmount(store, id) {
            Ok(_) => return Ok(()),
            Err(e) if e.to_string().contains("is not mounted") => return Ok(()),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(last.unwrap()).context("cannot unmount the bot after the run")
}

fn kill(runtime: &Path, id: &str, sig: &str) {
    let _ = Command::new(runtime)
        .args(["kill", "--all", id, sig])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
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

fn supervise_child(
    mut child: Child,
    runtime: &Path,
    id: &str,
    secrets: serde_json::Map<String, serde_json::Value>,
    opts: &RunOptions,
    stop: &AtomicBool,
    io: RunIo,
) -> Result<RunOutcome> {
    let mut stdin = child.stdin.take().unwrap();
    if !secrets.is_empty() {
        let mut line = serde_json::to_vec(&secrets)?;
        line.push(b'\n');
        // A pipe: the bytes go to the supervisor, never to disk.
        stdin.write_all(&line)?;
    }
    // Input for the command: ours when it is not a terminal.
    use std::io::IsTerminal;
    match io.stdin {
        Some(bytes) => {
            std::thread::spawn(move || {
                let _ = stdin.write_all(&bytes);
            });
        }
        None if !std::io::stdin().is_terminal() && opts.ipc.is_none() => {
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut std::io::stdin().lock(), &mut stdin);
            });
        }
        None => drop(stdin),
    }
    let total = Arc::new(AtomicU64::new(0));
    let run_cap = if opts.ipc.is_some() {
        u64::MAX
    } else {
        opts.output_cap
    };
    let capped = Arc::new(AtomicBool::new(false));
    let t_out = pump(
        child.stdout.take().unwrap(),
        io.stdout,
        total.clone(),
        run_cap,
        capped.clone(),
    );
    let t_err = pump(
        child.stderr.take().unwrap(),
        io.stderr,
        total.clone(),
        run_cap,
        capped.clone(),
    );
    let start = Instant::now();
    let mut out = RunOutcome {
        container_id: id.to_string(),
        ..Default::default()
    };
    let mut stopping: Option<Instant> = None;
    // Waited for on a thread, so its end is seen at once.
    let (tx, exited) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = loop {
        match exited.recv_timeout(Duration::from_millis(10)) {
            Ok(s) => break s?,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(e) => bail!("lost track of the runtime: {e}"),
        }
        let reason = if capped.load(Ordering::Relaxed) && !out.output_capped {
            out.output_capped = true;
            Some("TERM")
        } else if start.elapsed() > opts.timeout && !out.timed_out {
            out.timed_out = true;
            Some("TERM")
        } else if stop.load(Ordering::Relaxed) && !out.interrupted {
            out.interrupted = true;
            Some("TERM")
        } else {
            None
        };
        if let Some(sig) = reason {
            kill(runtime, id, sig);
            stopping.get_or_insert_with(Instant::now);
        }
        // A sandbox that ignores TERM is killed.
        if stopping.is_some_and(|t| t.elapsed() > Duration::from_secs(5)) {
            kill(runtime, id, "KILL");
            stopping = Some(Instant::now());
        }
    };
    let _ = t_out.join();
    let _ = t_err.join();
    use std::os::unix::process::ExitStatusExt;
    out.exit_code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    out.runtime_cleaned_up = status.signal().is_none() && stopping.is_none();
    Ok(out)
}
