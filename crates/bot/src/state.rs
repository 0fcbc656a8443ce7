//! What a bot is on disk: its id rules, its ref (`refs/bots/ID`), its home
//! (`bots/ID/`, an [`fs::OverlayHome`]), its lock and recovery after an
//! interrupted command, its view, and the hook that reaps dead sessions.

use anyhow::{bail, Result};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use store::{Hash, Store};

pub const MAX_ID: usize = 63;

/// Checks a bot id: 1 to 63 lowercase letters, digits and `-`, starting and
/// ending with a letter or digit. Every runtime takes that as it is: a
/// runc container id, a Kubernetes object name or label, a hostname.
pub fn validate_id(id: &str) -> Result<()> {
    validate_path_safe(id)?;
    let label = id
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-');
    if !label {
        bail!(
            "bot id {} is not allowed: use 1 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit (like web-1)",
            store::quote_str(id)
        );
    }
    Ok(())
}

/// What older versions accepted as a bot id: a safe path segment.
fn validate_path_safe(id: &str) -> Result<()> {
    store::validate_segment("bot id", id, MAX_ID).map_err(|e| anyhow::anyhow!("{e}"))?;
    if id.chars().any(char::is_whitespace) {
        bail!(
            "bot id {} contains whitespace; use lowercase letters, digits and '-'",
            store::quote_str(id)
        );
    }
    Ok(())
}

/// The bot's name where a runtime needs one (container ids, hostnames):
/// the id itself, or for a bot made under the older, looser rule, a name
/// derived from it that no other id maps to.
pub fn runtime_name(id: &str) -> String {
    if validate_id(id).is_ok() {
        id.to_string()
    } else {
        format!("bot-{}", &store::Hash::of(id.as_bytes()).to_hex()[..16])
    }
}

/// How a bot's root is presented.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// Kernel overlayfs over EROFS layers of metacopy stubs (root, Linux ≥ 6.8).
    #[default]
    Overlay,
    /// A plain writable directory, for places where nothing may mount: files
    /// reflinked from the objects (XFS, btrfs) or copied (ext4); a commit
    /// shares identical files with `FIDEDUPERANGE`.
    Copy,
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Driver::Overlay => "overlay",
            Driver::Copy => "copy",
        })
    }
}

impl FromStr for Driver {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "overlay" => Ok(Driver::Overlay),
            "copy" => Ok(Driver::Copy),
            other => bail!("unknown driver '{other}'; use overlay or copy"),
        }
    }
}

/// What `refs/bots/ID` holds. Fields named `tree` or ending in `_tree` keep
/// their trees alive through gc (the store's convention).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct BotRef {
    pub id: String,
    /// The image it was created from, and that image's tree at the time.
    pub image: String,
    pub image_tree: Hash,
    /// The committed tree (the image's tree until the first commit).
    pub tree: Hash,
    pub driver: Driver,
    /// Copy driver: whether the bot's filesystem shares extents (reflink);
    /// where it cannot (ext4), every copy bot holds a full copy.
    #[serde(default)]
    pub shares_extents: bool,
    /// Copy driver on btrfs: the root was made as a snapshot of the
    /// image's root subvolume (O(1)) rather than file by file.
    #[serde(default)]
    pub snapshot: bool,
    pub created: String,
    pub committed: Option<String>,
    /// The newest record of its history (`refs/commits/ID`); bots made
    /// before history was kept start theirs at their next commit.
    #[serde(default)]
    pub head: Option<String>,
}

/// Cleans up after a dead session of a bot: true if there was one.
pub type SessionReaper = fn(&Store, &str) -> Result<bool>;

static REAPER: std::sync::OnceLock<SessionReaper> = std::sync::OnceLock::new();

/// Installs the session crate's reaper (the bot crate knows where a
/// session leaves its state, not how to stop a sandbox). Once per process.
pub fn set_session_reaper(reap: SessionReaper) {
    let _ = REAPER.set(reap);
}

/// A bot's paths in a store: its overlay home (`bots/ID/`, see
/// [`fs::OverlayHome`], reached through `Deref`) and what only a bot has.
pub struct Bot {
    pub store: Store,
    pub id: String,
    home: fs::OverlayHome,
}

