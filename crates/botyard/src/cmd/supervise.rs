use super::Ctx;
use crate::cli::{SuperviseAction, SuperviseArgs};
use anyhow::{Context, Result};

pub fn run(_ctx: &Ctx, a: SuperviseArgs) -> Result<i32> {
    if let Some(SuperviseAction::CopySelf { dir }) = a.action {
        let entry = session::copy_self(&dir, &dir)?;
        println!("{}", entry.join(" "));
        return Ok(0);
    }
    let o = session::SuperviseOptions {
        secrets_on_stdin: a.secrets_on_stdin,
        ipc: a.ipc,
        idle: humantime::parse_duration(&a.idle).with_context(|| format!("--idle {}", a.idle))?,
        output_cap: workspace::parse_size(&a.output_cap)?,
        args: a.command,
    };
    session::supervise(&o)
}
