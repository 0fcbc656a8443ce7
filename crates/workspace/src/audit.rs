//! The audit log: a watcher process records every create, modify, delete,
//! rename and chmod in a mounted workspace, whether or not a botyard
//! command is in the foreground.
//!
//! It watches the mounted project with inotify, one watch per directory,
//! adding watches as directories appear. inotify's queue can overflow;
//! then the watcher logs that and rescans, comparing a snapshot of the
//! upper dir (the authoritative change set) with the one it kept, so what
//! changed meanwhile is still recorded.

use crate::state::{Mode, Workspace};
use anyhow::{Context, Result};
use fs::walk::join;
use rustix::fd::AsFd;
use rustix::fd::OwnedFd;
use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use rustix::fs::FileType;
use std::collections::HashMap;
use std::io::Write;
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};

/// One line of the audit log.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Event {
    pub time: String,
    /// create, modify, delete, rename, chmod; overflow, watching, stopped;
    /// error.
    pub event: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// The path's exact bytes when they are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_bytes: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_bytes: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dir: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Found by a rescan after an overflow rather than seen as it happened.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rescan: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Event {
    pub fn new(event: &str, path: &[u8]) -> Event {
        Event {
            time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            event: event.to_string(),
            path: String::from_utf8_lossy(path).into_owned(),
            path_bytes: std::str::from_utf8(path).is_err().then(|| path.to_vec()),
            to: None,
            to_bytes: None,
            dir: false,
            mode: None,
            rescan: false,
            message: None,
        }
    }

    /// The line `workspace log` prints.
    pub fn human(&self) -> String {
        // Names are the agent's: quoted, so none can forge a line.
        let exact = |s: &str, b: &Option<Vec<u8>>| match b {
            Some(b) => fs::quote_bytes(b),
            None => fs::quote_str(s),
        };
        let mut s = format!(
            "{} {:<8} {}",
            self.time,
            self.event,
            exact(&self.path, &self.path_bytes)
        );
        if self.dir {
            s.push('/');
        }
        if let Some(to) = &self.to {
            s.push_str(&format!(" → {}", exact(to, &self.to_bytes)));
        }
        if let Some(m) = &self.mode {
            s.push_str(&format!(" (mode {m})"));
        }
        if self.rescan {
            s.push_str(" [found by rescan]");
        }
        if let Some(m) = &self.message {
            if !s.ends_with(' ') {
                s.push(' ');
            }
            s.push_str(m);
        }
        s.trim_end().to_string()
    }
}

/// Appends events to a workspace's audit log.
pub struct Log {
    f: std::fs::File,
}

impl Log {
    pub fn open(path: &Path) -> Result<Log> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open the audit log {}", path.display()))?;
        Ok(Log { f })
    }

    pub fn write(&mut self, e: &Event) -> Result<()> {
        let mut line = serde_json::to_vec(e)?;
        line.push(b'\n');
        // One write per line: appends from several writers stay whole.
        self.f.write_all(&line)?;
        Ok(())
    }

    pub fn note(&mut self, event: &str, message: impl Into<String>) -> Result<()> {
        let mut e = Event::new(event, b"");
        e.message = Some(message.into());
        self.write(&e)
    }
}

const WHITEOUT: u8 = 5;

/// (kind, size, mtime ns, mode) of each path below a root.
type Snapshot = HashMap<Vec<u8>, (u8, u64, i128, u32)>;

fn stat_entry(root: &Path, rel: &[u8]) -> Option<(u8, u64, i128, u32)> {
    let mut p = root.as_os_str().as_encoded_bytes().to_vec();
    p.push(b'/');
    p.extend_from_slice(rel);
    let p = std::ffi::OsStr::from_bytes_compat(&p);
    let st = rustix::fs::lstat(p).ok()?;
    let kind = match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => 1,
        FileType::RegularFile => 2,
        FileType::Symlink => 3,
        // In an upper dir, a 0:0 character device is a deletion.
        FileType::CharacterDevice if st.st_rdev == 0 => WHITEOUT,
        _ => 4,
    };
    Some((
        kind,
        st.st_size as u64,
        st.st_mtime as i128 * 1_000_000_000 + st.st_mtime_nsec as i128,
        st.st_mode & 0o7777,
    ))
}

