use super::Ctx;
use crate::cli::BotRmArgs;
use anyhow::Result;

pub fn run(ctx: &Ctx, a: BotRmArgs) -> Result<i32> {
    let store = ctx.open()?;
    bot::remove(&store, &a.id, a.force)?;
    ctx.say(format!(
        "removed bot {}; its data stays in the store until `botyard gc`",
        a.id
    ));
    Ok(0)
}
