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
    let mut driver = csi::Driver::new(store, node_id);
    if let Some(k) = &a.kubelet_dir {
        driver = driver.with_kubelet_dir(k)?;
    }
    if let Some(d) = &a.auth_dir {
        driver = driver.with_auth_dir(d);
    }
    driver.live_commit_every = a.live_commit_every.filter(|d| !d.is_zero());
    csi::serve(driver, &a.endpoint, |p| {
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
