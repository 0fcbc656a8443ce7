use super::Ctx;
use crate::cli::GcArgs;
use crate::output::bytes;
use anyhow::Result;

pub fn run(ctx: &Ctx, a: GcArgs) -> Result<i32> {
    let store = ctx.open()?;
    let r = store.gc(a.dry_run, &ctx.bars)?;
    ctx.bars.finish();
    if a.json {
        crate::output::json(&r)?;
        return Ok(0);
    }
    let verb = if a.dry_run { "would remove" } else { "removed" };
    ctx.say(format!(
        "{verb} {} objects and {} trees ({}) and {} leftovers of interrupted writes",
        r.objects,
        r.trees,
        bytes(r.bytes),
        r.tmp_entries
    ));
    Ok(0)
}
