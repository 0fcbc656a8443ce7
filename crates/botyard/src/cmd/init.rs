use super::Ctx;
use crate::cli::JsonFlag;
use anyhow::Result;

pub fn run(ctx: &Ctx, a: JsonFlag) -> Result<i32> {
    let (store, existed) = store::Store::init(&ctx.store_path)?;
    if a.json {
        crate::output::json(&serde_json::json!({"store": store.root(), "created": !existed}))?;
    } else if existed {
        ctx.say(format!(
            "store at {} already exists",
            store.root().display()
        ));
    } else {
        ctx.say(format!("created a store at {}", store.root().display()));
    }
    Ok(0)
}
