//! `workspace sync`: the gate. Every change is judged (policy, secrets,
//! size, setuid and new executables, conflicts with the host), held, refused
//! or applied to the project, and the base tree moves forward with what was
//! applied.

use crate::apply::{remove_below, Host};
use crate::changes::{Change, Kind, Side, State, What};
use crate::policy::Policy;
use crate::secrets::Hit;
use crate::state::{Mode, Workspace, WorkspaceRef};
use crate::workspace_diff::is_text;
use anyhow::{bail, Context, Result};
use fs::walk::{components, open_dir, open_path};
use fs::{MemKind, MemNode, MemTree, Meta};
use rustix::fs::{AtFlags, OFlags};
use std::collections::BTreeSet;
use std::io::{Read, Seek};
use std::path::Path;
use store::{Progress, Staging, Store};

/// What the gate says about one change.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "verdict", content = "reason")]
pub enum Verdict {
    /// May be applied.
    Apply,
    /// May not be applied (policy, size, secret, special file).
    Reject(String),
    /// Waits for a person (binaries, new executable bits).
    Approve(String),
    /// Adds setuid or setgid: waits for an approval naming the path.
    ApproveSetuid(String),
    /// Moves a directory the agent renamed: applied only while the
    /// workspace is unmounted (moving directories below a live overlay
    /// would scramble the agent's view).
    Deferred(String),
    /// The host changed since the base: resolve with ours or theirs.
    Conflict,
    /// The host already holds it.
    InSync,
}

/// A change with the gate's verdict.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Item {
    #[serde(flatten)]
    pub change: Change,
    #[serde(flatten)]
    pub verdict: Verdict,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<Hit>,
}

/// How to settle a conflict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolve {
    /// Keep the project's version; the agent's change is dropped.
    Ours,
    /// Take the agent's version over the project's.
    Theirs,
}

/// What a person (or a default) decides for an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Accept,
    Reject,
    Resolve(Resolve),
    /// Leave it for later.
    Skip,
    /// Stop asking; apply what was accepted so far.
    Quit,
}

/// Decides one item, given the view to read the agent's version from.
pub type Ask<'a> = dyn FnMut(&Item, &Path) -> Result<Decision> + 'a;

#[derive(Clone, Debug, Default)]
pub struct SyncOptions {
    /// Only changes at or below these paths.
    pub paths: Vec<Vec<u8>>,
    pub dry_run: bool,
    /// Settles every conflict this way.
    pub resolve: Option<Resolve>,
    /// Approves what waits for approval (not setuid and setgid).
    pub approve: bool,
    /// Approves adding setuid or setgid to exactly these paths.
    pub approve_setuid: Vec<Vec<u8>>,
}

/// What happened to one item.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Outcome {
    /// The path, for scripts (`path_bytes` too when it is not UTF-8).
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_bytes: Option<Vec<u8>>,
    /// The path's bytes, for people (quote them).
    #[serde(skip)]
    pub raw: Vec<u8>,
    pub what: char,
    /// applied, in_sync, rejected, held, conflict, skipped, failed, kept_ours
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<Hit>,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SyncReport {
    pub dry_run: bool,
    pub items: Vec<Outcome>,
    pub applied: u64,
    pub in_sync: u64,
    pub rejected: u64,
    pub held: u64,
    pub conflicts: u64,
    pub failed: u64,
    /// Entries removed from the upper because the project now holds them
    /// (only while the workspace is unmounted; else at unmount).
    pub dropped_from_upper: u64,
}

fn reject(why: impl Into<String>) -> Verdict {
    Verdict::Reject(why.into())
}

