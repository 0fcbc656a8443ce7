use super::{rel_paths, Ctx};
use crate::cli::WsSyncArgs;
use crate::prompt;
use anyhow::{bail, Result};
use std::path::Path;
use workspace::{Decision, Item, Resolve, SyncOptions, SyncReport, Verdict};

fn print_report(ctx: &Ctx, r: &SyncReport) {
    for o in &r.items {
        let reason = o
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        ctx.say(format!(
            "{:<12} {} {}{reason}",
            o.outcome,
            o.what,
            fs::quote_bytes(&o.raw)
        ));
        for h in &o.secrets {
            ctx.say(format!(
                "{:<12}   line {}: {}: {}",
                "", h.line, h.kind, h.text
            ));
        }
    }
    let verb = if r.dry_run { "would apply" } else { "applied" };
    ctx.say(format!(
        "{verb} {}, rejected {}, held {}, conflicts {}, failed {}; {} already in sync{}",
        r.applied,
        r.rejected,
        r.held,
        r.conflicts,
        r.failed,
        r.in_sync,
        if r.dropped_from_upper > 0 {
            format!("; {} dropped from the upper", r.dropped_from_upper)
        } else {
            String::new()
        }
    ));
}

fn ask_item(store: &store::Store, project: &Path, item: &Item, view: &Path) -> Result<Decision> {
    let c = &item.change;
    let why = match &item.verdict {
        Verdict::Approve(w) => format!(" ({w}: needs approval)"),
        Verdict::ApproveSetuid(w) => format!(" ({w}: needs approval; accepting approves it)"),
        Verdict::Conflict => " (CONFLICT: the project changed since the agent started)".into(),
        _ => String::new(),
    };
    loop {
        let q = if item.verdict == Verdict::Conflict {
            format!("{} {}{why}\n  [t]heirs (take the agent's), [o]urs (keep the project's), [d]iff, [s]kip, [q]uit?", c.what.letter(), c.shown())
        } else {
            format!(
                "{} {}{why}\n  [a]ccept, [r]eject, [d]iff, [s]kip, [q]uit?",
                c.what.letter(),
                c.shown()
            )
        };
        let Some(answer) = prompt::ask(&q)? else {
            return Ok(Decision::Quit);
        };
        let conflict = item.verdict == Verdict::Conflict;
        return Ok(match answer.as_str() {
            "a" | "accept" if !conflict => Decision::Accept,
            "r" | "reject" if !conflict => Decision::Reject,
            "t" | "theirs" if conflict => Decision::Resolve(Resolve::Theirs),
            "o" | "ours" if conflict => Decision::Resolve(Resolve::Ours),
            "s" | "skip" | "" => Decision::Skip,
            "q" | "quit" => Decision::Quit,
            "d" | "diff" => {
                eprint!("{}", workspace::render_item(store, view, project, item)?);
                continue;
            }
            other => {
                eprintln!("'{other}' is not an answer here");
                continue;
            }
        });
    }
}

pub fn run(ctx: &Ctx, a: WsSyncArgs) -> Result<i32> {
    let store = ctx.open()?;
    let ws = workspace::Workspace::new(&store, &a.name)?;
    let mut opts = SyncOptions {
        paths: rel_paths(&a.paths)?,
        dry_run: a.dry_run,
        resolve: match (a.ours, a.theirs) {
            (true, _) => Some(Resolve::Ours),
            (_, true) => Some(Resolve::Theirs),
            _ => None,
        },
        approve: a.approve,
        approve_setuid: rel_paths(&a.approve_setuid)?,
    };
    let report = if a.interactive {
        if !prompt::can_ask() {
            bail!("--interactive needs a terminal on stdin; use --dry-run, then --yes");
        }
        let project = ws.load()?.project;
        let mut ask = |item: &Item, view: &Path| ask_item(&store, &project, item, view);
        workspace::sync(&ws, &opts, Some(&mut ask), &ctx.bars)?
    } else if a.dry_run || a.yes {
        workspace::sync(&ws, &opts, None, &ctx.bars)?
    } else {
        opts.dry_run = true;
        let plan = workspace::sync(&ws, &opts, None, &ctx.bars)?;
        if plan.applied == 0 {
            ctx.bars.finish();
            if a.json {
                crate::output::json(&plan)?;
            } else {
                print_report(ctx, &plan);
            }
            return Ok(0);
        }
        print_report(ctx, &plan);
        let r = ws.load()?;
        if !prompt::confirm(
            &format!("apply {} changes to {}?", plan.applied, r.project.display()),
            "--yes",
        )? {
            println!("nothing applied");
            return Ok(1);
        }
        opts.dry_run = false;
        workspace::sync(&ws, &opts, None, &ctx.bars)?
    };
    ctx.bars.finish();
    if a.json {
        crate::output::json(&report)?;
    } else {
        print_report(ctx, &report);
    }
    Ok(if report.failed > 0 { 1 } else { 0 })
}
