//! The IPC protocol between the host and the supervisor in a kept-alive
//! sandbox, in one place.
//!
//! * Messages travel as files in a directory both sides see (bound at
//!   [`crate::IPC_AT`] in the sandbox): `input/ID.json`, written under a
//!   dot-name and renamed, so the supervisor never reads half of one. A
//!   message that is not JSON is set aside in `errors/` with the reason.
//! * `input/_close` asks the supervisor to exit once it is idle.
//! * The supervisor answers on its stdout with frames: a line
//!   [`START_MARKER`], one JSON object (`{"v": 1, "event": ...}`), a line
//!   [`END_MARKER`]. Lines outside the markers are not frames and are
//!   ignored (a runtime may print its own); a frame that does not parse is
//!   an error naming its line.

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The protocol's version, carried in every frame as `v`.
pub const VERSION: u32 = 1;
/// Lines framing one frame on the supervisor's stdout.
pub const START_MARKER: &str = "---BOTYARD-OUTPUT-START---";
pub const END_MARKER: &str = "---BOTYARD-OUTPUT-END---";
/// The close sentinel's name in `input/`.
pub const CLOSE: &str = "_close";
/// The longest frame a reader accepts (an answer is capped well below).
pub const MAX_FRAME: usize = 64 << 20;

/// How the agent's run on a message ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Success,
    Error,
}

/// What the supervisor says about a message: `taken` when it starts the
/// agent on it, `output` as the agent's stdout arrives, then one `result`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "event", rename_all = "lowercase", deny_unknown_fields)]
pub enum Frame {
    Taken {
        message: String,
    },
    Output {
        message: String,
        data: String,
    },
    Result {
        message: String,
        status: Status,
        exit_code: i32,
        output: String,
        truncated: bool,
    },
}

impl Frame {
    /// The message the frame is about.
    pub fn message(&self) -> &str {
        match self {
            Frame::Taken { message }
            | Frame::Output { message, .. }
            | Frame::Result { message, .. } => message,
        }
    }

    /// The frame as the supervisor writes it: markers and one JSON line.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(256);
        let _ = writeln!(buf, "{START_MARKER}");
        let _ = serde_json::to_writer(
            &mut buf,
            &Versioned {
                v: VERSION,
                frame: self,
            },
        );
        let _ = writeln!(buf);
        let _ = writeln!(buf, "{END_MARKER}");
        buf
    }

    /// Decodes the JSON between the markers.
    pub fn decode(body: &[u8]) -> std::result::Result<Frame, String> {
        let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let serde_json::Value::Object(mut obj) = v else {
            return Err("not a JSON object".into());
        };
        match obj.remove("v") {
            Some(serde_json::Value::Number(n)) if n.as_u64() == Some(VERSION as u64) => {}
            Some(other) => {
                return Err(format!(
                    "protocol version {other}; this botyard speaks {VERSION}"
                ))
            }
            None => return Err("no protocol version `v`".into()),
        }
        serde_json::from_value(serde_json::Value::Object(obj)).map_err(|e| e.to_string())
    }
}

#[derive(serde::Serialize)]
struct Versioned<'a> {
    v: u32,
    #[serde(flatten)]
    frame: &'a Frame,
}

/// A frame that did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    /// The line of the stream its start marker was on (from 1).
    pub line: u64,
    pub reason: String,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the frame at line {} of the supervisor's output does not parse: {}",
            self.line, self.reason
        )
    }
}

impl std::error::Error for FrameError {}

/// Reads frames out of a supervisor's stdout as it arrives (a `Write`, so
/// it can stand wherever the output goes), calling `on` for each.
pub struct FrameReader<F: FnMut(std::result::Result<Frame, FrameError>)> {
    buf: Vec<u8>,
    /// Inside a frame: its body so far and the line it started on.
    inside: Option<(Vec<u8>, u64)>,
    line: u64,
    on: F,
}

impl<F: FnMut(std::result::Result<Frame, FrameError>)> FrameReader<F> {
    pub fn new(on: F) -> Self {
        FrameReader {
            buf: Vec::new(),
            inside: None,
            line: 0,
            on,
        }
    }

