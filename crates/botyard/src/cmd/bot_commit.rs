use super::Ctx;
use crate::cli::BotCommitArgs;
use crate::output::bytes;
use anyhow::Result;

pub fn run(ctx: &Ctx, a: BotCommitArgs) -> Result<i32> {
    let store = ctx.open()?;
    let ids = if a.all {
        bot::list(&store)?
            .into_iter()
            .filter(|b| b.mounted_at.is_none())
            .map(|b| b.bot.id)
            .collect()
    } else {
        let id = a.id.expect("clap requires an id without --all");
        bot::validate_id(&id)?;
        vec![id]
    };
    let mut outcomes = Vec::new();
    for id in ids {
        let out = bot::commit(&store, &id, &ctx.bars)?;
        ctx.bars.finish();
        match &out {
            Some(o) if !a.json => ctx.say(format!(
                "committed bot {id}: {} paths changed, {} deleted; {} new objects ({}), the rest already stored",
                o.changed,
                o.deleted,
                o.written.new_objects,
                bytes(o.written.new_object_bytes)
            )),
            None if !a.json => ctx.say(format!("bot {id} has nothing to commit")),
            _ => {}
        }
        outcomes.push(serde_json::json!({"id": id, "commit": out}));
    }
    if a.json {
        crate::output::json(&outcomes)?;
    }
    Ok(0)
}