/// The gate: policy, size, secrets, approvals.
fn gate(policy: &Policy, c: &Change, view: &rustix::fd::OwnedFd) -> Result<(Verdict, Vec<Hit>)> {
    match c.state {
        State::InSync => return Ok((Verdict::InSync, vec![])),
        State::Conflict | State::Pending => {}
    }
    for p in std::iter::once(&c.path).chain(c.from.iter()) {
        if let Some(why) = policy.path_refused(&String::from_utf8_lossy(p)) {
            return Ok((reject(why), vec![]));
        }
    }
    let conflict = |v: Verdict| {
        if c.state == State::Conflict && v == Verdict::Apply {
            Verdict::Conflict
        } else {
            v
        }
    };
    let Some(agent) = &c.agent else {
        return Ok((conflict(Verdict::Apply), vec![]));
    };
    match agent.kind {
        Kind::Other => {
            return Ok((
                reject("fifos, sockets and devices are never synced"),
                vec![],
            ))
        }
        Kind::Dir | Kind::Symlink => return Ok((conflict(Verdict::Apply), vec![])),
        Kind::File => {}
    }
    if agent.size > policy.max_file_size {
        return Ok((
            reject(format!(
                "{} bytes, over the policy's limit of {}",
                agent.size, policy.max_file_size
            )),
            vec![],
        ));
    }
    let content_changed = c.what != What::Chmod && !matches!(c.what, What::Renamed { .. });
    // Permission bits this change adds to the file (all of them when new).
    let before = c
        .base
        .as_ref()
        .filter(|b| b.kind == Kind::File)
        .map(|b| b.mode)
        .unwrap_or(0);
    let added = agent.mode & !before;
    let mut approve = None;
    if content_changed {
        let mut data = Vec::new();
        if let Ok(Some(fd)) = open_path(view, &c.path, OFlags::RDONLY) {
            std::fs::File::from(fd)
                .take(policy.max_file_size)
                .read_to_end(&mut data)?;
        }
        if !is_text(&data) {
            if policy.approve_binaries {
                approve = Some("a binary file");
            }
        } else if policy.scan_secrets {
            let hits = crate::secrets::scan(&String::from_utf8_lossy(&data));
            if !hits.is_empty() {
                let kinds: BTreeSet<&str> = hits.iter().map(|h| h.kind).collect();
                let kinds: Vec<&str> = kinds.into_iter().collect();
                return Ok((
                    reject(format!("holds a secret ({})", kinds.join(", "))),
                    hits,
                ));
            }
        }
    }
    // Setuid and setgid always wait, whatever the policy says.
    if added & 0o6000 != 0 {
        let bits = match added & 0o6000 {
            0o4000 => "setuid",
            0o2000 => "setgid",
            _ => "setuid and setgid",
        };
        return Ok((
            Verdict::ApproveSetuid(format!("adds {bits} (mode {:04o})", agent.mode)),
            vec![],
        ));
    }
    if let Some(why) = approve {
        return Ok((Verdict::Approve(why.into()), vec![]));
    }
    if policy.approve_new_executables && added & 0o111 != 0 {
        let why = if c.base.is_some() {
            "adds an executable bit"
        } else {
            "a new executable file"
        };
        return Ok((Verdict::Approve(why.into()), vec![]));
    }
    Ok((conflict(Verdict::Apply), vec![]))
}

/// The workspace's changes with the gate's verdicts, and the view they
/// were read through.
pub(crate) fn plan(
    ws: &Workspace,
    paths: &[Vec<u8>],
) -> Result<(WorkspaceRef, crate::state::View, Vec<Item>)> {
    let r = ws.load()?;
    if r.mode == Mode::Unsafe {
        bail!(
            "workspace {} is in unsafe mode: the agent writes the project directly, so there is nothing to sync",
            ws.name
        );
    }
    let policy = Policy::load(r.policy.as_deref())?;
    let view = ws.view(&r)?;
    let changes = crate::changes::changes(
        &ws.store,
        r.base_tree,
        &ws.upper(),
        &view.path,
        &r.project,
        paths,
    )?;
    let view_fd = open_dir(&view.path)?;
    let mounted = ws.mounted_at().is_some();
    let mut items = Vec::new();
    for c in changes {
        let (mut verdict, secrets) = gate(&policy, &c, &view_fd)?;
        // A directory renamed whole is one rename in the project, which
        // the live mount follows; anything else in a moved directory
        // would change what the agent's redirects point into.
        let whole_rename = matches!(c.what, What::Renamed { .. })
            && c.agent.as_ref().is_some_and(|a| a.kind == Kind::Dir);
        if mounted
            && c.in_moved_dir
            && !whole_rename
            && matches!(
                verdict,
                Verdict::Apply
                    | Verdict::Approve(_)
                    | Verdict::ApproveSetuid(_)
                    | Verdict::Conflict
            )
        {
            verdict = Verdict::Deferred(
                "in a directory the agent moved: syncs once the workspace is unmounted".into(),
            );
        }
        items.push(Item {
            change: c,
            verdict,
            secrets,
        });
    }
    Ok((r, view, items))
}

