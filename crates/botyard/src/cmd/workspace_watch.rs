use super::Ctx;
use crate::cli::WsNameArgs;
use anyhow::Result;
use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

pub fn run(ctx: &Ctx, a: WsNameArgs) -> Result<i32> {
    let store = ctx.open()?;
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    ctx.say(format!(
        "syncing workspace {} through the gate every interval; Ctrl-C stops",
        a.name
    ));
    workspace::watch(&store, &a.name, &STOP, &mut |r| {
        let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
        for o in &r.items {
            let reason = o
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            println!("{stamp} {:<10} {} {}{reason}", o.outcome, o.what, o.path);
        }
    })?;
    Ok(0)
}
