use crate::state::{empty_dir, now, Bot, BotRef, Driver};
use anyhow::{Context, Result};
use store::{ImageName, Store};

/// Creates a bot from an image: a ref and empty upper and work dirs. The
/// first bot of an image builds the image's layer; the others reuse it.
pub fn create(store: &Store, id: &str, image: &ImageName, driver: Driver) -> Result<BotRef> {
    let bot = Bot::new(store, id)?;
    let _lock = bot.lock()?;
    bot.refuse_existing()?;
    let img = store.image(image)?;
    // Leftovers of an interrupted create have no ref; start clean. A create
    // that fails leaves nothing behind either.
    bot.make_or_clean(|| -> Result<BotRef> {
        let mut r = prepare(store, &bot, image, &img, driver)?;
        let _shared = store.lock(false, &store::NoProgress)?;
        let c = crate::history::Commit::record(store, &r, &format!("created from {image}"))?;
        r.head = Some(c.id);
        bot.save(&r)?;
        Ok(r)
    })
}

fn prepare(
    store: &Store,
    bot: &Bot,
    image: &ImageName,
    img: &store::ImageRef,
    driver: Driver,
) -> Result<BotRef> {
    let id = bot.id.as_str();
    let mut shares_extents = false;
    let mut snapshot = false;
    match driver {
        Driver::Overlay => {
            fs::layer(store, &img.tree)?;
            empty_dir(&bot.upper())?;
            empty_dir(&bot.work())?;
            std::fs::create_dir_all(bot.default_mount())?;
        }
        Driver::Copy => {
            std::fs::create_dir_all(bot.dir())?;
            fs::walk::remove_path(&bot.default_mount())?;
            shares_extents = fs::can_reflink(&bot.dir());
            snapshot = fs::materialize_root(store, &img.tree, &bot.default_mount())
                .with_context(|| format!("cannot write the root of bot {id}"))?
                .snapshot;
        }
    }
    let r = BotRef {
        id: id.to_string(),
        image: image.to_string(),
        image_tree: img.tree,
        tree: img.tree,
        driver,
        shares_extents,
        snapshot,
        created: now(),
        committed: None,
        head: None,
    };
    Ok(r)
}
