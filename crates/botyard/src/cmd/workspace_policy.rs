use super::Ctx;
use crate::cli::WsPolicyArgs;
use anyhow::Result;

pub fn run(_ctx: &Ctx, _a: WsPolicyArgs) -> Result<i32> {
    print!("{}", workspace::DEFAULT_POLICY);
    Ok(0)
}
