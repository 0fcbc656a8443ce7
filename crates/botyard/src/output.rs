//! Printing: human sizes, tables, JSON and one-line errors.

/// An error on one line: what went wrong, why (the causes, such as the OS
/// error), and what to do last. A message written "what; what to do" gets
/// its causes before the hint, not after it.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut chain = err.chain();
    let top = chain.next().map(|e| e.to_string()).unwrap_or_default();
    let causes: Vec<String> = chain.map(|e| e.to_string()).collect();
    let msg = if causes.is_empty() {
        top
    } else {
        match top.split_once("; ") {
            Some((what, hint)) => format!("{what}: {}; {hint}", causes.join(": ")),
            None => format!("{top}: {}", causes.join(": ")),
        }
    };
    msg.replace('\n', " ")
}

/// Prints an error on one line, with a hint for a full disk.
pub fn print_error(err: &anyhow::Error) {
    let mut msg = one_line(err);
    if store::is_no_space(err) {
        msg.push_str("; the store's filesystem is full: free space or run `botyard gc`, then retry (the store was left as it was)");
    }
    eprintln!("botyard: error: {msg}");
}

/// `n` and the noun for it: "1 object", "2 objects".
pub fn n(count: u64, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

/// A Unix time in seconds (as JSON) as an RFC 3339 time, or `-`.
pub fn timestamp(v: &serde_json::Value) -> String {
    v.as_f64()
        .map(|t| {
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(t),
            )
            .to_string()
        })
        .unwrap_or_else(|| "-".into())
}

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Prints rows as left-aligned columns.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(header.iter().map(|s| s.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}
