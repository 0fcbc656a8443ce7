use super::Ctx;
use crate::cli::BotCommitArgs;
use crate::output::{bytes, n};
use anyhow::Result;

pub fn run(ctx: &Ctx, a: BotCommitArgs) -> Result<i32> {
    let store = ctx.open()?;
    let ids = if a.all {
        bot::list(&store)?
            .into_iter()
            // A live commit is for mounted bots too.
            .filter(|b| a.live || b.mounted_at.is_none())
            .map(|b| b.bot.id)
            .collect()
    } else {
        let id = a.id.expect("clap requires an id without --all");
        vec![id]
    };
    let mut outcomes = Vec::new();
    if a.live {
        for id in ids {
            let out = bot::commit_live(&store, &id, &ctx.bars)?;
            ctx.bars.finish();
            if !a.json {
                ctx.say(format!(
                    "bot {id}: {} of {} written files now share {} with the store",
                    out.shared_files,
                    out.files,
                    bytes(out.shared_bytes)
                ));
            }
            outcomes.push(serde_json::to_value(&out)?);
        }
        if a.json {
            crate::output::json(&outcomes)?;
        }
        return Ok(0);
    }
    for id in ids {
        let out = bot::commit(&store, &id, &a.message, &ctx.bars)?;
        ctx.bars.finish();
        match &out {
            Some(o) if !a.json => {
                // Counted as `bot diff --stat` counts them.
                let kinds: Vec<String> = [
                    (o.added, "added"),
                    (o.modified, "modified"),
                    (o.metadata, "metadata only"),
                    (o.type_changed, "type changed"),
                    (o.deleted, "deleted"),
                ]
                .iter()
                .filter(|(c, _)| *c > 0)
                .map(|(c, k)| format!("{c} {k}"))
                .collect();
                ctx.say(format!(
                    "committed bot {id} as {}: {} ({}); {} ({}), the rest already stored",
                    o.commit,
                    n(o.changed, "path changed", "paths changed"),
                    kinds.join(", "),
                    n(o.written.new_objects, "new object", "new objects"),
                    bytes(o.written.new_object_bytes)
                ))
            }
            None if !a.json => ctx.say(format!("bot {id} has nothing to commit")),
            _ => {}
        }
        let mut row = serde_json::json!({"id": id, "commit": out});
        if let Some(name) = &a.image {
            let name: store::ImageName = name.parse()?;
            let img = bot::publish_image(&store, &id, None, &name, &ctx.bars)?;
            ctx.bars.finish();
            if !a.json {
                ctx.say(format!(
                    "published bot {id} as image {name} ({} files, {})",
                    img.files,
                    bytes(img.bytes)
                ));
            }
            row["image"] = serde_json::to_value(&img)?;
        }
        outcomes.push(row);
    }
    fs::walk::wait_for_removals();
    if a.json {
        crate::output::json(&outcomes)?;
    }
    Ok(0)
}
