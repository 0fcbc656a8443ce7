//! Removing the supervisor's files that no botyard binary will use again:
//! `STORE/supervisor/` gets a copy per binary (an upgrade makes a new
//! one), and old copies are kept only while a session runs from them.

use crate::run::SUPERVISOR_AT;
use anyhow::Result;
use bot::Bot;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};
use store::Store;

/// What [`gc_supervisors`] removed (or would).
#[derive(Debug, Default, serde::Serialize)]
pub struct SupervisorGc {
    pub dirs: u64,
    pub bytes: u64,
}

/// A copy used this recently is kept: a run may be between choosing it
/// and writing the bundle that names it.
const RECENT: Duration = Duration::from_secs(3600);

/// Removes copies of the supervisor other than this binary's, those live
/// sessions run from, and those used in the last hour.
pub fn gc_supervisors(store: &Store, dry_run: bool) -> Result<SupervisorGc> {
    let root = store.root().join("supervisor");
    let mut out = SupervisorGc::default();
    let Ok(rd) = std::fs::read_dir(&root) else {
        return Ok(out);
    };
    let mut keep: HashSet<PathBuf> = in_use(store);
    if let Ok(key) = crate::copy_self::current_key() {
        keep.insert(root.join(key));
    }
    for e in rd.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if keep.contains(&path) {
            continue;
        }
        let Ok(md) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let age = md
            .modified()
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .unwrap_or_default();
        // A copy being made (`.KEY.PID`) by a live process is left alone.
        let in_progress = name.starts_with('.')
            && name
                .rsplit('.')
                .next()
                .and_then(|p| p.parse::<i32>().ok())
                .is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if !md.is_dir() || age < RECENT || in_progress {
            continue;
        }
        out.dirs += 1;
        out.bytes += dir_bytes(&path);
        if !dry_run {
            std::fs::remove_dir_all(&path)?;
        }
    }
    Ok(out)
}

/// The supervisor copies that sessions' bundles bind-mount.
fn in_use(store: &Store) -> HashSet<PathBuf> {
    let mut used = HashSet::new();
    let Ok(rd) = std::fs::read_dir(store.root().join("bots")) else {
        return used;
    };
    for e in rd.flatten() {
        let id = e.file_name().to_string_lossy().into_owned();
        let Ok(bot) = Bot::new(store, &id) else {
            continue;
        };
        // A session that has not ended (or not been reaped) has its state
        // file; its bundle outlives it.
        let dir = bot.session_dir();
        if !bot.session_state().exists() {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(dir.join("bundle/config.json")) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        for m in v["mounts"].as_array().into_iter().flatten() {
            if m["destination"] == SUPERVISOR_AT {
                if let Some(s) = m["source"].as_str() {
                    used.insert(PathBuf::from(s));
                }
            }
        }
    }
    used
}

fn dir_bytes(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}
