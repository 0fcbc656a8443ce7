//! The group queue: a global limit on live sandboxes, at most one session
//! per group, per-group FIFO, round-robin across groups, keep-alive with
//! delivery through IPC, preemption of the longest-idle session, deadlines
//! and retries with backoff.
//!
//! A session is `botyard run` in IPC mode on the group's bot: the scheduler
//! writes a message as `input/ID.json` (atomically) and the supervisor
//! answers with a framed result on stdout, parsed here.

use crate::config::Config;
use crate::db::{now, Db, Group};
use anyhow::Result;
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::Store;

/// A live session of a group.
pub struct Live {
    pub group: String,
    pub started: Instant,
    pub started_at: f64,
    /// The message being answered, and since when.
    pub busy: Option<(i64, Instant)>,
    pub idle_since: Instant,
    pub closing: bool,
    /// When it was asked to close.
    pub closed_at: Option<Instant>,
    /// Why the scheduler stopped this session's sandbox, if it did.
    pub stopped_for: Option<String>,
    /// Messages answered by this session.
    pub answered: u64,
    /// Stops the sandbox (deadline, DELETE /v1/sessions).
    pub stop: Arc<AtomicBool>,
    ipc: PathBuf,
    /// Start latency not yet recorded: waiting for the first message to
    /// be taken.
    first: Option<PathBuf>,
}

#[derive(Default)]
pub struct Metrics {
    pub session_starts: AtomicU64,
    pub session_failures: AtomicU64,
    /// Seconds: session start to its first message taken.
    pub start_latency: Mutex<Vec<f64>>,
    /// Seconds: a session asked to close to its slot free again (the
    /// sandbox stopped and removed, the bot unmounted).
    pub stop_latency: Mutex<Vec<f64>>,
    /// Seconds: message accepted to delivered.
    pub queue_wait: Mutex<Vec<f64>>,
}

pub struct Daemon {
    pub store: Store,
    pub db: Mutex<Db>,
    pub config: Config,
    pub live: Mutex<HashMap<String, Live>>,
    pub metrics: Metrics,
    /// SIGTERM: no new deliveries.
    pub draining: AtomicBool,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    cursor: Mutex<String>,
}

impl Daemon {
    pub fn new(store: Store, db: Db, config: Config) -> Daemon {
        Daemon {
            store,
            db: Mutex::new(db),
            config,
            live: Mutex::new(HashMap::new()),
            metrics: Metrics::default(),
            draining: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
            cursor: Mutex::new(String::new()),
        }
    }

    fn ipc_dir(&self, group: &str) -> PathBuf {
        self.store.root().join("daemon").join("ipc").join(group)
    }

    /// One scheduling round.
    pub fn tick(self: &Arc<Self>) -> Result<()> {
        let mut live = self.live.lock().unwrap();
        // Keep-alive, deadlines, start latency.
        for s in live.values_mut() {
            if let Some(f) = &s.first {
                if !f.exists() {
                    self.metrics
                        .start_latency
                        .lock()
                        .unwrap()
                        .push(s.started.elapsed().as_secs_f64());
                    s.first = None;
                }
            }
            if s.busy.is_none() && !s.closing && s.idle_since.elapsed() > self.config.idle_keepalive
            {
                close(s);
            }
            if let Some((_, since)) = s.busy {
                if since.elapsed() > self.config.deadline && s.stopped_for.is_none() {
                    s.stopped_for = Some(format!(
                        "the agent ran past the deadline of {}",
                        humantime::format_duration(self.config.deadline)
                    ));
                    s.stop.store(true, Ordering::Relaxed);
                }
            }
        }
        if self.draining.load(Ordering::Relaxed) {
            return Ok(());
        }
        let db = self.db.lock().unwrap();
        let mut waiting = db.groups_waiting()?;
        // Round-robin: start after the group served last.
        let cursor = self.cursor.lock().unwrap().clone();
        let split = waiting.iter().position(|g| *g > cursor).unwrap_or(0);
        waiting.rotate_left(split);
        for g in waiting {
            match live.get_mut(&g) {
                Some(s) if s.busy.is_none() && !s.closing => {
                    if let Some(m) = db.next_for(&g)? {
                        deliver(&db, s, m.id, &m.body, m.created, &self.metrics)?;
                        *self.cursor.lock().unwrap() = g.clone();
                    }
                }
                Some(_) => {}
                None => {
                    let Some(group) = db.group(&g)? else {
                        // Messages of a removed group cannot run.
                        if let Some(m) = db.next_for(&g)? {
                            db.mark_running(m.id)?;
                            db.mark_failed_attempt(m.id, &format!("group {g} was removed"), 0)?;
                        }
                        continue;
                    };
                    if live.len() >= self.config.max_sessions {
                        // No slot: close the longest-idle session to make room.
                        if !live.values().any(|s| s.closing) {
                            if let Some(s) = live
                                .values_mut()
                                .filter(|s| s.busy.is_none() && !s.closing)
                                .max_by_key(|s| s.idle_since.elapsed())
                            {
                                close(s);
                            }
                        }
                        continue;
                    }
                    let Some(m) = db.next_for(&g)? else { continue };
                    let mut s = match self.start_session(&group) {
                        Ok(s) => s,
                        Err(e) => {
                            db.mark_running(m.id)?;
                            db.mark_failed_attempt(m.id, &format!("{e:#}"), self.config.max_tries)?;
                            continue;
                        }
                    };
                    s.first = Some(s.ipc.join("input").join(format!("{}.json", m.id)));
                    deliver(&db, &mut s, m.id, &m.body, m.created, &self.metrics)?;
                    *self.cursor.lock().unwrap() = g.clone();
                    live.insert(g.clone(), s);
                }
            }
        }
        Ok(())
    }

