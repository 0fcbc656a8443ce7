//! `bot fork`: a new bot that starts where another bot's history stands,
//! sharing everything with it; and a bot's state published as an image.

use crate::history::{resolve, Commit};
use crate::state::{empty_dir, now, Bot, BotRef, Driver};
use anyhow::{Context, Result};
use store::{ImageName, ImageRef, Progress, Staging, Store};

/// Makes bot `new` from `from`: `ID` (its newest commit) or `ID@COMMIT`.
/// Only committed states fork; what the source has not committed stays
/// its own. An overlay fork shares every tree and layer with its source
/// (nothing is copied); a copy fork's files are reflinked where the
/// filesystem can. `driver` defaults to the source's.
pub fn fork(store: &Store, new: &str, from: &str, driver: Option<Driver>) -> Result<BotRef> {
    let (src_id, at) = match from.split_once('@') {
        Some((b, c)) => (b, Some(c)),
        None => (from, None),
    };
    let src = Bot::new(store, src_id)?;
    let sr = src.load()?;
    let (tree, image, image_tree, from_commit) = match at {
        Some(c) => {
            let c = resolve(store, src_id, c)?;
            (c.tree, c.image.clone(), c.image_tree, Some(c.id))
        }
        None => (sr.tree, sr.image.clone(), sr.image_tree, sr.head.clone()),
    };
    let message = match &from_commit {
        Some(c) => format!("forked from {src_id} at {c}"),
        None => format!("forked from {src_id}"),
    };
    make_at(
        store,
        new,
        Start {
            tree,
            image,
            image_tree,
        },
        driver.unwrap_or(sr.driver),
        &message,
    )
}

/// Where a bot made by [`make_at`] starts.
pub struct Start {
    pub tree: store::Hash,
    pub image: String,
    pub image_tree: store::Hash,
}

/// Makes bot `new` whose committed state is `at` (a fork, a volume from a
/// snapshot), its history starting with `message`.
pub fn make_at(
    store: &Store,
    new: &str,
    at: Start,
    driver: Driver,
    message: &str,
) -> Result<BotRef> {
    let Start {
        tree,
        image,
        image_tree,
    } = at;
    let bot = Bot::new(store, new)?;
    let _lock = bot.lock()?;
    bot.refuse_existing()?;
    bot.make_or_clean(|| -> Result<BotRef> {
        let mut shares_extents = false;
        match driver {
            Driver::Overlay => {
                empty_dir(&bot.upper())?;
                empty_dir(&bot.work())?;
                std::fs::create_dir_all(bot.default_mount())?;
            }
            Driver::Copy => {
                std::fs::create_dir_all(bot.dir())?;
                fs::walk::remove_path(&bot.default_mount())?;
                empty_dir(&bot.default_mount())?;
                shares_extents = fs::can_reflink(&bot.dir());
                fs::materialize(store, &tree, &bot.default_mount())
                    .with_context(|| format!("cannot write the root of bot {new}"))?;
            }
        }
        let mut r = BotRef {
            id: new.to_string(),
            image,
            image_tree,
            tree,
            driver,
            shares_extents,
            snapshot: false,
            created: now(),
            committed: None,
            head: None,
        };
        let _shared = store.lock(false, &store::NoProgress)?;
        let c = Commit::record(store, &r, message)?;
        r.head = Some(c.id);
        bot.save(&r)?;
        Ok(r)
    })
}

/// Publishes bot `id`'s committed state (or commit `at` of its history)
/// as image `name`, for new bots to start from.
pub fn publish_image(
    store: &Store,
    id: &str,
    at: Option<&str>,
    name: &ImageName,
    progress: &dyn Progress,
) -> Result<ImageRef> {
    let bot = Bot::new(store, id)?;
    let r = bot.load()?;
    let (tree, label) = match at {
        Some(c) => {
            let c = resolve(store, id, c)?;
            (c.tree, format!("bot:{id}@{}", c.id))
        }
        None => (
            r.tree,
            format!("bot:{id}@{}", r.head.as_deref().unwrap_or("-")),
        ),
    };
    let staging = Staging::new(store, progress)?;
    let (root, stats) = fs::MemTree::load(store, &tree)?.write(&staging)?;
    let (_, img) = staging.commit(|store| {
        let mut img = ImageRef::new(root, label);
        img.files = stats.files;
        img.dirs = stats.dirs;
        img.others = stats.others;
        img.bytes = stats.bytes;
        store.set_image(name, &img)?;
        Ok(img)
    })?;
    Ok(img)
}
