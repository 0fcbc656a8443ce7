//! One file per verb; each turns parsed arguments into library calls and
//! prints the result. Returns the process exit code.

mod bot_adopt;
mod bot_commit;
mod bot_create;
mod bot_diff;
mod bot_fork;
mod bot_log;
mod bot_ls;
mod bot_mount;
mod bot_rebase;
mod bot_reset;
mod bot_rm;
mod csi;
mod df;
mod fsck;
mod gc;
mod group;
mod image_import;
mod image_inspect;
mod image_ls;
mod image_pull;
mod image_rm;
mod init;
mod kube_manifests;
mod message;
mod run;
mod serve;
mod status;
mod supervise;
mod workspace_create;
mod workspace_diff;
mod workspace_log;
mod workspace_ls;
mod workspace_mount;
mod workspace_policy;
mod workspace_reset;
mod workspace_rm;
mod workspace_status;
mod workspace_sync;
mod workspace_watch;

use crate::cli::{BotCommand, Cli, Command, ImageCommand, WorkspaceCommand as Ws};
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
    // A session whose botyard was killed is cleaned up by the next bot
    // verb that touches its bot.
    bot::set_session_reaper(session::reap);
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
        Command::Bot(BotCommand::Log(a)) => bot_log::run(&ctx, a),
        Command::Bot(BotCommand::Fork(a)) => bot_fork::run(&ctx, a),
        Command::Bot(BotCommand::Adopt(a)) => bot_adopt::run(&ctx, a),
        Command::Bot(BotCommand::Rebase(a)) => bot_rebase::run(&ctx, a),
        Command::Bot(BotCommand::Ls(a)) => bot_ls::ls(&ctx, a),
        Command::Bot(BotCommand::Show(a)) => bot_ls::show(&ctx, a),
        Command::Bot(BotCommand::Rm(a)) => bot_rm::run(&ctx, a),
        Command::Workspace(Ws::Create(a)) => workspace_create::run(&ctx, a),
        Command::Workspace(Ws::Mount(a)) => workspace_mount::mount(&ctx, a),
        Command::Workspace(Ws::Unmount(a)) => workspace_mount::unmount(&ctx, a),
        Command::Workspace(Ws::AuditWatcher(a)) => workspace_mount::audit_watcher(&ctx, a),
        Command::Workspace(Ws::Ls(a)) => workspace_ls::ls(&ctx, a),
        Command::Workspace(Ws::Show(a)) => workspace_ls::show(&ctx, a),
        Command::Workspace(Ws::Status(a)) => workspace_status::run(&ctx, a),
        Command::Workspace(Ws::Log(a)) => workspace_log::run(&ctx, a),
        Command::Workspace(Ws::Diff(a)) => workspace_diff::run(&ctx, a),
        Command::Workspace(Ws::Sync(a)) => workspace_sync::run(&ctx, a),
        Command::Workspace(Ws::Reset(a)) => workspace_reset::run(&ctx, a),
        Command::Workspace(Ws::Rm(a)) => workspace_rm::run(&ctx, a),
        Command::Workspace(Ws::Watch(a)) => workspace_watch::run(&ctx, a),
        Command::Workspace(Ws::Policy(a)) => workspace_policy::run(&ctx, a),
        Command::Run(a) => run::run(&ctx, *a),
        Command::Supervise(a) => supervise::run(&ctx, a),
        Command::Serve(a) => serve::run(&ctx, a),
        Command::Csi(a) => csi::run(&ctx, a),
        Command::Kube(crate::cli::KubeCommand::Manifests(a)) => kube_manifests::run(&ctx, a),
        Command::Group(c) => group::run(&ctx, c),
        Command::Message(c) => message::run(&ctx, c),
        Command::Status(a) => status::run(&ctx, a),
        Command::Df(a) => df::run(&ctx, a),
        Command::Gc(a) => gc::run(&ctx, a),
        Command::Fsck(a) => fsck::run(&ctx, a),
    }
}

/// The daemon `addr` names, by default the store's.
pub fn daemon_client(ctx: &Ctx, addr: &crate::cli::DaemonAddr) -> Result<daemon::Client> {
    daemon::Client::resolve(&ctx.open()?, addr.daemon.as_deref())
}

/// Parses NAME:TAG with a one-line error that says what is allowed.
pub fn image_name(s: &str) -> Result<store::ImageName> {
    s.parse()
        .map_err(|e: store::NameError| anyhow::anyhow!("{e}"))
}

/// Paths given on the command line, relative to a project or bot root:
/// `./` and trailing slashes are fine; absolute paths and `..` are not.
pub fn rel_paths(paths: &[std::path::PathBuf]) -> Result<Vec<Vec<u8>>> {
    use std::path::Component;
    let mut out = Vec::new();
    for p in paths {
        let mut parts: Vec<&[u8]> = Vec::new();
        for c in p.components() {
            match c {
                Component::Normal(s) => parts.push(s.as_encoded_bytes()),
                Component::CurDir => {}
                _ => anyhow::bail!(
                    "path {} must be relative to the project, without '..'",
                    p.display()
                ),
            }
        }
        if parts.is_empty() {
            anyhow::bail!(
                "path {} names the project root; leave it out to mean everything",
                p.display()
            );
        }
        out.push(parts.join(&b'/'));
    }
    Ok(out)
}
