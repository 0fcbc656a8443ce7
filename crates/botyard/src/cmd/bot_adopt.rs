use super::Ctx;
use crate::cli::BotAdoptArgs;
use crate::output::bytes;
use anyhow::Result;

pub fn run(ctx: &Ctx, a: BotAdoptArgs) -> Result<i32> {
    let store = ctx.open()?;
    let image: store::ImageName = a.image.parse()?;
    let driver: bot::Driver = a.driver.parse()?;
    let out = bot::adopt(&store, &a.id, &a.from, &image, driver, &ctx.bars)?;
    ctx.bars.finish();
    if a.json {
        crate::output::json(&out)?;
    } else {
        ctx.say(format!(
            "adopted {} as bot {} of {}: {} files, {}; the store added {}, so adopting saved {}",
            store::quote_path(&a.from),
            a.id,
            out.image,
            out.files,
            bytes(out.logical_bytes),
            bytes(out.new_object_bytes),
            bytes(out.saved_bytes)
        ));
    }
    Ok(0)
}
