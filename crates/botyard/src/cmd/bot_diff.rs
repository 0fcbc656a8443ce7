use super::Ctx;
use crate::cli::BotDiffArgs;
use crate::output::bytes;
use anyhow::Result;
use fs::PathChange;

pub fn run(ctx: &Ctx, a: BotDiffArgs) -> Result<i32> {
    let store = ctx.open()?;
    let diffs = bot::diff(&store, &a.id, &a.paths, &ctx.bars)?;
    ctx.bars.finish();
    if a.stat {
        let kinds = [
            PathChange::Added,
            PathChange::Modified,
            PathChange::Deleted,
            PathChange::Metadata,
            PathChange::TypeChanged,
        ];
        let rows: Vec<(PathChange, u64, u64)> = kinds
            .iter()
            .map(|k| {
                let of: Vec<_> = diffs.iter().filter(|d| d.change == *k).collect();
                (*k, of.len() as u64, of.iter().map(|d| d.size).sum())
            })
            .collect();
        if a.json {
            let m: serde_json::Map<String, serde_json::Value> = rows
                .iter()
                .map(|(k, n, b)| {
                    (
                        serde_json::to_value(k)
                            .unwrap()
                            .as_str()
                            .unwrap()
                            .to_string(),
                        serde_json::json!({"paths": n, "bytes": b}),
                    )
                })
                .collect();
            crate::output::json(&m)?;
        } else {
            for (k, n, b) in rows {
                println!(
                    "{:>8} {:<13} {}",
                    n,
                    serde_json::to_value(k)?.as_str().unwrap_or(""),
                    bytes(b)
                );
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
