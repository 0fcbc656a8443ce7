//! A bot's history. Every commit (and a bot's creation, and a reset to an
//! earlier commit) is recorded as `refs/commits/ID`: the bot, its tree,
//! the image it stood on, the commit before it, the time and a message.
//! Records are refs, so gc keeps every recorded tree alive by the store's
//! own convention, and a commit costs only what changed (equal subtrees
//! are one tree). A bot's ref names its newest record (`head`); older ones
//! are reached through `parent`. Retention removes records from the old
//! end of a chain; a record whose parent is gone ends the history there.

use crate::state::{now, Bot, BotRef};
use anyhow::{bail, Result};
use std::time::Duration;
use store::{Hash, Store};

/// The ref kind of commit records.
pub const COMMITS: &str = "commits";
/// Hex digits of a commit id.
const ID_HEX: usize = 16;

/// One recorded state of a bot.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Commit {
    pub id: String,
    pub bot: String,
    pub tree: Hash,
    pub image: String,
    pub image_tree: Hash,
    pub parent: Option<String>,
    pub time: String,
    pub message: String,
}

/// Whether `s` has the shape of a commit id (or of its prefix, at least 4
/// digits).
fn is_id_like(s: &str) -> bool {
    (4..=ID_HEX).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Commit {
    /// Records the state `r` of bot `bot` with `message`, after its
    /// current head. The caller then points the bot's ref at it: a crash
    /// in between leaves a record no bot names, which gc removes.
    pub fn record(store: &Store, r: &BotRef, message: &str) -> Result<Commit> {
        let time = now();
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let seed = format!(
            "{}\n{}\n{:?}\n{time}\n{nonce}\n{}\n{message}",
            r.id,
            r.tree,
            r.head,
            std::process::id()
        );
        let id = Hash::of(seed.as_bytes()).to_hex()[..ID_HEX].to_string();
        let c = Commit {
            id,
            bot: r.id.clone(),
            tree: r.tree,
            image: r.image.clone(),
            image_tree: r.image_tree,
            parent: r.head.clone(),
            time,
            message: message.to_string(),
        };
        store.write_ref(COMMITS, &c.id, &serde_json::to_value(&c)?)?;
        Ok(c)
    }

    pub fn load(store: &Store, id: &str) -> Result<Option<Commit>> {
        if !is_id_like(id) || id.len() != ID_HEX {
            return Ok(None);
        }
        store.read_record(COMMITS, id, &format!("commit record {id}"))
    }

    /// Seconds since the record was made (0 if its time cannot be read).
    fn age(&self) -> Duration {
        humantime::parse_rfc3339_weak(&self.time)
            .ok()
            .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
            .unwrap_or_default()
    }
}

/// Bot `id`'s commits, newest first, as far as they are kept.
pub fn log(store: &Store, id: &str) -> Result<Vec<Commit>> {
    let r = Bot::new(store, id)?.load()?;
    chain(store, r.head.as_deref())
}

/// The records from `head` back through their parents.
fn chain(store: &Store, head: Option<&str>) -> Result<Vec<Commit>> {
    let mut out = Vec::new();
    let mut next = head.map(String::from);
    let mut seen = std::collections::HashSet::new();
    while let Some(id) = next {
        if !seen.insert(id.clone()) {
            bail!("the history loops at commit {id}; run `botyard fsck`");
        }
        let Some(c) = Commit::load(store, &id)? else {
            break;
        };
        next = c.parent.clone();
        out.push(c);
    }
    Ok(out)
}

/// The commit of bot `id` that `spec` names: a whole id or a prefix of at
/// least 4 hex digits that only one of its kept commits starts with.
pub fn resolve(store: &Store, id: &str, spec: &str) -> Result<Commit> {
    if !is_id_like(spec) {
        bail!(
            "{} is not a commit id; `botyard bot log {id}` lists them",
            store::quote_str(spec)
        );
    }
    let commits = log(store, id)?;
    let found: Vec<&Commit> = commits.iter().filter(|c| c.id.starts_with(spec)).collect();
    match found.as_slice() {
        [c] => Ok((*c).clone()),
        [] => {
            if let Some(other) = Commit::load(store, spec)?.filter(|c| c.bot != id) {
                bail!(
                    "commit {spec} belongs to bot {}, not {id}; `botyard bot log {id}` lists {id}'s",
                    store::quote_str(&other.bot)
                );
            }
            bail!("bot {id} has no commit {spec}; `botyard bot log {id}` lists them (gc may have dropped older ones)")
        }
        _ => bail!("{spec} is the start of several commits of bot {id}; give more digits"),
    }
}

/// How much history gc keeps of each bot: the newest `keep_commits`, and
/// any younger than `keep_for`; `None` for both keeps everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct Retention {
    pub keep_commits: Option<usize>,
    pub keep_for: Option<Duration>,
}

/// What retention dropped.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct HistoryGc {
    /// Commit records removed by the retention.
    pub dropped: u64,
    /// Records no bot's history reaches (a bot removed, a crash between
    /// recording and naming one).
    pub orphans: u64,
}

/// Removes the commit records the retention lets go, and those of no
/// bot's history. A bot's newest record is always kept.
pub fn gc_history(store: &Store, keep: Retention, dry_run: bool) -> Result<HistoryGc> {
    let mut reachable = std::collections::HashSet::new();
    let mut report = HistoryGc::default();
    let mut drop = Vec::new();
    for id in crate::bot_ls::ids(store)? {
        let r = Bot::new(store, &id)?.load()?;
        for (i, c) in chain(store, r.head.as_deref())?.into_iter().enumerate() {
            let within_count = keep.keep_commits.is_none_or(|n| i < n.max(1));
            let within_age = keep.keep_for.is_some_and(|d| c.age() <= d);
            let kept = i == 0
                || (keep.keep_commits.is_none() && keep.keep_for.is_none())
                || (keep.keep_commits.is_some() && within_count)
                || within_age;
            if kept {
                reachable.insert(c.id);
            } else {
                report.dropped += 1;
                drop.push(c.id);
            }
        }
    }
    for (name, _) in store.other_refs()? {
        let Some(cid) = name.strip_prefix("commits/") else {
            continue;
        };
        if !reachable.contains(cid) && !drop.iter().any(|d| d == cid) {
            report.orphans += 1;
            drop.push(cid.to_string());
        }
    }
    if !dry_run {
        for cid in drop {
            store.remove_ref(COMMITS, &cid)?;
        }
    }
    Ok(report)
}
