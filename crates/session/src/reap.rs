//! Sessions whose botyard was killed: the sandbox is stopped and removed,
//! and a bot the run mounted is unmounted, by the next command.

use crate::run::{session_dir, unmount_retrying, SessionState};
use anyhow::Result;
use bot::Bot;
use std::process::{Command, Stdio};
use store::Store;

/// Cleans up after a dead session of bot `id`, if there is one. A live
/// session (its lock held) is left alone.
pub fn reap(store: &Store, id: &str) -> Result<bool> {
    let bot = Bot::new(store, id)?;
    let state_path = session_dir(&bot).join("state.json");
    let Ok(text) = std::fs::read_to_string(&state_path) else {
        return Ok(false);
    };
    let Some(_lock) = store::try_lock_file(&bot.dir().join("session.lock"))? else {
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
        crate::run::unstage(&session_dir(&bot).join("mnt"));
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
        if bot::Bot::new(store, &id).is_ok() && reap(store, &id)? {
            n += 1;
        }
    }
    Ok(n)
}