/// What the sync does with one item, before asking anyone.
fn default_decision(item: &Item, opts: &SyncOptions) -> Decision {
    match &item.verdict {
        Verdict::Apply => Decision::Accept,
        Verdict::Approve(_) if opts.approve => Decision::Accept,
        Verdict::ApproveSetuid(_)
            if opts
                .approve_setuid
                .iter()
                .any(|p| components(p) == components(&item.change.path)) =>
        {
            Decision::Accept
        }
        Verdict::Conflict => match opts.resolve {
            Some(r) => Decision::Resolve(r),
            None => Decision::Skip,
        },
        _ => Decision::Skip,
    }
}

/// Runs the sync gate. `ask`, if given, decides each item that is not
/// already in sync or rejected (interactive mode); otherwise the options
/// decide. Applies what was accepted to the project, moves the base forward,
/// and (when unmounted) drops from the upper what the project now holds.
pub fn sync(
    ws: &Workspace,
    opts: &SyncOptions,
    mut ask: Option<&mut Ask>,
    progress: &dyn Progress,
) -> Result<SyncReport> {
    let _lock = ws.lock()?;
    let mounted = ws.mounted_at().is_some();
    if !mounted && !opts.dry_run {
        crate::flatten::flatten_moved_dirs(ws, &ws.load()?)?;
    }
    let (mut r, view, items) = plan(ws, &opts.paths)?;
    let mut report = SyncReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    // Decide.
    let mut accepted: Vec<(Item, Decision)> = Vec::new();
    let mut quit = false;
    for item in items {
        let asked = matches!(
            item.verdict,
            Verdict::Apply | Verdict::Approve(_) | Verdict::Conflict
        );
        let d = match (&mut ask, asked, quit) {
            (_, _, true) => Decision::Skip,
            (Some(ask), true, false) => ask(&item, &view.path)?,
            _ => default_decision(&item, opts),
        };
        if d == Decision::Quit {
            quit = true;
        }
        accepted.push((item, d));
    }
    if opts.dry_run {
        for (item, d) in &accepted {
            report.count(item, *d, None);
        }
        return Ok(report);
    }

    // Apply: new directories parents first (renames may land in them),
    // renames, then other creations and edits parents first, then
    // deletions children first.
    let order = |i: &Item| match (&i.change.what, &i.change.agent) {
        (What::Added, Some(a)) if a.kind == Kind::Dir => 0,
        (What::Renamed { .. }, _) => 1,
        (_, Some(_)) => 2,
        (_, None) => 3,
    };
    accepted.sort_by(|a, b| {
        order(&a.0)
            .cmp(&order(&b.0))
            .then_with(|| match order(&a.0) {
                3 => b.0.change.path.cmp(&a.0.change.path),
                _ => a.0.change.path.cmp(&b.0.change.path),
            })
    });
    let mut host = Host::open(&r.project, &ws.sync_journal())?;
    let staging = Staging::new(&ws.store, progress)?;
    let mut base = match r.base_tree {
        Some(h) => MemTree::load(&ws.store, &h)?,
        None => MemTree::new(Meta {
            mode: 0o755,
            ..Default::default()
        }),
    };
    let view_fd = open_dir(&view.path)?;
    // The agent's side of conflicts settled for the project.
    let mut drop_paths: Vec<Vec<u8>> = Vec::new();
    // Directories the project now holds where the agent renamed them to.
    let mut renamed_dirs: Vec<Vec<u8>> = Vec::new();
    for (item, d) in &accepted {
        let c = &item.change;
        let res: Result<Option<&'static str>> = match (d, &item.verdict) {
            (_, Verdict::InSync) => {
                record_base(&mut base, &staging, &view_fd, c)?;
                Ok(None)
            }
            (
                Decision::Accept,
                Verdict::Apply | Verdict::Approve(_) | Verdict::ApproveSetuid(_),
            )
            | (Decision::Resolve(Resolve::Theirs), Verdict::Conflict)
            | (Decision::Accept, Verdict::Conflict) => {
                apply(&mut host, &view_fd, c).and_then(|f| {
                    record_base_with(&mut base, &staging, &view_fd, c, f)?;
                    if matches!(c.what, What::Renamed { .. })
                        && c.agent.as_ref().is_some_and(|a| a.kind == Kind::Dir)
                    {
                        renamed_dirs.push(c.path.clone());
                    }
                    Ok(Some("applied"))
                })
            }
            (Decision::Resolve(Resolve::Ours), Verdict::Conflict) => {
                if mounted {
                    Err(anyhow::anyhow!(
                        "keeping the project's version drops the agent's copy from the upper, which cannot change while the workspace is mounted; unmount it first"
                    ))
                } else {
                    let host_fd = open_dir(&r.project)?;
                    record_host(&mut base, &staging, &host_fd, c)?;
                    drop_paths.push(c.path.clone());
                    drop_paths.extend(c.from.clone());
                    Ok(Some("kept_ours"))
                }
            }
            _ => Ok(None),
        };
        match res {
            Ok(outcome) => report.count(item, *d, outcome),
            Err(e) => {
                report.failed += 1;
                report.items.push(Outcome {
                    path: String::from_utf8_lossy(&c.path).into_owned(),
                    path_bytes: c.path_bytes.clone(),
                    raw: c.path.clone(),
                    what: c.what.letter(),
                    outcome: "failed",
                    reason: Some(format!("{e:#}")),
                    secrets: vec![],
                });
            }
        }
    }
    drop(view_fd);
    // What the project now holds, judged by the view the changes were read
    // from: a fresh view would stack the upper on the changed project.
    let in_sync = if mounted {
        Vec::new()
    } else {
        crate::changes::in_sync_paths(&ws.upper(), &view.path, &r.project)?
    };
    drop(view);
    let (tree, _) = base.write(&staging)?;
    staging.commit(|_| {
        r.base_tree = Some(tree);
        ws.save(&r)
    })?;
    host.finish(&ws.sync_journal())?;
    if mounted {
        note_renamed_dirs(ws, &renamed_dirs)?;
    } else {
        drop_paths.extend(in_sync);
        report.dropped_from_upper = drop_from_upper(ws, &r, &drop_paths)?;
        settle_renamed_dirs(ws, &renamed_dirs)?;
    }
    Ok(report)
}

