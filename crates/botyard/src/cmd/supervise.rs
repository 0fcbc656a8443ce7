use super::Ctx;
use anyhow::Result;

pub fn run(_ctx: &Ctx, a: session::SuperviseArgs) -> Result<i32> {
    session::run_supervise(a)
}