trait FromBytesCompat {
    fn from_bytes_compat(b: &[u8]) -> &std::ffi::OsStr;
}
impl FromBytesCompat for std::ffi::OsStr {
    fn from_bytes_compat(b: &[u8]) -> &std::ffi::OsStr {
        std::os::unix::ffi::OsStrExt::from_bytes(b)
    }
}

fn kind_of(st: &rustix::fs::Stat) -> (u8, u64, i128, u32) {
    let kind = match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => 1,
        FileType::RegularFile => 2,
        FileType::Symlink => 3,
        // In an upper dir, a 0:0 character device is a deletion.
        FileType::CharacterDevice if st.st_rdev == 0 => WHITEOUT,
        _ => 4,
    };
    (
        kind,
        st.st_size as u64,
        st.st_mtime as i128 * 1_000_000_000 + st.st_mtime_nsec as i128,
        st.st_mode & 0o7777,
    )
}

/// Everything below `dir` into `out`, paths prefixed by `rel` (a loop, any
/// depth up to the limit; what lies deeper is left out).
fn snapshot_into(dir: &OwnedFd, rel: &[u8], out: &mut Snapshot) {
    struct S<'a> {
        rel: &'a [u8],
        out: &'a mut Snapshot,
    }
    impl fs::walk::Visitor for S<'_> {
        fn entry(
            &mut self,
            _: &OwnedFd,
            _: &[u8],
            path: &[u8],
            st: &rustix::fs::Stat,
        ) -> anyhow::Result<bool> {
            let s = kind_of(st);
            self.out.insert(join(self.rel, path), s);
            Ok(s.0 == 1)
        }
    }
    let _ = fs::walk::walk(dir, fs::MAX_DEPTH, &mut S { rel, out });
}

fn snapshot(root: &Path) -> Snapshot {
    let mut out = Snapshot::new();
    if let Ok(fd) = fs::walk::open_dir(root) {
        snapshot_into(&fd, b"", &mut out);
    }
    out
}

struct Watcher {
    fd: OwnedFd,
    mount: PathBuf,
    /// Where the snapshot for rescans is taken (the upper, or the project
    /// itself in unsafe mode).
    snap_root: PathBuf,
    snap: Snapshot,
    /// The project below the upper (none in unsafe mode).
    lower: Option<PathBuf>,
    wds: HashMap<i32, Vec<u8>>,
    /// Files written since they were opened (a modify is logged on close).
    dirty: HashMap<Vec<u8>, bool>,
    /// Moves out of a directory, waiting for their other half.
    moved_from: HashMap<u32, (Vec<u8>, bool)>,
    log: Log,
}

const MASK: WatchFlags = WatchFlags::CREATE
    .union(WatchFlags::DELETE)
    .union(WatchFlags::MODIFY)
    .union(WatchFlags::CLOSE_WRITE)
    .union(WatchFlags::ATTRIB)
    .union(WatchFlags::MOVED_FROM)
    .union(WatchFlags::MOVED_TO)
    .union(WatchFlags::DONT_FOLLOW)
    .union(WatchFlags::EXCL_UNLINK)
    .union(WatchFlags::ONLYDIR);

impl Watcher {
    fn abs(&self, rel: &[u8]) -> PathBuf {
        let mut p = self.mount.as_os_str().as_encoded_bytes().to_vec();
        if !rel.is_empty() {
            p.push(b'/');
            p.extend_from_slice(rel);
        }
        PathBuf::from(std::ffi::OsStr::from_bytes_compat(&p))
    }

