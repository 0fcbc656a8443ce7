use super::Ctx;
use crate::cli::WsLogArgs;
use anyhow::Result;
use std::io::{BufRead, Seek, SeekFrom};

pub fn run(ctx: &Ctx, a: WsLogArgs) -> Result<i32> {
    let store = ctx.open()?;
    let ws = workspace::Workspace::new(&store, &a.name)?;
    ws.load()?;
    let path = ws.audit_log();
    let mut pos = 0u64;
    loop {
        if let Ok(mut f) = std::fs::File::open(&path) {
            let len = f.metadata()?.len();
            if len < pos {
                pos = 0; // the log was replaced
            }
            f.seek(SeekFrom::Start(pos))?;
            let mut r = std::io::BufReader::new(f);
            let mut line = String::new();
            // Only whole lines: a line being written is read next round.
            while r.read_line(&mut line)? > 0 {
                if !line.ends_with('\n') {
                    break;
                }
                pos += line.len() as u64;
                if a.json {
                    print!("{line}");
                } else if let Ok(e) = serde_json::from_str::<workspace::Event>(&line) {
                    println!("{}", e.human());
                }
                line.clear();
            }
        }
        if !a.follow {
            return Ok(0);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
