use super::Ctx;
use crate::cli::BotRebaseArgs;
use anyhow::Result;

pub fn run(ctx: &Ctx, a: BotRebaseArgs) -> Result<i32> {
    let store = ctx.open()?;
    let image: store::ImageName = a.image.parse()?;
    let ids: Vec<String> = match (&a.id, &a.from) {
        (Some(id), _) => vec![id.clone()],
        (None, Some(from)) => {
            let from: store::ImageName = from.parse()?;
            let ids: Vec<String> = bot::list(&store)?
                .into_iter()
                .filter(|b| b.bot.image == from.to_string())
                .map(|b| b.bot.id)
                .collect();
            if ids.is_empty() {
                anyhow::bail!("no bot is of image {from}; `botyard bot ls` shows each bot's image");
            }
            ids
        }
        (None, None) => anyhow::bail!("name a bot, or --all --from OLD"),
    };
    let opts = bot::RebaseOptions {
        dry_run: a.dry_run,
        theirs: a.theirs,
        force: a.force,
    };
    let mut outs = Vec::new();
    for id in ids {
        let o = bot::rebase(&store, &id, &image, opts, &ctx.bars)?;
        ctx.bars.finish();
        if !a.json {
            let verb = if a.dry_run { "would rebase" } else { "rebased" };
            ctx.say(format!(
                "{verb} bot {id} from {} onto {}: {} paths from the new image, {} settled, {} conflicts{}",
                o.from,
                o.to,
                o.merge.from_image,
                o.merge.settled,
                o.merge.conflicts.len(),
                o.commit
                    .as_deref()
                    .map(|c| format!(" (commit {c}; `bot reset {id} --to` the one before undoes it)"))
                    .unwrap_or_default()
            ));
            if !o.merge.packages_kept.is_empty() {
                println!(
                    "  packages kept as the bot has them: {}",
                    o.merge
                        .packages_kept
                        .iter()
                        .map(|p| store::quote_str(p))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
            }
            for d in &o.merge.dpkg_dist {
                println!("  the new image's conffile is beside the bot's: {d}");
            }
            for c in &o.merge.conflicts {
                let side = match c.kept {
                    fs::Side::Ours => "the bot's",
                    fs::Side::Theirs => "the image's",
                };
                println!("  conflict: {} (kept {side})", c.path);
            }
        }
        outs.push(o);
    }
    if a.json {
        crate::output::json(&outs)?;
    }
    Ok(0)
}
