//! Writing into the project: every path is resolved below the project root
//! without following symlinks (`openat2` with `RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS`), every file is written to a temporary name in its
//! directory, synced, and renamed over the old one, so a reader or a crash
//! sees the old file or the new one. Temporary names go to a journal first;
//! the next sync removes what a killed one left.

use anyhow::{bail, Context, Result};
use fs::walk::{components, open_path};
use rustix::fd::OwnedFd;
use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags, Timespec, Timestamps};
use std::io::{Read, Write};
use std::path::Path;

const TMP_PREFIX: &str = ".botyard-sync-";

fn io<T>(r: rustix::io::Result<T>) -> std::io::Result<T> {
    r.map_err(std::io::Error::from)
}

pub(crate) struct Host {
    pub root: OwnedFd,
    journal: std::fs::File,
    counter: u64,
}

fn shown(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

fn split(path: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let c = components(path);
    let Some((name, parents)) = c.split_last() else {
        bail!("the project root itself cannot be changed")
    };
    Ok((parents.join(&b'/'), name.to_vec()))
}

impl Host {
    /// Opens the project and removes temporary files a killed sync left
    /// (listed in `journal`).
    pub fn open(project: &Path, journal: &Path) -> Result<Host> {
        let root = fs::walk::open_dir(project)?;
        if let Ok(text) = std::fs::read(journal) {
            for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let Ok((parent, name)) = split(line) else {
                    continue;
                };
                if !name.starts_with(TMP_PREFIX.as_bytes()) {
                    continue;
                }
                if let Ok(Some(dir)) = open_path(&root, &parent, OFlags::RDONLY | OFlags::DIRECTORY)
                {
                    let _ = rustix::fs::unlinkat(&dir, name.as_slice(), AtFlags::empty());
                }
            }
        }
        let journal = std::fs::File::create(journal)
            .with_context(|| format!("cannot write {}", journal.display()))?;
        Ok(Host {
            root,
            journal,
            counter: 0,
        })
    }

    /// Done: nothing temporary is left.
    pub fn finish(self, journal: &Path) -> Result<()> {
        drop(self.journal);
        std::fs::remove_file(journal)?;
        Ok(())
    }

    fn parent(&self, parent: &[u8], path: &[u8]) -> Result<OwnedFd> {
        match open_path(&self.root, parent, OFlags::RDONLY | OFlags::DIRECTORY) {
            Ok(Some(d)) => Ok(d),
            Ok(None) => bail!(
                "the directory of {} is gone from the project; sync its directory first",
                shown(path)
            ),
            Err(e) => Err(std::io::Error::from(e)).with_context(|| {
                format!(
                    "cannot open the directory of {} in the project (a symlink or a file is in the way)",
                    shown(path)
                )
            }),
        }
    }

    fn temp_name(&mut self, parent: &[u8]) -> Result<Vec<u8>> {
        self.counter += 1;
        let name = format!("{TMP_PREFIX}{}-{}", std::process::id(), self.counter).into_bytes();
        let mut line = fs::walk::join(parent, &name);
        line.push(b'\n');
        self.journal.write_all(&line)?;
        Ok(name)
    }

    /// Owner for something new in `dir`: the directory's owner, so files
    /// botyard writes belong to whoever owns the project.
    fn owner_of(dir: &OwnedFd) -> Result<(u32, u32)> {
        let st = io(rustix::fs::fstat(dir))?;
        Ok((st.st_uid, st.st_gid))
    }

    /// Writes `src` (read to the end) as the regular file `path` with
    /// `mode` and `mtime`; an existing file keeps its owner. What was read
    /// must hash to `expect` (the content the gate checked; the agent may
    /// write meanwhile), or nothing changes. Returns the new file.
    pub fn write_file(
        &mut self,
        path: &[u8],
        src: &mut dyn Read,
        expect: &store::Hash,
        mode: u32,
        mtime: Option<(i64, u32)>,
    ) -> Result<(u64, std::fs::File)> {
        let (parent, name) = split(path)?;
        let dir = self.parent(&parent, path)?;
        let owner = match rustix::fs::statat(&dir, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => (st.st_uid, st.st_gid),
            Err(_) => Self::owner_of(&dir)?,
        };
        let tmp = self.temp_name(&parent)?;
        let fd = io(rustix::fs::openat(
            &dir,
            tmp.as_slice(),
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        ))
        .with_context(|| format!("cannot write into the directory of {}", shown(path)))?;
        let mut f = std::fs::File::from(fd);
        let res = (|| -> Result<(store::Hash, u64)> {
            let mut hasher = blake3::Hasher::new();
            let mut buf = vec![0u8; 1 << 16];
            let mut n = 0u64;
            loop {
                let k = src.read(&mut buf)?;
                if k == 0 {
                    break;
                }
                hasher.update(&buf[..k]);
                f.write_all(&buf[..k])?;
                n += k as u64;
            }
            let _ = rustix::fs::fchown(
                &f,
                Some(rustix::fs::Uid::from_raw(owner.0)),
                Some(rustix::fs::Gid::from_raw(owner.1)),
            );
            io(rustix::fs::fchmod(&f, Mode::from_raw_mode(mode)))?;
            if let Some((s, ns)) = mtime {
                let t = Timespec {
                    tv_sec: s,
                    tv_nsec: ns as _,
                };
                io(rustix::fs::futimens(
                    &f,
                    &Timestamps {
                        last_access: t,
                        last_modification: t,
                    },
                ))?;
            }
            f.sync_all()?;
            Ok((hasher.finalize().into(), n))
        })();
        let n = match res {
            Ok((h, _)) if h != *expect => {
                let _ = rustix::fs::unlinkat(&dir, tmp.as_slice(), AtFlags::empty());
                bail!(
                    "{} changed while it was being synced; sync again",
                    shown(path)
                );
            }
            Ok((_, n)) => n,
            Err(e) => {
                let _ = rustix::fs::unlinkat(&dir, tmp.as_slice(), AtFlags::empty());
                return Err(e).with_context(|| format!("cannot write {}", shown(path)));
            }
        };
        self.replace(&dir, &tmp, &name, path)?;
        Ok((n, f))
    }

    /// Renames the temporary `tmp` over `name`; a directory in the way
    /// (the change is a type change the caller checked) goes first.
    fn replace(&self, dir: &OwnedFd, tmp: &[u8], name: &[u8], path: &[u8]) -> Result<()> {
        if let Ok(st) = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory {
                remove_tree(dir, name)?;
            }
        }
        io(rustix::fs::renameat(dir, tmp, dir, name)).with_context(|| {
            let _ = rustix::fs::unlinkat(dir, tmp, AtFlags::empty());
            format!("cannot move the new {} into place", shown(path))
        })?;
        let _ = rustix::fs::fsync(dir);
        Ok(())
    }

    pub fn symlink(&mut self, path: &[u8], target: &[u8]) -> Result<()> {
        let (parent, name) = split(path)?;
        let dir = self.parent(&parent, path)?;
        let owner = Self::owner_of(&dir)?;
        let tmp = self.temp_name(&parent)?;
        io(rustix::fs::symlinkat(target, &dir, tmp.as_slice()))
            .with_context(|| format!("cannot create the symlink {}", shown(path)))?;
        let _ = rustix::fs::chownat(
            &dir,
            tmp.as_slice(),
            Some(rustix::fs::Uid::from_raw(owner.0)),
            Some(rustix::fs::Gid::from_raw(owner.1)),
            AtFlags::SYMLINK_NOFOLLOW,
        );
        self.replace(&dir, &tmp, &name, path)
    }

    /// Makes `path` a directory with `mode` (keeping one that is there).
    pub fn mkdir(&mut self, path: &[u8], mode: u32) -> Result<()> {
        let (parent, name) = split(path)?;
        let dir = self.parent(&parent, path)?;
        match rustix::fs::statat(&dir, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st)
                if rustix::fs::FileType::from_raw_mode(st.st_mode)
                    == rustix::fs::FileType::Directory => {}
            Ok(_) => {
                io(rustix::fs::unlinkat(
                    &dir,
                    name.as_slice(),
                    AtFlags::empty(),
                ))?;
                self.mkdir_new(&dir, &name, path)?;
            }
            Err(_) => self.mkdir_new(&dir, &name, path)?,
        }
        self.chmod(path, mode)
    }

    fn mkdir_new(&self, dir: &OwnedFd, name: &[u8], path: &[u8]) -> Result<()> {
        let owner = Self::owner_of(dir)?;
        io(rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700)))
            .with_context(|| format!("cannot create the directory {}", shown(path)))?;
        let _ = rustix::fs::chownat(
            dir,
            name,
            Some(rustix::fs::Uid::from_raw(owner.0)),
            Some(rustix::fs::Gid::from_raw(owner.1)),
            AtFlags::SYMLINK_NOFOLLOW,
        );
        Ok(())
    }

    pub fn chmod(&mut self, path: &[u8], mode: u32) -> Result<()> {
        let fd = match open_path(&self.root, path, OFlags::RDONLY) {
            Ok(Some(fd)) => fd,
            _ => bail!("{} is gone from the project", shown(path)),
        };
        io(rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)))
            .with_context(|| format!("cannot chmod {}", shown(path)))?;
        Ok(())
    }

    /// Removes `path` (a directory with everything below it).
    pub fn remove(&mut self, path: &[u8]) -> Result<()> {
        let (parent, name) = split(path)?;
        let dir = self.parent(&parent, path)?;
        match rustix::fs::statat(&dir, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st)
                if rustix::fs::FileType::from_raw_mode(st.st_mode)
                    == rustix::fs::FileType::Directory =>
            {
                remove_tree(&dir, &name)
            }
            Ok(_) => {
                io(rustix::fs::unlinkat(
                    &dir,
                    name.as_slice(),
                    AtFlags::empty(),
                ))
                .with_context(|| format!("cannot delete {}", shown(path)))?;
                Ok(())
            }
            Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(std::io::Error::from(e).into()),
        }
    }

    /// Moves `from` to `to`, refusing to replace anything at `to`.
    pub fn rename(&mut self, from: &[u8], to: &[u8]) -> Result<()> {
        let (fp, fname) = split(from)?;
        let (tp, tname) = split(to)?;
        let fdir = self.parent(&fp, from)?;
        let tdir = self.parent(&tp, to)?;
        io(rustix::fs::renameat_with(
            &fdir,
            fname.as_slice(),
            &tdir,
            tname.as_slice(),
            RenameFlags::NOREPLACE,
        ))
        .with_context(|| format!("cannot rename {} to {}", shown(from), shown(to)))?;
        let _ = rustix::fs::fsync(&fdir);
        let _ = rustix::fs::fsync(&tdir);
        Ok(())
    }
}

/// Removes `name` in `dir` and everything below it, never following a
/// symlink, at any depth.
fn remove_tree(dir: &OwnedFd, name: &[u8]) -> Result<()> {
    fs::walk::remove_tree(dir, name)?;
    Ok(())
}

/// Removes `path` (and what is below it) from the tree at `root` (an upper
/// dir); a missing path is fine.
pub(crate) fn remove_below(root: &OwnedFd, path: &[u8]) -> Result<()> {
    let c = components(path);
    let Some((name, parents)) = c.split_last() else {
        return Ok(());
    };
    let parent = parents.join(&b'/');
    let Ok(Some(dir)) = open_path(root, &parent, OFlags::RDONLY | OFlags::DIRECTORY) else {
        return Ok(());
    };
    match rustix::fs::statat(&dir, *name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st)
            if rustix::fs::FileType::from_raw_mode(st.st_mode)
                == rustix::fs::FileType::Directory =>
        {
            remove_tree(&dir, name)
        }
        Ok(_) => Ok(io(rustix::fs::unlinkat(&dir, *name, AtFlags::empty()))?),
        Err(_) => Ok(()),
    }
}