    fn start_session(self: &Arc<Self>, g: &Group) -> Result<Live> {
        let ipc = self.ipc_dir(&g.name);
        let _ = std::fs::remove_dir_all(&ipc);
        std::fs::create_dir_all(ipc.join("input"))?;
        let stop = Arc::new(AtomicBool::new(false));
        // A group's workspace must be mounted (and so audited) already.
        let workspace = match &g.workspace {
            None => None,
            Some(w) => Some(
                workspace::Workspace::new(&self.store, w)?
                    .mounted_at()
                    .ok_or_else(|| anyhow::anyhow!("workspace {w} of group {} is not mounted; `botyard workspace mount {w}`", g.name))?,
            ),
        };
        let opts = session::RunOptions {
            bot: g.bot.clone(),
            workspace,
            mounts: g.mounts.iter().map(|m| m.parse()).collect::<Result<_>>()?,
            allowlist: session::default_allowlist_path(),
            main: g.main,
            secrets: g.secrets.clone(),
            // The session lives across messages; each message has its
            // own deadline, watched by the scheduler.
            timeout: Duration::from_secs(365 * 24 * 3600),
            network: session::Network::None,
            memory: None,
            cpus: None,
            pids: Some(1024),
            uid: 1000,
            gid: 1000,
            runtime: self.config.runtime.parse()?,
            output_cap: u64::MAX,
            ipc: Some(ipc.clone()),
            idle: self.config.idle_keepalive + Duration::from_secs(60),
            args: g.agent.clone(),
        };
        self.metrics.session_starts.fetch_add(1, Ordering::Relaxed);
        let me = self.clone();
        let group = g.name.clone();
        let stop2 = stop.clone();
        let handle = std::thread::spawn(move || me.session_thread(group, opts, stop2));
        self.threads.lock().unwrap().push(handle);
        Ok(Live {
            group: g.name.clone(),
            started: Instant::now(),
            started_at: now(),
            busy: None,
            idle_since: Instant::now(),
            closing: false,
            closed_at: None,
            stopped_for: None,
            answered: 0,
            stop,
            ipc,
            first: None,
        })
    }

    fn session_thread(
        self: Arc<Self>,
        group: String,
        opts: session::RunOptions,
        stop: Arc<AtomicBool>,
    ) {
        let frames = Frames {
            buf: Vec::new(),
            inside: None,
            daemon: self.clone(),
            group: group.clone(),
        };
        let io = session::RunIo {
            stdin: Some(Vec::new()),
            stdout: Box::new(frames),
            stderr: Box::new(std::io::sink()),
        };
        let res = session::run_with(&self.store, &opts, &stop, io);
        let why = match &res {
            Ok(o) if o.exit_code == 0 => "the session ended before the agent answered".to_string(),
            Ok(o) => format!(
                "the session ended with exit code {} before the agent answered",
                o.exit_code
            ),
            Err(e) => format!("the session could not run: {e:#}"),
        };
        if res.as_ref().map(|o| o.exit_code != 0).unwrap_or(true) {
            self.metrics
                .session_failures
                .fetch_add(1, Ordering::Relaxed);
        }
        let (busy, stopped_for) = match self.live.lock().unwrap().remove(&group) {
            Some(s) => {
                if let (Some(t), None) = (s.closed_at, s.busy) {
                    self.metrics
                        .stop_latency
                        .lock()
                        .unwrap()
                        .push(t.elapsed().as_secs_f64());
                }
                (s.busy, s.stopped_for)
            }
            None => (None, None),
        };
        let why = stopped_for.unwrap_or(why);
        if let Some((id, _)) = busy {
            let _ = self
                .db
                .lock()
                .unwrap()
                .mark_failed_attempt(id, &why, self.config.max_tries);
        }
        if self.config.commit_on_close && res.is_ok() {
            let _ = bot::commit(&self.store, &opts.bot, &store::NoProgress);
        }
    }

