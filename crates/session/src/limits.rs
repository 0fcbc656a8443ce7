//! What one sandbox may use of the machine, by default and as asked: the
//! same defaults for `botyard run` and the daemon.

use anyhow::{bail, Result};

/// Memory, CPU and process limits of a sandbox; `None` is no limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// Bytes of memory (and swap) the sandbox's processes may use.
    pub memory: Option<u64>,
    /// CPUs' worth of time (fractions allowed).
    pub cpus: Option<f64>,
    /// Processes and threads (stops fork bombs).
    pub pids: Option<i64>,
}

/// Processes a sandbox may have by default.
pub const DEFAULT_PIDS: i64 = 1024;

impl Limits {
    /// Half of this machine's memory, half of its CPUs (at least one),
    /// 1024 processes: one agent cannot take the machine from the others.
    pub fn host_default() -> Limits {
        let mem = rustix::system::sysinfo();
        let total = mem.totalram as u64 * mem.mem_unit.max(1) as u64;
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        Limits {
            memory: (total > 0).then_some(total / 2),
            cpus: Some((cpus as f64 / 2.0).max(1.0)),
            pids: Some(DEFAULT_PIDS),
        }
    }

    /// The defaults, described for `--help` and the README.
    pub fn describe_default() -> String {
        let d = Limits::host_default();
        format!(
            "half of this machine's memory ({}) and CPUs ({}), {} processes",
            d.memory
                .map(|m| format!("{} MiB", m >> 20))
                .unwrap_or_else(|| "unknown".into()),
            d.cpus.unwrap_or(1.0),
            DEFAULT_PIDS
        )
    }
}

/// A memory limit as written: a size (`512MiB`, `2G`) or `none`.
pub fn parse_memory(s: &str, parse_size: impl Fn(&str) -> Result<u64>) -> Result<Option<u64>> {
    if s == "none" {
        return Ok(None);
    }
    let v = parse_size(s)?;
    if v < 4 << 20 {
        bail!("{s} is too little memory for a sandbox; give at least 4MiB, or `none` for no limit");
    }
    Ok(Some(v))
}

/// A CPU limit as written: a positive number (`0.5`, `2`) or `none`.
pub fn parse_cpus(s: &str) -> Result<Option<f64>> {
    if s == "none" {
        return Ok(None);
    }
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(Some(v)),
        _ => bail!("{s} is not a number of CPUs; give a positive number like 0.5 or 2, or `none`"),
    }
}

/// A process limit as written: a positive count or `none`.
pub fn parse_pids(s: &str) -> Result<Option<i64>> {
    if s == "none" {
        return Ok(None);
    }
    match s.parse::<i64>() {
        Ok(v) if v > 0 => Ok(Some(v)),
        _ => bail!("{s} is not a process count; give a positive number like 1024, or `none`"),
    }
}
