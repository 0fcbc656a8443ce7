use super::Ctx;
use crate::cli::{JsonFlag, WsNameJsonArgs};
use crate::output::{bytes, table};
use anyhow::Result;

fn row(i: &workspace::WorkspaceInfo) -> Vec<String> {
    vec![
        i.r.name.clone(),
        i.r.mode.to_string(),
        i.r.project.display().to_string(),
        i.mounted_at.clone().unwrap_or_else(|| "-".into()),
        bytes(i.upper_bytes),
    ]
}

pub fn ls(ctx: &Ctx, a: JsonFlag) -> Result<i32> {
    let store = ctx.open()?;
    let list = workspace::list(&store)?;
    if a.json {
        crate::output::json(&list)?;
    } else if list.is_empty() {
        ctx.say("no workspaces; create one with `botyard workspace create NAME --project DIR`");
    } else {
        let rows: Vec<Vec<String>> = list.iter().map(row).collect();
        table(&["NAME", "MODE", "PROJECT", "MOUNTED AT", "UPPER"], &rows);
    }
    Ok(0)
}

pub fn show(ctx: &Ctx, a: WsNameJsonArgs) -> Result<i32> {
    let store = ctx.open()?;
    let i = workspace::show(&store, &a.name)?;
    if a.json {
        crate::output::json(&i)?;
        return Ok(0);
    }
    println!("name:        {}", i.r.name);
    println!("project:     {}", i.r.project.display());
    println!("mode:        {}", i.r.mode);
    if i.r.mode == workspace::Mode::Auto {
        println!("interval:    {}s", i.r.interval_secs);
    }
    println!(
        "policy:      {}",
        i.r.policy
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "built-in".into())
    );
    println!("mounted at:  {}", i.mounted_at.as_deref().unwrap_or("-"));
    println!(
        "audit:       {}",
        match i.watcher_pid {
            Some(pid) => format!("watcher running (pid {pid})"),
            None if i.mounted_at.is_some() => "watcher NOT running: remount to restart it".into(),
            None => "-".into(),
        }
    );
    println!("upper:       {}", bytes(i.upper_bytes));
    println!("created:     {}", i.r.created);
    Ok(0)
}
