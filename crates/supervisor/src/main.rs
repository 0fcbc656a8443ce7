//! The supervisor image's binary: `supervise` exactly as `botyard
//! supervise` takes it, without the rest of botyard (the daemon, the CSI
//! driver, registries), so a static build is small and quick. In the image
//! it is `/botyard`, and pods start it as `botyard supervise …`.

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "botyard",
    version,
    about = "botyard's supervisor, for sandboxes and pods"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run an agent as a sandbox's first process (see `botyard supervise --help`).
    Supervise(session::SuperviseArgs),
}

fn main() {
    // SAFETY: the default disposition, set before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let Command::Supervise(a) = Cli::parse().command;
    let code = session::run_supervise(a).unwrap_or_else(|e| {
        eprintln!("botyard: error: {e:#}");
        1
    });
    std::process::exit(code);
}