impl std::ops::Deref for Bot {
    type Target = fs::OverlayHome;
    fn deref(&self) -> &fs::OverlayHome {
        &self.home
    }
}

impl Bot {
    pub fn new(store: &Store, id: &str) -> Result<Bot> {
        if let Err(e) = validate_id(id) {
            // A bot made before the rule tightened stays usable.
            let legacy = validate_path_safe(id).is_ok()
                && store.read_ref("bots", id).ok().flatten().is_some();
            if !legacy {
                return Err(e);
            }
        }
        Ok(Bot {
            store: store.clone(),
            id: id.to_string(),
            home: fs::OverlayHome::new(store.root().join("bots").join(id), format!("bot {id}")),
        })
    }

    /// Where a session on the bot keeps what it must leave for the next
    /// command to clean up (its state, bundle and staged mounts).
    pub fn session_dir(&self) -> PathBuf {
        self.dir().join("session")
    }
    /// What a running session records there, so the next command can
    /// clean up after a killed botyard.
    pub fn session_state(&self) -> PathBuf {
        self.session_dir().join("state.json")
    }
    /// Held while a session runs on the bot: one at a time.
    pub fn session_lock(&self) -> PathBuf {
        self.dir().join("session.lock")
    }

    pub fn load(&self) -> Result<BotRef> {
        let what = format!("ref of bot {}", self.id);
        match self.store.read_record("bots", &self.id, &what)? {
            Some(r) => Ok(r),
            None => bail!("no bot {} in the store; see `botyard bot ls`", self.id),
        }
    }

    pub fn exists(&self) -> Result<bool> {
        Ok(self.store.read_ref("bots", &self.id)?.is_some())
    }

    /// Refuses an id a bot already has (the verbs that make bots).
    pub(crate) fn refuse_existing(&self) -> Result<()> {
        if self.exists()? {
            return Err(store::error(
                store::ErrorKind::AlreadyExists,
                format!(
                    "bot {id} already exists; pick another id or remove it with `botyard bot rm {id}`",
                    id = self.id
                ),
            ));
        }
        Ok(())
    }

    /// Runs `make`, which makes this bot; when it fails, what it left of
    /// the bot's directory goes too (there is no ref yet to keep it).
    pub(crate) fn make_or_clean<T>(&self, make: impl FnOnce() -> Result<T>) -> Result<T> {
        let made = make();
        if made.is_err() {
            let _ = fs::walk::remove_path(&self.dir());
        }
        made
    }

    /// Shows the committed tree `r` names and nothing else: an overlay
    /// bot's upper is emptied, a copy bot's directory rewritten in place
    /// (a bind mount of it, a published volume, sees the change).
    pub(crate) fn show_committed(&self, r: &BotRef) -> Result<()> {
        match r.driver {
            Driver::Overlay => {
                empty_dir(&self.upper())?;
                empty_dir(&self.work())
            }
            Driver::Copy => {
                empty_dir(&self.default_mount())?;
                fs::materialize(&self.store, &r.tree, &self.default_mount())?;
                Ok(())
            }
        }
    }

    pub fn save(&self, r: &BotRef) -> Result<()> {
        self.store
            .write_ref("bots", &self.id, &serde_json::to_value(r)?)
    }

    /// Refuses verbs that only make sense for an overlay bot.
    pub(crate) fn overlay_only(&self, r: &BotRef, verb: &str) -> Result<()> {
        if r.driver == Driver::Copy {
            bail!(
                "bot {} uses the copy driver: it is a plain directory at {}, always there, with nothing to {verb}",
                self.id,
                self.default_mount().display()
            );
        }
        Ok(())
    }

    /// Where the bot is mounted now, if it is.
    pub fn mounted_at(&self) -> Option<PathBuf> {
        self.recorded_mount().filter(|p| fs::is_overlay_mount(p))
    }

