//! The supervisor: the sandbox's first process. It takes secrets from its
//! stdin (never from a file or an argument) and gives them to the agent
//! only, as the environment variables named; it forwards signals, reaps
//! orphans (it is PID 1), and in IPC mode runs the agent once per message
//! file, framing on stdout when it takes a message, its output as it
//! arrives, and its result.

use crate::ipc::{Frame, Inbox, Status, StdinFrame};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct SuperviseOptions {
    pub secrets_on_stdin: bool,
    pub ipc: Option<PathBuf>,
    pub idle: Duration,
    /// IPC mode: bytes of an agent's output kept per message.
    pub output_cap: u64,
    /// IPC mode: messages also come on stdin, after the secrets line, and
    /// are put into the IPC directory (a pod whose IPC directory is an
    /// emptyDir the daemon cannot reach).
    pub ipc_stdin: bool,
    pub args: Vec<String>,
}

static AGENT: AtomicI32 = AtomicI32::new(0);
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn forward(sig: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
    let pid = AGENT.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Reads one line from fd 0 a byte at a time, so nothing after it is
/// consumed (the rest of stdin belongs to the agent).
fn read_secret_line() -> Result<BTreeMap<String, String>> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        // SAFETY: reading into a 1-byte buffer we own.
        let n = unsafe { libc::read(0, b.as_mut_ptr().cast(), 1) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e).context("cannot read secrets from stdin");
        }
        if n == 0 || b[0] == b'\n' {
            break;
        }
        line.push(b[0]);
        if line.len() > 1 << 20 {
            bail!("the secrets line on stdin is over 1 MiB");
        }
    }
    serde_json::from_slice(&line)
        .context("the first line of stdin must be a JSON object of secrets")
}

fn install_handlers() {
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: the handler only touches atomics and calls kill.
        unsafe {
            libc::signal(sig, forward as *const () as libc::sighandler_t);
        }
    }
}

/// Waits for `pid`, reaping any other child (orphans reparent to us).
fn wait_for(pid: i32) -> i32 {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status we own.
        let got = unsafe { libc::waitpid(-1, &mut status, 0) };
        if got < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return 127;
        }
        if got == pid {
            return if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else if libc::WIFSIGNALED(status) {
                128 + libc::WTERMSIG(status)
            } else {
                1
            };
        }
    }
}

fn agent(args: &[String], secrets: &BTreeMap<String, String>) -> Command {
    let mut c = Command::new(&args[0]);
    c.args(&args[1..]).envs(secrets);
    c
}

/// Runs the supervisor; returns the exit code for the sandbox.
pub fn supervise(o: &SuperviseOptions) -> Result<i32> {
    if o.args.is_empty() {
        bail!("no agent command given; put it after --");
    }
    let secrets = if o.secrets_on_stdin {
        read_secret_line()?
    } else {
        BTreeMap::new()
    };
    install_handlers();
    // Not dumpable: the agent runs as the same user, and must not reach
    // the supervisor's stdout (its frames) or memory through /proc.
    // SAFETY: prctl with plain integer arguments.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    match &o.ipc {
        None => {
            let child = agent(&o.args, &secrets)
                .spawn()
                .with_context(|| format!("cannot start {}", o.args[0]))?;
            let pid = child.id() as i32;
            AGENT.store(pid, Ordering::Relaxed);
            Ok(wait_for(pid))
        }
        Some(dir) => {
            if o.ipc_stdin {
                relay_stdin(dir)?;
            }
            ipc_loop(o, dir, &secrets)
        }
    }
}

/// Puts the messages that come on stdin (one [`StdinFrame`] a line) into
/// the IPC directory, on a thread of their own; the end of stdin closes
/// the session, as the daemon that held it is gone.
fn relay_stdin(dir: &Path) -> Result<()> {
    let channel = crate::ipc::Channel::open(dir)?;
    std::thread::spawn(move || {
        let stdin = std::io::stdin().lock();
        for line in std::io::BufRead::lines(stdin) {
            let Ok(line) = line else { break };
            let res = match serde_json::from_str::<StdinFrame>(&line) {
                Ok(StdinFrame::Deliver { id, body, .. }) => channel.deliver(&id, body.as_bytes()),
                Ok(StdinFrame::Close { .. }) => channel.close(),
                Err(e) => Err(anyhow::anyhow!("a line on stdin is not a message: {e}")),
            };
            if let Err(e) = res {
                eprintln!("botyard supervise: {e:#}");
            }
        }
        let _ = channel.close();
    });
    Ok(())
}

fn emit(frame: &Frame) -> Result<()> {
    // One write per frame, so frames from two threads never interleave.
    let mut out = std::io::stdout().lock();
    out.write_all(&frame.encode())?;
    out.flush()?;
    Ok(())
}

