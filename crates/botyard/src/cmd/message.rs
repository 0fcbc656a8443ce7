//! `botyard message`: send, show, wait for and list the daemon's messages.

use super::{daemon_client, Ctx};
use crate::cli::MessageCommand;
use crate::output::table;
use anyhow::{bail, Context, Result};
use daemon::Client;

pub fn run(ctx: &Ctx, c: MessageCommand) -> Result<i32> {
    match c {
        MessageCommand::Send(a) => {
            let raw = match (&a.text, &a.file) {
                (_, Some(f)) => {
                    std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?
                }
                (Some(t), None) => t.clone().into_bytes(),
                (None, None) => bail!("give the message as TEXT or --file F"),
            };
            let body = daemon::message_body(raw);
            let cl = daemon_client(ctx, &a.addr)?;
            let v = cl.json(
                "POST",
                &format!("/v1/groups/{}/messages", a.group),
                Some(&body),
            )?;
            if a.follow {
                let limit = humantime::parse_duration(&a.timeout)
                    .with_context(|| format!("--timeout {}", a.timeout))?;
                let id = v["id"].as_i64().context("the daemon sent no message id")?;
                if !a.json {
                    eprintln!("botyard: message {id} accepted");
                }
                return follow(&cl, id, limit, a.json);
            }
            if a.json {
                crate::output::json(&v)?;
            } else {
                println!("{}", v["id"]);
            }
        }
        MessageCommand::Show(a) => {
            let v = daemon_client(ctx, &a.addr)?.json(
                "GET",
                &format!("/v1/messages/{}", a.id),
                None,
            )?;
            print_message(&v, a.json)?;
        }
        MessageCommand::Wait(a) => {
            let cl = daemon_client(ctx, &a.addr)?;
            let limit = humantime::parse_duration(&a.timeout)
                .with_context(|| format!("--timeout {}", a.timeout))?;
            if a.follow {
                return follow(&cl, a.id, limit, a.json);
            }
            let v = cl.wait_message(a.id, limit)?;
            print_message(&v, a.json)?;
            return Ok(if v["state"] == "failed" { 1 } else { 0 });
        }
        MessageCommand::Ls(a) => {
            let mut q = Vec::new();
            if let Some(g) = &a.group {
                q.push(format!("group={g}"));
            }
            if let Some(s) = &a.state {
                q.push(format!("state={s}"));
            }
            let v = daemon_client(ctx, &a.addr)?.json(
                "GET",
                &format!("/v1/messages?{}", q.join("&")),
                None,
            )?;
            if a.json {
                crate::output::json(&v)?;
            } else {
                let rows: Vec<Vec<String>> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|m| {
                        vec![
                            m["id"].to_string(),
                            m["group"].as_str().unwrap_or("").into(),
                            m["state"].as_str().unwrap_or("").into(),
                            m["attempts"].to_string(),
                            crate::output::timestamp(&m["created"]),
                        ]
                    })
                    .collect();
                table(&["ID", "GROUP", "STATE", "TRIES", "CREATED"], &rows);
            }
        }
    }
    Ok(0)
}

/// `message wait --follow`: the agent's output as it arrives, through
/// the message's server-sent events.
fn follow(cl: &Client, id: i64, limit: std::time::Duration, json: bool) -> Result<i32> {
    use std::io::Write;
    let mut streamed = false;
    let m = cl.follow(id, limit, |event, v| {
        if json {
            println!("{}", serde_json::json!({"event": event, "data": v}));
        } else if event == "output" {
            streamed = true;
            let mut out = std::io::stdout().lock();
            out.write_all(v["data"].as_str().unwrap_or("").as_bytes())?;
            out.flush()?;
        } else if event == "lagged" {
            eprintln!("botyard: note: some output was left out; `botyard message show {id}` has all of it");
        }
        Ok(())
    })?;
    let failed = m["state"] == "failed";
    if json {
        println!("{}", serde_json::json!({"event": "result", "data": m}));
    } else {
        if !streamed {
            // It had ended before we came: its output is in the result.
            let o = m["output"].as_str().unwrap_or("");
            print!("{o}");
        }
        if let Some(e) = m["error"].as_str().filter(|_| failed) {
            eprintln!("botyard: message {id} failed: {e}");
        }
    }
    Ok(if failed { 1 } else { 0 })
}

fn print_message(v: &serde_json::Value, json: bool) -> Result<()> {
    if json {
        return crate::output::json(v);
    }
    println!(
        "message {} to {}: {} (tries: {})",
        v["id"],
        v["group"].as_str().unwrap_or(""),
        v["state"].as_str().unwrap_or(""),
        v["attempts"]
    );
    if let Some(e) = v["error"].as_str() {
        println!("error: {e}");
    }
    if let Some(o) = v["output"].as_str() {
        print!("{o}");
        if !o.ends_with('\n') && !o.is_empty() {
            println!();
        }
    }
    if v["truncated"] == true {
        println!("(output cut at the daemon's output_cap)");
    }
    Ok(())
}
