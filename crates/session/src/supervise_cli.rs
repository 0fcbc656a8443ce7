//! The `supervise` verb's command line, shared by `botyard` and the
//! supervisor image's own small binary (`botyard-supervisor`), so both
//! take the same arguments a sandbox or a pod is started with.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct SuperviseArgs {
    #[command(subcommand)]
    pub action: Option<SuperviseAction>,
    /// Read a JSON object of secrets from the first line of stdin.
    #[arg(long)]
    pub secrets_on_stdin: bool,
    /// Wait for DIR/input/*.json and run the agent once per message.
    #[arg(long, value_name = "DIR")]
    pub ipc: Option<PathBuf>,
    /// IPC mode: messages also come on stdin, one JSON line each after the
    /// secrets line (a pod whose IPC directory the daemon cannot reach).
    #[arg(long, requires = "ipc")]
    pub ipc_stdin: bool,
    /// IPC mode: exit after this long without a message.
    #[arg(long, default_value = "30m", value_name = "DURATION")]
    pub idle: String,
    /// IPC mode: bytes of output kept per message.
    #[arg(long, default_value = "10MB", value_name = "SIZE")]
    pub output_cap: String,
    /// The agent and its arguments.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum SuperviseAction {
    /// Copy this binary, with the loader and libraries it runs with, into
    /// DIR (for an init container); prints the command line that starts it.
    CopySelf { dir: PathBuf },
    /// Print the build of the supervise code this binary carries (how
    /// `botyard` tells whether the small supervisor beside it matches).
    #[command(hide = true)]
    BuildId,
    /// Write the supervisor's OCI image (this binary, which must be
    /// static, at /botyard and nothing else) as an OCI image layout in
    /// DIR, for `skopeo copy oci:DIR:TAG docker://…` to push;
    /// scripts/supervisor-image.sh builds the static binary and runs this.
    Image {
        dir: PathBuf,
        /// The tag recorded in the layout [default: this version].
        #[arg(long, value_name = "TAG")]
        tag: Option<String>,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the `supervise` verb: the supervisor itself, or one of its actions.
pub fn run_supervise(a: SuperviseArgs) -> Result<i32> {
    match a.action {
        Some(SuperviseAction::CopySelf { dir }) => {
            let entry = crate::copy_self(&dir, &dir)?;
            println!("{}", entry.join(" "));
            Ok(0)
        }
        Some(SuperviseAction::BuildId) => {
            println!("{}", crate::copy_self::BUILD_ID);
            Ok(0)
        }
        Some(SuperviseAction::Image { dir, tag, json }) => {
            let tag = tag.unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string());
            let img = crate::write_supervisor_image(&dir, &tag)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&img)?);
            } else {
                println!(
                    "wrote the supervisor image {} ({}, one layer of {:.1} MiB) to {}",
                    img.tag,
                    img.digest,
                    img.layer_bytes as f64 / 1048576.0,
                    dir.display()
                );
            }
            Ok(0)
        }
        None => crate::supervise(&crate::SuperviseOptions {
            secrets_on_stdin: a.secrets_on_stdin,
            ipc: a.ipc,
            idle: humantime::parse_duration(&a.idle)
                .with_context(|| format!("--idle {}", a.idle))?,
            output_cap: store::parse_size(&a.output_cap)?,
            ipc_stdin: a.ipc_stdin,
            args: a.command,
        }),
    }
}
