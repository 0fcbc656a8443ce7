//! The group queue: a global limit on live sandboxes, at most one session
//! per group, per-group FIFO, round-robin across groups, keep-alive with
//! delivery through IPC, preemption of idle sessions, deadlines extended by
//! output, and retries with backoff.
//!
//! A session is a sandbox of the daemon's [`session::Backend`] in IPC mode
//! on the group's bot: the scheduler delivers each message through it and
//! reads the supervisor's frames ([`session::ipc`]: taken, output as it
//! comes, result). The scheduler runs when something happens (a message
//! accepted or answered, a session gone) and at least every 100 ms for
//! timers.

use crate::config::Config;
use crate::db::{now, Db, Group};
use crate::metrics::Histogram;
use anyhow::Result;
use session::ipc::{Frame, FrameError, FrameReader};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use store::Store;
use tokio::sync::broadcast;

/// A live session of a group.
pub struct Live {
    pub group: String,
    pub bot: String,
    pub started: Instant,
    pub started_at: f64,
    /// The message being answered, and since when.
    pub busy: Option<(i64, Instant)>,
    /// The agent's last output (or the delivery): the deadline runs from here.
    pub last_output: Instant,
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
    sandbox: Arc<dyn session::Sandbox>,
    /// The supervisor has taken its first message (start latency counted).
    took_first: bool,
}

impl Live {
    fn idle(&self) -> bool {
        self.busy.is_none() && !self.closing
    }

    fn close(&mut self) {
        self.closing = true;
        self.closed_at = Some(Instant::now());
        if let Err(e) = self.sandbox.close() {
            eprintln!("botyard serve: group {}: {e:#}", self.group);
        }
    }
}

#[derive(Default)]
pub struct Metrics {
    pub session_starts: AtomicU64,
    pub session_failures: AtomicU64,
    /// Bytes live commits gave back by sharing them with the store.
    pub live_shared_bytes: AtomicU64,
    /// Session start to its first message taken.
    pub start_latency: Histogram,
    /// A session asked to close to its slot free again (the sandbox
    /// stopped and removed, the bot unmounted).
    pub stop_latency: Histogram,
    /// Message accepted to delivered.
    pub queue_wait: Histogram,
}

/// What a message's watchers (`GET /v1/messages/{id}/events`) are told.
#[derive(Clone, Debug)]
pub enum MessageEvent {
    /// The message's new state.
    State(String),
    /// Output of the agent working on it, as it arrived.
    Output(String),
}

pub struct Daemon {
    pub store: Store,
    /// What runs the sessions; the scheduler does not know which it is.
    pub backend: Arc<dyn session::Backend>,
    pub db: Mutex<Db>,
    pub config: Config,
    pub live: Mutex<HashMap<String, Live>>,
    pub metrics: Metrics,
    /// SIGTERM: no new deliveries.
    pub draining: AtomicBool,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// The group served last: round-robin starts after it.
    cursor: Mutex<String>,
    /// Set and signalled when the scheduler should run.
    wake: (Mutex<bool>, Condvar),
    streams: Mutex<Streams>,
}

/// Output of running messages, for their watchers.
#[derive(Default)]
struct Streams {
    /// Channels of messages someone watches.
    watchers: HashMap<i64, broadcast::Sender<MessageEvent>>,
    /// The output so far of each running message (up to [`REPLAY_CAP`]),
    /// so a watcher who comes late sees it from the start.
    partial: HashMap<i64, Partial>,
}

#[derive(Default, Clone)]
pub struct Partial {
    pub text: String,
    /// Bytes left out of `text` for being over the cap.
    pub skipped: u64,
}

const REPLAY_CAP: usize = 1 << 20;

use crate::db::FINAL_STATES as FINAL;

impl Daemon {
    pub fn new(store: Store, db: Db, config: Config, backend: Arc<dyn session::Backend>) -> Daemon {
        Daemon {
            backend,
            store,
            db: Mutex::new(db),
            config,
            live: Mutex::new(HashMap::new()),
            metrics: Metrics::default(),
            draining: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
            cursor: Mutex::new(String::new()),
            wake: (Mutex::new(false), Condvar::new()),
            streams: Mutex::new(Streams::default()),
        }
    }