    /// Cleans up what a dead session of the bot left (its botyard was
    /// killed), through the reaper the session crate installs; every bot
    /// verb does this first.
    pub(crate) fn reap_dead_session(&self) -> Result<()> {
        if let Some(reap) = REAPER.get() {
            if self.session_state().exists() {
                reap(&self.store, &self.id)?;
            }
        }
        Ok(())
    }

    /// Takes the bot's own lock: one verb at a time per bot.
    pub fn lock(&self) -> Result<std::fs::File> {
        // Before the lock: reaping unmounts the bot, which takes it.
        self.reap_dead_session()?;
        let f = self.home.lock()?;
        self.recover()?;
        Ok(f)
    }

    /// The bot's lock alone, without the recovery every verb does first
    /// (for gc, which holds the store lock that recovery may take);
    /// `None` while another command holds it.
    pub(crate) fn try_lock_bare(&self) -> Result<Option<std::fs::File>> {
        match self.home.lock() {
            Ok(f) => Ok(Some(f)),
            Err(e) if store::is_kind(&e, store::ErrorKind::Busy) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Where a commit notes the tree it is about to point the bot at.
    pub(crate) fn pending_commit(&self) -> PathBuf {
        self.dir().join("commit-pending")
    }

    /// Finishes or undoes what a killed command left (we hold the bot lock,
    /// so nobody else is working on it): a commit whose ref was written but
    /// whose upper was not yet emptied (the home's lock already removed a
    /// view left mounted).
    fn recover(&self) -> Result<()> {
        let pending = self.pending_commit();
        if let Ok(data) = std::fs::read_to_string(&pending) {
            if let (Ok(tree), Ok(r)) = (data.trim().parse::<Hash>(), self.load()) {
                if r.tree == tree {
                    empty_dir(&self.upper())?;
                    empty_dir(&self.work())?;
                }
            }
            std::fs::remove_file(&pending)?;
        }
        Ok(())
    }

    /// The lower layers of the bot's overlay, top first: the diff of its
    /// tree over the image (if any), then the image. Missing or damaged
    /// layers are rebuilt from the store.
    pub fn lowers(&self, r: &BotRef) -> Result<Vec<PathBuf>> {
        let mut lowers = Vec::new();
        if r.tree != r.image_tree {
            lowers.push(fs::diff_layer(&self.store, &r.tree, &r.image_tree)?);
        }
        lowers.push(fs::layer(&self.store, &r.image_tree)?);
        Ok(lowers)
    }
}

pub(crate) use store::now_rfc3339 as now;

/// Empties a directory (the upper or work dir), keeping the directory; at
/// any depth, never through a symlink in it.
pub(crate) fn empty_dir(p: &std::path::Path) -> Result<()> {
    fs::walk::empty_dir(p)
}

/// Turns "nested too deep" into what to do about it, for bot `id`.
pub(crate) fn too_deep_hint(e: anyhow::Error, id: &str) -> anyhow::Error {
    let Some(deep) = e.chain().find_map(|c| c.downcast_ref::<fs::TooDeep>()) else {
        return e;
    };
    let top = deep.path.split(|&b| b == b'/').next().unwrap_or_default();
    anyhow::anyhow!(
        "bot {id}: {deep}; remove it (`botyard bot reset {id} /{}`) and try again",
        fs::quote_bytes(top)
    )
}

impl Bot {
    /// Opens a view of the bot. `allow_live` lets a mounted bot's own mount
    /// serve (for reading a diff); otherwise a mounted bot is refused.
    pub(crate) fn view(&self, r: &BotRef, allow_live: bool) -> Result<fs::View> {
        if let Some(p) = self.mounted_at() {
            if allow_live {
                return Ok(fs::View::live(&p));
            }
            bail!(
                "bot {id} is mounted at {}; unmount it first (`botyard bot unmount {id}`)",
                p.display(),
                id = self.id
            );
        }
        let spec = fs::OverlaySpec {
            upper: Some((self.upper(), self.work())),
            lowers: self.lowers(r)?,
            shared: Vec::new(),
            data: vec![self.store.objects_dir()],
            user_lower: false,
            readonly: true,
            allow_suid: false,
            allow_dev: false,
        };
        self.private_view(&spec)
    }
}
