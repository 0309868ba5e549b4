//! The live progress line of `weir run` on stderr: records/s, checkpoints, last checkpoint.

use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::metrics::JobMetrics;

/// A thread redrawing the progress line until stopped.
pub struct Progress {
    stop: mpsc::Sender<()>,
    thread: Option<JoinHandle<()>>,
    started: Instant,
}

impl Progress {
    /// Starts drawing for job `name`: in place every 0.5 s on a terminal, a new line
    /// every 10 s otherwise.
    pub fn start(name: &str, metrics: Arc<JobMetrics>) -> Self {
        let name = name.to_string();
        let (stop, stopped) = mpsc::channel();
        let started = Instant::now();
        let tty = std::io::stderr().is_terminal();
        let every = if tty {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(10)
        };
        let thread = std::thread::Builder::new()
            .name("weir-progress".into())
            .spawn(move || {
                let (mut last_records, mut last_at) = (0u64, Instant::now());
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    let records = metrics.source_records();
                    let rate = (records - last_records.min(records)) as f64 / last_at.elapsed().as_secs_f64();
                    (last_records, last_at) = (records, Instant::now());
                    let line = format!(
                        "weir: {name} {:>7.1} s  {records} records  {:.2} M rec/s  checkpoints {} (last {} ms, {})  restarts {}",
                        started.elapsed().as_secs_f64(),
                        rate / 1e6,
                        metrics.checkpoints_completed.load(Ordering::Relaxed),
                        metrics.last_checkpoint_ms.load(Ordering::Relaxed),
                        human_bytes(metrics.last_checkpoint_bytes.load(Ordering::Relaxed)),
                        metrics.restarts.load(Ordering::Relaxed),
                    );
                    let mut err = std::io::stderr().lock();
                    let _ = if tty { write!(err, "\r\x1b[2K{line}") } else { writeln!(err, "{line}") };
                    let _ = err.flush();
                }
                if tty {
                    let _ = write!(std::io::stderr(), "\r\x1b[2K");
                }
            })
            .ok();
        Progress {
            stop,
            thread,
            started,
        }
    }

    /// Stops drawing and clears the line; returns the time since start.
    pub fn stop(mut self) -> Duration {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.started.elapsed()
    }
}

/// `bytes` in B, KiB, MiB or GiB.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
