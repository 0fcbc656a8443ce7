//! `/metrics` in the Prometheus text format.

use crate::scheduler::Daemon;
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

const BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// A Prometheus histogram: fixed buckets, so memory stays flat however
/// many observations a long-running daemon makes.
#[derive(Default)]
pub struct Histogram(Mutex<HistogramData>);

#[derive(Default, Clone)]
struct HistogramData {
    buckets: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn observe(&self, x: f64) {
        let mut h = self.0.lock().unwrap();
        for (b, n) in BUCKETS.iter().zip(h.buckets.iter_mut()) {
            if x <= *b {
                *n += 1;
            }
        }
        h.sum += x;
        h.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let h = self.0.lock().unwrap().clone();
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, n) in BUCKETS.iter().zip(h.buckets) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(out, "{name}_sum {}", h.sum);
        let _ = writeln!(out, "{name}_count {}", h.count);
    }
}

fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub fn render(d: &Daemon) -> String {
    let mut out = String::new();
    let counts = d.db.lock().unwrap().counts().unwrap_or_default();
    for (state, metric) in [
        ("queued", "botyard_messages_queued"),
        ("running", "botyard_messages_running"),
    ] {
        let _ = writeln!(
            out,
            "# HELP {metric} Messages {state}, per group.\n# TYPE {metric} gauge"
        );
        for (g, s, n) in &counts {
            if s == state {
                let _ = writeln!(out, "{metric}{{group=\"{}\"}} {n}", label(g));
            }
        }
    }
    let live = d.live.lock().unwrap().len();
    let _ = writeln!(out, "# HELP botyard_sessions_live Live sandboxes.\n# TYPE botyard_sessions_live gauge\nbotyard_sessions_live {live}");
    let _ = writeln!(
        out,
        "# HELP botyard_session_starts_total Sessions started.\n# TYPE botyard_session_starts_total counter\nbotyard_session_starts_total {}",
        d.metrics.session_starts.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP botyard_session_failures_total Sessions that ended badly.\n# TYPE botyard_session_failures_total counter\nbotyard_session_failures_total {}",
        d.metrics.session_failures.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP botyard_live_shared_bytes_total Bytes live sessions' bots share with the store through live commits.\n# TYPE botyard_live_shared_bytes_total counter\nbotyard_live_shared_bytes_total {}",
        d.metrics.live_shared_bytes.load(Ordering::Relaxed)
    );
    d.metrics.start_latency.render(
        &mut out,
        "botyard_session_start_seconds",
        "From starting a session to its first message taken.",
    );
    d.metrics.stop_latency.render(
        &mut out,
        "botyard_session_stop_seconds",
        "From asking a session to close to its slot free again.",
    );
    d.metrics.queue_wait.render(
        &mut out,
        "botyard_queue_wait_seconds",
        "From a message accepted to delivered.",
    );
    if let Ok(df) = d.store.df() {
        let _ = writeln!(
            out,
            "# HELP botyard_store_physical_bytes Bytes the store's objects and trees take.\n# TYPE botyard_store_physical_bytes gauge\nbotyard_store_physical_bytes {}",
            df.stored_bytes
        );
        let _ = writeln!(
            out,
            "# HELP botyard_store_logical_bytes Bytes plain copies of every image would take.\n# TYPE botyard_store_logical_bytes gauge\nbotyard_store_logical_bytes {}",
            df.logical_bytes
        );
    }
    if let Ok(bots) = bot::list(&d.store) {
        let _ = writeln!(out, "# HELP botyard_bot_unique_bytes Bytes only this bot holds.\n# TYPE botyard_bot_unique_bytes gauge");
        for b in bots {
            let _ = writeln!(
                out,
                "botyard_bot_unique_bytes{{bot=\"{}\"}} {}",
                label(&b.bot.id),
                b.unique_bytes.unwrap_or(0)
            );
        }
    }
    out
}