    /// Watches `rel` and every directory below it; `report` logs what is
    /// already inside (it appeared before the watch did). A loop, not a
    /// recursion: an agent's tree can be as deep as it likes.
    fn watch_tree(&mut self, rel: &[u8], report: bool) {
        let Ok(wd) = inotify::add_watch(&self.fd, self.abs(rel), MASK) else {
            return;
        };
        self.wds.insert(wd, rel.to_vec());
        let Ok(dir) = fs::walk::open_dir(&self.abs(rel)) else {
            return;
        };
        struct T<'a> {
            w: &'a mut Watcher,
            rel: &'a [u8],
            report: bool,
        }
        impl fs::walk::Visitor for T<'_> {
            fn entry(
                &mut self,
                dir: &OwnedFd,
                name: &[u8],
                path: &[u8],
                st: &rustix::fs::Stat,
            ) -> anyhow::Result<bool> {
                let path = join(self.rel, path);
                let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
                if self.report {
                    let mut e = Event::new("create", &path);
                    e.dir = is_dir;
                    let _ = self.w.log.write(&e);
                }
                if !is_dir {
                    return Ok(false);
                }
                // Through the parent's descriptor: the path may be longer
                // than the kernel takes in one string.
                let p = fs::walk::proc_path(dir.as_fd(), name);
                match inotify::add_watch(&self.w.fd, p, MASK) {
                    Ok(wd) => {
                        self.w.wds.insert(wd, path);
                        Ok(true)
                    }
                    Err(_) => Ok(false),
                }
            }
        }
        let mut t = T {
            w: self,
            rel,
            report,
        };
        if let Err(e) = fs::walk::walk(&dir, fs::MAX_DEPTH, &mut t) {
            let _ = self
                .log
                .note("error", format!("not every directory is watched: {e:#}"));
        }
    }

    fn refresh(&mut self, rel: &[u8]) {
        let prefix = join(rel, b"");
        self.snap
            .retain(|k, _| k != rel && !(k.starts_with(&prefix) && k.len() > prefix.len()));
        if let Some(s) = stat_entry(&self.snap_root, rel) {
            self.snap.insert(rel.to_vec(), s);
            if s.0 == 1 {
                let root = self.snap_root.clone();
                let mut p = root.as_os_str().as_encoded_bytes().to_vec();
                p.push(b'/');
                p.extend_from_slice(rel);
                if let Ok(fd) =
                    fs::walk::open_dir(Path::new(std::ffi::OsStr::from_bytes_compat(&p)))
                {
                    let mut sub = Snapshot::new();
                    snapshot_into(&fd, rel, &mut sub);
                    self.snap.extend(sub);
                }
            }
        }
    }

    fn mode_of(&self, rel: &[u8]) -> Option<String> {
        let st = rustix::fs::lstat(self.abs(rel)).ok()?;
        Some(format!("{:04o}", st.st_mode & 0o7777))
    }

    fn emit(&mut self, event: &str, rel: &[u8], dir: bool) -> Result<()> {
        let mut e = Event::new(event, rel);
        e.dir = dir;
        if event == "chmod" {
            e.mode = self.mode_of(rel);
        }
        self.log.write(&e)?;
        self.refresh(rel);
        Ok(())
    }

    /// After an overflow: what the snapshot says changed meanwhile.
    fn rescan(&mut self) -> Result<()> {
        let now = snapshot(&self.snap_root);
        let mut paths: Vec<&Vec<u8>> = now.keys().chain(self.snap.keys()).collect();
        paths.sort();
        paths.dedup();
        for p in paths {
            let (before, after) = (self.snap.get(p), now.get(p));
            let wo = |s: Option<&(u8, u64, i128, u32)>| s.is_some_and(|s| s.0 == WHITEOUT);
            // What the project (below the upper) has here.
            let below = self.lower.as_ref().and_then(|l| stat_entry(l, p));
            let ev = match (before, after) {
                (a, b) if a == b => continue,
                (_, b) if wo(b) => "delete",
                (a, _) if wo(a) => "create",
                (None, Some(b)) => match below {
                    // Copied up from the project: a change, not a creation.
                    Some(l) if l.0 == 1 && b.0 == 1 => continue,
                    Some(l) if l.0 == b.0 && l.1 == b.1 && l.2 == b.2 => "chmod",
                    Some(_) => "modify",
                    None => "create",
                },
                (Some(_), None) => "delete",
                (Some(a), Some(b)) if a.0 != b.0 || a.1 != b.1 || a.2 != b.2 => "modify",
                (Some(_), Some(_)) => "chmod",
                (None, None) => continue,
            };
            let mut e = Event::new(ev, p);
            e.rescan = true;
            e.dir = now.get(p).or(self.snap.get(p)).is_some_and(|s| s.0 == 1);
            self.log.write(&e)?;
        }
        self.snap = now;
        // Directories made meanwhile need watches.
        let known: std::collections::HashSet<Vec<u8>> = self.wds.values().cloned().collect();
        let dirs: Vec<Vec<u8>> = self
            .snap
            .iter()
            .filter(|(k, v)| v.0 == 1 && !known.contains(*k))
            .map(|(k, _)| k.clone())
            .collect();
        for d in dirs {
            if self.abs(&d).is_dir() {
                self.watch_tree(&d, false);
            }
        }
        Ok(())
    }

    fn flush_moves(&mut self) -> Result<()> {
        let moves: Vec<(Vec<u8>, bool)> = self.moved_from.drain().map(|(_, v)| v).collect();
        for (p, dir) in moves {
            // Moved out of the project: gone as far as it can tell.
            self.emit("delete", &p, dir)?;
        }
        Ok(())
    }

    fn run(&mut self, events: &OwnedFd) -> Result<()> {
        let mut buf = vec![MaybeUninit::<u8>::uninit(); 64 * 1024];
        let mut reader = inotify::Reader::new(events, &mut buf);
        loop {
            let (flags, wd, cookie, name) = match reader.next() {
                Ok(e) => (
                    e.events(),
                    e.wd(),
                    e.cookie(),
                    e.file_name().map(|n| n.to_bytes().to_vec()),
                ),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(std::io::Error::from(e).into()),
            };
            if handle(self, flags, wd, cookie, name)? {
                return Ok(());
            }
            if reader.is_buffer_empty() {
                self.flush_moves()?;
            }
        }
    }
}

