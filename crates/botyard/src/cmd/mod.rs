//! One file per verb; each turns parsed arguments into library calls and
//! prints the result. Returns the process exit code.

mod bot_commit;
mod bot_create;
mod bot_diff;
mod bot_ls;
mod bot_mount;
mod bot_reset;
mod bot_rm;
mod df;
mod fsck;
mod gc;
mod image_import;
mod image_inspect;
mod image_ls;
mod image_pull;
mod image_rm;
mod init;

use crate::cli::{BotCommand, Cli, Command, ImageCommand};
use crate::progress::Bars;
use anyhow::Result;
use std::path::PathBuf;
use store::Store;

pub struct Ctx {
    pub store_path: PathBuf,
    pub quiet: bool,
    pub bars: Bars,
}

impl Ctx {
    pub fn open(&self) -> Result<Store> {
        Store::open(&self.store_path)
    }

    /// Prints a line for people (suppressed by --quiet).
    pub fn say(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            println!("{}", msg.as_ref());
        }
    }
}

pub fn run(cli: Cli) -> Result<i32> {
    let ctx = Ctx {
        store_path: cli.store.clone().unwrap_or_else(store::default_store_path),
        quiet: cli.quiet,
        bars: Bars::new(cli.quiet),
    };
    match cli.command {
        Command::Init(a) => init::run(&ctx, a),
        Command::Image(ImageCommand::Import(a)) => image_import::run(&ctx, a),
        Command::Image(ImageCommand::Pull(a)) => image_pull::run(&ctx, a),
        Command::Image(ImageCommand::Ls(a)) => image_ls::run(&ctx, a),
        Command::Image(ImageCommand::Inspect(a)) => image_inspect::run(&ctx, a),
        Command::Image(ImageCommand::Rm(a)) => image_rm::run(&ctx, a),
        Command::Bot(BotCommand::Create(a)) => bot_create::run(&ctx, a),
        Command::Bot(BotCommand::Mount(a)) => bot_mount::mount(&ctx, a),
        Command::Bot(BotCommand::Unmount(a)) => bot_mount::unmount(&ctx, a),
        Command::Bot(BotCommand::Commit(a)) => bot_commit::run(&ctx, a),
        Command::Bot(BotCommand::Diff(a)) => bot_diff::run(&ctx, a),
        Command::Bot(BotCommand::Reset(a)) => bot_reset::run(&ctx, a),
        Command::Bot(BotCommand::Ls(a)) => bot_ls::ls(&ctx, a),
        Command::Bot(BotCommand::Show(a)) => bot_ls::show(&ctx, a),
        Command::Bot(BotCommand::Rm(a)) => bot_rm::run(&ctx, a),
        Command::Df(a) => df::run(&ctx, a),
        Command::Gc(a) => gc::run(&ctx, a),
        Command::Fsck(a) => fsck::run(&ctx, a),
    }
}

/// Parses NAME:TAG with a one-line error that says what is allowed.
pub fn image_name(s: &str) -> Result<store::ImageName> {
    s.parse()
        .map_err(|e: store::NameError| anyhow::anyhow!("{e}"))
}
