//! `botyard status`: the daemon's sessions and queue, and the store's size.

use super::{daemon_client, Ctx};
use crate::cli::StatusArgs;
use anyhow::Result;

pub fn run(ctx: &Ctx, a: StatusArgs) -> Result<i32> {
    let cl = daemon_client(ctx, &a.addr)?;
    let v = cl.json("GET", "/v1/status", None)?;
    if a.json {
        crate::output::json(&v)?;
        return Ok(0);
    }
    let sessions = v["sessions"].as_array().cloned().unwrap_or_default();
    println!(
        "daemon: {} of {} sessions live; {} messages queued, {} running{}",
        sessions.len(),
        v["max_sessions"],
        v["queued"],
        v["running"],
        if v["draining"] == true {
            "; shutting down"
        } else {
            ""
        }
    );
    if let Some(b) = v["backend"].as_str() {
        println!("  sessions run on {b}");
    }
    for n in v["notes"].as_array().into_iter().flatten() {
        println!("  note: {}", n.as_str().unwrap_or_default());
    }
    for s in sessions {
        let what = match s["busy_with"].as_i64() {
            Some(id) => format!("answering message {id}"),
            None => format!("idle {:.0}s", s["idle_seconds"].as_f64().unwrap_or(0.0)),
        };
        println!(
            "  {}: {what}; {} answered",
            s["group"].as_str().unwrap_or(""),
            s["answered"]
        );
    }
    if let Ok(df) = ctx.open()?.df() {
        println!(
            "store: {} on disk for {} as plain copies",
            crate::output::bytes(df.stored_bytes),
            crate::output::bytes(df.logical_bytes)
        );
    }
    Ok(0)
}