    /// Asks the scheduler to run now.
    pub fn wake(&self) {
        *self.wake.0.lock().unwrap() = true;
        self.wake.1.notify_one();
    }

    /// Waits for [`Daemon::wake`] or `max`.
    pub fn wait(&self, max: Duration) {
        let mut woken = self.wake.0.lock().unwrap();
        if !*woken {
            woken = self.wake.1.wait_timeout(woken, max).unwrap().0;
        }
        *woken = false;
    }

    /// The output message `id` printed so far, and its events from now on.
    pub fn watch(&self, id: i64) -> (Partial, broadcast::Receiver<MessageEvent>) {
        let mut st = self.streams.lock().unwrap();
        let partial = st.partial.get(&id).cloned().unwrap_or_default();
        let rx = st
            .watchers
            .entry(id)
            .or_insert_with(|| broadcast::channel(256).0)
            .subscribe();
        (partial, rx)
    }

    /// Forgets message `id`'s channel if nobody watches it any more.
    pub fn unwatch(&self, id: i64) {
        let mut st = self.streams.lock().unwrap();
        if st
            .watchers
            .get(&id)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            st.watchers.remove(&id);
        }
    }

    /// How many messages have a channel, watched or not yet forgotten.
    pub fn watched(&self) -> usize {
        self.streams.lock().unwrap().watchers.len()
    }

    fn publish(&self, id: i64, ev: MessageEvent) {
        let mut st = self.streams.lock().unwrap();
        match &ev {
            MessageEvent::Output(data) => {
                let p = st.partial.entry(id).or_default();
                if p.skipped == 0 && p.text.len() + data.len() <= REPLAY_CAP {
                    p.text.push_str(data);
                } else {
                    p.skipped += data.len() as u64;
                }
            }
            // A new state starts a new attempt, or ends the message.
            MessageEvent::State(_) => {
                st.partial.remove(&id);
            }
        }
        let Some(tx) = st.watchers.get(&id) else {
            return;
        };
        let last = matches!(&ev, MessageEvent::State(s) if FINAL.contains(&s.as_str()));
        if tx.send(ev).is_err() || last {
            st.watchers.remove(&id);
        }
    }

    fn ipc_dir(&self, group: &str) -> PathBuf {
        self.store.root().join("daemon").join("ipc").join(group)
    }

    /// One scheduling round.
    pub fn tick(self: &Arc<Self>) -> Result<()> {
        let mut live = self.live.lock().unwrap();
        for s in live.values_mut() {
            if s.idle() && s.idle_since.elapsed() > self.config.idle_keepalive {
                s.close();
            }
            if s.busy.is_some()
                && s.last_output.elapsed() > self.config.deadline
                && s.stopped_for.is_none()
            {
                s.stopped_for = Some(format!(
                    "the agent ran past the deadline of {} without output",
                    humantime::format_duration(self.config.deadline)
                ));
                s.stop.store(true, Ordering::Relaxed);
            }
        }
        if self.draining.load(Ordering::Relaxed) {
            return Ok(());
        }
        let db = self.db.lock().unwrap();
        // (group, bot) pairs.
        let mut waiting = db.groups_waiting()?;
        // Round-robin: start after the group served last.
        {
            let cursor = self.cursor.lock().unwrap();
            let split = waiting.iter().position(|(g, _)| *g > *cursor).unwrap_or(0);
            waiting.rotate_left(split);
        }
        // A bot runs one session at a time: a group whose bot another
        // group's session holds waits for that session to close.
        let holders: HashMap<&str, &str> = live
            .values()
            .map(|s| (s.bot.as_str(), s.group.as_str()))
            .collect();
        let mut without = Vec::new();
        let mut holding = HashSet::new();
        for (g, bot) in &waiting {
            if live.contains_key(g) {
                continue;
            }
            match holders.get(bot.as_str()) {
                Some(holder) => {
                    holding.insert(holder.to_string());
                }
                None => without.push((g, bot)),
            }
        }
        drop(holders);

        // Idle sessions make room for groups waiting for a slot or for
        // their bot: those with nothing to do first (longest idle first),
        // then those whose turn is over (longest live first).
        let has_work: HashSet<&String> = waiting.iter().map(|(g, _)| g).collect();
        let closing = live.values().filter(|s| s.closing).count();
        let free = self.config.max_sessions.saturating_sub(live.len());
        let mut need = without.len().saturating_sub(free + closing);
        let mut idle: Vec<&mut Live> = live
            .values_mut()
            .filter(|s| {
                s.idle()
                    && (!has_work.contains(&s.group) || s.started.elapsed() >= self.config.turn)
            })
            .collect();
        idle.sort_by_key(|s| {
            (
                !holding.contains(&s.group),
                has_work.contains(&s.group),
                if has_work.contains(&s.group) {
                    s.started
                } else {
                    s.idle_since
                },
            )
        });
        for s in idle {
            if holding.contains(&s.group) {
                s.close();
                need = need.saturating_sub(1);
            } else if need > 0 {
                s.close();
                need -= 1;
            }
        }

        // Idle sessions take their group's next message.
        for (g, _) in &waiting {
            let Some(s) = live.get_mut(g) else { continue };
            if !s.idle() {
                continue;
            }
            if let Some(m) = db.next_for(g)? {
                self.deliver(&db, s, m.id, &m.body, m.created)?;
                *self.cursor.lock().unwrap() = g.clone();
            }
        }

        // Free slots go to groups without a session, in turn.
        let mut free = self.config.max_sessions.saturating_sub(live.len());
        let mut started = HashSet::new();
        for (g, bot) in without {
            if free == 0 {
                break;
            }
            if !started.insert(bot) {
                continue; // its bot is taken by a group ahead of it
            }
            let Some(m) = db.next_for(g)? else { continue };
            let group = match db.group(g)? {
                Some(group) => group,
                None => {
                    db.mark_running(m.id)?;
                    let st = db.mark_failed_attempt(m.id, "it never ran", 0)?;
                    self.publish(m.id, MessageEvent::State(st));
                    continue;
                }
            };
            let mut s = match self.start_session(&group) {
                Ok(s) => s,
                Err(e) => {
                    db.mark_running(m.id)?;
                    let st =
                        db.mark_failed_attempt(m.id, &format!("{e:#}"), self.config.max_tries)?;
                    self.publish(m.id, MessageEvent::State(st));
                    continue;
                }
            };
            self.deliver(&db, &mut s, m.id, &m.body, m.created)?;
            *self.cursor.lock().unwrap() = g.clone();
            live.insert(g.clone(), s);
            free -= 1;
        }
        Ok(())
    }

    /// Hands message `id` to a live session.
    fn deliver(&self, db: &Db, s: &mut Live, id: i64, body: &str, created: f64) -> Result<()> {
        db.mark_running(id)?;
        s.sandbox.deliver(&id.to_string(), body.as_bytes())?;
        s.busy = Some((id, Instant::now()));
        s.last_output = Instant::now();
        self.metrics.queue_wait.observe(now() - created);
        self.publish(id, MessageEvent::State("running".into()));
        Ok(())
    }

    /// Every `every`, until `stop`: the bots of live sessions share what
    /// they wrote with the store (`bot commit --live`); a filesystem that
    /// cannot share extents is said once, then left alone.
    pub fn live_commits(&self, every: Duration, stop: &AtomicBool) {
        let mut next = Instant::now() + every;
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
            if Instant::now() < next {
                continue;
            }
            next = Instant::now() + every;
            let bots: Vec<String> = self
                .live
                .lock()
                .unwrap()
                .values()
                .map(|s| s.bot.clone())
                .collect();
            for b in bots {
                match bot::commit_live(&self.store, &b, &store::NoProgress) {
                    Ok(o) => self
                        .metrics
                        .live_shared_bytes
                        .fetch_add(o.shared_bytes, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!(
                            "botyard serve: live commit of bot {b}: {e:#}; no more live commits"
                        );
                        return;
                    }
                };
            }
        }
    }

    fn start_session(self: &Arc<Self>, g: &Group) -> Result<Live> {
        if let Some(n) = g.secrets.iter().find(|n| !self.config.secrets.contains(n)) {
            anyhow::bail!(
                "group {} names the secret {}, which the daemon's `secrets` config no longer allows",
                g.name,
                store::quote_str(n)
            );
        }
        let ipc = self.ipc_dir(&g.name);
        let on_host = self.backend.runs_on_host();
        if on_host {
            // The backend makes the channel; nothing of an earlier session
            // of the group is delivered again.
            session::ipc::Channel::clear(&ipc)?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        // A group's workspace on this host must be mounted (and so
        // audited) already; elsewhere the backend finds it.
        let workspace = match &g.workspace {
            Some(w) if on_host => Some(
                workspace::Workspace::new(&self.store, w)?
                    .mounted_at()
                    .ok_or_else(|| anyhow::anyhow!("workspace {w} of group {} is not mounted; `botyard workspace mount {w}`", g.name))?,
            ),
            _ => None,
        };
        let mut opts = session::RunOptions::kept_alive(
            &g.bot,
            g.agent.clone(),
            ipc,
            self.config.idle_keepalive,
        );
        opts.workspace = workspace;
        opts.mounts = g.mounts.iter().map(|m| m.parse()).collect::<Result<_>>()?;
        opts.main = g.main;
        opts.secrets = g.secrets.clone();
        opts.limits = self.config.limits;
        // Per message, applied by the supervisor.
        opts.output_cap = self.config.output_cap;
        opts.group = Some(g.clone());
        // Nothing of an earlier session of the group is delivered again.
        let sandbox = self.backend.prepare(&self.store, &opts)?;
        self.metrics.session_starts.fetch_add(1, Ordering::Relaxed);
        let me = self.clone();
        let group = g.name.clone();
        let stop2 = stop.clone();
        let sb = sandbox.clone();
        let bot = g.bot.clone();
        let handle = std::thread::spawn(move || me.session_thread(group, bot, sb, stop2));
        self.threads.lock().unwrap().push(handle);
        Ok(Live {
            group: g.name.clone(),
            bot: g.bot.clone(),
            started: Instant::now(),
            started_at: now(),
            busy: None,
            last_output: Instant::now(),
            idle_since: Instant::now(),
            closing: false,
            closed_at: None,
            stopped_for: None,
            answered: 0,
            stop,
            sandbox,
            took_first: false,
        })
    }

    fn session_thread(
        self: Arc<Self>,
        group: String,
        bot: String,
        sandbox: Arc<dyn session::Sandbox>,
        stop: Arc<AtomicBool>,
    ) {
        let me = self.clone();
        let g = group.clone();
        let frames = FrameReader::new(move |f| me.frame(&g, f));
        let io = session::RunIo {
            stdin: Some(Vec::new()),
            stdout: Box::new(frames),
            stderr: Box::new(std::io::sink()),
        };
        let res = sandbox.start(io).and_then(|()| sandbox.wait(&stop));
        // While the slot is still held, so no new session mounts the bot.
        // Elsewhere the backend commits (on Kubernetes, the CSI driver
        // when the pod's volume is unpublished).
        if self.config.commit_on_close && res.is_ok() && self.backend.runs_on_host() {
            let message = format!("session of group {group} ended at {}", store::now_rfc3339());
            let _ = bot::commit(&self.store, &bot, &message, &store::NoProgress);
        }
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
                    self.metrics.stop_latency.observe(t.elapsed().as_secs_f64());
                }
                (s.busy, s.stopped_for)
            }
            None => (None, None),
        };
        let why = stopped_for.unwrap_or(why);
        if let Some((id, _)) = busy {
            let st = self
                .db
                .lock()
                .unwrap()
                .mark_failed_attempt(id, &why, self.config.max_tries);
            if let Ok(st) = st {
                self.publish(id, MessageEvent::State(st));
            }
        }
        self.wake();
    }

    /// A frame from a group's session, or one that did not parse.
    fn frame(&self, group: &str, frame: std::result::Result<Frame, FrameError>) {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => return self.bad_frame(group, e),
        };
        // Not a number: no message of ours, so dropped below.
        let id: i64 = frame.message().parse().unwrap_or(-1);
        let stopped_for = {
            let mut live = self.live.lock().unwrap();
            // A session speaks only of the message it was handed; anything
            // else (a confused or forging agent) is dropped.
            let Some(s) = live
                .get_mut(group)
                .filter(|s| s.busy.map(|b| b.0) == Some(id))
            else {
                eprintln!(
                    "botyard serve: group {group}: dropped a frame about message {}, which its session was not given",
                    store::quote_str(frame.message())
                );
                return;
            };
            match &frame {
                Frame::Taken { .. } if !s.took_first => {
                    s.took_first = true;
                    self.metrics
                        .start_latency
                        .observe(s.started.elapsed().as_secs_f64());
                }
                Frame::Output { .. } => s.last_output = Instant::now(),
                _ => {}
            }
            s.stopped_for.clone()
        };
        match frame {
            Frame::Taken { .. } => {}
            Frame::Output { data, .. } => self.publish(id, MessageEvent::Output(data)),
            Frame::Result {
                exit_code,
                output,
                truncated,
                ..
            } => self.answered(group, id, exit_code, &output, truncated, stopped_for),
        }
    }

    /// A frame that did not parse: said, and the message being answered
    /// fails this attempt (its answer cannot be trusted).
    fn bad_frame(&self, group: &str, e: FrameError) {
        eprintln!("botyard serve: group {group}: {e}");
        let busy = self
            .live
            .lock()
            .unwrap()
            .get(group)
            .and_then(|s| s.busy.map(|b| b.0));
        if let Some(id) = busy {
            self.answered(group, id, 1, &e.to_string(), false, Some(e.to_string()));
        }
    }

    /// A message's result; `stopped_for` is why the scheduler stopped its
    /// sandbox, if it did.
    fn answered(
        &self,
        group: &str,
        id: i64,
        code: i32,
        output: &str,
        truncated: bool,
        stopped_for: Option<String>,
    ) {
        let db = self.db.lock().unwrap();
        let st = if code == 0 {
            db.mark_done(id, code as i64, output, truncated)
                .map(|_| "done".to_string())
        } else {
            db.mark_failed_attempt(
                id,
                &stopped_for.unwrap_or_else(|| {
                    format!("the agent exited with code {code}: {}", tail(output))
                }),
                self.config.max_tries,
            )
        };
        drop(db);
        if let Some(s) = self.live.lock().unwrap().get_mut(group) {
            if s.busy.map(|b| b.0) == Some(id) {
                s.busy = None;
                s.idle_since = Instant::now();
                s.answered += 1;
            }
        }
        if let Ok(st) = st {
            self.publish(id, MessageEvent::State(st));
        }
        self.wake();
    }

    /// Closes a group's session (DELETE /v1/sessions/{group}): gently when
    /// idle, by stopping the sandbox when busy.
    pub fn close_session(&self, group: &str) -> bool {
        let mut live = self.live.lock().unwrap();
        let Some(s) = live.get_mut(group) else {
            return false;
        };
        if s.busy.is_some() {
            s.stopped_for
                .get_or_insert_with(|| "its session was closed on request".into());
            s.stop.store(true, Ordering::Relaxed);
        } else {
            s.close();
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
            self.wait(Duration::from_millis(50));
        }
        for s in self.live.lock().unwrap().values_mut() {
            if s.busy.is_some() {
                s.stop.store(true, Ordering::Relaxed);
            } else {
                s.close();
            }
        }
        let threads: Vec<_> = self.threads.lock().unwrap().drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }

    /// Publishes a state change made outside the scheduler.
    pub fn changed(&self, id: i64, state: &str) {
        self.publish(id, MessageEvent::State(state.to_string()));
        self.wake();
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
