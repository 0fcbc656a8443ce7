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
    let removed = bot::remove_images(&store, &names, a.force)?;
    if !a.json {
        for r in &removed {
            ctx.say(format!("removed {}", r.name));
            if !r.still_used_by.is_empty() {
                ctx.say(format!(
                    "  bots {} still use its data; it stays until they are removed",
                    r.still_used_by.join(", ")
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
