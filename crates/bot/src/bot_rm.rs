use crate::state::Bot;
use anyhow::{bail, Result};
use store::Store;

/// Removes a bot: its ref first (so a crash leaves no half bot), then its
/// directory. A mounted bot is refused unless `force`, which unmounts it.
pub fn remove(store: &Store, id: &str, force: bool) -> Result<()> {
    let bot = Bot::new(store, id)?;
    let _lock = bot.lock()?;
    bot.load()?;
    if let Some(p) = bot.mounted_at() {
        if !force {
            bail!(
                "bot {id} is mounted at {}; unmount it first or pass --force",
                p.display()
            );
        }
        fs::unmount(&p)?;
    }
    store.remove_ref("bots", id)?;
    let _ = std::fs::remove_dir_all(bot.dir());
    Ok(())
}
