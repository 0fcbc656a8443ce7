use super::Ctx;
use crate::cli::BotForkArgs;
use anyhow::Result;

pub fn run(ctx: &Ctx, a: BotForkArgs) -> Result<i32> {
    let store = ctx.open()?;
    let driver = a.driver.as_deref().map(str::parse).transpose()?;
    let r = bot::fork(&store, &a.id, &a.from, driver)?;
    if a.json {
        crate::output::json(&r)?;
    } else {
        ctx.say(format!(
            "forked bot {} from {} ({} driver, image {}); `botyard bot mount {}`",
            a.id, a.from, r.driver, r.image, a.id
        ));
    }
    Ok(0)
}
