//! `workspace log`: reading a workspace's audit log, whole or as it grows.

use crate::audit::Event;
use crate::state::Workspace;
use anyhow::Result;
use std::io::{BufRead, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The events in a log (unparseable lines are skipped).
pub fn read_log(path: &Path) -> Result<Vec<Event>> {
    let mut tail = LogTail {
        path: path.to_path_buf(),
        pos: 0,
    };
    Ok(tail
        .next_lines()?
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// Reads a workspace's audit log from where it last stopped.
pub struct LogTail {
    path: PathBuf,
    pos: u64,
}

impl LogTail {
    /// From the start of the workspace's log.
    pub fn open(ws: &Workspace) -> Result<LogTail> {
        ws.load()?;
        Ok(LogTail {
            path: ws.audit_log(),
            pos: 0,
        })
    }

    /// The whole lines written since the last call (each with its `\n`);
    /// a line being written is returned by a later call. A log replaced
    /// by a shorter one is read from its start.
    pub fn next_lines(&mut self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return Ok(out);
        };
        if f.metadata()?.len() < self.pos {
            self.pos = 0;
        }
        f.seek(SeekFrom::Start(self.pos))?;
        let mut r = std::io::BufReader::new(f);
        let mut line = String::new();
        while r.read_line(&mut line)? > 0 {
            if !line.ends_with('\n') {
                break;
            }
            self.pos += line.len() as u64;
            out.push(std::mem::take(&mut line));
        }
        Ok(out)
    }
}
