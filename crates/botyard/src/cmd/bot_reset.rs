use super::Ctx;
use crate::cli::BotResetArgs;
use anyhow::Result;

pub fn run(ctx: &Ctx, a: BotResetArgs) -> Result<i32> {
    let store = ctx.open()?;
    let out = bot::reset(&store, &a.id, &a.paths, a.to_image, a.to.as_deref())?;
    if a.json {
        crate::output::json(&out)?;
    } else if let Some(c) = &out.to_commit {
        ctx.say(format!(
            "bot {} is back to commit {c} (recorded as {}; `botyard bot reset {} --to` an earlier commit undoes it)",
            a.id,
            out.commit.as_deref().unwrap_or("-"),
            a.id
        ));
    } else if out.to_image {
        ctx.say(format!("bot {} is back to its image", a.id));
    } else if out.discarded.is_empty() {
        ctx.say(format!("bot {} had no uncommitted changes there", a.id));
    } else {
        ctx.say(format!(
            "discarded uncommitted changes of bot {} at {}",
            a.id,
            out.discarded.join(" ")
        ));
    }
    Ok(0)
}
