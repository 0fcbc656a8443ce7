use super::Ctx;
use crate::cli::RunArgs;
use anyhow::{Context, Result};
use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn user(s: &str) -> Result<(u32, u32)> {
    let (u, g) = s.split_once(':').unwrap_or((s, s));
    let parse = |x: &str| {
        x.parse::<u32>()
            .with_context(|| format!("--user {s}: write numeric UID:GID, like 1000:1000"))
    };
    Ok((parse(u)?, parse(g)?))
}

pub fn run(ctx: &Ctx, a: RunArgs) -> Result<i32> {
    let store = ctx.open()?;
    let duration = |flag: &str, v: &str| {
        humantime::parse_duration(v)
            .with_context(|| format!("{flag} {v}: write a duration like 30s or 30m"))
    };
    let size =
        |flag: &str, v: &str| workspace::parse_size(v).with_context(|| format!("{flag} {v}"));
    let (uid, gid) = user(&a.user)?;
    let workspace = match &a.workspace {
        None => None,
        Some(name) => {
            let ws = workspace::Workspace::new(&store, name)?;
            ws.load()?;
            Some(match ws.mounted_at() {
                Some(p) => p,
                None => super::workspace_mount::mount_quietly(ctx, &store, name)?,
            })
        }
    };
    let d = session::Limits::host_default();
    let memory = match a.memory.as_deref() {
        Some(m) => session::parse_memory(m, |v| size("--memory", v))
            .with_context(|| format!("--memory {m}"))?,
        None => d.memory,
    };
    let cpus = match a.cpus.as_deref() {
        Some(c) => session::parse_cpus(c).with_context(|| format!("--cpus {c}"))?,
        None => d.cpus,
    };
    let pids = session::parse_pids(&a.pids).with_context(|| format!("--pids {}", a.pids))?;
    let opts = session::RunOptions {
        bot: a.bot.clone(),
        workspace,
        mounts: a.mounts.iter().map(|m| m.parse()).collect::<Result<_>>()?,
        allowlist: session::default_allowlist_path(),
        main: a.main,
        secrets: a.secrets,
        timeout: duration("--timeout", &a.timeout)?,
        network: a.network.parse()?,
        memory,
        cpus,
        pids,
        uid,
        gid,
        runtime: a.runtime.parse()?,
        output_cap: size("--output-cap", &a.output_cap)?,
        ipc: a.ipc,
        idle: duration("--idle", &a.idle)?,
        args: a.command,
    };
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let out = session::run(&store, &opts, &STOP)?;
    if out.timed_out {
        eprintln!(
            "botyard: note: the command ran past --timeout {}; the sandbox was stopped",
            a.timeout
        );
    }
    if out.output_capped {
        eprintln!(
            "botyard: note: the output passed --output-cap {}; the sandbox was stopped",
            a.output_cap
        );
    }
    if out.interrupted {
        eprintln!("botyard: note: interrupted; the sandbox was stopped");
    }
    if a.commit {
        match bot::commit(&store, &a.bot, &ctx.bars) {
            Ok(Some(c)) => {
                ctx.bars.finish();
                eprintln!(
                    "botyard: note: committed bot {} ({})",
                    a.bot,
                    crate::output::n(c.changed, "path changed", "paths changed")
                );
            }
            Ok(None) => eprintln!("botyard: note: bot {} had nothing to commit", a.bot),
            Err(e) => return Err(e).context("the command ran, but the commit failed"),
        }
    }
    Ok(out.exit_code)
}
