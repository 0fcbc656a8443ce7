use super::{image_name, Ctx};
use crate::cli::InspectArgs;
use crate::output::bytes;
use anyhow::Result;

pub fn run(ctx: &Ctx, a: InspectArgs) -> Result<i32> {
    let name = image_name(&a.name)?;
    let store = ctx.open()?;
    let r = store.image(&name)?;
    if a.json {
        crate::output::json(&serde_json::json!({"name": name.to_string(), "image": r}))?;
        return Ok(0);
    }
    println!("name:     {name}");
    println!("tree:     blake3:{}", r.tree);
    println!("digest:   {}", r.digest.as_deref().unwrap_or("-"));
    println!("source:   {}", r.source);
    println!("created:  {}", r.created.as_deref().unwrap_or("-"));
    println!("imported: {}", r.imported);
    println!(
        "files:    {} ({} dirs, {} others)",
        r.files, r.dirs, r.others
    );
    println!("bytes:    {} ({})", r.bytes, bytes(r.bytes));
    Ok(0)
}
