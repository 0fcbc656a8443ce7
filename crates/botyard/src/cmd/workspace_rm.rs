use super::Ctx;
use crate::cli::WsRmArgs;
use anyhow::Result;

pub fn run(ctx: &Ctx, a: WsRmArgs) -> Result<i32> {
    let store = ctx.open()?;
    workspace::rm(&store, &a.name, a.force)?;
    ctx.say(format!(
        "removed workspace {} (the project was not touched)",
        a.name
    ));
    Ok(0)
}
