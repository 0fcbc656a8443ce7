use crate::shared_layer::SharedLayer;
use crate::state::{Bot, BotRef, Driver};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use store::Store;

/// What a mount of a bot's root may hand out to whoever reaches it.
#[derive(Clone, Copy, Debug, Default)]
pub struct MountOptions {
    /// Honour the image's setuid and setgid bits (otherwise `nosuid`).
    pub suid: bool,
    /// Honour the image's device nodes (otherwise `nodev`).
    pub dev: bool,
}

/// Mounts a bot's root, writable, at `at` (default `bots/ID/root`),
/// `nosuid,nodev` unless `opts` says otherwise.
pub fn mount(store: &Store, id: &str, at: Option<&Path>, opts: MountOptions) -> Result<PathBuf> {
    let bot = Bot::new(store, id)?;
    let _lock = bot.lock()?;
    let r = bot.load()?;
    bot.overlay_only(&r, "mount")?;
    if let Some(p) = bot.mounted_at() {
        bail!(
            "bot {id} is already mounted at {}; unmount it first",
            p.display()
        );
    }
    let target = match at {
        Some(p) => {
            std::fs::create_dir_all(p)
                .with_context(|| format!("cannot create the mount point {}", p.display()))?;
            std::fs::canonicalize(p)?
        }
        None => {
            std::fs::create_dir_all(bot.default_mount())?;
            bot.default_mount()
        }
    };
    // The image's layer is the one every bot of the image stacks.
    let shared = SharedLayer::of_image(store, &r.image_tree);
    let spec = fs::OverlaySpec {
        upper: Some((bot.upper(), bot.work())),
        lowers: bot.lowers(&r)?,
        shared: vec![shared.spec()],
        data: vec![store.objects_dir()],
        user_lower: false,
        readonly: false,
        allow_suid: opts.suid,
        allow_dev: opts.dev,
    };
    // Recorded before the mount is attached: a process killed right after
    // attaching leaves a record the next command finds (the bot is then
    // mounted, not mounted a second time over an upper in use).
    let record = target.as_os_str().as_encoded_bytes();
    store::write_file_atomic(&store.tmp_dir(), &bot.mount_record(), record, 0o644)?;
    let joined = shared.join(id)?;
    let mounted = fs::mount_overlay(&spec, &target);
    drop(joined);
    if let Err(e) = mounted {
        shared.leave(id);
        let _ = std::fs::remove_file(bot.mount_record());
        return Err(e).with_context(|| format!("cannot mount bot {id}"));
    }
    Ok(target)
}

/// Unmounts a bot. Fails, naming the fix, while a process uses it.
pub fn unmount(store: &Store, id: &str) -> Result<PathBuf> {
    let bot = Bot::new(store, id)?;
    let _lock = bot.lock()?;
    let r = bot.load()?;
    bot.overlay_only(&r, "unmount")?;
    let Some(p) = bot.mounted_at() else {
        return Err(store::error(
            store::ErrorKind::NotMounted,
            format!("bot {id} is not mounted"),
        ));
    };
    fs::unmount(&p)?;
    bot.leave_shared_layer(&r);
    Ok(p)
}

/// Mounts every overlay bot that is not mounted (after a reboot): where it
/// was last mounted, or at its default place; `nosuid,nodev`.
pub fn mount_all(store: &Store) -> Result<Vec<(String, Result<PathBuf>)>> {
    let mut out = Vec::new();
    for id in crate::bot_ls::ids(store)? {
        let bot = Bot::new(store, &id)?;
        if bot.mounted_at().is_some() || bot.load()?.driver == Driver::Copy {
            continue;
        }
        let last = std::fs::read_to_string(bot.mount_record())
            .ok()
            .map(|s| PathBuf::from(s.trim_end_matches('\n')));
        let res = mount(store, &id, last.as_deref(), MountOptions::default());
        out.push((id, res));
    }
    Ok(out)
}

impl Bot {
    /// After the bot's overlay is unmounted: it no longer stacks its
    /// image's shared layer mount (the last bot to go detaches it).
    pub(crate) fn leave_shared_layer(&self, r: &BotRef) {
        SharedLayer::of_image(&self.store, &r.image_tree).leave(&self.id);
    }
}
