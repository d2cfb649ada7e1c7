//! Progress while a replay runs: a bar on a terminal (scanned of the range, matched, written,
//! rate, ETA), one plain line every few seconds otherwise (a log file has no use for a bar).

use indicatif::{ProgressBar, ProgressStyle};
use std::time::{Duration, Instant};

use crate::report::Report;

/// How often the plain line is printed.
const LINE_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub enum Progress {
    Bar(ProgressBar),
    Lines {
        total: u64,
        last: Instant,
        started: Instant,
    },
    Silent,
}

impl Progress {
    /// A bar when stderr is a terminal, plain lines otherwise; `total` is the records in range.
    pub fn new(total: u64, terminal: bool) -> Self {
        if !terminal {
            let now = Instant::now();
            return Progress::Lines {
                total,
                last: now,
                started: now,
            };
        }
        let bar = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} scanned · {msg} · {per_sec} · ETA {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        Progress::Bar(bar)
    }

    pub fn update(&mut self, report: &Report) {
        match self {
            Progress::Bar(bar) => {
                bar.set_position(report.scanned);
                bar.set_message(format!(
                    "matched {} · written {}",
                    report.matched, report.written
                ));
            }
            Progress::Lines {
                total,
                last,
                started,
            } => {
                if last.elapsed() < LINE_EVERY {
                    return;
                }
                *last = Instant::now();
                let seconds = started.elapsed().as_secs_f64().max(0.001);
                eprintln!(
                    "replay {}: scanned {}/{} matched {} written {} ({:.0} records/s)",
                    report.replay_id,
                    report.scanned,
                    total,
                    report.matched,
                    report.written,
                    report.scanned as f64 / seconds
                );
            }
            Progress::Silent => {}
        }
    }

    pub fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}
