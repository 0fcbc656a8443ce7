//! A daemon's group as the objects' builders take it.

use crate::objects::GroupSpec;
use crate::settings::Settings;
use anyhow::{Context, Result};
use store::Store;

/// The builders' view of group `g`: the agent container's image is
/// `kubernetes.image`, else the image of the group's bot in `store`.
pub fn group_spec(
    store: &Store,
    settings: &Settings,
    limits: session::Limits,
    g: &session::Group,
) -> Result<GroupSpec> {
    let image = match &settings.image {
        Some(i) => i.clone(),
        None => bot::Bot::new(store, &g.bot)
            .and_then(|b| b.load())
            .map(|r| r.image)
            .with_context(|| {
                format!(
                    "group {}: its bot {} is not in this store, so its image is unknown; set kubernetes.image",
                    store::quote_str(&g.name),
                    store::quote_str(&g.bot)
                )
            })?,
    };
    if let (Some(w), None) = (&g.workspace, &g.user) {
        anyhow::bail!(
            "group {} has the workspace {} but no user; on Kubernetes a workspace is users/USER/WORKSPACE on the shared volume: add the group again with --user",
            store::quote_str(&g.name),
            store::quote_str(w)
        );
    }
    Ok(GroupSpec {
        name: g.name.clone(),
        main: g.main,
        agent: g.agent.clone(),
        image,
        user: g.user.clone(),
        workspace: g.workspace.clone(),
        limits,
    })
}
