//! Questions to a person at a terminal.

use anyhow::{bail, Result};
use std::io::{BufRead, IsTerminal, Write};

/// Whether there is a person to ask (stdin is a terminal).
pub fn can_ask() -> bool {
    std::io::stdin().is_terminal()
}

/// Asks `question` on stderr and reads one line; `None` at end of input.
pub fn ask(question: &str) -> Result<Option<String>> {
    eprint!("{question} ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line)? == 0 {
        return Ok(None);
    }
    Ok(Some(line.trim().to_string()))
}

/// A yes/no question (default no). `what` names the flag that skips it,
/// for when no terminal is there to answer.
pub fn confirm(question: &str, skip_flag: &str) -> Result<bool> {
    if !can_ask() {
        bail!("{question} — stdin is not a terminal to answer; pass {skip_flag} to go ahead without asking");
    }
    Ok(matches!(
        ask(&format!("{question} [y/N]"))?.as_deref(),
        Some("y" | "Y" | "yes")
    ))
}
