use super::Ctx;
use crate::cli::GcArgs;
use crate::output::bytes;
use anyhow::Result;

pub fn run(ctx: &Ctx, a: GcArgs) -> Result<i32> {
    let store = ctx.open()?;
    let keep = bot::Retention {
        keep_commits: a.keep_commits,
        keep_for: a.keep_for,
    };
    let g = bot::gc(&store, keep, a.dry_run, &ctx.bars)?;
    // Old copies of the supervisor are apart from the store's data.
    let sup = session::gc_supervisors(&store, a.dry_run)?;
    ctx.bars.finish();
    let (r, layers) = (&g.store, g.layers);
    if a.json {
        let mut v = serde_json::to_value(&g)?;
        v["supervisors"] = serde_json::to_value(sup)?;
        crate::output::json(&v)?;
        return Ok(0);
    }
    let verb = if a.dry_run { "would remove" } else { "removed" };
    ctx.say(format!(
        "{verb} {} and {} ({}), {} ({}), {} ({}) and {} of interrupted writes",
        crate::output::n(r.objects, "object", "objects"),
        crate::output::n(r.trees, "tree", "trees"),
        bytes(r.bytes),
        crate::output::n(layers.layers, "unused layer", "unused layers"),
        bytes(layers.bytes),
        crate::output::n(sup.dirs, "old supervisor copy", "old supervisor copies"),
        bytes(sup.bytes),
        crate::output::n(r.tmp_entries, "leftover", "leftovers")
    ));
    if g.history.dropped > 0 || g.history.orphans > 0 {
        ctx.say(format!(
            "{verb} {} past the retention and {} of removed bots",
            crate::output::n(g.history.dropped, "commit", "commits"),
            crate::output::n(g.history.orphans, "commit", "commits"),
        ));
    }
    if layers.roots > 0 {
        ctx.say(format!(
            "{verb} {} of images no longer named (their bytes are counted with the objects)",
            crate::output::n(layers.roots, "copy-bot image root", "copy-bot image roots"),
        ));
    }
    if layers.shared_mounts > 0 {
        let unmounted = if a.dry_run {
            "would unmount"
        } else {
            "unmounted"
        };
        ctx.say(format!(
            "{unmounted} {} no mounted bot stacks",
            crate::output::n(
                layers.shared_mounts,
                "shared image layer",
                "shared image layers"
            ),
        ));
    }
    Ok(0)
}
