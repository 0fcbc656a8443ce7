//! The command line's grammar: every verb, flag, default and `--help` text
//! (clap derive); `cmd/` turns each parsed command into library calls.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// botyard gives every AI agent a full, writable, persistent Linux root
/// filesystem that costs almost nothing to store: every file the fleet keeps
/// is stored once, by content.
#[derive(Parser, Debug)]
#[command(
    name = "botyard",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// The store directory [default: /var/lib/botyard as root, else
    /// ~/.local/share/botyard].
    #[arg(long, global = true, env = "BOTYARD_HOME", value_name = "DIR")]
    pub store: Option<PathBuf>,

    /// Print only errors (no progress, no notes).
    #[arg(long, short, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a store (or finish one whose creation was interrupted).
    Init(JsonFlag),
    /// Import, list, inspect and remove images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Create, mount, commit and remove bots: persistent root filesystems.
    #[command(subcommand)]
    Bot(BotCommand),
    /// Show a host project to an agent through an overlay: audit every
    /// change, review it, and sync it back through a gate.
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// Run a command in a sandbox whose root is a bot (runc by default):
    /// non-root, its own pid, mount, ipc and uts namespaces, no network
    /// unless asked, with limits. The exit code and output are the
    /// command's own; Ctrl-C stops the sandbox cleanly.
    Run(Box<RunArgs>),
    /// The sandbox's first process (started by `run`; not for direct use):
    /// secrets from stdin to the agent's environment only, signals
    /// forwarded, and in --ipc mode one agent run per message file.
    #[command(args_conflicts_with_subcommands = true)]
    Supervise(session::SuperviseArgs),
    /// Run the daemon: a durable group queue over sessions, an HTTP API
    /// and metrics. Listens on a unix socket under the store (owner-only)
    /// unless told otherwise; TCP needs the bearer token in
    /// STORE/daemon/token. SIGTERM lets running messages finish, then exits 0.
    Serve(ServeArgs),
    /// Serve the CSI v1 Identity, Controller and Node services on this
    /// node's store, so Kubernetes volumes of the `botyard` StorageClass
    /// are bots: created by CreateVolume, mounted at the pod's path by
    /// NodePublishVolume, committed when their pod stops. Meant to run in
    /// the chart's DaemonSet next to node-driver-registrar and
    /// external-provisioner (with --node-deployment). SIGTERM stops it.
    Csi(CsiArgs),
    /// Kubernetes: what the daemon creates on a cluster.
    #[command(subcommand)]
    Kube(KubeCommand),
    /// Groups: a bot and the agent command the daemon runs for messages.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Messages to groups, through the daemon.
    #[command(subcommand)]
    Message(MessageCommand),
    /// The daemon's sessions, queue depth and store figures at a glance.
    Status(StatusArgs),
    /// Show what plain copies would take against what the store holds.
    Df(JsonFlag),
    /// Remove objects and trees that no ref reaches.
    ///
    /// Also layers nothing needs, copies of the supervisor no binary uses,
    /// history past the retention, and mounts of image layers that no
    /// mounted bot stacks (left by a killed `bot mount` or a plain umount).
    /// Takes the store lock exclusively: imports wait for gc and gc waits
    /// for imports, so a sweep never deletes what an import is about to name.
    Gc(GcArgs),
    /// Check the store: every ref resolves, every tree and object matches its
    /// name. Exits 1 naming each problem.
    Fsck(JsonFlag),
}

