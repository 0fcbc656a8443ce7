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
    for n in &names {
        store.image(n)?;
    }
    let mut removed = Vec::new();
    for n in &names {
        store.remove_image(n)?;
        removed.push(n.to_string());
    }
    if a.json {
        crate::output::json(&serde_json::json!({"removed": removed}))?;
    } else {
        for n in &removed {
            ctx.say(format!("removed {n}"));
        }
        ctx.say("its data stays in the store until `botyard gc`");
    }
    Ok(0)
}
