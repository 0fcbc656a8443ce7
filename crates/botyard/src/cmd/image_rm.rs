use super::{image_name, Ctx};
use crate::cli::RmArgs;
use anyhow::Result;

pub fn run(ctx: &Ctx, a: RmArgs) -> Result<i32> {
    // Check every name before removing any, so a typo removes nothing.
    let names = a
        .names
        .iter()
        .map(|n| image_name(n))
        .collect::<Result<Vec<_>>>()?;
    let store = ctx.open()?;
    let mut users = Vec::new();
    for n in &names {
        store.image(n)?;
        let bots = bot::using_image(&store, &n.to_string())?;
        if !bots.is_empty() && !a.force {
            anyhow::bail!(
                "image {n} is used by {} ({}), which keep its data alive; remove them first, or pass --force to remove only the name",
                crate::output::n(bots.len() as u64, "bot", "bots"),
                bots.join(", ")
            );
        }
        users.push(bots);
    }
    let mut removed = Vec::new();
    for (n, bots) in names.iter().zip(&users) {
        store.remove_image(n)?;
        removed.push(serde_json::json!({"name": n.to_string(), "still_used_by": bots}));
        if !a.json {
            ctx.say(format!("removed {n}"));
            if !bots.is_empty() {
                ctx.say(format!(
                    "  bots {} still use its data; it stays until they are removed",
                    bots.join(", ")
                ));
            }
        }
    }
    if a.json {
        crate::output::json(&serde_json::json!({"removed": removed}))?;
    } else {
        ctx.say("data no bot uses is freed by `botyard gc`");
    }
    Ok(0)
}
