//! `workspace diff`: each change the agent made, with a unified diff of text
//! files, line counts, secrets masked, and names quoted for the terminal.

use crate::changes::{Change, Kind, Side, What};
use crate::state::Workspace;
use anyhow::Result;
use fs::walk::{open_dir, open_path};
use rustix::fs::OFlags;
use std::io::Read;
use std::path::Path;
use store::Store;

/// Larger files are summarised, not diffed.
const MAX_DIFF: u64 = 4 << 20;

/// Whether `data` reads as text: no NUL near the start, valid UTF-8.
pub fn is_text(data: &[u8]) -> bool {
    !data[..data.len().min(8192)].contains(&0) && std::str::from_utf8(data).is_ok()
}

/// The agent's version of `path` from the view, up to `limit` bytes.
pub(crate) fn read_view(view: &Path, path: &[u8], limit: u64) -> Result<Vec<u8>> {
    let root = open_dir(view)?;
    let Ok(Some(fd)) = open_path(&root, path, OFlags::RDONLY) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    std::fs::File::from(fd).take(limit).read_to_end(&mut out)?;
    Ok(out)
}

fn read_base(store: &Store, side: &Option<Side>, limit: u64) -> Result<Vec<u8>> {
    match side {
        Some(Side {
            kind: Kind::File,
            hash: Some(h),
            size,
            ..
        }) if *size > 0 => {
            let mut out = Vec::new();
            std::fs::File::open(store.object_path(h))?
                .take(limit)
                .read_to_end(&mut out)?;
            Ok(out)
        }
        _ => Ok(Vec::new()),
    }
}

/// Lines added and removed by a change (text files), for `--stat`.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct LineStat {
    pub added: usize,
    pub removed: usize,
    pub binary: bool,
}

fn contents(store: &Store, view: &Path, c: &Change) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
    let file = |s: &Option<Side>| s.as_ref().map(|s| s.kind == Kind::File).unwrap_or(true);
    if !file(&c.base) || !file(&c.agent) {
        return Ok(None);
    }
    let big = |s: &Option<Side>| s.as_ref().is_some_and(|s| s.size > MAX_DIFF);
    if big(&c.base) || big(&c.agent) {
        return Ok(None);
    }
    let old = read_base(store, &c.base, MAX_DIFF)?;
    let new = if c.agent.is_some() {
        read_view(view, &c.path, MAX_DIFF)?
    } else {
        Vec::new()
    };
    Ok(Some((old, new)))
}

pub(crate) fn line_stat(store: &Store, view: &Path, c: &Change) -> Result<LineStat> {
    let Some((old, new)) = contents(store, view, c)? else {
        return Ok(LineStat::default());
    };
    if !is_text(&old) || !is_text(&new) {
        return Ok(LineStat {
            binary: true,
            ..Default::default()
        });
    }
    let (o, n) = (String::from_utf8_lossy(&old), String::from_utf8_lossy(&new));
    let d = similar::TextDiff::from_lines(o.as_ref(), n.as_ref());
    let mut s = LineStat::default();
    for op in d.iter_all_changes() {
        match op.tag() {
            similar::ChangeTag::Insert => s.added += 1,
            similar::ChangeTag::Delete => s.removed += 1,
            similar::ChangeTag::Equal => {}
        }
    }
    Ok(s)
}

fn mode_of(s: &Option<Side>) -> String {
    s.as_ref()
        .map(|s| format!("{:04o}", s.mode))
        .unwrap_or_else(|| "-".into())
}

