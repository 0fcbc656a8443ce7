use crate::state::{Mode, Workspace};
use crate::workspace_sync::{sync, SyncOptions, SyncReport};
use anyhow::{bail, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use store::{NoProgress, Store};

/// Auto mode: syncs the workspace through the gate every interval until
/// `stop` is set. Nothing waits for a person: what needs approval is held,
/// conflicts stay pending, rejected changes stay in the upper; each round
/// with something to say goes to `report`.
pub fn watch(
    store: &Store,
    name: &str,
    stop: &AtomicBool,
    report: &mut dyn FnMut(&SyncReport),
) -> Result<()> {
    let ws = Workspace::new(store, name)?;
    let r = ws.load()?;
    if r.mode != Mode::Auto {
        bail!(
            "workspace {name} is in {} mode; `watch` syncs only auto workspaces (create it with --mode auto)",
            r.mode
        );
    }
    let every = Duration::from_secs(r.interval_secs.max(1));
    loop {
        let round = Instant::now();
        match sync(&ws, &SyncOptions::default(), None, &NoProgress) {
            Ok(rep) => {
                if !rep.items.is_empty() {
                    report(&rep);
                }
            }
            // Another command holds the workspace: try again next round.
            Err(e) if store::is_kind(&e, store::ErrorKind::Busy) => {}
            Err(e) => return Err(e),
        }
        while round.elapsed() < every {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