/// Handles one inotify event; returns true when the watch is over.
fn handle(
    w: &mut Watcher,
    flags: ReadFlags,
    wd: i32,
    cookie: u32,
    name: Option<Vec<u8>>,
) -> Result<bool> {
    if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
        w.log.note(
            "overflow",
            "the kernel's event queue overflowed; rescanning",
        )?;
        w.moved_from.clear();
        w.rescan()?;
        return Ok(false);
    }
    if flags.contains(ReadFlags::UNMOUNT) {
        return Ok(true);
    }
    if flags.contains(ReadFlags::IGNORED) {
        w.wds.remove(&wd);
        return Ok(w.wds.is_empty());
    }
    let Some(dir) = w.wds.get(&wd).cloned() else {
        return Ok(false);
    };
    let Some(name) = name else { return Ok(false) };
    let path = join(&dir, &name);
    let is_dir = flags.contains(ReadFlags::ISDIR);
    if flags.contains(ReadFlags::CREATE) {
        w.emit("create", &path, is_dir)?;
        if is_dir {
            w.watch_tree(&path, true);
        }
    } else if flags.contains(ReadFlags::MODIFY) {
        w.dirty.insert(path, true);
    } else if flags.contains(ReadFlags::CLOSE_WRITE) {
        if w.dirty.remove(&path).is_some() {
            w.emit("modify", &path, false)?;
        }
    } else if flags.contains(ReadFlags::DELETE) {
        w.dirty.remove(&path);
        w.emit("delete", &path, is_dir)?;
    } else if flags.contains(ReadFlags::ATTRIB) {
        w.emit("chmod", &path, is_dir)?;
    } else if flags.contains(ReadFlags::MOVED_FROM) {
        w.moved_from.insert(cookie, (path, is_dir));
    } else if flags.contains(ReadFlags::MOVED_TO) {
        match w.moved_from.remove(&cookie) {
            Some((from, _)) => {
                let mut e = Event::new("rename", &from);
                e.to = Some(String::from_utf8_lossy(&path).into_owned());
                e.to_bytes = std::str::from_utf8(&path).is_err().then(|| path.clone());
                e.dir = is_dir;
                w.log.write(&e)?;
                w.refresh(&from);
                w.refresh(&path);
                if is_dir {
                    // Watches below keep working; their paths move.
                    let old = join(&from, b"");
                    for p in w.wds.values_mut() {
                        if *p == from {
                            *p = path.clone();
                        } else if p.starts_with(&old) {
                            let rest = p[old.len()..].to_vec();
                            *p = join(&path, &rest);
                        }
                    }
                }
            }
            None => {
                w.emit("create", &path, is_dir)?;
                if is_dir {
                    w.watch_tree(&path, true);
                }
            }
        }
    }
    Ok(false)
}