impl SyncReport {
    fn count(&mut self, item: &Item, d: Decision, applied: Option<&'static str>) {
        let c = &item.change;
        let (outcome, reason): (&'static str, Option<String>) = match (&item.verdict, applied) {
            (Verdict::InSync, _) => {
                self.in_sync += 1;
                return;
            }
            (_, Some("kept_ours")) => ("kept_ours", None),
            (_, Some(_)) => {
                self.applied += 1;
                ("applied", None)
            }
            (Verdict::Reject(why), None) => {
                self.rejected += 1;
                ("rejected", Some(why.clone()))
            }
            (Verdict::Approve(why), None) if d != Decision::Reject => {
                if self.dry_run && d == Decision::Accept {
                    self.applied += 1;
                    ("would_apply", None)
                } else {
                    self.held += 1;
                    (
                        "held",
                        Some(format!(
                            "{why} needs approval (`sync --interactive`, or `--approve`)"
                        )),
                    )
                }
            }
            (Verdict::ApproveSetuid(why), None) if d != Decision::Reject => {
                if self.dry_run && d == Decision::Accept {
                    self.applied += 1;
                    ("would_apply", None)
                } else {
                    self.held += 1;
                    (
                        "held",
                        Some(format!(
                            "{why}: approve it by name (`sync --approve-setuid {}`, or `sync --interactive`)",
                            fs::quote_bytes(&c.path)
                        )),
                    )
                }
            }
            (Verdict::Deferred(why), None) => {
                self.held += 1;
                ("held", Some(why.clone()))
            }
            (Verdict::Conflict, None) if d == Decision::Skip || d == Decision::Quit => {
                self.conflicts += 1;
                (
                    "conflict",
                    Some("the project changed since the agent started; resolve with --ours or --theirs".into()),
                )
            }
            (_, None) if self.dry_run && matches!(d, Decision::Accept | Decision::Resolve(_)) => {
                self.applied += 1;
                ("would_apply", None)
            }
            (_, None) => ("skipped", None),
        };
        self.items.push(Outcome {
            path: String::from_utf8_lossy(&c.path).into_owned(),
            path_bytes: c.path_bytes.clone(),
            raw: c.path.clone(),
            what: c.what.letter(),
            outcome,
            reason,
            secrets: item.secrets.clone(),
        });
    }
}

