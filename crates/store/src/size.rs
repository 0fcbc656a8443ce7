//! Sizes as people write them.

use anyhow::{bail, Result};

/// Parses "10MB", "512KiB", "2G" or a plain number of bytes.
pub fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("'{s}' is not a size; write e.g. 10MB, 512KiB or 1048576"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "kib" => 1024.0,
        "mib" => 1048576.0,
        "gib" => 1073741824.0,
        other => bail!("unknown size unit '{other}' in '{s}'; use B, KB, MB, GB, KiB, MiB or GiB"),
    };
    Ok((n * mult) as u64)
}
