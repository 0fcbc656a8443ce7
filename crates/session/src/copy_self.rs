//! The supervisor's files: this very binary with the dynamic loader and
//! libraries it runs with, so it starts inside any root filesystem (a
//! Debian bot, a static busybox image) without depending on its libc.

use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The files this process runs from: (the executable, the shared objects
/// it mapped, the loader among them).
fn mapped_files() -> Result<(PathBuf, Vec<PathBuf>)> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let mut libs = BTreeSet::new();
    let mut exe = None;
    for line in maps.lines() {
        let Some(path) = line.split_whitespace().nth(5) else {
            continue;
        };
        if !path.starts_with('/') {
            continue;
        }
        let p = PathBuf::from(path);
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.contains(".so") {
            libs.insert(p);
        } else if line
            .split_whitespace()
            .nth(1)
            .is_some_and(|perm| perm.contains('x'))
        {
            exe = Some(p);
        }
    }
    let exe = exe.context("cannot tell which file this program runs from")?;
    Ok((exe, libs.into_iter().collect()))
}

/// Whether this process maps no shared object: a static binary, which
/// starts where there is no libc or loader.
pub(crate) fn is_static() -> Result<bool> {
    Ok(mapped_files()?.1.is_empty())
}

/// The loader's file name among the shared objects.
fn loader_name(libs: &[PathBuf]) -> Result<String> {
    libs.iter()
        .filter_map(|l| l.file_name().map(|n| n.to_string_lossy().into_owned()))
        .find(|n| n.starts_with("ld-linux") || n.starts_with("ld-musl") || n.starts_with("ld64"))
        .context("this botyard maps shared objects but no loader; copy the binary alone")
}

/// Copies the binary (as `botyard`) and its loader and libraries into
/// `dir`. Returns the command line that starts it from `at` (where `dir`
/// appears inside a sandbox).
pub fn copy_self(dir: &Path, at: &Path) -> Result<Vec<String>> {
    let (exe, libs) = mapped_files()?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let copy = |from: &Path, name: &str| -> Result<()> {
        let to = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::copy(from, &tmp)
            .with_context(|| format!("cannot copy {} to {}", from.display(), dir.display()))?;
        std::fs::rename(&tmp, &to)?;
        Ok(())
    };
    copy(&exe, "botyard")?;
    for l in &libs {
        copy(l, &l.file_name().unwrap().to_string_lossy())?;
    }
    entrypoint(&libs, at)
}

fn entrypoint(libs: &[PathBuf], at: &Path) -> Result<Vec<String>> {
    let at = at.to_string_lossy();
    // A static binary (the supervisor image's) starts by itself.
    if libs.is_empty() {
        return Ok(vec![format!("{at}/botyard")]);
    }
    let loader = loader_name(libs)?;
    Ok(vec![
        format!("{at}/{loader}"),
        "--library-path".into(),
        at.to_string(),
        format!("{at}/botyard"),
    ])
}

/// The small supervisor (crates/supervisor) a build puts beside
/// `botyard`: it starts in about half the time of all of botyard, so a
/// sandbox runs it instead when it carries the same supervise code.
const LEAN: &str = "botyard-supervisor";

/// This build of the supervise code (see build.rs).
pub(crate) const BUILD_ID: &str = env!("BOTYARD_SUPERVISE_BUILD");

/// What the supervisor's files are made from: this binary and the libraries
/// it maps, and the small supervisor beside it if there is one.
struct Sources {
    exe: PathBuf,
    libs: Vec<PathBuf>,
    lean: Option<PathBuf>,
}

impl Sources {
    fn find() -> Result<Sources> {
        let (exe, libs) = mapped_files()?;
        // Only a dynamic botyard: its loader and libraries go with the
        // lean binary, which must need no other.
        let lean =
            Some(exe.with_file_name(LEAN)).filter(|l| !libs.is_empty() && *l != exe && l.is_file());
        Ok(Sources { exe, libs, lean })
    }

    /// The copy's name: the identity of every binary it is made from, so
    /// an upgrade of either gets a new one.
    fn key(&self) -> Result<String> {
        let mut key = key_of(&self.exe)?;
        if let Some(lean) = &self.lean {
            key = format!("{key}-{}", key_of(lean)?);
        }
        Ok(key)
    }
}

/// A directory holding the supervisor's files for this binary, made once
/// per binary under `root` (keyed by the binaries' identity, so an upgrade
/// gets a new one). Returns it with the command line that starts the
/// supervisor from `at` inside a sandbox.
pub fn supervisor_dir(root: &Path, at: &Path) -> Result<(PathBuf, Vec<String>)> {
    let src = Sources::find()?;
    let key = src.key()?;
    let dir = root.join(&key);
    if !dir.join("botyard").exists() {
        let tmp = root.join(format!(".{key}.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        copy_self(&tmp, at)?;
        if let Some(lean) = &src.lean {
            // One that does not match stays out; this binary supervises.
            let _ = put_lean(&tmp, lean, &src.libs);
        }
        match std::fs::rename(&tmp, &dir) {
            Ok(()) => {}
            Err(_) if dir.join("botyard").exists() => {
                let _ = std::fs::remove_dir_all(&tmp);
            }
            Err(e) => return Err(e).with_context(|| format!("cannot set up {}", dir.display())),
        }
    }
    if !dir.join("botyard").exists() {
        bail!("the supervisor's files are missing from {}", dir.display());
    }
    // Marks it as used now, for gc.
    let _ = std::fs::File::open(&dir).and_then(|f| f.set_modified(std::time::SystemTime::now()));
    Ok((dir, entrypoint(&src.libs, at)?))
}

/// Puts the lean supervisor in `dir` (made by [`copy_self`]) as its
/// `botyard`, once it is shown to run on the libraries there alone and to
/// carry this build's supervise code.
fn put_lean(dir: &Path, lean: &Path, libs: &[PathBuf]) -> Result<()> {
    let candidate = dir.join(".lean");
    std::fs::copy(lean, &candidate)?;
    let loader = dir.join(loader_name(libs)?);
    let run = |args: &[&std::ffi::OsStr]| -> Result<String> {
        let out = std::process::Command::new(&loader)
            .arg("--library-path")
            .arg(dir)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()?;
        if !out.status.success() {
            bail!("{} failed", lean.display());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let checked = run(&["--list".as_ref(), candidate.as_os_str()]).and_then(|libs| {
        // Every library it needs resolves to the copies here, none to the host.
        let all_here = libs
            .lines()
            .filter_map(|l| l.split_once("=> ").map(|(_, to)| to))
            .all(|to| Path::new(to.split(" (").next().unwrap_or("")).starts_with(dir));
        let id = run(&[
            candidate.as_os_str(),
            "supervise".as_ref(),
            "build-id".as_ref(),
        ])?;
        if !all_here || id.trim() != BUILD_ID {
            bail!("{} is not this build's supervisor", lean.display());
        }
        Ok(())
    });
    match checked {
        Ok(()) => Ok(std::fs::rename(&candidate, dir.join("botyard"))?),
        Err(e) => {
            let _ = std::fs::remove_file(&candidate);
            Err(e)
        }
    }
}

/// The name of this binary's copy.
pub(crate) fn current_key() -> Result<String> {
    Sources::find()?.key()
}

/// A binary's identity on disk.
fn key_of(exe: &Path) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(exe)?;
    Ok(format!(
        "{}-{}-{}-{}",
        md.dev(),
        md.ino(),
        md.size(),
        md.mtime()
    ))
}
