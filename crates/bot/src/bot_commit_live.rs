//! `bot commit --live`: a mounted bot's drift shared with the store
//! without unmounting it. Each regular file the bot wrote (its overlay
//! upper, or a copy bot's directory) whose content the store already holds
//! is made to share that object's extents through `FIDEDUPERANGE`: the
//! kernel compares the bytes and shares them atomically, so a file being
//! rewritten meanwhile keeps its own bytes and nothing the bot sees
//! changes. No tree or ref moves; the next real commit still folds the
//! upper.

use crate::state::{Bot, Driver};
use anyhow::{bail, Context, Result};
use fs::walk::{self, Visitor};
use rustix::fs::{FileType, OFlags, Stat};
use std::os::fd::OwnedFd;
use store::{Progress, Store, Unit};

/// What a live commit shared.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct LiveOutcome {
    pub id: String,
    /// Regular files with data that were looked at.
    pub files: u64,
    /// Those whose content the store held, now sharing its extents.
    pub shared_files: u64,
    /// Bytes of them the kernel found equal and shared.
    pub shared_bytes: u64,
}

struct Share<'a> {
    store: &'a Store,
    upper: bool,
    out: LiveOutcome,
    progress: &'a dyn Progress,
}

impl Visitor for Share<'_> {
    fn entry(&mut self, dir: &OwnedFd, name: &[u8], _path: &[u8], st: &Stat) -> Result<bool> {
        let kind = FileType::from_raw_mode(st.st_mode);
        if kind == FileType::Directory {
            return Ok(true);
        }
        if kind != FileType::RegularFile || st.st_size <= 0 {
            return Ok(false);
        }
        // A metacopy copy-up holds no data: its bytes are a lower's.
        if self.upper && fs::xattr_at(dir, name, "trusted.overlay.metacopy").is_some() {
            return Ok(false);
        }
        let Ok(fd) = walk::open_at(dir, name, OFlags::RDONLY | OFlags::NOFOLLOW) else {
            return Ok(false);
        };
        let mut f = std::fs::File::from(fd);
        self.out.files += 1;
        let (hash, size) = store::hash_file(&mut f)?;
        self.progress.advance(size);
        if !self.store.has_object(&hash, size) {
            return Ok(false);
        }
        let src = std::fs::File::open(self.store.object_path(&hash))?;
        let n = fs::dedupe(&src, &f, size).unwrap_or(0);
        if n > 0 {
            self.out.shared_files += 1;
            self.out.shared_bytes += n;
        }
        Ok(false)
    }
}

/// Shares bot `id`'s written files with the objects the store holds,
/// mounted or not. Refused where the filesystem cannot share extents.
pub fn commit_live(store: &Store, id: &str, progress: &dyn Progress) -> Result<LiveOutcome> {
    let bot = Bot::new(store, id)?;
    // No commit may empty the upper meanwhile.
    let _lock = bot.lock()?;
    let r = bot.load()?;
    let (base, upper) = match r.driver {
        Driver::Overlay => (bot.upper(), true),
        Driver::Copy => (bot.default_mount(), false),
    };
    if !fs::can_reflink(&bot.dir()) {
        bail!(
            "bot {id}'s files are on a filesystem that cannot share extents (ext4?): a live commit would share nothing; put the store on XFS or btrfs, or unmount and commit"
        );
    }
    let root = walk::open_dir(&base).with_context(|| format!("cannot open {}", base.display()))?;
    progress.phase("sharing with the store", None, Unit::Bytes);
    let mut v = Share {
        store,
        upper,
        out: LiveOutcome {
            id: id.to_string(),
            ..Default::default()
        },
        progress,
    };
    walk::walk(&root, walk::MAX_DEPTH, &mut v)?;
    Ok(v.out)
}
