use super::Ctx;
use crate::cli::JsonFlag;
use crate::output::bytes;
use anyhow::Result;

pub fn run(ctx: &Ctx, a: JsonFlag) -> Result<i32> {
    let store = ctx.open()?;
    let mut rows = Vec::new();
    let mut list = Vec::new();
    for (name, r) in store.images()? {
        match r {
            Ok(r) => {
                rows.push(vec![
                    name.to_string(),
                    r.files.to_string(),
                    bytes(r.bytes),
                    r.imported.clone(),
                    r.tree.to_hex()[..16].to_string(),
                ]);
                list.push(serde_json::json!({"name": name.to_string(), "image": r}));
            }
            Err(e) => eprintln!("botyard: warning: {name}: {e:#} (run `botyard fsck`)"),
        }
    }
    if a.json {
        crate::output::json(&list)?;
    } else if rows.is_empty() {
        ctx.say("no images; add one with `botyard image import` or `botyard image pull`");
    } else {
        crate::output::table(&["IMAGE", "FILES", "SIZE", "IMPORTED", "TREE"], &rows);
    }
    Ok(0)
}
