use super::Ctx;
use crate::cli::WsCreateArgs;
use anyhow::{Context, Result};

pub fn run(ctx: &Ctx, a: WsCreateArgs) -> Result<i32> {
    let store = ctx.open()?;
    let interval = humantime::parse_duration(&a.interval)
        .with_context(|| format!("--interval {}: write a duration like 30s or 5m", a.interval))?;
    let o = workspace::CreateOptions {
        project: a.project,
        mode: a.mode.parse()?,
        interval,
        policy: a.policy,
        i_understand: a.i_understand,
    };
    let r = workspace::create(&store, &a.name, &o)?;
    if a.json {
        crate::output::json(&r)?;
    } else {
        ctx.say(format!(
            "created workspace {} over {} ({} mode); mount it with `botyard workspace mount {}`",
            r.name,
            r.project.display(),
            r.mode,
            r.name
        ));
    }
    Ok(0)
}
