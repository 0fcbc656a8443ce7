//! `bot rebase`: a bot moved onto a new image with a three-way merge of
//! its old image, the new image and its own tree (dpkg-aware, see
//! [`fs::merge_trees`]). A rebase is a commit, so `bot reset --to` the
//! commit before it undoes it.

use crate::history::Commit;
use crate::state::{now, Bot};
use anyhow::{bail, Result};
use fs::MemTree;
use store::{ImageName, Progress, Staging, Store};

/// How a rebase goes.
#[derive(Clone, Copy, Debug, Default)]
pub struct RebaseOptions {
    /// Report what would happen; write nothing.
    pub dry_run: bool,
    /// Conflicts take the new image's version instead of the bot's.
    pub theirs: bool,
    /// Rebase onto an image of another distribution or architecture.
    pub force: bool,
}

/// What a rebase did (or would do).
#[derive(Debug, serde::Serialize)]
pub struct RebaseOutcome {
    pub id: String,
    pub from: String,
    pub to: String,
    #[serde(flatten)]
    pub merge: fs::MergeReport,
    pub dry_run: bool,
    /// The rebase's record in the bot's history.
    pub commit: Option<String>,
}

/// `ID` and `VERSION_CODENAME` of `/etc/os-release`, and dpkg's own
/// architecture, as far as the tree says.
fn identity(store: &Store, t: &MemTree) -> (Option<String>, Option<String>) {
    let read = |p: &[&[u8]]| -> Option<String> {
        let id = t.lookup(p)?;
        match t.kind(id) {
            fs::NodeKind::File { object, .. } => {
                std::fs::read_to_string(store.object_path(&object)).ok()
            }
            _ => None,
        }
    };
    let os = read(&[b"etc", b"os-release"])
        .or_else(|| read(&[b"usr", b"lib", b"os-release"]))
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("ID=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        });
    let arch = read(&[b"var", b"lib", b"dpkg", b"arch"])
        .and_then(|s| s.lines().next().map(str::to_string))
        .or_else(|| {
            read(&[b"var", b"lib", b"dpkg", b"status"]).and_then(|s| {
                s.split("\n\n")
                    .find(|st| st.starts_with("Package: dpkg\n"))
                    .and_then(|st| {
                        st.lines()
                            .find_map(|l| l.strip_prefix("Architecture: ").map(String::from))
                    })
            })
        });
    (os, arch)
}

/// Rebases bot `id` onto `image`. An overlay bot must be unmounted and
/// committed (what it has not committed is not merged); a copy bot's
/// directory is rewritten from the result.
pub fn rebase(
    store: &Store,
    id: &str,
    image: &ImageName,
    opts: RebaseOptions,
    progress: &dyn Progress,
) -> Result<RebaseOutcome> {
    let bot = Bot::new(store, id)?;
    if let Some(p) = bot.mounted_at() {
        bail!("bot {id} is mounted at {}; unmount it first", p.display());
    }
    // What the bot has not committed is committed first: the merge is of
    // committed states, and a copy bot's directory is rewritten.
    if !opts.dry_run {
        crate::commit(
            store,
            id,
            &format!("before rebasing onto {image}"),
            progress,
        )?;
    }
    let _lock = bot.lock()?;
    let mut r = bot.load()?;
    let img = store.image(image)?;
    let base = MemTree::load(store, &r.image_tree)?;
    let theirs = MemTree::load(store, &img.tree)?;
    let (old_id, new_id) = (identity(store, &base), identity(store, &theirs));
    if old_id != new_id && !opts.force {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "unknown".into());
        bail!(
            "image {image} is not the same system as bot {id}'s image {}: distribution {} against {}, architecture {} against {}; pass --force to merge anyway",
            r.image,
            show(&new_id.0),
            show(&old_id.0),
            show(&new_id.1),
            show(&old_id.1)
        );
    }
    let ours = MemTree::load(store, &r.tree)?;
    let staging = if opts.dry_run {
        Staging::hash_only(store, progress)?
    } else {
        Staging::new(store, progress)?
    };
    let (merged, report) = fs::merge_trees(store, &staging, &base, &theirs, ours, opts.theirs)?;
    let mut out = RebaseOutcome {
        id: id.to_string(),
        from: r.image.clone(),
        to: image.to_string(),
        merge: report,
        dry_run: opts.dry_run,
        commit: None,
    };
    if opts.dry_run {
        return Ok(out);
    }
    let (tree, _) = merged.write(&staging)?;
    let message = format!(
        "rebased from {} onto {image} ({} conflicts)",
        r.image,
        out.merge.conflicts.len()
    );
    staging.commit(|store| {
        r.image = image.to_string();
        r.image_tree = img.tree;
        r.tree = tree;
        r.committed = Some(now());
        let c = Commit::record(store, &r, &message)?;
        r.head = Some(c.id.clone());
        out.commit = Some(c.id);
        bot.save(&r)
    })?;
    bot.show_committed(&r)?;
    Ok(out)
}
