use super::Ctx;
use crate::cli::JsonFlag;
use crate::output::bytes;
use anyhow::Result;

pub fn run(ctx: &Ctx, a: JsonFlag) -> Result<i32> {
    let store = ctx.open()?;
    let d = bot::df(&store)?;
    if a.json {
        crate::output::json(&d)?;
        return Ok(0);
    }
    let (r, fleet) = (&d.store, &d.fleet);
    println!("store {}", r.store);
    println!(
        "{} images: {} as plain copies, {} stored ({} objects, {}; {} trees, {}); dedup ratio {:.2}x",
        r.images.len(),
        bytes(r.logical_bytes),
        bytes(r.stored_bytes),
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
    if !fleet.bots.is_empty() {
        println!();
        println!(
            "{} bots: {} as plain copies, {} on disk for the whole store ({} layers, {} uncommitted); {:.1}x smaller",
            fleet.bots.len(),
            bytes(fleet.plain_copies_bytes),
            bytes(fleet.disk_bytes),
            bytes(fleet.layer_bytes),
            bytes(fleet.upper_bytes),
            fleet.plain_copies_bytes as f64 / fleet.disk_bytes.max(1) as f64
        );
        let rows: Vec<Vec<String>> = fleet
            .bots
            .iter()
            .map(|b| {
                vec![
                    b.id.clone(),
                    bytes(b.logical_bytes),
                    bytes(b.unique_bytes),
                    bytes(b.shared_bytes),
                    bytes(b.uncommitted_bytes),
                ]
            })
            .collect();
        crate::output::table(
            &[
                "BOT",
                "PLAIN COPY",
                "ONLY THIS BOT",
                "SHARED",
                "UNCOMMITTED",
            ],
            &rows,
        );
        let full: Vec<&str> = fleet
            .bots
            .iter()
            .filter(|b| b.full_copy)
            .map(|b| b.id.as_str())
            .collect();
        if !full.is_empty() {
            println!(
                "note: copy bots {} live on a filesystem without reflink (ext4?): each holds a full copy and nothing can be shared there; use XFS or btrfs",
                full.join(", ")
            );
        }
    }
    Ok(0)
}
