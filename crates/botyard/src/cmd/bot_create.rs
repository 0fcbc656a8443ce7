use super::{image_name, Ctx};
use crate::cli::BotCreateArgs;
use anyhow::Result;

pub fn run(ctx: &Ctx, a: BotCreateArgs) -> Result<i32> {
    let driver: bot::Driver = a.driver.parse()?;
    bot::validate_id(&a.id)?;
    let image = image_name(&a.image)?;
    let store = ctx.open()?;
    let r = bot::create(&store, &a.id, &image, driver)?;
    if a.json {
        crate::output::json(&r)?;
    } else {
        ctx.say(format!(
            "created bot {} from {} ({} driver); mount it with `botyard bot mount {}`",
            r.id, r.image, r.driver, r.id
        ));
    }
    Ok(0)
}
