use super::{rel_paths, Ctx};
use crate::cli::WsDiffArgs;
use anyhow::Result;

pub fn run(ctx: &Ctx, a: WsDiffArgs) -> Result<i32> {
    let store = ctx.open()?;
    let ws = workspace::Workspace::new(&store, &a.name)?;
    let paths = rel_paths(&a.paths)?;
    let (entries, render) = workspace::diff(&ws, &paths)?;
    if a.json {
        crate::output::json(&entries)?;
        return Ok(0);
    }
    if a.stat {
        for e in &entries {
            let c = &e.change;
            let detail = match (&c.what, e.lines.binary) {
                (workspace::What::Renamed { from }, _) => format!(
                    "(from {})",
                    fs::quote_bytes(c.from.as_deref().unwrap_or(from.as_bytes()))
                ),
                (_, true) => "binary".to_string(),
                _ if e.lines.added + e.lines.removed > 0 => {
                    format!("+{} -{}", e.lines.added, e.lines.removed)
                }
                _ => String::new(),
            };
            let state = match c.state {
                workspace::State::Conflict => " [conflict]",
                workspace::State::InSync => " [in sync]",
                workspace::State::Pending => "",
            };
            println!("{} {}{} {detail}", c.what.letter(), c.shown(), state);
        }
        let n = entries.len();
        println!("{n} change{}", if n == 1 { "" } else { "s" });
        return Ok(0);
    }
    for e in &entries {
        print!("{}", render(&e.change, a.show_secrets)?);
    }
    Ok(0)
}
