use crate::state::Bot;
use anyhow::{bail, Context, Result};
use store::Store;

/// Removes a bot: its directory is first moved aside under `tmp/` (so the
/// id is free at once and a crash leaves only what `gc` removes), then its
/// ref goes, then the moved files are deleted, at any depth. A mounted bot
/// is refused unless `force`, which unmounts it. An error means the bot is
/// not (entirely) gone, and says what is left.
pub fn remove(store: &Store, id: &str, force: bool) -> Result<()> {
    let bot = Bot::new(store, id)?;
    let _lock = bot.lock()?;
    let r = bot.load()?;
    if let Some(p) = bot.mounted_at() {
        if !force {
            bail!(
                "bot {id} is mounted at {}; unmount it first or pass --force",
                p.display()
            );
        }
        fs::unmount(&p)?;
        bot.leave_shared_layer(&r);
    }
    if let Some(m) = fs::mounts_below(&bot.dir()).first() {
        bail!(
            "{} is still mounted (a session of bot {id}?); unmount it, then remove the bot",
            m.display()
        );
    }
    let aside = store
        .tmp_dir()
        .join(format!("removed-bot-{id}-{}", std::process::id()));
    let moved = match std::fs::rename(bot.dir(), &aside) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e).with_context(|| format!("cannot remove {}", bot.dir().display())),
    };
    store.remove_ref("bots", id)?;
    if moved {
        fs::walk::remove_path(&aside).with_context(|| {
            format!(
                "bot {id} is gone from the store, but its files in {} could not all be deleted (`botyard gc` tries again)",
                aside.display()
            )
        })?;
    }
    Ok(())
}