fn mtime_of(view: &rustix::fd::OwnedFd, path: &[u8]) -> Option<(i64, u32)> {
    let st = rustix::fs::statat(view, path, AtFlags::SYMLINK_NOFOLLOW).ok()?;
    Some((st.st_mtime, st.st_mtime_nsec as u32))
}

/// Applies one change to the project; returns the new regular file, if
/// one was written (its content then goes into the base).
fn apply(host: &mut Host, view: &rustix::fd::OwnedFd, c: &Change) -> Result<Option<std::fs::File>> {
    if let (What::Renamed { .. }, Some(from)) = (&c.what, &c.from) {
        if c.state == State::Pending {
            host.rename(from, &c.path)?;
            if let (Some(a), Some(b)) = (&c.agent, &c.base) {
                if a.mode != b.mode {
                    host.chmod(&c.path, a.mode)?;
                }
            }
            return Ok(None);
        }
        // Taking the agent's side of a conflicting rename: write the
        // destination, then remove the source.
        let f = write_agent(host, view, c)?;
        host.remove(from)?;
        return Ok(f);
    }
    match &c.agent {
        None => {
            host.remove(&c.path)?;
            Ok(None)
        }
        Some(_) => write_agent(host, view, c),
    }
}

fn write_agent(
    host: &mut Host,
    view: &rustix::fd::OwnedFd,
    c: &Change,
) -> Result<Option<std::fs::File>> {
    let Some(a) = &c.agent else { return Ok(None) };
    match a.kind {
        Kind::Dir => {
            host.mkdir(&c.path, a.mode)?;
            Ok(None)
        }
        Kind::Symlink => {
            host.symlink(&c.path, a.target.as_deref().unwrap_or_default())?;
            Ok(None)
        }
        Kind::File => {
            let same_content = c
                .host
                .as_ref()
                .is_some_and(|h| h.kind == Kind::File && h.hash == a.hash);
            if same_content {
                host.chmod(&c.path, a.mode)?;
                return Ok(None);
            }
            let Ok(Some(fd)) = open_path(view, &c.path, OFlags::RDONLY) else {
                bail!("{} is gone from the workspace; sync again", c.shown());
            };
            let mut src = std::fs::File::from(fd);
            let expect = a.hash.context("file without a hash")?;
            let (_, f) =
                host.write_file(&c.path, &mut src, &expect, a.mode, mtime_of(view, &c.path))?;
            Ok(Some(f))
        }
        Kind::Other => bail!("fifos, sockets and devices are never synced"),
    }
}

fn node_for(side: &Side, object: Option<(store::Hash, u64)>) -> MemNode {
    let meta = Meta {
        mode: side.mode,
        ..Default::default()
    };
    let kind = match side.kind {
        Kind::Dir => MemKind::Dir,
        Kind::Symlink => MemKind::Symlink(side.target.clone().unwrap_or_default()),
        _ => {
            let (object, size) = object.unwrap_or((store::Hash::empty(), 0));
            MemKind::File {
                object,
                size,
                sparse: false,
                group: None,
            }
        }
    };
    MemNode { meta, kind }
}

fn set_base(base: &mut MemTree, path: &[u8], node: Option<MemNode>) -> Result<()> {
    let c = components(path);
    match node {
        None => {
            base.remove(&c);
        }
        Some(n) => {
            base.insert(&c, n)?;
        }
    }
    Ok(())
}

