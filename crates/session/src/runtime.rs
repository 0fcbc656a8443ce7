//! Which OCI runtime starts sandboxes.

use anyhow::{bail, Result};
use std::path::PathBuf;

/// runc by default; crun, youki, or a path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Runtime {
    #[default]
    Runc,
    Crun,
    Youki,
    Path(PathBuf),
}

impl std::str::FromStr for Runtime {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Runtime> {
        Ok(match s {
            "runc" => Runtime::Runc,
            "crun" => Runtime::Crun,
            "youki" => Runtime::Youki,
            p if p.contains('/') => Runtime::Path(PathBuf::from(p)),
            other => bail!("unknown runtime '{other}'; use runc, crun, youki or a path to one"),
        })
    }
}

impl std::fmt::Display for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Runtime::Runc => f.write_str("runc"),
            Runtime::Crun => f.write_str("crun"),
            Runtime::Youki => f.write_str("youki"),
            Runtime::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

impl Runtime {
    /// The runtime's executable, or an error naming what to install.
    pub fn resolve(&self) -> Result<PathBuf> {
        let (name, package) = match self {
            Runtime::Path(p) => {
                if p.is_file() {
                    return Ok(p.clone());
                }
                bail!("runtime {} does not exist", p.display());
            }
            Runtime::Runc => ("runc", "the Debian package runc (apt-get install runc)"),
            Runtime::Crun => ("crun", "the Debian package crun (apt-get install crun)"),
            Runtime::Youki => (
                "youki",
                "youki (see its releases; it is not packaged in Debian 12)",
            ),
        };
        let path =
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
        bail!("the OCI runtime {name} is not installed; install {package}, or pick another with --runtime")
    }
}
