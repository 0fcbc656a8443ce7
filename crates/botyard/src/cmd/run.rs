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
    let mut opts = session::RunOptions::new(&a.bot, a.command);
    opts.workspace = workspace;
    opts.mounts = a.mounts.iter().map(|m| m.parse()).collect::<Result<_>>()?;
    opts.main = a.main;
    opts.secrets = a.secrets;
    opts.timeout = match a.timeout.as_str() {
        "none" => None,
        t => Some(duration("--timeout", t)?),
    };
    opts.network = a.network.parse()?;
    // Each limit is the shared default unless its flag says otherwise.
    if let Some(m) = a.memory.as_deref() {
        opts.limits.memory = session::parse_memory(m, |v| size("--memory", v))
            .with_context(|| format!("--memory {m}"))?;
    }
    if let Some(c) = a.cpus.as_deref() {
        opts.limits.cpus = session::parse_cpus(c).with_context(|| format!("--cpus {c}"))?;
    }
    if let Some(p) = a.pids.as_deref() {
        opts.limits.pids = session::parse_pids(p).with_context(|| format!("--pids {p}"))?;
    }
    if let Some(u) = a.user.as_deref() {
        (opts.uid, opts.gid) = user(u)?;
    }
    if let Some(cap) = &a.output_cap {
        opts.output_cap = size("--output-cap", cap)?;
    }
    opts.ipc = a.ipc;
    if let Some(idle) = &a.idle {
        opts.idle = duration("--idle", idle)?;
    }
    let runtime: session::Runtime = a.runtime.parse()?;
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let out = session::run(&store, &runtime, &opts, &STOP)?;
    if out.timed_out {
        eprintln!(
            "botyard: note: the command ran past --timeout {}; the sandbox was stopped",
            a.timeout
        );
    }
    if out.output_capped {
        eprintln!(
            "botyard: note: the output passed --output-cap {}; the sandbox was stopped",
            a.output_cap.as_deref().unwrap_or("10MB")
        );
    }
    if out.interrupted {
        eprintln!("botyard: note: interrupted; the sandbox was stopped");
    }
    if a.commit {
        let message = format!("botyard run: {}", opts.args.join(" "));
        match bot::commit(&store, &a.bot, &message, &ctx.bars) {
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