#[derive(Args, Debug)]
pub struct JsonFlag {
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct GcArgs {
    /// Report what would be removed without removing it.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep the newest N commits of each bot's history (with --keep-for:
    /// those and any younger) [default: keep all].
    #[arg(long, value_name = "N")]
    pub keep_commits: Option<usize>,
    /// Keep the commits younger than this (30d, 12h) [default: keep all].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub keep_for: Option<std::time::Duration>,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Import an image from a directory, a tarball, an OCI layout or a docker
    /// archive. Re-importing unchanged content writes no object data.
    Import(ImportArgs),
    /// Pull an image from an OCI registry and import it.
    Pull(PullArgs),
    /// List images.
    Ls(JsonFlag),
    /// Show an image's digest, files, bytes, source and dates.
    Inspect(InspectArgs),
    /// Remove images; their data is freed by the next `botyard gc`.
    Rm(RmArgs),
}

#[derive(Args, Debug)]
#[command(
    group(clap::ArgGroup::new("source").required(true).multiple(false)),
    after_help = "Examples:\n  botyard image import debian:12 --dir /srv/rootfs\n  \
                  botyard image import debian:12 --tar rootfs.tar.zst\n  \
                  botyard image import app:1 --oci ./layout:v1\n  \
                  botyard image import app:1 --docker-archive app.tar\n\n\
                  Importing the same NAME:TAG again points it at the new tree; the old one is freed by `botyard gc`."
)]
pub struct ImportArgs {
    /// The image's name and tag, like debian:12 (the tag defaults to latest).
    #[arg(value_name = "NAME:TAG")]
    pub name: String,
    /// A directory holding an unpacked root filesystem.
    #[arg(long, group = "source", value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// A root filesystem tarball: plain, gzip or zstd (told by content).
    #[arg(long, group = "source", value_name = "FILE")]
    pub tar: Option<PathBuf>,
    /// An OCI image layout, optionally with the ref name of one image in it.
    #[arg(long, group = "source", value_name = "DIR[:REF]")]
    pub oci: Option<String>,
    /// An archive written by `docker save`.
    #[arg(long = "docker-archive", group = "source", value_name = "FILE")]
    pub docker_archive: Option<PathBuf>,
    /// Refuse an archive whose files add up to more than SIZE (like 20G)
    /// once unpacked: a guard against archive bombs [default: the free
    /// space of the store's filesystem].
    #[arg(long, env = "BOTYARD_MAX_IMAGE_SIZE", value_name = "SIZE")]
    pub max_size: Option<String>,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct PullArgs {
    /// What to pull: REGISTRY/REPOSITORY:TAG or @DIGEST.
    #[arg(value_name = "REF")]
    pub reference: String,
    /// Store it under this name [default: the reference's repository and tag].
    #[arg(long = "as", value_name = "NAME:TAG")]
    pub as_name: Option<String>,
    /// Use plain HTTP instead of HTTPS (for a registry on loopback).
    #[arg(long)]
    pub insecure: bool,
    /// A Docker config file (like ~/.docker/config.json, or a
    /// dockerconfigjson Secret's file) with a login for the registry; the
    /// login is read into memory only [default: anonymous].
    #[arg(long, env = "BOTYARD_AUTH_FILE", value_name = "FILE")]
    pub auth_file: Option<PathBuf>,
    /// Refuse an archive whose files add up to more than SIZE (like 20G)
    /// once unpacked: a guard against archive bombs [default: the free
    /// space of the store's filesystem].
    #[arg(long, env = "BOTYARD_MAX_IMAGE_SIZE", value_name = "SIZE")]
    pub max_size: Option<String>,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    #[arg(value_name = "NAME:TAG")]
    pub name: String,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    #[arg(value_name = "NAME:TAG", required = true)]
    pub names: Vec<String>,
    /// Remove the name even while bots use the image (they keep working,
    /// and keep its data in the store until they are removed).
    #[arg(long)]
    pub force: bool,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum BotCommand {
    /// Create a bot from an image. Ready in milliseconds once the image's
    /// layer exists on this node (the first bot of an image builds it).
    Create(BotCreateArgs),
    /// Mount a bot's root, writable and persistent, at DIR or bots/ID/root.
    Mount(BotMountArgs),
    /// Unmount a bot (refused, naming the fix, while a process uses it).
    Unmount(BotIdArgs),
    /// Fold a bot's changes into the store; what the fleet already stores is
    /// shared, new files become objects, and the bot's upper dir is emptied.
    ///
    /// The bot must be unmounted: overlayfs forbids changing a live mount's
    /// upper dir, and a process in the bot must never see a file change
    /// under it. Unmount, commit, mount again.
    Commit(BotCommitArgs),
    /// Show what a bot changed relative to its image, committed or not, or
    /// between two commits of its history (--from, --to): A added,
    /// D deleted, M modified, m metadata only, T type changed.
    Diff(BotDiffArgs),
    /// Discard uncommitted changes (all, or at and below PATHs); with
    /// --to-image, committed ones too; with --to COMMIT, go back to that
    /// commit (itself recorded, so it can be undone). The bot must be
    /// unmounted.
    Reset(BotResetArgs),
    /// List a bot's history, newest first: each commit's id, time and
    /// message (with --stat, what it changed).
    Log(BotLogArgs),
    /// Make a new bot that starts where another bot stands (its newest
    /// commit, or ID@COMMIT), sharing everything with it: nothing is copied
    /// (an overlay fork) or every file is reflinked (a copy fork).
    Fork(BotForkArgs),
    /// Turn an existing full copy of a root filesystem (a bot rsynced onto
    /// a volume) into a bot of IMAGE whose committed state is DIR's
    /// content: what the store already holds costs nothing. DIR must be
    /// quiescent: it is read twice and both reads must agree.
    Adopt(BotAdoptArgs),
    /// Move a bot (or, with --all --from OLD, every bot of image OLD) onto
    /// a new image, keeping what each bot changed: a three-way merge of the
    /// old image, the new one and the bot, with dpkg's database merged
    /// package by package. A rebase is a commit: `bot reset --to` undoes it.
    Rebase(BotRebaseArgs),
    /// List bots: image, driver, mount point, uncommitted bytes.
    Ls(JsonFlag),
    /// Show one bot.
    Show(BotIdArgs),
    /// Remove a bot (refused while mounted unless --force).
    Rm(BotRmArgs),
}

#[derive(Args, Debug)]
pub struct BotCreateArgs {
    /// The bot's id: up to 63 bytes, no '/', whitespace, '.' or '..'.
    pub id: String,
    /// The image to start from.
    #[arg(long, value_name = "NAME:TAG")]
    pub image: String,
    /// How the root is presented: overlay (kernel overlayfs, root).
    #[arg(long, default_value = "overlay", env = "BOTYARD_DRIVER")]
    pub driver: String,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct BotMountArgs {
    /// The bot to mount (omit with --all).
    #[arg(required_unless_present = "all")]
    pub id: Option<String>,
    /// Where to mount it [default: STORE/bots/ID/root].
    #[arg(long, value_name = "DIR", conflicts_with = "all")]
    pub at: Option<PathBuf>,
    /// Mount every bot that is not mounted, where it was last mounted
    /// (after a reboot).
    #[arg(long)]
    pub all: bool,
    /// Honour the image's setuid and setgid bits. The mount is nosuid
    /// otherwise: a host user who can reach the mount point could run an
    /// image's setuid-root program as root. Sandboxes (`botyard run`) run
    /// with no new privileges either way.
    #[arg(long, conflicts_with = "all")]
    pub suid: bool,
    /// Honour the image's device nodes, as a chroot with the image's own
    /// /dev needs. The mount is nodev otherwise: a host user who can reach
    /// the mount point could open an image's devices with the modes the
    /// image gave them. Sandboxes get a /dev of their own either way.
    #[arg(long, conflicts_with = "all")]
    pub dev: bool,
}

#[derive(Args, Debug)]
pub struct BotIdArgs {
    pub id: String,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct BotCommitArgs {
    /// The bot to commit (omit with --all).
    #[arg(required_unless_present = "all")]
    pub id: Option<String>,
    /// Commit every bot that is not mounted.
    #[arg(long)]
    pub all: bool,
    /// What the commit is, for the bot's history (`bot log`).
    #[arg(short, long, value_name = "TEXT", default_value = "")]
    pub message: String,
    /// Then publish the bot's committed state as this image, for new bots
    /// to start from (a golden image built in a bot).
    #[arg(long, value_name = "NAME:TAG", conflicts_with = "all")]
    pub image: Option<String>,
    /// Mounted or not, make the files the bot wrote share extents with
    /// what the store already holds (FIDEDUPERANGE; XFS or btrfs), without
    /// unmounting or changing anything the bot sees. No commit is made.
    #[arg(long, conflicts_with_all = ["image", "message"])]
    pub live: bool,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct BotForkArgs {
    /// The new bot's id.
    pub id: String,
    /// The bot to fork: ID (its newest commit) or ID@COMMIT. What it has
    /// not committed is not forked.
    #[arg(long, value_name = "ID[@COMMIT]")]
    pub from: String,
    /// overlay or copy [default: the source's].
    #[arg(long, value_name = "DRIVER")]
    pub driver: Option<String>,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct BotAdoptArgs {
    /// The new bot's id.
    pub id: String,
    /// The root filesystem to adopt (a copy; not a running system's /).
    #[arg(long, value_name = "DIR")]
    pub from: PathBuf,
    /// The image it was made from (its base for later diffs and rebases).
    #[arg(long, value_name = "NAME:TAG")]
    pub image: String,
    /// overlay or copy.
    #[arg(long, default_value = "overlay", env = "BOTYARD_DRIVER")]
    pub driver: String,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct BotRebaseArgs {
    /// The bot (omit with --all).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub id: Option<String>,
    /// The new image.
    #[arg(long, value_name = "NAME:TAG")]
    pub image: String,
    /// Every bot of the image given by --from.
    #[arg(long, requires = "from")]
    pub all: bool,
    /// With --all: the old image.
    #[arg(long, value_name = "NAME:TAG")]
    pub from: Option<String>,
    /// List what would change and every conflict; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Conflicts take the new image's version [default: the bot's].
    #[arg(long)]
    pub theirs: bool,
    /// Merge onto an image of another distribution or architecture.
    #[arg(long)]
    pub force: bool,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct BotLogArgs {
    pub id: String,
    /// With what each commit changed since the one before it.
    #[arg(long)]
    pub stat: bool,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct BotRmArgs {
    pub id: String,
    /// Unmount it first if it is mounted.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct BotDiffArgs {
    pub id: String,
    /// Only these paths (and what is below them).
    pub paths: Vec<String>,
    /// From this commit of the bot's history [default: its image].
    #[arg(long, value_name = "COMMIT")]
    pub from: Option<String>,
    /// To this commit [default: the bot as it is now, committed or not].
    #[arg(long, value_name = "COMMIT")]
    pub to: Option<String>,
    /// Counts and bytes per kind of change instead of paths.
    #[arg(long)]
    pub stat: bool,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct BotResetArgs {
    pub id: String,
    /// Only these paths (and what is below them).
    pub paths: Vec<String>,
    /// Also discard committed changes: back to the image.
    #[arg(long, conflicts_with = "to")]
    pub to_image: bool,
    /// Back to this commit of the bot's history (`bot log` lists them;
    /// a unique prefix of 4 or more digits will do).
    #[arg(long, value_name = "COMMIT")]
    pub to: Option<String>,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum WorkspaceCommand {
    /// Create a workspace over a host project directory.
    Create(WsCreateArgs),
    /// Mount a workspace: the project read-only below, the agent's writes
    /// in the workspace's upper, every change recorded in the audit log.
    Mount(WsMountArgs),
    /// Unmount a workspace; what the project already holds is dropped from
    /// its upper.
    Unmount(WsNameArgs),
    /// List workspaces.
    Ls(JsonFlag),
    /// Show one workspace.
    Show(WsNameJsonArgs),
    /// Mounted or not, mode, pending changes by kind, upper bytes, the
    /// latest audit events and pending conflicts.
    Status(WsStatusArgs),
    /// The audit log: every create, modify, delete, rename and chmod while
    /// mounted, with overflows and the rescans that follow them.
    Log(WsLogArgs),
    /// What the agent changed: unified diffs for text, summaries for
    /// binaries, deletions and renames shown as such.
    Diff(WsDiffArgs),
    /// The sync gate: check every change against the policy and apply
    /// edits, new files, deletions and renames to the project, each file
    /// atomically.
    ///
    /// A file the project changed since the agent started is a conflict:
    /// never overwritten silently; settle it with --ours (keep the
    /// project's version, drop the agent's) or --theirs (take the agent's),
    /// or leave it pending. While the workspace is mounted, what was
    /// applied stays in its upper until unmount (overlayfs forbids changing
    /// a live upper); --ours needs it unmounted.
    Sync(WsSyncArgs),
    /// Discard the agent's changes, all or at and below PATHs. The
    /// workspace must be unmounted.
    Reset(WsResetArgs),
    /// Remove a workspace (its upper, log and ref); the project is never
    /// touched.
    Rm(WsRmArgs),
    /// Auto mode: sync through the gate every interval until interrupted.
    Watch(WsNameArgs),
    /// Print the built-in gate policy (TOML), a starting point for --policy.
    Policy(WsPolicyArgs),
    /// The audit watcher process `mount` starts (not for direct use).
    #[command(hide = true)]
    AuditWatcher(WsNameArgs),
}

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  botyard workspace create web --project ~/src/web\n  \
                  botyard workspace create web --project ~/src/web --mode auto --interval 1m\n  \
                  botyard workspace create lab --project /srv/lab --mode unsafe --i-understand"
)]
pub struct WsCreateArgs {
    pub name: String,
    /// The host project directory (it must exist, outside the store).
    #[arg(long, value_name = "DIR")]
    pub project: PathBuf,
    /// secure: only `sync` moves changes; auto: `workspace watch` syncs
    /// every interval through the gate; unsafe: no overlay, the agent
    /// writes the project (audited, not gated).
    #[arg(long, default_value = "secure", env = "BOTYARD_WORKSPACE_MODE")]
    pub mode: String,
    /// Auto mode: time between syncs (30s, 5m, …).
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    pub interval: String,
    /// A gate policy file (TOML; see `botyard workspace policy --default`).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Required with --mode unsafe.
    #[arg(long)]
    pub i_understand: bool,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct WsMountArgs {
    pub name: String,
    /// Mount here instead of workspaces/NAME/root.
    #[arg(long, value_name = "DIR")]
    pub at: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct WsNameArgs {
    pub name: String,
}

#[derive(Args, Debug)]
pub struct WsNameJsonArgs {
    pub name: String,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct WsStatusArgs {
    pub name: String,
    /// How many recent audit events to show.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub events: usize,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct WsLogArgs {
    pub name: String,
    /// Keep printing events as they come (until interrupted).
    #[arg(long, short)]
    pub follow: bool,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct WsDiffArgs {
    pub name: String,
    /// Only changes at or below these paths (relative to the project).
    pub paths: Vec<PathBuf>,
    /// One line per change with lines added and removed.
    #[arg(long)]
    pub stat: bool,
    /// Show secrets the scanner finds in clear (they are masked otherwise,
    /// as `sync` shows them).
    #[arg(long)]
    pub show_secrets: bool,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct WsSyncArgs {
    pub name: String,
    /// Only changes at or below these paths (relative to the project).
    pub paths: Vec<PathBuf>,
    /// Ask per change in the terminal: accept, reject, show diff, quit.
    #[arg(long, short)]
    pub interactive: bool,
    /// Apply without asking for confirmation.
    #[arg(long, short)]
    pub yes: bool,
    /// Show what would be applied, rejected, held or in conflict; change
    /// nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Also apply what the policy holds for approval (binaries, added
    /// executable bits). Never setuid or setgid: see --approve-setuid.
    #[arg(long)]
    pub approve: bool,
    /// Apply a change that adds setuid or setgid to this path (relative
    /// to the project; repeatable). Such changes are always held until
    /// approved by name, here or in --interactive.
    #[arg(long = "approve-setuid", value_name = "PATH")]
    pub approve_setuid: Vec<PathBuf>,
    /// Settle conflicts by keeping the project's version.
    #[arg(long, conflicts_with = "theirs")]
    pub ours: bool,
    /// Settle conflicts by taking the agent's version.
    #[arg(long)]
    pub theirs: bool,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct WsResetArgs {
    pub name: String,
    /// Only changes at or below these paths (relative to the project).
    pub paths: Vec<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long, short)]
    pub yes: bool,
}

#[derive(Args, Debug)]
pub struct WsRmArgs {
    pub name: String,
    /// Unmount it first, and discard changes not synced to the project.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct WsPolicyArgs {
    /// Print the built-in policy.
    #[arg(long, required = true)]
    pub default: bool,
}

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  botyard run b1 -- sh -c 'apt-get install -y jq'\n  \
                  botyard run b1 --workspace web --secret OPENAI_API_KEY -- /opt/agent/run\n  \
                  botyard run b1 --mount /srv/data:data:ro --network host --memory 2G -- make test\n\n\
                  Extra mounts appear under /mnt and must be below a root allowed in the mount\n\
                  allowlist (~/.config/botyard/mount-allowlist.json, or $BOTYARD_MOUNT_ALLOWLIST).\n\
                  A workspace appears at /workspace. Secrets are read from botyard's environment\n\
                  and reach the agent only as environment variables, through the supervisor's stdin."
)]
pub struct RunArgs {
    /// The bot whose root the sandbox runs on (mounted for the run if it is not).
    pub bot: String,
    /// A workspace to show at /workspace (mounted if it is not).
    #[arg(long, value_name = "NAME")]
    pub workspace: Option<String>,
    /// A host directory at /mnt/DST (SRC:DST or SRC:DST:ro).
    #[arg(long = "mount", value_name = "SRC:DST[:ro]")]
    pub mounts: Vec<String>,
    /// An environment variable of botyard's to hand to the agent (repeatable).
    #[arg(long = "secret", value_name = "NAME")]
    pub secrets: Vec<String>,
    /// Stop the sandbox after this long, or `none`.
    #[arg(long, default_value = "30m", value_name = "DURATION|none")]
    pub timeout: String,
    /// none: only loopback; host: the host's network.
    #[arg(long, default_value = "none", env = "BOTYARD_NETWORK")]
    pub network: String,
    /// Memory limit, like 512MiB or 2G, or `none` [default: half of this
    /// machine's memory].
    #[arg(long, value_name = "SIZE|none", env = "BOTYARD_MEMORY")]
    pub memory: Option<String>,
    /// CPU limit (fractions allowed), or `none` [default: half of this
    /// machine's CPUs, at least one].
    #[arg(long, value_name = "N|none", env = "BOTYARD_CPUS")]
    pub cpus: Option<String>,
    /// Process limit (stops fork bombs), or `none` [default: 1024].
    #[arg(long, value_name = "N|none")]
    pub pids: Option<String>,
    /// Run as this user and group inside the sandbox [default: 1000:1000].
    #[arg(long, value_name = "UID:GID")]
    pub user: Option<String>,
    /// runc, crun, youki, or a path to an OCI runtime.
    #[arg(long, default_value = "runc", env = "BOTYARD_RUNTIME")]
    pub runtime: String,
    /// A trusted run: extra mounts may be read-write where the allowlist allows.
    #[arg(long)]
    pub main: bool,
    /// Commit the bot when the command ends.
    #[arg(long)]
    pub commit: bool,
    /// Stop the sandbox once its output passes this size [default: 10MB].
    #[arg(long, value_name = "SIZE")]
    pub output_cap: Option<String>,
    /// IPC mode: run the agent once per input/*.json in DIR, until
    /// input/_close or --idle.
    #[arg(long, value_name = "DIR")]
    pub ipc: Option<PathBuf>,
    /// IPC mode: exit after this long without a message [default: 30m].
    #[arg(long, value_name = "DURATION")]
    pub idle: Option<String>,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct DaemonAddr {
    /// Where the daemon listens [default: unix:STORE/daemon/daemon.sock].
    #[arg(long, env = "BOTYARD_DAEMON", value_name = "unix:PATH|tcp:ADDR")]
    pub daemon: Option<String>,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// unix:PATH or tcp:HOST:PORT [default: unix:STORE/daemon/daemon.sock].
    #[arg(long, env = "BOTYARD_LISTEN", value_name = "unix:PATH|tcp:ADDR")]
    pub listen: Option<String>,
    /// A TOML file: max_sessions, idle_keepalive, deadline, turn, max_tries,
    /// commit_on_close, max_message_size, output_cap, grace, runtime, and a
    /// [kubernetes] table (see the README).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What runs sessions: runc, crun, youki, a path to an OCI runtime, or
    /// kubernetes (each session a pod; in-cluster config or KUBECONFIG)
    /// [default: the config's runtime, else runc].
    #[arg(long, env = "BOTYARD_RUNTIME", value_name = "RUNTIME", value_parser = choice::<daemon::Runtime>)]
    pub runtime: Option<daemon::Runtime>,
    #[command(flatten)]
    pub kube: KubeChoices,
}

#[derive(Args, Debug)]
pub struct CsiArgs {
    /// The socket kubelet and the sidecars talk to.
    #[arg(long, env = "CSI_ENDPOINT", value_name = "unix:///PATH")]
    pub endpoint: String,
    /// This node's name, as Kubernetes knows it [default: the hostname].
    #[arg(long, env = "NODE_ID", value_name = "NAME")]
    pub node_id: Option<String>,
    /// The kubelet's directory: volumes are published only below its
    /// `pods/` (the chart sets it) [default: anywhere].
    #[arg(long, env = "KUBELET_DIR", value_name = "DIR")]
    pub kubelet_dir: Option<PathBuf>,
    /// Where StorageClasses' `registrySecret: NAME` logins are read from
    /// (`DIR/NAME/.dockerconfigjson`) [default: /etc/botyard/registry-auth].
    #[arg(long, env = "BOTYARD_AUTH_DIR", value_name = "DIR")]
    pub auth_dir: Option<PathBuf>,
    /// Every this long, published volumes' bots share what they wrote
    /// with the store without being unpublished (`bot commit --live`; the
    /// store on XFS or btrfs) [default: never].
    #[arg(long, env = "BOTYARD_LIVE_COMMIT_EVERY", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub live_commit_every: Option<std::time::Duration>,
}

#[derive(Subcommand, Debug)]
pub enum KubeCommand {
    /// Print, as YAML, exactly the objects the daemon would create on a
    /// cluster for a session of a group (the bot's claim, then the Job or
    /// warm pod), with the settings the daemon would use: its config file,
    /// flags and environment. Reads the group from the store's daemon
    /// state; needs no cluster and no running daemon.
    Manifests(KubeManifestsArgs),
}

/// Parses one of botyard's choice enums, with its own error message.
fn choice<T: std::str::FromStr<Err = anyhow::Error>>(s: &str) -> Result<T, String> {
    s.parse().map_err(|e: anyhow::Error| e.to_string())
}

/// The Kubernetes choices `serve` and `kube manifests` share; each beats
/// the config file's `[kubernetes]` table.
#[derive(Args, Debug, Clone, Default)]
pub struct KubeChoices {
    /// job (a Job per session) or warm (a pod per active group) [default: job].
    #[arg(long = "kube-mode", env = "BOTYARD_KUBE_MODE", value_name = "MODE", value_parser = choice::<kube::Mode>)]
    pub mode: Option<kube::Mode>,
    /// How the supervisor reaches the pod: image-volume (mount its OCI
    /// image) or init-container (copy it into an emptyDir)
    /// [default: image-volume].
    #[arg(
        long = "supervisor-sideload",
        env = "BOTYARD_SUPERVISOR_SIDELOAD",
        value_name = "METHOD",
        value_parser = choice::<kube::Sideload>
    )]
    pub sideload: Option<kube::Sideload>,
}

#[derive(Args, Debug)]
pub struct KubeManifestsArgs {
    /// The group, as `botyard group add` named it.
    #[arg(long, value_name = "NAME")]
    pub group: String,
    /// The daemon's TOML config (its `[kubernetes]` table and limits).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub choices: KubeChoices,
    /// The session number the objects are named with.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub session: u64,
    /// Print a JSON array instead of YAML.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// Add a group.
    Add(GroupAddArgs),
    /// List groups.
    Ls(GroupLsArgs),
    /// Show a group.
    Show(GroupNameArgs),
    /// Remove a group (its session is closed).
    Rm(GroupNameArgs),
}

#[derive(Args, Debug)]
pub struct GroupAddArgs {
    pub name: String,
    /// The bot the group's sessions run on.
    #[arg(long)]
    pub bot: String,
    /// The agent command, as one shell-quoted string ('CMD ARGS...').
    #[arg(long)]
    pub agent: String,
    /// A trusted group: extra mounts may be read-write.
    #[arg(long)]
    pub main: bool,
    #[arg(long = "mount", value_name = "SRC:DST[:ro]")]
    pub mounts: Vec<String>,
    #[arg(long = "secret", value_name = "NAME")]
    pub secrets: Vec<String>,
    #[arg(long, value_name = "NAME")]
    pub workspace: Option<String>,
    /// On Kubernetes: whose workspace it is; the group then gets
    /// `users/USER/WORKSPACE` of the shared volume at /workspace
    /// (one host ignores it).
    #[arg(long, value_name = "USER", requires = "workspace")]
    pub user: Option<String>,
    #[command(flatten)]
    pub addr: DaemonAddr,
}

#[derive(Args, Debug)]
pub struct GroupLsArgs {
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub addr: DaemonAddr,
}

#[derive(Args, Debug)]
pub struct GroupNameArgs {
    pub name: String,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub addr: DaemonAddr,
}

#[derive(Subcommand, Debug)]
pub enum MessageCommand {
    /// Send a message (TEXT, or --file F; JSON is sent as is, other text
    /// as {"text": ...}); prints its id.
    Send(MessageSendArgs),
    /// Show a message: state, attempts, exit code, output, error.
    Show(MessageIdArgs),
    /// Wait until a message is done or failed; exits 1 if it failed.
    Wait(MessageWaitArgs),
    /// List messages.
    Ls(MessageLsArgs),
}

#[derive(Args, Debug)]
pub struct MessageSendArgs {
    pub group: String,
    /// The message: JSON as it is, other text as {"text": TEXT}.
    pub text: Option<String>,
    /// Read the message from F.
    #[arg(long, conflicts_with = "text", value_name = "F")]
    pub file: Option<PathBuf>,
    /// Then print the agent's output as it arrives, like
    /// `message wait --follow` (exits 1 if the message fails).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Give up following after this long.
    #[arg(
        long,
        default_value = "30m",
        value_name = "DURATION",
        requires = "follow"
    )]
    pub timeout: String,
    /// Print JSON, for scripts.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub addr: DaemonAddr,
}

#[derive(Args, Debug)]
pub struct MessageIdArgs {
    pub id: i64,
    /// Print JSON, for scripts.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub addr: DaemonAddr,
}

#[derive(Args, Debug)]
pub struct MessageWaitArgs {
    pub id: i64,
    /// Give up after this long.
    #[arg(long, default_value = "30m", value_name = "DURATION")]
    pub timeout: String,
    /// Print the agent's output as it arrives (with --json: one JSON
    /// object per event, the message last).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Print JSON, for scripts.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub addr: DaemonAddr,
}

#[derive(Args, Debug)]
pub struct MessageLsArgs {
    #[arg(long)]
    pub group: Option<String>,
    /// queued, running, done or failed.
    #[arg(long)]
    pub state: Option<String>,
    /// Print JSON, for scripts.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub addr: DaemonAddr,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Print JSON, for scripts.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub addr: DaemonAddr,
}