/// Moves the base to the agent's version of `c`, storing its content from
/// `written` (the file just written to the project) or the view.
fn record_base_with(
    base: &mut MemTree,
    staging: &Staging,
    view: &rustix::fd::OwnedFd,
    c: &Change,
    written: Option<std::fs::File>,
) -> Result<()> {
    if let Some(from) = &c.from {
        // A directory moved whole: its subtree goes with it.
        if c.agent.as_ref().is_some_and(|a| a.kind == Kind::Dir) {
            if let Some(id) = base.lookup(&components(from)) {
                let moved = base.extract(id);
                base.graft(&components(&c.path), &moved, moved.root())?;
                set_base(base, from, None)?;
                return Ok(());
            }
        }
        set_base(base, from, None)?;
    }
    let Some(a) = &c.agent else {
        return set_base(base, &c.path, None);
    };
    let object = match (a.kind, written) {
        (Kind::File, Some(mut f)) => {
            f.rewind()?;
            let h = a.hash.context("file without a hash")?;
            staging.put_clone(&mut f, &h, a.size, false)?;
            Some((h, a.size))
        }
        (Kind::File, None) => Some(stage_from(staging, view, &c.path)?),
        _ => None,
    };
    set_base(base, &c.path, Some(node_for(a, object)))
}

fn record_base(
    base: &mut MemTree,
    staging: &Staging,
    view: &rustix::fd::OwnedFd,
    c: &Change,
) -> Result<()> {
    record_base_with(base, staging, view, c, None)
}

/// Moves the base to what the project holds at `c` (the host's side won).
fn record_host(
    base: &mut MemTree,
    staging: &Staging,
    host: &rustix::fd::OwnedFd,
    c: &Change,
) -> Result<()> {
    if let Some(from) = &c.from {
        let s = crate::changes::side_at(host, from, false)?;
        let o = match &s {
            Some(s) if s.kind == Kind::File => Some(stage_from(staging, host, from)?),
            _ => None,
        };
        set_base(base, from, s.map(|s| node_for(&s, o)))?;
    }
    let s = crate::changes::side_at(host, &c.path, false)?;
    let o = match &s {
        Some(s) if s.kind == Kind::File => Some(stage_from(staging, host, &c.path)?),
        _ => None,
    };
    set_base(base, &c.path, s.map(|s| node_for(&s, o)))
}

fn stage_from(
    staging: &Staging,
    root: &rustix::fd::OwnedFd,
    path: &[u8],
) -> Result<(store::Hash, u64)> {
    let Ok(Some(fd)) = open_path(root, path, OFlags::RDONLY) else {
        bail!(
            "{} disappeared while syncing; sync again",
            String::from_utf8_lossy(path)
        );
    };
    staging.put_clone_of(&mut std::fs::File::from(fd), false)
}

/// Remembers directories whose rename reached the project while mounted.
fn note_renamed_dirs(ws: &Workspace, dirs: &[Vec<u8>]) -> Result<()> {
    if dirs.is_empty() {
        return Ok(());
    }
    let mut all = read_renamed_dirs(ws);
    all.extend(dirs.iter().cloned());
    let data = serde_json::to_vec(&all)?;
    store::write_file_atomic(&ws.store.tmp_dir(), &ws.settle_list(), &data, 0o600)
}

pub(crate) fn read_renamed_dirs(ws: &Workspace) -> Vec<Vec<u8>> {
    std::fs::read(ws.settle_list())
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or_default()
}

