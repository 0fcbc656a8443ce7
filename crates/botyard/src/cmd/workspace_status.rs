use super::Ctx;
use crate::cli::WsStatusArgs;
use crate::output::bytes;
use anyhow::Result;

pub fn run(ctx: &Ctx, a: WsStatusArgs) -> Result<i32> {
    let store = ctx.open()?;
    let s = workspace::status(&store, &a.name, a.events)?;
    if a.json {
        crate::output::json(&s)?;
        return Ok(0);
    }
    let i = &s.info;
    match (&i.mounted_at, i.watcher_pid) {
        (Some(p), Some(_)) => println!("{} ({} mode): mounted at {p}, audited", i.r.name, i.r.mode),
        (Some(p), None) => println!(
            "{} ({} mode): mounted at {p}; the audit watcher is NOT running (remount to restart it)",
            i.r.name, i.r.mode
        ),
        (None, _) => println!("{} ({} mode): not mounted", i.r.name, i.r.mode),
    }
    println!("project: {}", i.r.project.display());
    if i.r.mode == workspace::Mode::Unsafe {
        println!(
            "changes go straight to the project; see `botyard workspace log {}`",
            i.r.name
        );
    } else {
        let pending: Vec<String> = s.pending.iter().map(|(k, v)| format!("{v} {k}")).collect();
        println!(
            "pending: {}; upper: {}",
            if pending.is_empty() {
                "nothing".into()
            } else {
                pending.join(", ")
            },
            bytes(i.upper_bytes)
        );
        if s.in_sync > 0 {
            println!("in sync: {} (dropped from the upper at unmount)", s.in_sync);
        }
        if !s.conflicts.is_empty() {
            println!(
                "conflicts ({}), settle with `botyard workspace sync {} --ours|--theirs`:",
                s.conflicts.len(),
                i.r.name
            );
            for c in &s.conflicts {
                println!("  {c}");
            }
        }
    }
    if !s.recent_events.is_empty() {
        println!("latest events:");
        for e in &s.recent_events {
            println!("  {}", e.human());
        }
    }
    Ok(0)
}