/// The watcher's main loop, run by the process `workspace mount` starts:
/// watches the mounted workspace until it is unmounted. Writes its pid to
/// the workspace's `audit.pid` once every watch is in place.
pub fn run_watcher(ws: &Workspace) -> Result<()> {
    let r = ws.load()?;
    let mount = ws
        .mounted_at()
        .with_context(|| format!("workspace {} is not mounted", ws.name))?;
    let snap_root = if r.mode == Mode::Unsafe {
        mount.clone()
    } else {
        ws.upper()
    };
    let events = inotify::init(CreateFlags::CLOEXEC).context("cannot start inotify")?;
    let mut w = Watcher {
        fd: events.try_clone()?,
        mount: mount.clone(),
        snap: snapshot(&snap_root),
        snap_root,
        lower: (r.mode != Mode::Unsafe).then(|| r.project.clone()),
        wds: HashMap::new(),
        dirty: HashMap::new(),
        moved_from: HashMap::new(),
        log: Log::open(&ws.audit_log())?,
    };
    w.watch_tree(b"", false);
    w.log.note(
        "watching",
        format!(
            "{} {} at {}",
            w.wds.len(),
            if w.wds.len() == 1 {
                "directory"
            } else {
                "directories"
            },
            mount.display()
        ),
    )?;
    store::write_file_atomic(
        &ws.dir(),
        &ws.watcher_pid(),
        format!("{}\n", std::process::id()).as_bytes(),
        0o644,
    )?;
    let res = w.run(&events);
    let _ = std::fs::remove_file(ws.watcher_pid());
    if let Err(e) = &res {
        let _ = w
            .log
            .note("error", format!("the audit watcher failed: {e:#}"));
    }
    res
}

/// The watcher's pid, if it runs.
pub fn watcher_running(ws: &Workspace) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(ws.watcher_pid())
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let is_ours = cmdline.split(|&b| b == 0).any(|a| a == b"audit-watcher")
        && cmdline.split(|&b| b == 0).any(|a| a == ws.name.as_bytes());
    is_ours.then_some(pid)
}

/// Stops the watcher (if it runs) and waits for it to go.
pub fn stop_watcher(ws: &Workspace) {
    if let Some(pid) = watcher_running(ws) {
        if let Some(p) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
            for _ in 0..100 {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    break;
                }
                // A zombie child of ours is gone for this purpose.
                if std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z "))
                {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
    let _ = std::fs::remove_file(ws.watcher_pid());
}
