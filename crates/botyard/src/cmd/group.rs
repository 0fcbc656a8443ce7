//! `botyard group`: the daemon's groups.

use super::{daemon_client, Ctx};
use crate::cli::GroupCommand;
use crate::output::table;
use anyhow::Result;

pub fn run(ctx: &Ctx, c: GroupCommand) -> Result<i32> {
    match c {
        GroupCommand::Add(a) => {
            let cl = daemon_client(ctx, &a.addr)?;
            let agent = daemon::shell_words(&a.agent)?;
            let body = serde_json::json!({
                "name": a.name, "bot": a.bot, "agent": agent, "main": a.main,
                "mounts": a.mounts, "secrets": a.secrets, "workspace": a.workspace, "user": a.user,
            });
            cl.json("POST", "/v1/groups", Some(body.to_string().as_bytes()))?;
            ctx.say(format!("added group {}", a.name));
        }
        GroupCommand::Ls(a) => {
            let v = daemon_client(ctx, &a.addr)?.json("GET", "/v1/groups", None)?;
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
            let v = daemon_client(ctx, &a.addr)?.json(
                "GET",
                &format!("/v1/groups/{}", a.name),
                None,
            )?;
            crate::output::json(&v)?;
        }
        GroupCommand::Rm(a) => {
            daemon_client(ctx, &a.addr)?.json("DELETE", &format!("/v1/groups/{}", a.name), None)?;
            ctx.say(format!("removed group {}", a.name));
        }
    }
    Ok(0)
}
