use super::Ctx;
use crate::cli::{KubeChoices, KubeManifestsArgs};
use anyhow::{Context, Result};
use std::path::Path;

/// The config's `[kubernetes]` settings with the flags and environment
/// over them.
pub fn settings(
    file: Option<&Path>,
    config: &daemon::Config,
    c: &KubeChoices,
) -> Result<kube::Settings> {
    let mut s = kube::Settings::from_table(&config.kubernetes).with_context(|| {
        format!(
            "config {}",
            file.map(|f| f.display().to_string()).unwrap_or_default()
        )
    })?;
    if let Some(m) = c.mode {
        s.mode = m;
    }
    if let Some(l) = c.sideload {
        s.sideload = l;
    }
    Ok(s)
}

pub fn run(ctx: &Ctx, a: KubeManifestsArgs) -> Result<i32> {
    let store = ctx.open()?;
    let config = daemon::Config::load(a.config.as_deref())?;
    let settings = settings(a.config.as_deref(), &config, &a.choices)?;
    let db = daemon::open_state(&store)?;
    let Some(g) = db.group(&a.group)? else {
        anyhow::bail!(
            "no group {} in the daemon's state; `botyard group ls` lists them",
            store::quote_str(&a.group)
        );
    };
    let spec = kube::group_spec(&store, &settings, config.configured_limits, &g)?;
    // As the daemon starts a session: kept alive, the supervisor's idle
    // limit past the daemon's own keep-alive.
    let opts = session::RunOptions::kept_alive(
        &g.bot,
        g.agent.clone(),
        Default::default(),
        config.idle_keepalive,
    );
    let session = kube::SessionSpec {
        id: a.session,
        deadline: config.deadline,
        idle: opts.idle,
        output_cap: config.output_cap,
    };
    let objects = kube::manifests(&settings, &spec, &session)?;
    if a.json {
        crate::output::json(&serde_json::Value::Array(objects))?;
    } else {
        print!("{}", kube::to_yaml(&objects)?);
    }
    Ok(0)
}
