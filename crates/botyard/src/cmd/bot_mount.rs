use super::Ctx;
use crate::cli::{BotIdArgs, BotMountArgs};
use anyhow::Result;

pub fn mount(ctx: &Ctx, a: BotMountArgs) -> Result<i32> {
    let store = ctx.open()?;
    if a.all {
        let mut failed = 0;
        for (id, res) in bot::mount_all(&store)? {
            match res {
                Ok(p) => ctx.say(format!("mounted bot {id} at {}", p.display())),
                Err(e) => {
                    failed += 1;
                    eprintln!(
                        "botyard: error: bot {id}: {}",
                        format!("{e:#}").replace('\n', " ")
                    );
                }
            }
        }
        return Ok(if failed > 0 { 1 } else { 0 });
    }
    let id = a.id.expect("clap requires an id without --all");
    let opts = bot::MountOptions {
        suid: a.suid,
        dev: a.dev,
    };
    let p = bot::mount(&store, &id, a.at.as_deref(), opts)?;
    let honours = match (a.suid, a.dev) {
        (false, false) => "nosuid,nodev",
        (true, false) => "setuid honoured, nodev",
        (false, true) => "nosuid, devices honoured",
        (true, true) => {
            "setuid and devices honoured: anyone who can reach it gets what the image's modes say"
        }
    };
    ctx.say(format!("mounted bot {id} at {} ({honours})", p.display()));
    Ok(0)
}

pub fn unmount(ctx: &Ctx, a: BotIdArgs) -> Result<i32> {
    let store = ctx.open()?;
    let p = bot::unmount(&store, &a.id)?;
    ctx.say(format!("unmounted bot {} from {}", a.id, p.display()));
    Ok(0)
}