/// Takes the longest prefix of `buf` that is whole UTF-8 text, leaving a
/// character cut at the end of a read for the next one.
fn take_text(buf: &mut Vec<u8>) -> String {
    let cut = match std::str::from_utf8(buf) {
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        _ => buf.len(),
    };
    let rest = buf.split_off(cut);
    let text = String::from_utf8_lossy(buf).into_owned();
    *buf = rest;
    text
}

/// Wakes the IPC loop when something lands in `input/` (or a signal
/// comes), instead of looking every few milliseconds. inotify is only a
/// fast path: on a network filesystem (a shared volume written from
/// another node) it sees nothing, so the loop looks at least every
/// [`POLL_FLOOR`] too.
struct InputWatch {
    fd: Option<std::os::fd::OwnedFd>,
}

impl InputWatch {
    fn new(input: &Path) -> InputWatch {
        use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)
            .ok()
            .filter(|fd| {
                inotify::add_watch(
                    fd,
                    input,
                    WatchFlags::MOVED_TO | WatchFlags::CLOSE_WRITE | WatchFlags::CREATE,
                )
                .is_ok()
            });
        InputWatch { fd }
    }

    /// Returns after an event, a signal, or `max`.
    fn wait(&self, max: Duration) {
        use std::os::fd::AsRawFd;
        let Some(fd) = &self.fd else {
            // No inotify: look again soon.
            std::thread::sleep(max.min(Duration::from_millis(5)));
            return;
        };
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = max.min(POLL_FLOOR).as_millis() as libc::c_int;
        // SAFETY: one pollfd we own.
        unsafe { libc::poll(&mut p, 1, ms) };
        let mut buf = [0u8; 4096];
        // SAFETY: reading into a buffer we own; the fd is non-blocking.
        while unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }
}

/// How long the IPC loop waits at most before looking at `input/` again,
/// whatever inotify says.
const POLL_FLOOR: Duration = Duration::from_millis(250);

fn ipc_loop(o: &SuperviseOptions, dir: &Path, secrets: &BTreeMap<String, String>) -> Result<i32> {
    let mut inbox = Inbox::open(dir)?;
    let watch = InputWatch::new(inbox.input());
    let mut idle_since = Instant::now();
    loop {
        if STOP.load(Ordering::Relaxed) || inbox.take_close() {
            return Ok(0);
        }
        let Some(m) = inbox.take_next()? else {
            let left = o.idle.saturating_sub(idle_since.elapsed());
            if left.is_zero() {
                eprintln!("botyard supervise: idle for {}s; exiting", o.idle.as_secs());
                return Ok(0);
            }
            // Bounded, so a missed wake-up costs at most a second.
            watch.wait(left.min(Duration::from_secs(1)));
            continue;
        };
        let message = m.id.clone();
        emit(&Frame::Taken {
            message: message.clone(),
        })?;
        let frame = match run_once(o, secrets, &m.body, &m.id) {
            Ok((code, output, truncated)) => Frame::Result {
                message,
                status: if code == 0 {
                    Status::Success
                } else {
                    Status::Error
                },
                exit_code: code,
                output,
                truncated,
            },
            Err(e) => Frame::Result {
                message,
                status: Status::Error,
                exit_code: 127,
                output: format!("{e:#}"),
                truncated: false,
            },
        };
        emit(&frame)?;
        idle_since = Instant::now();
    }
}

/// Runs the agent with `message` on its stdin; returns its exit code and
/// its stdout (capped).
fn run_once(
    o: &SuperviseOptions,
    secrets: &BTreeMap<String, String>,
    message: &[u8],
    id: &str,
) -> Result<(i32, String, bool)> {
    let mut child = agent(&o.args, secrets)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", o.args[0]))?;
    let pid = child.id() as i32;
    AGENT.store(pid, Ordering::Relaxed);
    let mut stdin = child.stdin.take().unwrap();
    let msg = message.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&msg);
    });
    let mut stdout = child.stdout.take().unwrap();
    let cap = o.output_cap;
    let id = id.to_string();
    let reader = std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut pending = Vec::new();
        let mut buf = [0u8; 16384];
        let mut truncated = false;
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            let room = (cap as usize).saturating_sub(kept.len());
            let keep = &buf[..n.min(room)];
            kept.extend_from_slice(keep);
            truncated |= n > room;
            // Streamed as it comes, up to the same cap.
            pending.extend_from_slice(keep);
            let data = take_text(&mut pending);
            if !data.is_empty() {
                let _ = emit(&Frame::Output {
                    message: id.clone(),
                    data,
                });
            }
        }
        if !pending.is_empty() {
            let data = String::from_utf8_lossy(&pending).into_owned();
            let _ = emit(&Frame::Output {
                message: id.clone(),
                data,
            });
        }
        (kept, truncated)
    });
    let code = wait_for(pid);
    AGENT.store(0, Ordering::Relaxed);
    let _ = writer.join();
    let (out, truncated) = reader.join().unwrap_or_default();
    Ok((code, String::from_utf8_lossy(&out).into_owned(), truncated))
}
