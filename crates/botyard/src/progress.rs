use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use store::{Progress, Unit};

/// Progress bars on stderr when it is a terminal; otherwise only notes.
pub struct Bars {
    bar: Mutex<Option<ProgressBar>>,
    draw: bool,
    quiet: bool,
}

impl Bars {
    pub fn new(quiet: bool) -> Bars {
        Bars {
            bar: Mutex::new(None),
            draw: !quiet && std::io::stderr().is_terminal(),
            quiet,
        }
    }

    pub fn finish(&self) {
        if let Some(b) = self.bar.lock().unwrap().take() {
            b.finish_and_clear();
        }
    }
}

impl Progress for Bars {
    fn phase(&self, name: &str, total: Option<u64>, unit: Unit) {
        if !self.draw {
            return;
        }
        let mut slot = self.bar.lock().unwrap();
        if let Some(b) = slot.take() {
            b.finish_and_clear();
        }
        let bar = match total {
            Some(t) => ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr()),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
        };
        let tmpl = match (total.is_some(), unit) {
            (true, Unit::Bytes) => {
                "{msg:>18} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}"
            }
            (true, Unit::Items) => "{msg:>18} [{bar:30}] {pos}/{len} {eta}",
            (false, Unit::Bytes) => "{msg:>18} {spinner} {bytes} {bytes_per_sec}",
            (false, Unit::Items) => "{msg:>18} {spinner} {pos}",
        };
        bar.set_style(
            ProgressStyle::with_template(tmpl)
                .unwrap()
                .progress_chars("=> "),
        );
        bar.set_message(name.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        *slot = Some(bar);
    }

    fn advance(&self, n: u64) {
        if let Some(b) = self.bar.lock().unwrap().as_ref() {
            b.inc(n);
        }
    }

    fn note(&self, msg: &str) {
        if self.quiet {
            return;
        }
        match self.bar.lock().unwrap().as_ref() {
            Some(b) => b.println(format!("note: {msg}")),
            None => eprintln!("botyard: note: {msg}"),
        }
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        self.finish();
    }
}