/// A directory the agent renamed is a redirect in the upper, pointing at
/// its old place in the project. Once the sync moved it in the project
/// too, the old place is gone: the redirect (and the origin it checks) is
/// cleared, so the upper stacks on the directory at its new place and the
/// agent sees what it saw. Only while unmounted.
pub(crate) fn settle_renamed_dirs(ws: &Workspace, dirs: &[Vec<u8>]) -> Result<()> {
    let upper = open_dir(&ws.upper())?;
    // Deepest first, so a renamed directory inside another is reached
    // before its parent's redirect is cleared.
    let mut dirs = dirs.to_vec();
    dirs.sort_by_key(|d| std::cmp::Reverse(components(d).len()));
    for d in dirs {
        let Ok(Some(fd)) = open_path(&upper, &d, OFlags::RDONLY | OFlags::DIRECTORY) else {
            continue; // dropped as in sync
        };
        for k in ["trusted.overlay.redirect", "trusted.overlay.origin"] {
            match rustix::fs::fremovexattr(&fd, k) {
                Ok(()) | Err(rustix::io::Errno::NODATA) => {}
                Err(e) => {
                    return Err(std::io::Error::from(e)).with_context(|| {
                        format!(
                            "cannot settle the renamed directory {}",
                            fs::quote_bytes(&d)
                        )
                    })
                }
            }
        }
    }
    let _ = std::fs::remove_file(ws.settle_list());
    Ok(())
}

/// Removes from the upper what the project now holds, then the directories
/// this leaves empty that carry nothing of their own (no opaque or redirect
/// mark, the project's mode). Only while the workspace is unmounted:
/// overlayfs does not allow its upper to change under a live mount.
pub(crate) fn drop_from_upper(ws: &Workspace, r: &WorkspaceRef, paths: &[Vec<u8>]) -> Result<u64> {
    let upper = ws.upper();
    if !upper.exists() {
        return Ok(0);
    }
    let root = open_dir(&upper)?;
    let mut n = 0;
    for p in paths {
        remove_below(&root, p)?;
        n += 1;
    }
    prune(&root, b"", &open_dir(&r.project)?)?;
    Ok(n)
}

/// Removes empty directories below `dir` (bottom-up) that the project
/// holds as they are; returns whether `dir` itself is now empty.
fn prune(dir: &rustix::fd::OwnedFd, rel: &[u8], host: &rustix::fd::OwnedFd) -> Result<bool> {
    struct P<'a> {
        host: &'a rustix::fd::OwnedFd,
        rel: &'a [u8],
        /// Per directory being walked: (still empty, plain).
        stack: Vec<(bool, bool)>,
        pending_plain: bool,
    }
    impl fs::walk::Visitor for P<'_> {
        fn entry(
            &mut self,
            _: &rustix::fd::OwnedFd,
            _: &[u8],
            path: &[u8],
            st: &rustix::fs::Stat,
        ) -> Result<bool> {
            if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Directory {
                self.stack.last_mut().unwrap().0 = false;
                return Ok(false);
            }
            let full = fs::walk::join(self.rel, path);
            self.pending_plain = crate::changes::side_at(self.host, &full, false)?
                .is_some_and(|h| h.kind == Kind::Dir && h.mode == st.st_mode & 0o7777);
            Ok(true)
        }
        fn enter(&mut self, own: &rustix::fd::OwnedFd, _: &[u8]) -> Result<()> {
            let plain = self.pending_plain && !has_overlay_mark(own);
            self.stack.push((true, plain));
            Ok(())
        }
        fn leave(&mut self, parent: &rustix::fd::OwnedFd, name: &[u8], _: &[u8]) -> Result<()> {
            let (empty, plain) = self.stack.pop().unwrap();
            if empty && plain {
                rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)
                    .map_err(std::io::Error::from)?;
            } else {
                self.stack.last_mut().unwrap().0 = false;
            }
            Ok(())
        }
    }
    let mut p = P {
        host,
        rel,
        stack: vec![(true, false)],
        pending_plain: false,
    };
    fs::walk::walk(dir, fs::MAX_DEPTH, &mut p)?;
    Ok(p.stack[0].0)
}

fn has_overlay_mark(fd: &rustix::fd::OwnedFd) -> bool {
    let mut buf = [0u8; 256];
    ["trusted.overlay.opaque", "trusted.overlay.redirect"]
        .iter()
        .any(|k| rustix::fs::fgetxattr(fd, *k, &mut buf).is_ok())
}

/// An item as the interactive gate shows it on request.
pub fn render_item(store: &Store, view: &Path, project: &Path, item: &Item) -> Result<String> {
    crate::workspace_diff::render(store, view, project, &item.change, false)
}
