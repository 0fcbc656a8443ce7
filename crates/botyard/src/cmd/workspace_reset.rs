use super::{rel_paths, Ctx};
use crate::cli::WsResetArgs;
use crate::prompt;
use anyhow::Result;

pub fn run(ctx: &Ctx, a: WsResetArgs) -> Result<i32> {
    let store = ctx.open()?;
    let paths = rel_paths(&a.paths)?;
    if !a.yes {
        let plan = workspace::reset_plan(&store, &a.name, &paths)?;
        if plan.is_empty() {
            ctx.say("nothing to discard");
            return Ok(0);
        }
        for c in &plan {
            println!("{} {}", c.what.letter(), c.shown());
        }
        let what = crate::output::n(plan.len() as u64, "change", "changes");
        if !prompt::confirm(&format!("discard these {what}?"), "--yes")? {
            println!("nothing discarded");
            return Ok(1);
        }
    }
    let n = workspace::reset(&store, &a.name, &paths)?;
    ctx.say(format!(
        "discarded {}",
        crate::output::n(n as u64, "change", "changes")
    ));
    Ok(0)
}
