//! The CLI's side of the daemon: groups, messages, status.

use super::Ctx;
use crate::cli::{DaemonAddr, GroupCommand, MessageCommand, StatusArgs};
use crate::output::table;
use anyhow::{bail, Context, Result};
use daemon::{Client, Listen};

fn client(ctx: &Ctx, addr: &DaemonAddr) -> Result<Client> {
    let store = ctx.open()?;
    let listen: Listen = match &addr.daemon {
        Some(s) => s.parse()?,
        None => Listen::Unix(daemon::default_socket(&store)),
    };
    let token = match &listen {
        Listen::Tcp(_) => Some(match std::env::var("BOTYARD_TOKEN") {
            Ok(t) => t,
            Err(_) => std::fs::read_to_string(daemon::token_path(&store))
                .context("no BOTYARD_TOKEN and no token file; TCP needs the daemon's token")?
                .trim()
                .to_string(),
        }),
        Listen::Unix(_) => None,
    };
    Ok(Client { listen, token })
}

fn ts(v: &serde_json::Value) -> String {
    v.as_f64()
        .map(|t| {
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(t),
            )
            .to_string()
        })
        .unwrap_or_else(|| "-".into())
}

pub fn group(ctx: &Ctx, c: GroupCommand) -> Result<i32> {
    match c {
        GroupCommand::Add(a) => {
            let cl = client(ctx, &a.addr)?;
            let agent = shell_words(&a.agent)?;
            let body = serde_json::json!({
                "name": a.name, "bot": a.bot, "agent": agent, "main": a.main,
                "mounts": a.mounts, "secrets": a.secrets, "workspace": a.workspace,
            });
            cl.json("POST", "/v1/groups", Some(body.to_string().as_bytes()))?;
            ctx.say(format!("added group {}", a.name));
        }
        GroupCommand::Ls(a) => {
            let v = client(ctx, &a.addr)?.json("GET", "/v1/groups", None)?;
            if a.json {
                crate::output::json(&v)?;
            } else {
                let rows: Vec<Vec<String>> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|g| {
                        vec![
                            g["name"].as_str().unwrap_or("").into(),
                            g["bot"].as_str().unwrap_or("").into(),
                            g["agent"]
                                .as_array()
                                .map(|a| {
                                    a.iter()
                                        .filter_map(|x| x.as_str())
                                        .collect::<Vec<_>>()
                                        .join(" ")
                                })
                                .unwrap_or_default(),
                            if g["main"] == true {
                                "yes".into()
                            } else {
                                "no".into()
                            },
                        ]
                    })
                    .collect();
                table(&["GROUP", "BOT", "AGENT", "MAIN"], &rows);
            }
        }
        GroupCommand::Show(a) => {
            let v = client(ctx, &a.addr)?.json("GET", &format!("/v1/groups/{}", a.name), None)?;
            crate::output::json(&v)?;
        }
        GroupCommand::Rm(a) => {
            client(ctx, &a.addr)?.json("DELETE", &format!("/v1/groups/{}", a.name), None)?;
            ctx.say(format!("removed group {}", a.name));
        }
    }
    Ok(0)
}

pub fn message(ctx: &Ctx, c: MessageCommand) -> Result<i32> {
    match c {
        MessageCommand::Send(a) => {
            let raw = match (&a.text, &a.file) {
                (_, Some(f)) => {
                    std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?
                }
                (Some(t), None) => t.clone().into_bytes(),
                (None, None) => bail!("give the message as TEXT or --file F"),
            };
            let body = if serde_json::from_slice::<serde_json::Value>(&raw).is_ok() {
                raw
            } else {
                serde_json::json!({"text": String::from_utf8_lossy(&raw)})
                    .to_string()
                    .into_bytes()
            };
            let cl = client(ctx, &a.addr)?;
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
            let v = client(ctx, &a.addr)?.json("GET", &format!("/v1/messages/{}", a.id), None)?;
            print_message(&v, a.json)?;
        }
        MessageCommand::Wait(a) => {
            let cl = client(ctx, &a.addr)?;
            let limit = humantime::parse_duration(&a.timeout)
                .with_context(|| format!("--timeout {}", a.timeout))?;
            if a.follow {
                return follow(&cl, a.id, limit, a.json);
            }
            let t = std::time::Instant::now();
            loop {
                let v = cl.json("GET", &format!("/v1/messages/{}", a.id), None)?;
                match v["state"].as_str() {
                    Some("done") => {
                        print_message(&v, a.json)?;
                        return Ok(0);
                    }
                    Some("failed") => {
                        print_message(&v, a.json)?;
                        return Ok(1);
                    }
                    _ if t.elapsed() > limit => bail!(
                        "message {} is still {} after {}",
                        a.id,
                        v["state"],
                        a.timeout
                    ),
                    _ => std::thread::sleep(std::time::Duration::from_millis(100)),
                }
            }
        }
        MessageCommand::Ls(a) => {
            let mut q = Vec::new();
            if let Some(g) = &a.group {
                q.push(format!("group={g}"));
            }
            if let Some(s) = &a.state {
                q.push(format!("state={s}"));
            }
            let v = client(ctx, &a.addr)?.json(
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
                            ts(&m["created"]),
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
    let mut result = None;
    cl.events(&format!("/v1/messages/{id}/events"), limit, |event, data| {
        let v: serde_json::Value = serde_json::from_str(data).unwrap_or_default();
        if event == "result" {
            result = Some(v);
            return Ok(false);
        }
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
        Ok(true)
    })
    .map_err(|e| {
        let timed_out = e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        });
        if timed_out {
            anyhow::anyhow!(
                "message {id} has not ended after {}; `botyard message wait {id}` waits again",
                humantime::format_duration(limit)
            )
        } else {
            e
        }
    })?;
    let Some(m) = result else {
        bail!("the daemon ended the event stream of message {id} before the message ended; `botyard message wait {id}` waits again");
    };
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

pub fn status(ctx: &Ctx, a: StatusArgs) -> Result<i32> {
    let cl = client(ctx, &a.addr)?;
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

/// Splits a command line the way a POSIX shell does for words (quotes and
/// backslashes; no expansion).
fn shell_words(s: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut have = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.extend(chars.next());
                have = true;
            }
            '\'' => {
                have = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => bail!("--agent has an unclosed ' quote"),
                    }
                }
            }
            '"' => {
                have = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => cur.extend(chars.next()),
                        Some(x) => cur.push(x),
                        None => bail!("--agent has an unclosed double quote"),
                    }
                }
            }
            c if c.is_whitespace() => {
                if have {
                    out.push(std::mem::take(&mut cur));
                    have = false;
                }
            }
            c => {
                cur.push(c);
                have = true;
            }
        }
    }
    if have {
        out.push(cur);
    }
    if out.is_empty() {
        bail!("--agent is empty; give the command the group runs");
    }
    Ok(out)
}
