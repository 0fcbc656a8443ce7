use super::Ctx;
use crate::cli::ServeArgs;
use anyhow::Result;

pub fn run(ctx: &Ctx, a: ServeArgs) -> Result<i32> {
    let store = ctx.open()?;
    let listen = a.listen.as_deref().map(str::parse).transpose()?;
    let mut config = daemon::Config::load(a.config.as_deref())?;
    if let Some(r) = a.runtime {
        config.runtime = r;
    }
    let backend = match &config.runtime {
        daemon::Runtime::Host(r) => session::backend(r),
        daemon::Runtime::Kubernetes => {
            let settings = super::kube_manifests::settings(a.config.as_deref(), &config, &a.kube)?;
            kube::backend(settings, config.configured_limits, config.deadline)?
        }
    };
    let quiet = ctx.quiet;
    daemon::serve(store, listen, config, backend, |l| {
        if !quiet {
            eprintln!("botyard serve: listening on {l}");
        }
    })?;
    Ok(0)
}
