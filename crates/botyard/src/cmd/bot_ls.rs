use super::Ctx;
use crate::cli::{BotIdArgs, JsonFlag};
use crate::output::bytes;
use anyhow::Result;

pub fn ls(ctx: &Ctx, a: JsonFlag) -> Result<i32> {
    let store = ctx.open()?;
    let bots = bot::list(&store)?;
    if a.json {
        crate::output::json(&bots)?;
    } else if bots.is_empty() {
        ctx.say("no bots; create one with `botyard bot create ID --image NAME:TAG`");
    } else {
        let rows: Vec<Vec<String>> = bots
            .iter()
            .map(|b| {
                vec![
                    b.bot.id.clone(),
                    b.bot.image.clone(),
                    b.bot.driver.to_string(),
                    b.root.clone().unwrap_or_else(|| "-".into()),
                    bytes(b.uncommitted_bytes),
                    b.unique_bytes.map(bytes).unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        crate::output::table(
            &[
                "BOT",
                "IMAGE",
                "DRIVER",
                "MOUNTED AT",
                "UNCOMMITTED",
                "ONLY THIS BOT",
            ],
            &rows,
        );
    }
    Ok(0)
}

pub fn show(ctx: &Ctx, a: BotIdArgs) -> Result<i32> {
    let store = ctx.open()?;
    let b = bot::show(&store, &a.id)?;
    if a.json {
        crate::output::json(&b)?;
        return Ok(0);
    }
    println!("bot:         {}", b.bot.id);
    println!(
        "image:       {} (tree {})",
        b.bot.image,
        &b.bot.image_tree.to_hex()[..16]
    );
    println!("tree:        blake3:{}", b.bot.tree);
    println!("driver:      {}", b.bot.driver);
    println!(
        "root:        {}",
        b.root.as_deref().unwrap_or("- (not mounted)")
    );
    if b.bot.driver == bot::Driver::Copy {
        let sharing = if b.bot.snapshot {
            "shares extents with the store (a btrfs snapshot of the image's root)"
        } else if b.bot.shares_extents {
            "shares extents with the store (reflink)"
        } else {
            "cannot share extents here (no reflink): a full copy"
        };
        println!("filesystem:  {sharing}");
    }
    println!("uncommitted: {}", bytes(b.uncommitted_bytes));
    println!("created:     {}", b.bot.created);
    println!("committed:   {}", b.bot.committed.as_deref().unwrap_or("-"));
    Ok(0)
}
