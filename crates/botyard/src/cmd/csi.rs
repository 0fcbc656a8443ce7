use super::Ctx;
use crate::cli::CsiArgs;
use anyhow::Result;

pub fn run(ctx: &Ctx, a: CsiArgs) -> Result<i32> {
    let store = ctx.open()?;
    let node_id = match a.node_id {
        Some(n) if !n.is_empty() => n,
        _ => rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned(),
    };
    let quiet = ctx.quiet;
    let shown = node_id.clone();
    csi::serve(store, &a.endpoint, node_id, |p| {
        if !quiet {
            eprintln!(
                "botyard csi: {} on node {} listening on {}",
                csi::DRIVER_NAME,
                store::quote_str(&shown),
                p.display()
            );
        }
    })?;
    Ok(0)
}
