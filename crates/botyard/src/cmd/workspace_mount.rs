use super::Ctx;
use crate::cli::{WsMountArgs, WsNameArgs};
use anyhow::Result;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub fn mount(ctx: &Ctx, a: WsMountArgs) -> Result<i32> {
    let store = ctx.open()?;
    let at = mount_at(ctx, &store, &a.name, a.at.as_deref())?;
    ctx.say(format!(
        "workspace {} mounted at {} (audited)",
        a.name,
        at.display()
    ));
    Ok(0)
}

/// Mounts a workspace at its default place (for `botyard run`).
pub fn mount_quietly(ctx: &Ctx, store: &store::Store, name: &str) -> Result<PathBuf> {
    mount_at(ctx, store, name, None)
}

fn mount_at(ctx: &Ctx, store: &store::Store, name: &str, at: Option<&Path>) -> Result<PathBuf> {
    let store_path = store.root().to_path_buf();
    // The watcher is this same binary, in its own session so it outlives
    // the command (and a Ctrl-C aimed at the terminal's foreground).
    let start = move |ws: &workspace::Workspace| -> Result<Child> {
        let mut c = Command::new(std::env::current_exe()?);
        c.arg("--store")
            .arg(&store_path)
            .args(["workspace", "audit-watcher", &ws.name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: setsid is async-signal-safe and touches no memory.
        unsafe {
            c.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        Ok(c.spawn()?)
    };
    let at = workspace::mount(store, name, at, &start, &ctx.bars)?;
    ctx.bars.finish();
    Ok(at)
}

pub fn unmount(ctx: &Ctx, a: WsNameArgs) -> Result<i32> {
    let store = ctx.open()?;
    let dropped = workspace::unmount(&store, &a.name)?;
    let note = if dropped > 0 {
        format!(
            "; {} the project already holds {} dropped from its upper",
            crate::output::n(dropped, "change", "changes"),
            if dropped == 1 { "was" } else { "were" }
        )
    } else {
        String::new()
    };
    ctx.say(format!("workspace {} unmounted{note}", a.name));
    Ok(0)
}

pub fn audit_watcher(ctx: &Ctx, a: WsNameArgs) -> Result<i32> {
    let store = ctx.open()?;
    let ws = workspace::Workspace::new(&store, &a.name)?;
    workspace::run_watcher(&ws)?;
    Ok(0)
}
