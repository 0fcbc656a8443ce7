use super::Ctx;
use crate::cli::ServeArgs;
use anyhow::Result;

pub fn run(ctx: &Ctx, a: ServeArgs) -> Result<i32> {
    let store = ctx.open()?;
    let listen = a.listen.as_deref().map(str::parse).transpose()?;
    let config = daemon::Config::load(a.config.as_deref())?;
    let quiet = ctx.quiet;
    daemon::serve(store, listen, config, |l| {
        if !quiet {
            eprintln!("botyard serve: listening on {l}");
        }
    })?;
    Ok(0)
}
