use super::Ctx;
use crate::cli::WsLogArgs;
use anyhow::Result;

pub fn run(ctx: &Ctx, a: WsLogArgs) -> Result<i32> {
    let store = ctx.open()?;
    let ws = workspace::Workspace::new(&store, &a.name)?;
    let mut tail = workspace::LogTail::open(&ws)?;
    loop {
        for line in tail.next_lines()? {
            if a.json {
                print!("{line}");
            } else if let Ok(e) = serde_json::from_str::<workspace::Event>(&line) {
                println!("{}", e.human());
            }
        }
        if !a.follow {
            return Ok(0);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
