//! The `botyard` command line: parses arguments, calls the libraries, prints.

mod cli;
mod cmd;
mod output;
mod progress;

use clap::Parser;

fn main() {
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
