use super::Ctx;
use crate::cli::JsonFlag;
use crate::output::bytes;
use anyhow::Result;

pub fn run(ctx: &Ctx, a: JsonFlag) -> Result<i32> {
    let store = ctx.open()?;
    let f = fs::fsck(&store, &ctx.bars)?;
    ctx.bars.finish();
    let code = if f.ok { 0 } else { 1 };
    if a.json {
        crate::output::json(&f)?;
        return Ok(code);
    }
    let (r, layers) = (&f.report, &f.layers);
    for p in &r.problems {
        eprintln!("botyard: fsck: {}", p.message);
    }
    for l in &layers.damaged {
        eprintln!("botyard: fsck: note: layer {l} is damaged; it is rebuilt from the store when next used");
    }
    let summary = format!(
        "{}, {} reachable, {} ({}) verified; {} unreferenced and {} (removed by `botyard gc`)",
        crate::output::n(r.refs, "ref", "refs"),
        crate::output::n(r.trees, "tree", "trees"),
        crate::output::n(r.objects, "object", "objects"),
        bytes(r.object_bytes),
        r.unreferenced,
        crate::output::n(r.tmp_entries, "leftover", "leftovers")
    );
    if r.ok() {
        ctx.say(format!("ok: {summary}"));
    } else {
        eprintln!(
            "botyard: fsck found {} problems: {summary}",
            r.problems.len()
        );
    }
    Ok(code)
}
