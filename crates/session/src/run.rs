//! `botyard run`: one command in a sandbox whose root is a bot, through
//! the backend its runtime names.

use crate::backend::{RunIo, RunOptions, RunOutcome};
use crate::runtime::Runtime;
use anyhow::Result;
use std::sync::atomic::AtomicBool;
use store::Store;

/// Where the supervisor's files appear in a sandbox.
pub const SUPERVISOR_AT: &str = "/run/botyard";
/// Where a workspace appears.
pub const WORKSPACE_AT: &str = "/workspace";
/// Where an IPC directory appears.
pub const IPC_AT: &str = "/run/botyard-ipc";

/// Runs `opts.args` on `runtime` in a sandbox on `opts.bot` and waits for
/// it, with this process's stdio; `stop` asks for a clean stop (Ctrl-C).
pub fn run(
    store: &Store,
    runtime: &Runtime,
    opts: &RunOptions,
    stop: &AtomicBool,
) -> Result<RunOutcome> {
    run_with(store, runtime, opts, stop, RunIo::inherit())
}

/// [`run`] with the command's input and output where `io` says (output
/// capped at `opts.output_cap`).
pub fn run_with(
    store: &Store,
    runtime: &Runtime,
    opts: &RunOptions,
    stop: &AtomicBool,
    io: RunIo,
) -> Result<RunOutcome> {
    let sandbox = crate::backend::backend(runtime).prepare(store, opts)?;
    sandbox.start(io)?;
    sandbox.wait(stop)
}