    fn take_line(&mut self, line: &[u8]) {
        self.line += 1;
        if line == START_MARKER.as_bytes() {
            if let Some((_, at)) = self.inside.take() {
                (self.on)(Err(FrameError {
                    line: at,
                    reason: "a new frame started before it ended".into(),
                }));
            }
            self.inside = Some((Vec::new(), self.line));
        } else if line == END_MARKER.as_bytes() {
            if let Some((body, at)) = self.inside.take() {
                (self.on)(Frame::decode(&body).map_err(|reason| FrameError { line: at, reason }));
            }
        } else if let Some((body, at)) = &mut self.inside {
            if body.len() + line.len() > MAX_FRAME {
                let at = *at;
                self.inside = None;
                (self.on)(Err(FrameError {
                    line: at,
                    reason: format!("over {} MiB", MAX_FRAME >> 20),
                }));
            } else {
                body.extend_from_slice(line);
                body.push(b'\n');
            }
        }
    }
}

impl<F: FnMut(std::result::Result<Frame, FrameError>)> Write for FrameReader<F> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(nl) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let line = self.buf[start..start + nl].to_vec();
            self.take_line(&line);
            start += nl + 1;
        }
        self.buf.drain(..start);
        // A line that never ends is not kept whole: cut it into lines.
        if self.buf.len() > MAX_FRAME {
            let line = std::mem::take(&mut self.buf);
            self.take_line(&line);
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whether `id` may name a message file: a plain name of letters, digits,
/// `-` and `_` (the sentinel's leading `_` aside).
pub fn valid_message_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('_')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The host's side of a session's IPC directory.
#[derive(Clone, Debug)]
pub struct Channel {
    dir: PathBuf,
}

impl Channel {
    /// Creates the directory and its `input/` and `errors/` (keeping any
    /// messages already there), owned by the sandbox's user, who takes
    /// messages out of `input/` and sets bad ones aside in `errors/`.
    pub fn create(dir: &Path, uid: u32, gid: u32) -> Result<Channel> {
        for d in [dir.to_path_buf(), dir.join("input"), dir.join("errors")] {
            std::fs::create_dir_all(&d)
                .with_context(|| format!("cannot create the IPC directory {}", d.display()))?;
            std::os::unix::fs::chown(&d, Some(uid), Some(gid))
                .with_context(|| format!("cannot hand {} to the sandbox's user", d.display()))?;
        }
        Ok(Channel {
            dir: std::fs::canonicalize(dir)?,
        })
    }

    /// The channel at `dir` as it is, making `input/` and `errors/` if
    /// missing and changing no owner (inside a sandbox, or a directory
    /// whose owner the caller cannot know).
    pub fn open(dir: &Path) -> Result<Channel> {
        for d in [dir.join("input"), dir.join("errors")] {
            std::fs::create_dir_all(&d)
                .with_context(|| format!("cannot create the IPC directory {}", d.display()))?;
        }
        Ok(Channel {
            dir: dir.to_path_buf(),
        })
    }

    /// Removes what an earlier session left in `dir` (the next
    /// [`Channel::create`] starts empty: nothing is delivered again).
    pub fn clear(dir: &Path) -> Result<()> {
        match std::fs::symlink_metadata(dir) {
            Ok(_) => fs::walk::remove_path(dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", dir.display())),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `input/`, opened without following a symlink at either step: the
    /// sandbox owns the directory and may have put one there, and what
    /// the host writes must land in this directory and nowhere else.
    fn input(&self) -> Result<rustix::fd::OwnedFd> {
        use rustix::fs::{Mode, OFlags};
        let flags = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::RDONLY;
        let dir = rustix::fs::open(&self.dir, flags, Mode::empty())
            .with_context(|| format!("cannot open the IPC directory {}", self.dir.display()))?;
        rustix::fs::openat(&dir, "input", flags, Mode::empty()).with_context(|| {
            format!(
                "cannot open {}/input (not a directory, or a symlink the sandbox made)",
                self.dir.display()
            )
        })
    }

    /// Delivers message `id`: written under a dot-name, then renamed, so
    /// the supervisor never reads half of it.
    pub fn deliver(&self, id: &str, body: &[u8]) -> Result<()> {
        use rustix::fs::{Mode, OFlags};
        if !valid_message_id(id) {
            bail!(
                "message id {} cannot name a file; use letters, digits, - and _",
                store::quote_str(id)
            );
        }
        let input = self.input()?;
        let tmp = format!(".{id}.tmp");
        let _ = rustix::fs::unlinkat(&input, &tmp, rustix::fs::AtFlags::empty());
        let fd = rustix::fs::openat(
            &input,
            &tmp,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .with_context(|| format!("cannot write message {id} to {}/input", self.dir.display()))?;
        std::fs::File::from(fd).write_all(body)?;
        rustix::fs::renameat(&input, &tmp, &input, format!("{id}.json"))
            .with_context(|| format!("cannot deliver message {id}"))?;
        Ok(())
    }

    /// Asks the supervisor to exit once idle.
    pub fn close(&self) -> Result<()> {
        use rustix::fs::{Mode, OFlags};
        let input = self.input()?;
        rustix::fs::openat(
            &input,
            CLOSE,
            OFlags::CREATE | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .with_context(|| format!("cannot close the session at {}", self.dir.display()))?;
        Ok(())
    }
}

/// A line on the supervisor's stdin after the secrets, when messages
/// come that way (`supervise --ipc-stdin`): the daemon cannot reach the
/// IPC directory of a pod whose IPC is an emptyDir.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum StdinFrame {
    Deliver { v: u32, id: String, body: String },
    Close { v: u32 },
}

impl StdinFrame {
    /// The frame as one line.
    pub fn line(&self) -> Vec<u8> {
        let mut l = serde_json::to_vec(self).expect("frames serialize");
        l.push(b'\n');
        l
    }
}

/// A message the supervisor took.
#[derive(Debug)]
pub struct Message {
    pub id: String,
    pub body: Vec<u8>,
}

/// The supervisor's side of the IPC directory.
pub struct Inbox {
    dir: PathBuf,
    input: PathBuf,
    /// Messages that could not be removed are not run again (a new file of
    /// the same name after a removal is a new delivery).
    stuck: std::collections::HashSet<String>,
}

impl Inbox {
    pub fn open(dir: &Path) -> Result<Inbox> {
        let input = dir.join("input");
        std::fs::create_dir_all(&input)?;
        Ok(Inbox {
            dir: dir.to_path_buf(),
            input,
            stuck: Default::default(),
        })
    }

    pub fn input(&self) -> &Path {
        &self.input
    }

    /// Whether the host asked to close (the sentinel is taken).
    pub fn take_close(&self) -> bool {
        let p = self.input.join(CLOSE);
        if p.exists() {
            let _ = std::fs::remove_file(p);
            return true;
        }
        false
    }

    /// The next message in name order, taken out of `input/`; bad ones are
    /// set aside on the way.
    pub fn take_next(&mut self) -> Result<Option<Message>> {
        loop {
            let mut names: Vec<String> = std::fs::read_dir(&self.input)?
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".json") && !self.stuck.contains(n))
                .collect();
            names.sort();
            let Some(name) = names.into_iter().next() else {
                return Ok(None);
            };
            let path = self.input.join(&name);
            let Ok(body) = std::fs::read(&path) else {
                continue;
            };
            if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
                self.set_aside(&name, &format!("not JSON: {e}"));
                continue;
            }
            if let Err(e) = std::fs::remove_file(&path) {
                eprintln!(
                    "botyard supervise: cannot remove message {} ({e}); it is not run again",
                    store::quote_str(&name)
                );
                self.stuck.insert(name.clone());
            }
            let id = name.trim_end_matches(".json").to_string();
            return Ok(Some(Message { id, body }));
        }
    }

    /// Moves a message that cannot be used out of the way, with the reason.
    fn set_aside(&self, name: &str, why: &str) {
        let errors = self.dir.join("errors");
        let _ = std::fs::create_dir_all(&errors);
        let _ = std::fs::rename(self.input.join(name), errors.join(name));
        let _ = std::fs::write(errors.join(format!("{name}.error")), format!("{why}\n"));
        eprintln!(
            "botyard supervise: message {} set aside: {why}",
            store::quote_str(name)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_the_sandbox_puts_in_its_channel_is_never_followed() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("ipc");
        let c = Channel::open(&dir).unwrap();
        c.deliver("1", b"{}").unwrap();
        assert!(dir.join("input/1.json").is_file());
        // The sandbox owns the directory: it swaps input/ for a symlink.
        let elsewhere = t.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::rename(dir.join("input"), dir.join("old")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.join("input")).unwrap();
        assert!(c.deliver("2", b"{}").is_err());
        assert!(c.close().is_err());
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
        // A symlink named like the message or the sentinel is not followed.
        std::fs::remove_file(dir.join("input")).unwrap();
        std::fs::rename(dir.join("old"), dir.join("input")).unwrap();
        let target = elsewhere.join("x");
        std::os::unix::fs::symlink(&target, dir.join("input").join(CLOSE)).unwrap();
        assert!(c.close().is_err());
        assert!(!target.exists());
        std::os::unix::fs::symlink(&target, dir.join("input/.3.tmp")).unwrap();
        c.deliver("3", b"{}").unwrap();
        assert!(!target.exists());
        assert!(dir.join("input/3.json").is_file());
    }

    fn read_all(bytes: &[u8]) -> Vec<std::result::Result<Frame, FrameError>> {
        let mut got = Vec::new();
        let mut r = FrameReader::new(|f| got.push(f));
        r.write_all(bytes).unwrap();
        drop(r);
        got
    }

    #[test]
    fn frames_round_trip_byte_by_byte() {
        let frames = vec![
            Frame::Taken {
                message: "7".into(),
            },
            Frame::Output {
                message: "7".into(),
                data: "hi\n---BOTYARD-OUTPUT-END---\n".into(),
            },
            Frame::Result {
                message: "7".into(),
                status: Status::Error,
                exit_code: 3,
                output: "x".into(),
                truncated: true,
            },
        ];
        let mut stream = b"runc says hello\n".to_vec();
        for f in &frames {
            stream.extend(f.encode());
        }
        let mut got = Vec::new();
        let mut r = FrameReader::new(|f| got.push(f.unwrap()));
        for b in &stream {
            r.write_all(std::slice::from_ref(b)).unwrap();
        }
        drop(r);
        assert_eq!(got, frames);
    }

    #[test]
    fn a_frame_that_does_not_parse_names_its_line() {
        let mut s = b"noise\n".to_vec();
        s.extend(format!("{START_MARKER}\n{{\"v\":1,\"event\":\"result\",\"message\":\"1\"}}\n{END_MARKER}\n").as_bytes());
        s.extend(
            format!("{START_MARKER}\n{{\"event\":\"taken\",\"message\":\"1\"}}\n{END_MARKER}\n")
                .as_bytes(),
        );
        s.extend(
            format!(
                "{START_MARKER}\n{{\"v\":2,\"event\":\"taken\",\"message\":\"1\"}}\n{END_MARKER}\n"
            )
            .as_bytes(),
        );
        let got = read_all(&s);
        assert_eq!(got.len(), 3);
        let e: Vec<FrameError> = got.into_iter().map(|r| r.unwrap_err()).collect();
        assert_eq!(e[0].line, 2);
        assert!(e[0].reason.contains("missing field"), "{}", e[0]);
        assert_eq!(e[1].line, 5);
        assert!(e[1].reason.contains("version"), "{}", e[1]);
        assert!(e[2].reason.contains("speaks 1"), "{}", e[2]);
        assert!(e[0].to_string().contains("line 2"));
    }

    #[test]
    fn delivered_messages_are_taken_in_order_and_bad_ones_set_aside() {
        let t = tempfile::tempdir().unwrap();
        let uid = rustix::process::getuid().as_raw();
        let gid = rustix::process::getgid().as_raw();
        let ch = Channel::create(t.path(), uid, gid).unwrap();
        ch.deliver("2", b"{\"b\":1}").unwrap();
        ch.deliver("1", b"{\"a\":1}").unwrap();
        std::fs::write(t.path().join("input/0.json"), b"not json").unwrap();
        assert!(ch.deliver("../x", b"{}").is_err());
        assert!(ch.deliver("_close", b"{}").is_err());
        let mut inbox = Inbox::open(t.path()).unwrap();
        assert!(!inbox.take_close());
        assert_eq!(inbox.take_next().unwrap().unwrap().id, "1");
        let m = inbox.take_next().unwrap().unwrap();
        assert_eq!((m.id.as_str(), m.body.as_slice()), ("2", &b"{\"b\":1}"[..]));
        assert!(inbox.take_next().unwrap().is_none());
        assert!(t.path().join("errors/0.json.error").exists());
        ch.close().unwrap();
        assert!(inbox.take_close());
        assert!(!inbox.take_close());
        Channel::clear(t.path()).unwrap();
        let again = Channel::create(t.path(), uid, gid).unwrap();
        assert!(!again.dir().join("errors/0.json").exists());
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        fn frame() -> impl Strategy<Value = Frame> {
            let id = "[0-9a-z_-]{1,12}";
            prop_oneof![
                id.prop_map(|message| Frame::Taken { message }),
                (id, any::<String>()).prop_map(|(message, data)| Frame::Output { message, data }),
                (
                    id,
                    any::<bool>(),
                    any::<i32>(),
                    any::<String>(),
                    any::<bool>()
                )
                    .prop_map(|(message, ok, exit_code, output, truncated)| {
                        Frame::Result {
                            message,
                            status: if ok { Status::Success } else { Status::Error },
                            exit_code,
                            output,
                            truncated,
                        }
                    }),
            ]
        }

        proptest! {
            /// Frames survive any output around them and any cut of the
            /// stream into writes.
            #[test]
            fn frames_round_trip_through_any_noise(
                frames in proptest::collection::vec(frame(), 0..6),
                noise in proptest::collection::vec("[^\n]{0,20}\n", 0..4),
                cuts in proptest::collection::vec(1usize..64, 1..8),
            ) {
                let mut stream = Vec::new();
                for (i, f) in frames.iter().enumerate() {
                    if let Some(n) = noise.get(i) {
                        stream.extend(n.as_bytes());
                    }
                    stream.extend(f.encode());
                }
                let mut got = Vec::new();
                let mut r = FrameReader::new(|f| got.push(f));
                let mut at = 0;
                for c in cuts.iter().cycle() {
                    if at >= stream.len() {
                        break;
                    }
                    let end = (at + c).min(stream.len());
                    r.write_all(&stream[at..end]).unwrap();
                    at = end;
                }
                drop(r);
                let got: Vec<Frame> = got.into_iter().map(|f| f.unwrap()).collect();
                prop_assert_eq!(got, frames);
            }

            /// Hostile bytes never panic the reader, and every frame it
            /// reports parsed from a whole, versioned object.
            #[test]
            fn hostile_output_never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..8), marker in any::<bool>()) {
                let mut r = FrameReader::new(|f| {
                    if let Err(e) = f {
                        assert!(e.line >= 1 && !e.reason.is_empty(), "{e}");
                    }
                });
                for c in &chunks {
                    if marker {
                        r.write_all(START_MARKER.as_bytes()).unwrap();
                        r.write_all(b"\n").unwrap();
                    }
                    r.write_all(c).unwrap();
                    if marker {
                        r.write_all(b"\n").unwrap();
                        r.write_all(END_MARKER.as_bytes()).unwrap();
                        r.write_all(b"\n").unwrap();
                    }
                }
            }

            #[test]
            fn message_ids_never_name_a_path(id in any::<String>()) {
                if valid_message_id(&id) {
                    prop_assert!(!id.contains('/') && id != "." && id != ".." && !id.starts_with('_'));
                }
            }
        }
    }
}
