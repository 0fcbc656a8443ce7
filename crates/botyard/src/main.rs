//! The `botyard` command line: parses arguments, calls the libraries, prints.

mod cli;
mod cmd;
mod output;
mod progress;
mod prompt;

use clap::Parser;

fn main() {
    // Die quietly when a pipe reader goes away (`botyard bot diff | head`),
    // like other command-line tools, instead of panicking on the write.
    // SAFETY: setting a signal to its default disposition before any thread
    // exists has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = cli::Cli::parse();
    let code = match cmd::run(cli) {
        Ok(code) => code,
        Err(err) => {
            output::print_error(&err);
            1
        }
    };
    std::process::exit(code);
}