    /// A frame from a group's session: its message is answered.
    fn answered(&self, group: &str, frame: &serde_json::Value) {
        let id: i64 = frame["message"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(-1);
        let code = frame["exit_code"].as_i64().unwrap_or(1);
        let output = frame["output"].as_str().unwrap_or("");
        let stopped_for = self
            .live
            .lock()
            .unwrap()
            .get(group)
            .and_then(|s| s.stopped_for.clone());
        let db = self.db.lock().unwrap();
        let _ = if code == 0 {
            db.mark_done(id, code, output)
        } else {
            db.mark_failed_attempt(
                id,
                &stopped_for.unwrap_or_else(|| {
                    format!("the agent exited with code {code}: {}", tail(output))
                }),
                self.config.max_tries,
            )
            .map(|_| ())
        };
        drop(db);
        if let Some(s) = self.live.lock().unwrap().get_mut(group) {
            if s.busy.map(|b| b.0) == Some(id) {
                s.busy = None;
                s.idle_since = Instant::now();
                s.answered += 1;
            }
        }
    }

    /// Closes a group's session (DELETE /v1/sessions/{group}): gently when
    /// idle, by stopping the sandbox when busy.
    pub fn close_session(&self, group: &str) -> bool {
        let mut live = self.live.lock().unwrap();
        let Some(s) = live.get_mut(group) else {
            return false;
        };
        if s.busy.is_some() {
            s.stop.store(true, Ordering::Relaxed);
        } else {
            close(s);
        }
        true
    }

    /// SIGTERM: no new deliveries; running messages get `grace` to finish;
    /// then every session is closed and waited for.
    pub fn drain(self: &Arc<Self>) {
        self.draining.store(true, Ordering::Relaxed);
        let t = Instant::now();
        while t.elapsed() < self.config.grace {
            let busy = self.live.lock().unwrap().values().any(|s| s.busy.is_some());
            if !busy {
                break;
            }
            let _ = self.tick();
            std::thread::sleep(Duration::from_millis(50));
        }
        for s in self.live.lock().unwrap().values_mut() {
            if s.busy.is_some() {
                s.stop.store(true, Ordering::Relaxed);
            } else {
                close(s);
            }
        }
        let threads: Vec<_> = self.threads.lock().unwrap().drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }
}

fn tail(s: &str) -> String {
    let t: String = s
        .chars()
        .rev()
        .take(200)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    t.trim().to_string()
}

fn close(s: &mut Live) {
    s.closing = true;
    s.closed_at = Some(Instant::now());
    let _ = std::fs::write(s.ipc.join("input").join("_close"), b"");
}

/// Hands message `id` to a live session: written under a temporary name,
/// then renamed, so the supervisor never reads half of it.
fn deliver(db: &Db, s: &mut Live, id: i64, body: &str, created: f64, m: &Metrics) -> Result<()> {
    let input = s.ipc.join("input");
    let tmp = input.join(format!(".{id}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(body.as_bytes())?;
    }
    db.mark_running(id)?;
    std::fs::rename(&tmp, input.join(format!("{id}.json")))?;
    s.busy = Some((id, Instant::now()));
    m.queue_wait.lock().unwrap().push(now() - created);
    Ok(())
}

/// Parses the supervisor's framed results out of a session's stdout.
struct Frames {
    buf: Vec<u8>,
    inside: Option<Vec<u8>>,
    daemon: Arc<Daemon>,
    group: String,
}

impl Write for Frames {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        while let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=nl).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            if text == session::START_MARKER {
                self.inside = Some(Vec::new());
            } else if text == session::END_MARKER {
                if let Some(body) = self.inside.take() {
                    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                        self.daemon.answered(&self.group, &v);
                    }
                }
            } else if let Some(body) = &mut self.inside {
                body.extend_from_slice(&line);
            }
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
