use super::{image_name, Ctx};
use crate::cli::PullArgs;
use anyhow::Result;

pub fn run(ctx: &Ctx, a: PullArgs) -> Result<i32> {
    let name = match &a.as_name {
        Some(n) => image_name(n)?,
        None => image::default_name_for(&a.reference)?,
    };
    let store = ctx.open()?;
    let credentials = match &a.auth_file {
        Some(f) => {
            let registry = image::registry_of(&a.reference)?;
            let c = image::credentials_from_file(f, &registry)?;
            if c.is_none() {
                anyhow::bail!(
                    "auth file {} has no login for {registry}; add one (docker login {registry} writes it) or leave --auth-file out",
                    f.display()
                );
            }
            c
        }
        None => None,
    };
    let out = image::pull(
        &store,
        &a.reference,
        &name,
        image::PullOptions {
            insecure: a.insecure,
            max_size: super::image_import::max_size(a.max_size.as_deref())?,
            credentials,
        },
        &ctx.bars,
    )?;
    ctx.bars.finish();
    super::image_import::report(ctx, &out, a.json)
}
