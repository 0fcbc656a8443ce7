//! `botyard bot log`: a bot's history, newest first.

use super::Ctx;
use crate::cli::BotLogArgs;
use crate::output::bytes;
use anyhow::Result;

pub fn run(ctx: &Ctx, a: BotLogArgs) -> Result<i32> {
    let store = ctx.open()?;
    let commits = bot::log(&store, &a.id)?;
    let mut rows = Vec::new();
    for (i, c) in commits.iter().enumerate() {
        // What it changed since the commit before it (or, for the oldest
        // kept, since its image).
        let stat = if a.stat {
            let base = commits.get(i + 1).map(|p| p.tree).unwrap_or(c.image_tree);
            let diffs = fs::diff_memtrees(
                &fs::MemTree::load(&store, &c.tree)?,
                &fs::MemTree::load(&store, &base)?,
            );
            Some(fs::diff_stat(&diffs))
        } else {
            None
        };
        rows.push((c, stat));
    }
    if a.json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(c, stat)| {
                let mut v = serde_json::to_value(c).unwrap_or_default();
                if let Some(s) = stat {
                    v["stat"] = s
                        .iter()
                        .map(|r| {
                            (
                                r.change.name().to_string(),
                                serde_json::json!({"paths": r.paths, "bytes": r.bytes}),
                            )
                        })
                        .collect::<serde_json::Map<_, _>>()
                        .into();
                }
                v
            })
            .collect();
        crate::output::json(&v)?;
        return Ok(0);
    }
    if rows.is_empty() {
        ctx.say(format!(
            "bot {} has no history yet (it was made before botyard kept one); its next commit starts it",
            a.id
        ));
    }
    for (c, stat) in &rows {
        let msg = if c.message.is_empty() {
            "(no message)".to_string()
        } else {
            store::quote_str(&c.message)
        };
        println!("{}  {}  {msg}", c.id, c.time);
        if let Some(s) = stat {
            let parts: Vec<String> = s
                .iter()
                .filter(|r| r.paths > 0)
                .map(|r| format!("{} {} ({})", r.paths, r.change.name(), bytes(r.bytes)))
                .collect();
            if parts.is_empty() {
                println!("    no change");
            } else {
                println!("    {}", parts.join(", "));
            }
        }
    }
    if let Some(last) = rows.last() {
        if last.0.parent.is_some() {
            println!("(older commits were dropped by gc's retention)");
        }
    }
    Ok(0)
}
