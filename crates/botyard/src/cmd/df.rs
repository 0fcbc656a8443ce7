use super::Ctx;
use crate::cli::JsonFlag;
use crate::output::bytes;
use anyhow::Result;

pub fn run(ctx: &Ctx, a: JsonFlag) -> Result<i32> {
    let store = ctx.open()?;
    let r = store.df()?;
    if a.json {
        crate::output::json(&r)?;
        return Ok(0);
    }
    println!("store {}", r.store);
    println!(
        "{} images: {} as plain copies, {} stored ({} objects, {}; {} trees, {}); dedup ratio {:.2}x",
        r.images.len(),
        bytes(r.logical_bytes),
        bytes(r.physical_bytes),
        r.objects,
        bytes(r.object_bytes),
        r.trees,
        bytes(r.tree_bytes),
        r.dedup_ratio
    );
    if !r.images.is_empty() {
        let rows: Vec<Vec<String>> = r
            .images
            .iter()
            .map(|i| vec![i.name.clone(), i.files.to_string(), bytes(i.logical_bytes)])
            .collect();
        crate::output::table(&["IMAGE", "FILES", "PLAIN COPY"], &rows);
    }
    Ok(0)
}
