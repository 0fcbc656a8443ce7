use super::{image_name, Ctx};
use crate::cli::ImportArgs;
use crate::output::{bytes, n};
use anyhow::Result;
use image::ImportOutcome;
use store::Progress;

pub fn run(ctx: &Ctx, a: ImportArgs) -> Result<i32> {
    let name = image_name(&a.name)?;
    let store = ctx.open()?;
    let p = &ctx.bars;
    let max = max_size(a.max_size.as_deref())?;
    let out = if let Some(dir) = &a.dir {
        image::import_dir(&store, &name, dir, p)
    } else if let Some(tar) = &a.tar {
        image::import_tar(&store, &name, tar, max, p)
    } else if let Some(oci) = &a.oci {
        let (dir, reference) = image::split_oci_arg(oci);
        image::import_oci(&store, &name, &dir, reference.as_deref(), max, p)
    } else if let Some(f) = &a.docker_archive {
        image::import_docker_archive(&store, &name, f, max, p)
    } else {
        unreachable!("clap requires one source")
    }?;
    ctx.bars.finish();
    report(ctx, &out, a.json)
}

/// `--max-size`, parsed.
pub fn max_size(v: Option<&str>) -> Result<Option<u64>> {
    v.map(|s| {
        workspace::parse_size(s)
            .map_err(|e| anyhow::anyhow!("--max-size {s}: {e}; give a size like 20G or 512MiB"))
    })
    .transpose()
}

/// Prints an import's outcome; shared with `image pull`.
pub fn report(ctx: &Ctx, out: &ImportOutcome, json: bool) -> Result<i32> {
    if json {
        crate::output::json(out)?;
        return Ok(0);
    }
    let state = if out.unchanged {
        " (unchanged)"
    } else if out.previous_tree.is_some() {
        " (updated)"
    } else {
        ""
    };
    ctx.say(format!(
        "imported {}{state}: {}, {}, {}, {}; tree {}",
        out.name,
        n(out.stats.files, "file", "files"),
        n(out.stats.dirs, "dir", "dirs"),
        n(out.stats.others, "other", "others"),
        bytes(out.stats.bytes),
        &out.tree.to_hex()[..16]
    ));
    if out.stats.devices > 0 && !rustix::process::geteuid().is_root() {
        ctx.bars.note(&format!(
            "{} device nodes were recorded in the image; they are only created when a bot is mounted, which needs root",
            out.stats.devices
        ));
    }
    ctx.say(format!(
        "stored {} ({}) and {}; the rest was already in the store",
        n(out.written.new_objects, "new object", "new objects"),
        bytes(out.written.new_object_bytes),
        n(out.written.new_trees, "new tree", "new trees")
    ));
    Ok(0)
}