/// Text the agent wrote, fit for a terminal: control characters other than
/// tab and newline (an escape that moves the cursor or erases a line) are
/// shown as `\xNN`, as are C1 controls and bidirectional overrides.
fn terminal_safe(s: &str) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !s.chars().any(bad) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if bad(c) {
            if (c as u32) < 0x100 {
                out.push_str(&format!("\\x{:02x}", c as u32));
            } else {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// One change as a person reads it: a unified diff for text, a summary
/// for binaries, directories, symlinks, deletions and renames. A conflict
/// also shows the project's current version against the agent's. Names
/// are quoted, the agent's text is made safe for a terminal, and secrets
/// are masked unless `reveal` (the same scanner `sync` uses).
pub fn render(
    store: &Store,
    view: &Path,
    project: &Path,
    c: &Change,
    reveal: bool,
) -> Result<String> {
    let mut out = render_change(store, view, c)?;
    if c.state == crate::changes::State::Conflict {
        out.push_str(&render_conflict(view, project, c)?);
    }
    let out = if reveal {
        out
    } else {
        crate::secrets::mask_all(&out).into_owned()
    };
    Ok(terminal_safe(&out).into_owned())
}

fn render_conflict(view: &Path, project: &Path, c: &Change) -> Result<String> {
    let p = c.shown();
    let is_file = |s: &Option<Side>| {
        s.as_ref()
            .is_some_and(|s| s.kind == Kind::File && s.size <= MAX_DIFF)
    };
    if !is_file(&c.host) || !(is_file(&c.agent) || c.agent.is_none()) {
        let kind = |s: &Option<Side>| match s.as_ref().map(|s| s.kind) {
            None => "nothing".to_string(),
            Some(k) => format!("{k:?}").to_lowercase(),
        };
        return Ok(format!(
            "CONFLICT {p}: the project now has {}, the agent has {}\n",
            kind(&c.host),
            kind(&c.agent)
        ));
    }
    let host = read_view(project, &c.path, MAX_DIFF)?;
    let agent = if c.agent.is_some() {
        read_view(view, &c.path, MAX_DIFF)?
    } else {
        Vec::new()
    };
    if !is_text(&host) || !is_text(&agent) {
        return Ok(format!(
            "CONFLICT {p}: binary; the project has {} bytes, the agent {}\n",
            host.len(),
            agent.len()
        ));
    }
    let (h, a) = (
        String::from_utf8_lossy(&host),
        String::from_utf8_lossy(&agent),
    );
    Ok(format!(
        "CONFLICT {p}: the project changed since the agent started; the project's version against the agent's:\n{}",
        similar::TextDiff::from_lines(h.as_ref(), a.as_ref())
            .unified_diff()
            .context_radius(3)
            .header(&format!("project/{p}"), &format!("agent/{p}"))
    ))
}

fn render_change(store: &Store, view: &Path, c: &Change) -> Result<String> {
    let p = c.shown();
    let mut out = String::new();
    if let What::Renamed { from } = &c.what {
        out.push_str(&format!(
            "renamed {} → {p}\n",
            fs::quote_bytes(c.from.as_deref().unwrap_or(from.as_bytes()))
        ));
        if c.base.as_ref().map(|s| s.mode) != c.agent.as_ref().map(|s| s.mode) {
            out.push_str(&format!(
                "mode {} → {}\n",
                mode_of(&c.base),
                mode_of(&c.agent)
            ));
        }
        return Ok(out);
    }
    let kind = |s: &Option<Side>| s.as_ref().map(|s| s.kind);
    match (kind(&c.base), kind(&c.agent)) {
        (_, Some(Kind::Dir)) | (Some(Kind::Dir), None) => {
            let verb = match c.what {
                What::Deleted => "deleted directory",
                What::Added => "new directory",
                _ => "directory",
            };
            out.push_str(&format!(
                "{verb} {p}/ (mode {} → {})\n",
                mode_of(&c.base),
                mode_of(&c.agent)
            ));
            return Ok(out);
        }
        (_, Some(Kind::Symlink)) => {
            let t = c
                .agent
                .as_ref()
                .and_then(|s| s.target.clone())
                .unwrap_or_default();
            out.push_str(&format!("symlink {p} → {}\n", fs::quote_bytes(&t)));
            return Ok(out);
        }
        (_, Some(Kind::Other)) => {
            out.push_str(&format!(
                "special file {p} (fifo, socket or device; never synced)\n"
            ));
            return Ok(out);
        }
        _ => {}
    }
    if c.what == What::Chmod {
        out.push_str(&format!(
            "mode {p}: {} → {}\n",
            mode_of(&c.base),
            mode_of(&c.agent)
        ));
        return Ok(out);
    }
    let Some((old, new)) = contents(store, view, c)? else {
        out.push_str(&format!(
            "large file {p}: {} → {} bytes\n",
            c.base.as_ref().map(|s| s.size).unwrap_or(0),
            c.agent.as_ref().map(|s| s.size).unwrap_or(0)
        ));
        return Ok(out);
    };
    if !is_text(&old) || !is_text(&new) {
        let verb = match c.what {
            What::Deleted => "deleted binary file",
            What::Added => "new binary file",
            _ => "binary file",
        };
        out.push_str(&format!(
            "{verb} {p}: {} → {} bytes\n",
            old.len(),
            new.len()
        ));
        return Ok(out);
    }
    let (o, n) = (String::from_utf8_lossy(&old), String::from_utf8_lossy(&new));
    let a = if c.base.is_some() {
        format!("a/{p}")
    } else {
        "/dev/null".into()
    };
    let b = if c.agent.is_some() {
        format!("b/{p}")
    } else {
        "/dev/null".into()
    };
    if c.base.as_ref().map(|s| s.mode) != c.agent.as_ref().map(|s| s.mode)
        && c.base.is_some()
        && c.agent.is_some()
    {
        out.push_str(&format!(
            "mode {} → {}\n",
            mode_of(&c.base),
            mode_of(&c.agent)
        ));
    }
    out.push_str(
        &similar::TextDiff::from_lines(o.as_ref(), n.as_ref())
            .unified_diff()
            .context_radius(3)
            .header(&a, &b)
            .to_string(),
    );
    Ok(out)
}

/// A change with its line counts, as `workspace diff --json` prints it.
#[derive(Debug, serde::Serialize)]
pub struct DiffEntry {
    #[serde(flatten)]
    pub change: Change,
    pub lines: LineStat,
}

/// Renders one change of a diff (it keeps the view it reads open).
pub type Renderer = Box<dyn Fn(&Change, bool) -> Result<String>>;

/// The workspace's changes (at or below `paths`) with line counts.
pub fn diff(ws: &Workspace, paths: &[Vec<u8>]) -> Result<(Vec<DiffEntry>, Renderer)> {
    let r = ws.load()?;
    let view = ws.view(&r)?;
    let cs = crate::changes::changes(
        &ws.store,
        r.base_tree,
        &ws.upper(),
        &view.path,
        &r.project,
        paths,
    )?;
    let mut out = Vec::new();
    for c in cs {
        let lines = line_stat(&ws.store, &view.path, &c)?;
        out.push(DiffEntry { change: c, lines });
    }
    let store = ws.store.clone();
    let render_fn =
        move |c: &Change, reveal: bool| render(&store, &view.path, &r.project, c, reveal);
    Ok((out, Box::new(render_fn)))
}
