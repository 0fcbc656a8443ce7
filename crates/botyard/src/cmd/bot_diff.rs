use super::Ctx;
use crate::cli::BotDiffArgs;
use crate::output::bytes;
use anyhow::Result;
use fs::PathChange;

pub fn run(ctx: &Ctx, a: BotDiffArgs) -> Result<i32> {
    let store = ctx.open()?;
    let diffs = bot::diff(
        &store,
        &a.id,
        a.from.as_deref(),
        a.to.as_deref(),
        &a.paths,
        &ctx.bars,
    )?;
    ctx.bars.finish();
    if a.stat {
        let rows = fs::diff_stat(&diffs);
        if a.json {
            let m: serde_json::Map<String, serde_json::Value> = rows
                .iter()
                .map(|r| {
                    (
                        r.change.name().to_string(),
                        serde_json::json!({"paths": r.paths, "bytes": r.bytes}),
                    )
                })
                .collect();
            crate::output::json(&m)?;
        } else {
            for r in rows {
                println!("{:>8} {:<13} {}", r.paths, r.change.name(), bytes(r.bytes));
            }
        }
        return Ok(0);
    }
    if a.json {
        crate::output::json(&diffs)?;
    } else {
        for d in &diffs {
            let extra = match d.change {
                PathChange::TypeChanged => {
                    format!(" ({} -> {})", d.old_kind.unwrap_or("?"), d.kind)
                }
                _ => String::new(),
            };
            println!("{} {}{extra}", d.change.letter(), d.shown());
        }
    }
    Ok(0)
}
